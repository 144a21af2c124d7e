"""The admin listeners as one Twisted service, built from ``[admin]`` and a backend.

The daemon adds it in one line::

    make_admin_service(config.admin, backend, reactor).setServiceParent(daemon)

With no ``ssh`` and no ``telnet`` configured it has no listener at all.
"""

import ipaddress

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint

from clsd.admin.audit import Audit, format_peer
from clsd.admin.budget import DEFAULT_MANHOLE_BUDGET
from clsd.admin.hostkey import fingerprint, load_or_create_host_key
from clsd.admin.ssh import build_ssh_factory
from clsd.admin.telnet import build_telnet_factory


def make_admin_service(config, backend, reactor, *, log=None):
    """An L{AdminService} for L{clsd.config.AdminConfig} C{config} over C{backend}.

    @param log: the L{twisted.logger.Logger} of the audit trail (tests pass
        one with their own observer).
    """
    return AdminService(config, backend, reactor, Audit(log))


def server_endpoint(reactor, address):
    host, port = address
    if ipaddress.ip_address(host).version == 6:
        return TCP6ServerEndpoint(reactor, port, interface=host)
    return TCP4ServerEndpoint(reactor, port, interface=host)


class ListenerService(Service):
    """Listens on one endpoint while running; remembers the port it got.

    A listen failure (address in use) raises from C{startService}, so that a
    daemon with a broken admin listener does not start half-configured.
    """

    def __init__(self, name, endpoint, audit):
        self.name = name
        self.endpoint = endpoint
        self.audit = audit
        #: Set before the service starts.
        self.factory = None
        self.port = None
        self._waiting = []

    def startService(self):
        super().startService()
        failures = []
        d = self.endpoint.listen(self.factory)
        d.addCallbacks(self._listening, failures.append)
        if failures:
            failures[0].raiseException()

    def _listening(self, port):
        self.port = port
        self.audit.log.info("admin {name} listening on {address}", name=self.name,
                            address=format_peer(port.getHost()))
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


class AdminService(MultiService):
    """The SSH listener and the telnet manhole, each present only when configured.

    The SSH host key is read (or generated) when the service starts, so a
    data_dir created by the daemon's start-up is in place by then.
    """

    name = "admin"

    def __init__(self, config, backend, reactor, audit):
        super().__init__()
        self.config = config
        self.backend = backend
        self.reactor = reactor
        self.audit = audit
        #: A hand-built AdminConfig may leave it unset: the default then.
        self.manhole_budget = config.manhole_budget or DEFAULT_MANHOLE_BUDGET
        self.ssh = None
        self.telnet = None
        if config.ssh is not None:
            self.ssh = ListenerService("ssh", server_endpoint(reactor, config.ssh), audit)
            self.ssh.setServiceParent(self)
        if config.telnet is not None:
            self.telnet = ListenerService(
                "telnet manhole", server_endpoint(reactor, config.telnet), audit
            )
            self.telnet.factory = build_telnet_factory(
                config.telnet_password_hash, backend, reactor, audit, self.manhole_budget
            )
            self.telnet.setServiceParent(self)

    def startService(self):
        if self.ssh is not None:
            host_key = load_or_create_host_key(self.config.host_key)
            self.audit.log.info("admin ssh host key {path}: {fingerprint}",
                                path=self.config.host_key, fingerprint=fingerprint(host_key))
            self.ssh.factory = build_ssh_factory(
                host_key, self.backend, self.reactor, self.audit,
                self.config.authorized_keys, self.config.monitor_keys, self.manhole_budget,
            )
        super().startService()
