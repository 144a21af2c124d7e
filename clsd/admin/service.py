"""The admin listeners as one Twisted service, built from ``[admin]`` and a backend.

The daemon adds it in one line::

    make_admin_service(config.admin, backend, reactor).setServiceParent(daemon)

With no ``ssh`` and no ``telnet`` configured it has no listener at all.
"""

from twisted.application.service import MultiService

from clsd.admin.audit import Audit, format_peer
from clsd.admin.budget import DEFAULT_MANHOLE_BUDGET
from clsd.admin.hostkey import fingerprint, load_or_create_host_key
from clsd.admin.ssh import build_ssh_factory
from clsd.admin.telnet import build_telnet_factory
from clsd.listener import ListeningService, server_endpoint


def make_admin_service(config, backend, reactor, *, log=None):
    """An L{AdminService} for L{clsd.config.AdminConfig} C{config} over C{backend}.

    @param log: the L{twisted.logger.Logger} of the audit trail (tests pass
        one with their own observer).
    """
    return AdminService(config, backend, reactor, Audit(log))


class ListenerService(ListeningService):
    """One admin listener (ssh or telnet); its factory is set before it starts.

    A listen failure (address in use) raises from C{startService}, so that a
    daemon with a broken admin listener does not start half-configured.
    """

    def __init__(self, name, endpoint, audit, setting):
        super().__init__(endpoint)
        self.setting = setting
        self.name = name
        self.audit = audit

    def announce(self, port):
        self.audit.log.info("admin {name} listening on {address}", name=self.name,
                            address=format_peer(port.getHost()))


class AdminService(MultiService):
    """The SSH listener and the telnet manhole, each present only when configured.

    The SSH host key is read (or generated) when the service starts, so a
    data_dir created by the daemon's start-up is in place by then.
    """

    name = "admin"  # type: ignore[assignment]  # Service declares name = None

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
            self.ssh = ListenerService("ssh", server_endpoint(reactor, config.ssh), audit,
                                       "admin.ssh")
            self.ssh.setServiceParent(self)
        if config.telnet is not None:
            self.telnet = ListenerService(
                "telnet manhole", server_endpoint(reactor, config.telnet), audit,
                "admin.telnet")
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
