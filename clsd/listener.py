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


def server_endpoint(reactor, address):
    """A TCP server endpoint for C{(ip, port)}, IPv4 or IPv6 by the address."""
    host, port = address
    if ipaddress.ip_address(host).version == 6:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)


class ListeningService(Service):
    """Listens with C{factory} on C{endpoint} while running (on nothing if it is None).

    A listen failure (address in use) raises from C{startService}. Subclasses
    say where they listen by overriding L{announce}.
    """

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
            failures[0].raiseException()

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
