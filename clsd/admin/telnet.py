"""The telnet manhole: a Python REPL behind a password, on a loopback address only.

Telnet is clear text, so the config refuses any address but loopback; the
password is checked against a bcrypt hash (never stored in clear), in a
thread because bcrypt is deliberately slow and the reactor must keep
serving heartbeats. A wrong password costs the client
L{FAILED_LOGIN_DELAY} seconds, and L{MAX_LOGIN_FAILURES} end the connection.
"""

import bcrypt
from twisted.conch import telnet
from twisted.conch.insults import insults
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword, UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import protocol, threads
from zope.interface import implementer

from clsd.admin.audit import Who, format_peer
from clsd.admin.commands import ROLE_ADMIN
from clsd.admin.budget import DEFAULT_MANHOLE_BUDGET, ReactorTimeBudget
from clsd.admin.shell import AdminManhole

#: Slows password guessing to one try per second per connection.
FAILED_LOGIN_DELAY = 1.0
#: Then the connection is closed; a new one starts the count again.
MAX_LOGIN_FAILURES = 3


@implementer(ICredentialsChecker)
class BcryptPasswordChecker:
    """Any user name; the password must match the bcrypt hash.

    @param run_in_thread: C{(f, *args) -> Deferred}; bcrypt takes tens to
        hundreds of milliseconds by design and must not run on the reactor.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, password_hash, run_in_thread):
        self._hash = password_hash.encode("ascii")
        self._run_in_thread = run_in_thread

    def requestAvatarId(self, credentials):
        d = self._run_in_thread(_matches, credentials.password, self._hash)

        def decide(matches):
            if not matches:
                raise UnauthorizedLogin("wrong password")
            return credentials.username

        return d.addCallback(decide)


def _matches(password, password_hash):
    if isinstance(password, str):
        password = password.encode("utf-8")
    try:
        return bcrypt.checkpw(password, password_hash)
    except ValueError:  # bcrypt 5 refuses passwords over 72 bytes: not ours, then
        return False


@implementer(IRealm)
class TelnetManholeRealm:
    """A logged-in telnet user gets a manhole on an insults terminal.

    The C{mind} is the client's address, passed by L{TelnetLogin}.
    """

    def __init__(self, backend, audit, reactor, budget):
        self.backend = backend
        self.audit = audit
        self.reactor = reactor
        self.budget = budget

    def requestAvatar(self, avatarId, mind, *interfaces):
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("the telnet realm only serves telnet protocols")
        user = avatarId.decode("utf-8", "replace") if isinstance(avatarId, bytes) else avatarId
        who = Who("telnet", user, ROLE_ADMIN, "password", mind)
        self.audit.login(who)
        host = _ManholeHost(self.backend, self.audit, who, self.reactor, self.budget)
        bootstrap = _QuietBootstrap(insults.ServerProtocol, host.make_manhole)
        # conch never calls the logout function of a telnet login (the
        # transport hands connectionLost to the avatar instead), so the
        # avatar reports the logout itself.
        bootstrap.on_lost = lambda: self.audit.logout(who)
        return telnet.ITelnetProtocol, bootstrap, lambda: None


class _QuietBootstrap(telnet.TelnetBootstrapProtocol):
    """conch's terminal bootstrap, without a logged traceback per refused option.

    Clients may refuse line mode, window size or go-ahead suppression; the
    manhole works without them, so a refusal is not an error.
    """

    on_lost = staticmethod(lambda: None)

    def connectionMade(self):
        self.transport.negotiationMap[telnet.NAWS] = self.telnet_NAWS
        self.transport.negotiationMap[telnet.LINEMODE] = self.telnet_LINEMODE
        for option in (telnet.LINEMODE, telnet.NAWS, telnet.SGA):
            self.transport.do(option).addErrback(self._refused, option)
        self.transport.will(telnet.ECHO).addErrback(self._refused, telnet.ECHO)
        self.protocol = self.protocolFactory(*self.protocolArgs, **self.protocolKwArgs)
        self.protocol.makeConnection(self)

    def connectionLost(self, reason):
        try:
            super().connectionLost(reason)
        finally:
            self.on_lost()

    def _refused(self, reason, option):
        if not reason.check(telnet.OptionRefused, telnet.AlreadyEnabled):
            self._log.failure("telnet option {option!r} failed", reason, option=option)


class _Unavailable(insults.TerminalProtocol):
    """Says the manhole cannot open, and hangs up."""

    def connectionMade(self):
        self.terminal.write(b"error: the manhole is not available here (see the daemon log)\n")
        self.terminal.loseConnection()


class _ManholeHost:
    """The manhole's host: audits its lines; leaving it ends the connection."""

    def __init__(self, backend, audit, who, reactor, budget):
        self.backend = backend
        self.audit = audit
        self.who = who
        self.reactor = reactor
        self.budget = budget
        self.role = ROLE_ADMIN
        self._manhole = None

    def make_manhole(self):
        try:
            namespace = dict(self.backend.manhole_namespace())
        except Exception:
            self.audit.log.failure("admin manhole: the backend's namespace failed")
            return _Unavailable()
        self.audit.session(self.who, "manhole")
        self._manhole = AdminManhole(namespace, self, self._quit, self.reactor, self.budget)
        return self._manhole

    def manhole_line(self, line):
        self.audit.manhole(self.who, line)

    def _quit(self):
        self._manhole.terminal.loseConnection()


class TelnetLogin(telnet.AuthenticatingTelnetProtocol):
    """conch's username/password prompt, plus audit, a failure delay and a limit."""

    def __init__(self, portal, audit, reactor):
        super().__init__(portal)
        self.audit = audit
        self.reactor = reactor
        self.failures = 0

    def telnet_User(self, line):
        # Clients that send CR LF as data leave a CR on the line.
        return super().telnet_User(line.rstrip(b"\r"))

    def telnet_Password(self, line):
        username, password = self.username, line.rstrip(b"\r")
        del self.username
        peer = format_peer(self.transport.getPeer())

        def login(ignored):
            credentials = UsernamePassword(username, password)
            d = self.portal.login(credentials, peer, telnet.ITelnetProtocol)
            d.addCallbacks(self._cbLogin, self._refused, errbackArgs=(username, peer))

        # Stop suppressing the client's echo. A client that never agreed to
        # (or has not answered yet) must not block the login: conch would wait
        # on that negotiation forever.
        d = self.transport.wont(telnet.ECHO)
        d.addErrback(lambda f: f.trap(telnet.AlreadyDisabled, telnet.AlreadyNegotiating))
        d.addCallback(login)
        return "Discard"

    def _refused(self, reason, username, peer):
        user = username.decode("utf-8", "replace")
        why = reason.getErrorMessage() if reason.check(UnauthorizedLogin) else "login failed"
        if not reason.check(UnauthorizedLogin):
            self.audit.log.failure("telnet login error", failure=reason)
        self.audit.refused("telnet", user, peer, "password", why)
        self.failures += 1
        self.reactor.callLater(FAILED_LOGIN_DELAY, self._after_failure)

    def _after_failure(self):
        if self.transport is None or self.transport.transport is None:
            return
        if self.failures >= MAX_LOGIN_FAILURES:
            self.transport.write(b"\nAuthentication failed; too many failures\n")
            self.transport.loseConnection()
            return
        self.transport.write(b"\nAuthentication failed\nUsername: ")
        self.state = "User"


class TelnetManholeFactory(protocol.ServerFactory):
    def __init__(self, portal, audit, reactor):
        self.portal = portal
        self.audit = audit
        self.reactor = reactor

    def buildProtocol(self, addr):
        proto = telnet.TelnetTransport(TelnetLogin, self.portal, self.audit, self.reactor)
        proto.factory = self
        return proto


def build_telnet_factory(password_hash, backend, reactor, audit,
                         manhole_budget=DEFAULT_MANHOLE_BUDGET):
    """The telnet manhole's server factory; bcrypt runs in C{reactor}'s thread pool.

    @param manhole_budget: seconds one manhole input may run on the reactor.
    """

    def run_in_thread(f, *args):
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    realm = TelnetManholeRealm(backend, audit, reactor, ReactorTimeBudget(manhole_budget))
    portal = Portal(realm,
                    [BcryptPasswordChecker(password_hash, run_in_thread)])
    return TelnetManholeFactory(portal, audit, reactor)
