"""The loopback telnet manhole: bcrypt password, audit, failure delay and limit.

A conch telnet client on 127.0.0.1 against the real listener (trial's
reactor). That a non-loopback address is refused at config load is tested
in tests/config/test_admin.py.
"""

from twisted.conch import telnet
from twisted.internet import defer, protocol
from twisted.trial import unittest

from clsd.admin import telnet as admin_telnet
from tests.support.admin_rig import TELNET_PASSWORD, AdminRig

TIMEOUT = 15.0


class _Terminal(telnet.TelnetProtocol):
    """A telnet user: lets the server echo and suppress go-ahead, collects output."""

    def __init__(self):
        self.output = b""
        self.closed = defer.Deferred()
        self._waiters = []

    def enableRemote(self, option):
        return option in (telnet.ECHO, telnet.SGA)

    def disableRemote(self, option):
        pass

    def dataReceived(self, data):
        self.output += data
        fire, still = [], []
        for needle, after, d in self._waiters:
            index = self.output.find(needle, after)
            (fire if index >= 0 else still).append((d, index + len(needle)) if index >= 0
                                                   else (needle, after, d))
        self._waiters = still
        for d, at in fire:
            d.callback(at)

    def connectionLost(self, reason):
        for needle, _after, d in self._waiters:
            d.errback(AssertionError(f"closed before {needle!r}; output {self.output!r}"))
        self._waiters = []
        self.closed.callback(None)

    def wait_for(self, needle, after=0):
        from twisted.internet import reactor

        d = defer.Deferred()
        self._waiters.append((needle, after, d))
        self.dataReceived(b"")
        return d.addTimeout(TIMEOUT, reactor)

    def type(self, text):
        self.transport.write(text)


class TelnetManholeTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.patch(admin_telnet, "FAILED_LOGIN_DELAY", 0.01)
        self.rig = yield AdminRig(self, telnet=True, ssh=False).start()

    @defer.inlineCallbacks
    def connect(self):
        terminal = _Terminal()
        factory = protocol.ClientFactory.forProtocol(
            lambda: telnet.TelnetTransport(lambda: terminal))
        host, port = self.rig.telnet_address
        self.rig.reactor.connectTCP(host, port, factory, timeout=TIMEOUT)
        yield terminal.wait_for(b"Username: ")
        self.addCleanup(self.disconnect, terminal)
        return terminal

    def disconnect(self, terminal):
        if terminal.transport is not None and not terminal.closed.called:
            terminal.transport.loseConnection()
            return terminal.closed

    @defer.inlineCallbacks
    def test_right_password_opens_the_manhole(self):
        terminal = yield self.connect()
        terminal.type(b"operator\n")
        at = yield terminal.wait_for(b"Password: ")
        terminal.type(TELNET_PASSWORD.encode() + b"\n")
        at = yield terminal.wait_for(b">>> ", after=at)
        terminal.type(b"print(node + '-manhole')\n")
        yield terminal.wait_for(b"alpha-manhole", after=at)
        terminal.type(b"\x04")  # Ctrl-D leaves the manhole and ends the connection
        yield terminal.closed.addTimeout(TIMEOUT, self.rig.reactor)
        [login] = self.rig.audit("login", via="telnet")
        self.assertEqual((login["user"], login["credential"]), ("operator", "password"))
        self.assertTrue(login["peer"].startswith("127.0.0.1:"), login)
        [line] = self.rig.audit("manhole")
        self.assertEqual(line["code"], "print(node + '-manhole')")
        self.assertNotIn(TELNET_PASSWORD, repr(self.rig.events))
        self.assertEqual(len(self.rig.audit("logout", via="telnet")), 1)

    @defer.inlineCallbacks
    def test_wrong_password_refused_then_limited(self):
        terminal = yield self.connect()
        at = 0
        for _attempt in range(admin_telnet.MAX_LOGIN_FAILURES):
            terminal.type(b"operator\n")
            at = yield terminal.wait_for(b"Password: ", after=at)
            terminal.type(b"not the password\n")
            at = yield terminal.wait_for(b"Authentication failed", after=at)
        yield terminal.closed
        self.assertIn(b"too many failures", terminal.output)
        self.assertNotIn(b">>> ", terminal.output)
        refusals = self.rig.audit("refused", via="telnet")
        self.assertEqual(len(refusals), admin_telnet.MAX_LOGIN_FAILURES)
        self.assertEqual(refusals[0]["reason"], "wrong password")
        self.assertEqual(self.rig.audit("login"), [])

    @defer.inlineCallbacks
    def test_wrong_then_right_password(self):
        terminal = yield self.connect()
        terminal.type(b"operator\n")
        at = yield terminal.wait_for(b"Password: ")
        terminal.type(b"guess\n")
        at = yield terminal.wait_for(b"Username: ", after=at)
        terminal.type(b"operator\n")
        at = yield terminal.wait_for(b"Password: ", after=at)
        terminal.type(TELNET_PASSWORD.encode() + b"\n")
        yield terminal.wait_for(b">>> ", after=at)
        self.assertEqual(len(self.rig.audit("refused", via="telnet")), 1)
        self.assertEqual(len(self.rig.audit("login", via="telnet")), 1)
