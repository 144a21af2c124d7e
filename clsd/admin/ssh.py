"""The SSH listener: public-key logins in two roles; commands, shells and manholes.

Built from twisted.conch parts: a L{Portal} with one checker that tries the
admin key file then the monitor key file (both through conch's
L{SSHPublicKeyChecker}), a realm that makes an L{AdminAvatar} per login,
and an L{AdminSession} per SSH channel that runs ``exec`` requests through
the command layer or attaches a shell. Only public keys are accepted: the
portal has no password checker, so the server never offers ``password`` or
``keyboard-interactive``. Only ``session`` channels are served: no port
forwarding, no subsystems (sftp), no environment variables.
"""

import attrs
from twisted.conch.avatar import ConchUser
from twisted.conch.checkers import SSHPublicKeyChecker
from twisted.conch.error import IgnoreAuthentication, NotEnoughAuthentication, ValidPublicKey
from twisted.conch.insults import insults
from twisted.conch.interfaces import IConchUser, ISession
from twisted.conch.ssh import connection, factory, keys, session, userauth
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ISSHPrivateKey
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from twisted.internet.error import ConnectionDone, ProcessDone, ProcessTerminated
from twisted.python.failure import Failure
from zope.interface import implementer

from clsd.admin.audit import Who, format_peer
from clsd.admin.authorized_keys import AuthorizedKeysFile
from clsd.admin.budget import DEFAULT_MANHOLE_BUDGET, ReactorTimeBudget
from clsd.admin.commands import (
    EXIT_FAILED, EXIT_OK, EXIT_USAGE, ROLE_ADMIN, ROLE_MONITOR, Outcome, run_line,
)
from clsd.admin.hostkey import fingerprint
from clsd.admin.shell import (
    NEEDS_TERMINAL, WATCH_QUIT_KEYS, AdminManhole, AdminShell, LineShell, WatchScreen,
)
from clsd.admin.watch import EVENT_LINES, PLAIN_WIDTH, WatchLoop

#: Until the pty request says otherwise.
DEFAULT_TERMINAL_SIZE = (80, 24)

#: Seconds an unauthenticated connection may stay (sshd's LoginGraceTime default).
LOGIN_GRACE_TIME = 120
#: Failed authentication attempts before the connection is dropped (sshd's MaxAuthTries).
MAX_AUTH_TRIES = 6

#: Input typed before an exec command starts that is kept for a manhole.
MAX_EARLY_INPUT = 64 * 1024

MANHOLE_UNAVAILABLE = "error: the manhole is not available here (see the daemon log)\n"


@attrs.frozen
class KeyIdentity:
    """What a successful key login proves: the key, and so the role."""

    user: str
    role: str
    fingerprint: str


@implementer(ICredentialsChecker)
class RoleKeyChecker:
    """Admin keys first, then monitor keys; the file that lists the key sets the role."""

    credentialInterfaces = (ISSHPrivateKey,)

    def __init__(self, admin_keys, monitor_keys):
        self._checkers = (
            (ROLE_ADMIN, SSHPublicKeyChecker(admin_keys)),
            (ROLE_MONITOR, SSHPublicKeyChecker(monitor_keys)),
        )

    @defer.inlineCallbacks
    def requestAvatarId(self, credentials):
        key_fingerprint = fingerprint(keys.Key.fromString(credentials.blob))
        user = credentials.username.decode("utf-8", "replace")
        for role, checker in self._checkers:
            try:
                yield checker.requestAvatarId(credentials)
            except ValidPublicKey:
                raise  # not a refusal: the client is asked to sign with this key
            except UnauthorizedLogin:
                continue
            return KeyIdentity(user, role, key_fingerprint)
        raise UnauthorizedLogin(
            f"key {key_fingerprint} is in neither authorized_keys nor monitor_keys "
            "(or its signature is wrong)"
        )


@attrs.define
class AdminContext:
    """What every SSH login shares: the backend, the audit log, the reactor, the manhole budget."""

    backend: object
    audit: object
    reactor: object
    budget: ReactorTimeBudget = attrs.field(factory=ReactorTimeBudget)


@implementer(IRealm)
class AdminRealm:
    def __init__(self, context):
        self.context = context

    def requestAvatar(self, avatarId, mind, *interfaces):
        if IConchUser not in interfaces:
            raise NotImplementedError("the admin realm only serves SSH users")
        avatar = AdminAvatar(avatarId, self.context)
        return IConchUser, avatar, avatar.logout


class AdminAvatar(ConchUser):
    """One logged-in operator; each of their SSH channels gets an L{AdminSession}."""

    def __init__(self, identity, context):
        super().__init__()
        self.identity = identity
        self.context = context
        #: Set by L{AdminUserAuthServer} once the login succeeds.
        self.peer = "?"
        self.channelLookup[b"session"] = session.SSHSession

    @property
    def who(self):
        identity = self.identity
        return Who("ssh", identity.user, identity.role, identity.fingerprint, self.peer)

    def __conform__(self, interface):
        # SSHSession adapts the avatar to ISession once per channel: a fresh
        # AdminSession each time, without a global adapter registration.
        if interface is ISession:
            return AdminSession(self)
        return None

    def logout(self):
        self.context.audit.logout(self.who)


class AdminUserAuthServer(userauth.SSHUserAuthServer):
    """conch's user-auth service, plus the audit log, the injected reactor and sshd's limits."""

    #: sshd's LoginGraceTime: an unauthenticated connection may not linger.
    loginTimeout = LOGIN_GRACE_TIME
    #: sshd's MaxAuthTries.
    attemptsBeforeDisconnect = MAX_AUTH_TRIES

    @property
    def clock(self):
        # The login timeout runs on the factory's reactor, not the global one.
        return self.transport.factory.reactor

    def tryAuth(self, kind, user, data):
        peer = format_peer(self.transport.transport.getPeer())
        audit = self.transport.factory.context.audit
        method = kind.decode("ascii", "replace")
        user_text = user.decode("utf-8", "replace")

        def succeeded(result):
            interface, avatar, logout = result
            avatar.peer = peer
            audit.login(avatar.who)
            return result

        def failed(reason):
            if kind != b"none" and not reason.check(IgnoreAuthentication, NotEnoughAuthentication):
                if reason.check(UnauthorizedLogin):
                    why = reason.getErrorMessage()
                else:
                    why = f"{method} authentication is not accepted (public keys only)"
                audit.refused("ssh", user_text, peer, method, why)
            return reason

        return super().tryAuth(kind, user, data).addCallbacks(succeeded, failed)


class AdminSSHFactory(factory.SSHFactory):
    """An SSH server factory with its own host keys.

    conch's C{ConchFactory} keeps C{publicKeys}/C{privateKeys} in class-level
    dicts shared by every instance; here each factory has its own.
    """

    def __init__(self, host_key, portal, context):
        self.publicKeys = {host_key.sshType(): host_key.public()}
        self.privateKeys = {host_key.sshType(): host_key}
        # No DH group-exchange moduli: the fixed groups and curve25519 suffice.
        self.primes = None
        self.services = {
            b"ssh-userauth": AdminUserAuthServer,
            b"ssh-connection": connection.SSHConnection,
        }
        self.portal = portal
        self.context = context

    @property
    def reactor(self):
        return self.context.reactor


def build_ssh_factory(host_key, backend, reactor, audit, authorized_keys, monitor_keys,
                      manhole_budget=DEFAULT_MANHOLE_BUDGET):
    """The SSH server factory for the admin shell.

    @param authorized_keys: path of the admin key file, or C{None}.
    @param monitor_keys: path of the read-only key file, or C{None}.
    @param manhole_budget: seconds one manhole input may run on the reactor.
    """
    context = AdminContext(backend=backend, audit=audit, reactor=reactor,
                           budget=ReactorTimeBudget(manhole_budget))
    checker = RoleKeyChecker(
        AuthorizedKeysFile(authorized_keys, audit.log),
        AuthorizedKeysFile(monitor_keys, audit.log),
    )
    return AdminSSHFactory(host_key, Portal(AdminRealm(context), [checker]), context)


def terminal_text(text):
    """C{text} as bytes for a pty written to directly (not through insults): CR LF newlines."""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8", "replace")


class _Pipe:
    """The smallest transport: writes go to a callable."""

    disconnecting = False

    def __init__(self, write, lose=lambda: None):
        self._write = write
        self._lose = lose

    def write(self, data):
        self._write(data)

    def writeSequence(self, data):
        self._write(b"".join(data))

    def loseConnection(self):
        self._lose()


@implementer(ISession)
class AdminSession:
    """One SSH channel: an ``exec`` command, a shell, or a manhole.

    It is the I{host} of the protocols in L{clsd.admin.shell}: it runs their
    lines through the command layer and the audit log, and ends the channel
    with an exit status.
    """

    def __init__(self, avatar):
        self.avatar = avatar
        self.context = avatar.context
        self.who = avatar.who
        self.role = avatar.identity.role
        self.terminal_size = None
        self._process = None
        self._terminal = None
        self._line_shell = None
        self._closed = False
        self._ended = False
        self._input = b""
        #: A live view without a terminal (plain frames), while it runs.
        self._plain_watch = None

    # -- ISession -----------------------------------------------------------

    def getPty(self, term, windowSize, modes):
        rows, cols = windowSize[0], windowSize[1]
        self.terminal_size = (cols or DEFAULT_TERMINAL_SIZE[0], rows or DEFAULT_TERMINAL_SIZE[1])

    def openShell(self, process):
        self._process = process
        if self.terminal_size is not None:
            self.context.audit.session(self.who, "shell")
            self._attach_terminal(lambda: AdminShell(self))
        else:
            self.context.audit.session(self.who, "line shell")
            self._line_shell = LineShell(self)
            process.makeConnection(_Pipe(self._line_shell.dataReceived))
            self._line_shell.makeConnection(_Pipe(process.write, self._end_ok))

    def execCommand(self, process, command):
        self._process = process
        # Input sent with an exec command (``echo x | ssh host status``) is
        # ignored, except what is typed for ``ssh -t host manhole``: keep
        # the start of it until the command is known.
        process.makeConnection(_Pipe(self._early_input))
        line = command.decode("utf-8", "replace")
        self.context.audit.session(self.who, "exec")
        # Start on the next turn of the reactor: conch replies to the exec
        # request after this method returns, and no output, exit status or
        # close may reach the client before that reply.
        self.context.reactor.callLater(0, self._start_exec, line)

    def _start_exec(self, line):
        if not self._closed:
            self.run(line).addCallback(self._exec_done)

    def windowChanged(self, newWindowSize):
        rows, cols = newWindowSize[0], newWindowSize[1]
        self.terminal_size = (cols, rows)
        if self._terminal is not None and self._terminal.terminalProtocol is not None:
            self._terminal.terminalProtocol.terminalSize(cols, rows)

    def eofReceived(self):
        if self._line_shell is not None:
            self._line_shell.eofReceived()

    def closed(self):
        self._closed = True
        if self._plain_watch is not None:
            self._plain_watch.stop()
        if self._terminal is not None:
            terminal, self._terminal = self._terminal, None
            terminal.connectionLost(Failure(ConnectionDone()))
        if self._line_shell is not None:
            self._line_shell.connectionLost(Failure(ConnectionDone()))

    # -- host of the shell protocols ---------------------------------------------

    def run(self, line):
        """Run one command line and audit it: a Deferred L{Outcome}."""
        d = run_line(self.context.backend, self.role, line, who=self.who)

        def audited(outcome):
            self.context.audit.command(self.who, line, outcome)
            return outcome

        return d.addCallback(audited)

    def write_error(self, text):
        if text and not self._closed:
            data = terminal_text(text) if self.terminal_size else text.encode("utf-8", "replace")
            self._process.errReceived(data)

    def manhole_line(self, line):
        self.context.audit.manhole(self.who, line)

    def open_manhole(self, shell):
        """Switch this terminal from C{shell} to a Python manhole; back on Ctrl-D."""
        terminal = self._terminal
        manhole = self._new_manhole(lambda: self._leave_manhole(shell))
        if manhole is None:
            self._write_terminal(MANHOLE_UNAVAILABLE)
            shell.prompt()
            return
        terminal.terminalProtocol = manhole
        manhole.makeConnection(terminal)

    def open_watch(self, shell, line):
        """Switch this terminal from C{shell} to a live view of C{line}; back on q."""
        terminal = self._terminal

        def back():
            if self._terminal is not None:
                self._terminal.terminalProtocol = shell
                shell.resume("the live view")
        screen = WatchScreen(lambda show, size: self._watch_loop(line, show, size), back,
                             self.terminal_size)
        terminal.terminalProtocol = screen
        screen.makeConnection(terminal)

    def _watch_loop(self, line, show, size):
        """The L{WatchLoop} of C{line}: its looks are not audited (the command was, once)."""
        backend = self.context.backend

        def look():
            d = run_line(backend, self.role, line, who=self.who)

            def with_events(outcome):
                events = defer.maybeDeferred(backend.history, EVENT_LINES)
                events.addErrback(lambda failure: ())
                return events.addCallback(
                    lambda found: (outcome.stderr + outcome.stdout, tuple(found)))
            return d.addCallback(with_events)

        reactor = self.context.reactor
        return WatchLoop(f"{line} --watch", look, show, reactor, reactor.seconds, size,
                         subscribe=getattr(backend, "subscribe", None))

    def _start_plain_watch(self, line):
        """Without a pty: each changed frame as plain text, until q (or Ctrl-C) comes in."""

        def show(text):
            if not self._closed:
                self._process.write(("\n" + text).encode("utf-8", "replace"))
        self._plain_watch = self._watch_loop(line, show, lambda: (PLAIN_WIDTH, None))
        self._plain_watch.start()
        typed_ahead, self._input = self._input, b""
        if typed_ahead:
            self._early_input(typed_ahead)

    def _leave_manhole(self, shell):
        if self._terminal is None:
            return
        self._terminal.terminalProtocol = shell
        shell.resume()

    def _new_manhole(self, on_quit):
        try:
            namespace = dict(self.context.backend.manhole_namespace())
        except Exception:
            self.context.audit.log.failure("admin manhole: the backend's namespace failed")
            return None
        self.context.audit.session(self.who, "manhole")
        return AdminManhole(namespace, self, on_quit, self.context.reactor, self.context.budget)

    def end(self, status):
        """End this channel with exit status C{status}."""
        if self._ended or self._closed:
            return
        self._ended = True
        if status == 0:
            reason = ProcessDone(0)
        else:
            reason = ProcessTerminated(exitCode=status)
        self._process.processEnded(Failure(reason))

    def _end_ok(self):
        self.end(EXIT_OK)

    # -- plumbing -----------------------------------------------------------

    def _attach_terminal(self, make_protocol):
        """Put an insults terminal between this channel and C{make_protocol()}."""
        process = self._process
        terminal = insults.ServerProtocol(make_protocol)
        self._terminal = terminal
        process.makeConnection(_Pipe(terminal.dataReceived))
        terminal.makeConnection(_Pipe(process.write, self._end_ok))
        terminal.terminalProtocol.terminalSize(*self.terminal_size)
        typed_ahead, self._input = self._input, b""
        if typed_ahead:
            terminal.dataReceived(typed_ahead)

    def _early_input(self, data):
        if self._plain_watch is not None:
            if any(key in data for key in WATCH_QUIT_KEYS):
                self._plain_watch.stop()
                self._plain_watch = None
                self.end(EXIT_OK)
            return
        if len(self._input) < MAX_EARLY_INPUT:
            self._input += data[:MAX_EARLY_INPUT - len(self._input)]

    def _write_terminal(self, text):
        if not self._closed and self._terminal is not None:
            self._terminal.write(text.encode("utf-8", "replace"))

    def _exec_done(self, outcome):
        if self._closed:
            return
        if outcome.watch is not None:
            line = outcome.watch
            if self.terminal_size is not None:
                self._attach_terminal(lambda: WatchScreen(
                    lambda show, size: self._watch_loop(line, show, size), self._end_ok,
                    self.terminal_size))
            else:
                self._start_plain_watch(line)
            return
        if outcome.enter_manhole:
            if self.terminal_size is None:
                outcome = Outcome(EXIT_USAGE, stderr=NEEDS_TERMINAL)
            else:
                manhole = self._new_manhole(self._end_ok)
                if manhole is not None:
                    self._attach_terminal(lambda: manhole)
                    return
                outcome = Outcome(EXIT_FAILED, stderr=MANHOLE_UNAVAILABLE)
        self.write_error(outcome.stderr)
        if outcome.stdout:
            text = outcome.stdout
            self._process.write(
                terminal_text(text) if self.terminal_size else text.encode("utf-8", "replace")
            )
        self.end(outcome.status)
