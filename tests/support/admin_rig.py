"""Shared set-up for the admin listener tests: keys, key files, a running service.

Not a test module (no ``test_`` prefix): imported by the admin test modules.
Servers listen on 127.0.0.1 port 0 (a free port) only.
"""

import os

import bcrypt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from twisted.conch.ssh import keys
from twisted.internet import defer
from twisted.logger import Logger

from clsd.admin.fake import FakeBackend
from clsd.admin.hostkey import fingerprint
from clsd.admin.service import make_admin_service
from clsd.config.admin import AdminConfig

LOOPBACK = "127.0.0.1"
TELNET_PASSWORD = "correct horse"


def new_ed25519_key():
    return keys.Key(ed25519.Ed25519PrivateKey.generate())


def new_ecdsa_key():
    return keys.Key(ec.generate_private_key(ec.SECP256R1()))


def write_private_key(path, key):
    """An OpenSSH private key file, mode 0600 as ssh(1) demands."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.toString("openssh"))
    return path


def write_key_file(path, *private_keys):
    with open(path, "wb") as f:
        for number, key in enumerate(private_keys):
            f.write(key.public().toString("openssh") + b" key%d@test\n" % number)
    return path


class AdminRig:
    """Keys, key files and an admin service on 127.0.0.1:0, for one test."""

    def __init__(self, testcase, *, backend=None, telnet=False, ssh=True):
        from twisted.internet import reactor

        self.reactor = reactor
        self.dir = os.path.abspath(testcase.mktemp())
        os.makedirs(self.dir)
        self.admin_key = new_ed25519_key()
        self.monitor_key = new_ecdsa_key()
        self.stranger_key = new_ed25519_key()
        self.authorized_keys = write_key_file(self.path("admin_keys"), self.admin_key)
        self.monitor_keys = write_key_file(self.path("monitor_keys"), self.monitor_key)
        self.backend = backend if backend is not None else FakeBackend()
        self.events = []
        self._event_waiters = []
        self.log = Logger(namespace="clsd.admin", observer=self._observe)
        password_hash = bcrypt.hashpw(TELNET_PASSWORD.encode(), bcrypt.gensalt(rounds=4))
        self.config = AdminConfig(
            ssh=(LOOPBACK, 0) if ssh else None,
            host_key=self.path("data", "ssh_host_ed25519_key"),
            authorized_keys=self.authorized_keys,
            monitor_keys=self.monitor_keys,
            telnet=(LOOPBACK, 0) if telnet else None,
            telnet_password_hash=password_hash.decode() if telnet else None,
        )
        self.testcase = testcase
        self.service = None

    def path(self, *parts):
        return os.path.join(self.dir, *parts)

    @defer.inlineCallbacks
    def start(self):
        self.service = make_admin_service(self.config, self.backend, self.reactor, log=self.log)
        self.service.startService()
        self.testcase.addCleanup(self.service.stopService)
        if self.service.ssh is not None:
            port = yield self.service.ssh.when_listening()
            self.ssh_address = (LOOPBACK, port.getHost().port)
        if self.service.telnet is not None:
            port = yield self.service.telnet.when_listening()
            self.telnet_address = (LOOPBACK, port.getHost().port)
        return self

    def audit(self, event, **match):
        """The audit events of type C{event} whose fields equal C{match}."""
        return [
            e for e in self.events
            if e.get("admin_event") == event and all(e.get(k) == v for k, v in match.items())
        ]

    def fingerprint(self, key):
        return fingerprint(key)

    def _observe(self, event):
        self.events.append(event)
        waiting, self._event_waiters = self._event_waiters, []
        for kind, d in waiting:
            if event.get("admin_event") == kind:
                d.callback(event)
            else:
                self._event_waiters.append((kind, d))

    def next_audit(self, event, timeout=15.0):
        """A Deferred that fires with the next audit event of type C{event}."""
        d = defer.Deferred()
        self._event_waiters.append((event, d))
        return d.addTimeout(timeout, self.reactor)
