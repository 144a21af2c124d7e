"""A service that listens on one local TCP endpoint while it runs.

Shared by the admin listeners and the metrics endpoint: both must fail the
daemon's start-up when their address is taken (rather than run
half-configured), tell tests which port they got, and stop listening when
stopped.
"""

import ipaddress

from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.python.failure import Failure

from clsd.config.address import format_host_port


class ListenError(CannotListenError):
    """A listener cannot bind its address: one line naming the setting and the address.

    Raised from C{startService}; C{twistd clsd} prints it and exits
    (L{clsd.tap}), without a traceback.
    """

    def __init__(self, setting, error):
        """
        @param setting: the configuration key of the address (``node.listen``).
        @param error: the L{CannotListenError} the reactor raised.
        """
        super().__init__(error.interface, error.port, error.socketError)
        self.setting = setting
        reason = getattr(error.socketError, "strerror", None) or str(error.socketError)
        self.reason = reason[:1].lower() + reason[1:]

    def __str__(self):
        address = format_host_port((self.interface or "*", self.port))
        return f"{self.setting}: cannot listen on {address}: {self.reason}"

    @classmethod
    def from_failure(cls, setting: str, failure: Failure) -> "ListenError":
        """The L{ListenError} for a L{CannotListenError} C{failure}; other failures raise."""
        if not failure.check(CannotListenError):
            failure.raiseException()
        return cls(setting, failure.value)


def server_endpoint(reactor, address):
    """A TCP server endpoint for C{(ip, port)}, IPv4 or IPv6 by the address."""
    host, port = address
    if ipaddress.ip_address(host).version == 6:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)


class ListeningService(Service):
    """Listens with C{factory} on C{endpoint} while running (on nothing if it is None).

    A listen failure (address in use) raises L{ListenError} from
    C{startService}, naming C{setting} (such as ``metrics.listen``).
    Subclasses say where they listen by overriding L{announce}.
    """

    #: The configuration key of the address, for L{ListenError}.
    setting = "listen"

    def __init__(self, endpoint, factory=None):
        self.endpoint = endpoint
        #: May be set after construction, but before the service starts.
        self.factory = factory
        #: The L{IListeningPort} while listening.
        self.port = None
        self._waiting = []

    def announce(self, port):
        """Called once listening on C{port}: log where."""

    def startService(self):
        super().startService()
        if self.endpoint is None:
            return
        failures = []
        self.endpoint.listen(self.factory).addCallbacks(self._listening, failures.append)
        if failures:
            raise ListenError.from_failure(self.setting, failures[0])

    def _listening(self, port):
        self.port = port
        self.announce(port)
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(port)

    def when_listening(self):
        """A Deferred that fires with the listening port."""
        if self.port is not None:
            return defer.succeed(self.port)
        d = defer.Deferred()
        self._waiting.append(d)
        return d

    def stopService(self):
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None

