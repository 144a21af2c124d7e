"""An in-process SSH client for the admin shell, built on twisted.conch.

The demo runs admin commands with it on machines without an OpenSSH client
(``python -m clsd.admin.client 127.0.0.11:7422 KEYFILE status`` prints the
command's output and exits with its status, 255 when the login failed, as
ssh(1) does); tests also open shells and try logins that OpenSSH's client
would refuse to attempt (a password the server does not offer). Loopback
only: it accepts any host key, but records the one it saw.

    conn = yield connect(reactor, ("127.0.0.1", port), key=private_key)
    result = yield conn.run("status --json")       # ExecResult
    conn.close()
"""

import argparse
import ipaddress
import struct
import sys

import attrs
from twisted.conch.ssh import common, connection, keys, session, transport, userauth
from twisted.conch.ssh.channel import SSHChannel
from twisted.internet import defer, protocol, task

#: Every step of a test client is bounded by this.
DEFAULT_TIMEOUT = 15.0


class AuthenticationRefused(Exception):
    """The server refused every method we tried.

    @ivar methods: the methods the server said one may continue with.
    @ivar password_refused: a password attempt was made and refused.
    """

    def __init__(self, methods, password_refused=False):
        super().__init__(f"authentication refused; server offers {sorted(methods)}")
        self.methods = methods
        self.password_refused = password_refused


@attrs.frozen
class ExecResult:
    status: int | None
    stdout: bytes
    stderr: bytes

    @property
    def text(self):
        return self.stdout.decode("utf-8")


def connect(reactor, address, *, key=None, password=None, user="admin",
            timeout=DEFAULT_TIMEOUT):
    """Log in at C{address}; a Deferred L{AdminClientConnection}.

    With C{key} (a private L{twisted.conch.ssh.keys.Key}) it offers that key;
    with C{password} it sends a password request whether or not the server
    offers the method. Fails with L{AuthenticationRefused} when refused.
    """
    factory = _ClientFactory(reactor, user, key, password)
    host, port = address
    reactor.connectTCP(host, port, factory, timeout=timeout)
    return factory.ready.addTimeout(timeout, reactor)


class _ClientFactory(protocol.ClientFactory):
    def __init__(self, reactor, user, key, password):
        self.reactor = reactor
        self.user = user.encode("utf-8")
        self.key = key
        self.password = password
        self.ready = defer.Deferred()
        self.host_key = None
        self.auth = None

    def buildProtocol(self, addr):
        proto = _ClientTransport()
        proto.factory = self
        return proto

    def clientConnectionFailed(self, connector, reason):
        self._fail(reason)

    def _fail(self, reason):
        if not self.ready.called:
            self.ready.errback(reason)


class _ClientTransport(transport.SSHClientTransport):
    def verifyHostKey(self, hostKey, fingerprint):
        self.factory.host_key = hostKey
        return defer.succeed(True)

    def connectionSecure(self):
        conn = AdminClientConnection(self.factory)
        auth = _UserAuth(self.factory, conn)
        self.factory.auth = auth
        self.requestService(auth)

    def connectionLost(self, reason):
        super().connectionLost(reason)
        auth = self.factory.auth
        if auth is not None and auth.refused_methods is not None:
            reason = AuthenticationRefused(auth.refused_methods, auth.password_refused)
        self.factory._fail(reason)


class _UserAuth(userauth.SSHUserAuthClient):
    preferredOrder = [b"publickey"]

    def __init__(self, factory, conn):
        super().__init__(factory.user, conn)
        self.factory = factory
        self._key_offered = False
        self._password_tried = False
        self.password_refused = False
        self.refused_methods = None

    def ssh_USERAUTH_FAILURE(self, packet):
        methods, partial = common.getNS(packet)
        self.refused_methods = set(methods.split(b",")) if methods else set()
        if self._password_tried:
            self.password_refused = True
        if self.factory.password is not None and not self._password_tried:
            # Attempt the password even if not offered: the server must refuse it.
            self._password_tried = True
            password = self.factory.password.encode("utf-8")
            self.askForAuth(b"password", b"\x00" + common.NS(password))
            return None
        return super().ssh_USERAUTH_FAILURE(packet)

    def getPublicKey(self):
        if self.factory.key is None or self._key_offered:
            return None
        self._key_offered = True
        return self.factory.key.public()

    def getPrivateKey(self):
        return defer.succeed(self.factory.key)


class AdminClientConnection(connection.SSHConnection):
    """The logged-in connection: run commands and open shells on it."""

    def __init__(self, factory):
        super().__init__()
        self.factory = factory

    def serviceStarted(self):
        super().serviceStarted()
        if not self.factory.ready.called:
            self.factory.ready.callback(self)

    @property
    def host_key(self):
        """The server's host key as this client saw it."""
        return self.factory.host_key

    def run(self, command, *, pty=False, stdin=None, timeout=DEFAULT_TIMEOUT):
        """Run C{command} (str) as an exec request: a Deferred L{ExecResult}."""
        channel = SessionChannel(b"exec", common.NS(command.encode("utf-8")), pty=pty,
                                 stdin=stdin, conn=self)
        self.openChannel(channel)
        return channel.finished.addTimeout(timeout, self.factory.reactor)

    def shell(self, *, pty=True, stdin=None, timeout=DEFAULT_TIMEOUT):
        """Open a shell: a Deferred L{SessionChannel}, once the server accepted it."""
        channel = SessionChannel(b"shell", b"", pty=pty, stdin=stdin, conn=self)
        self.openChannel(channel)
        return channel.started.addTimeout(timeout, self.factory.reactor)

    def close(self):
        self.transport.loseConnection()


class SessionChannel(SSHChannel):
    """One session channel: collects stdout, stderr and the exit status.

    @ivar started: fires with the channel once the shell/exec request is accepted.
    @ivar finished: fires with an L{ExecResult} when the server closes the channel.
    """

    name = b"session"

    def __init__(self, request, request_data, *, pty, stdin, conn,
                 terminal_size=(80, 24)):
        super().__init__(conn=conn)
        self.request = request
        self.request_data = request_data
        self.pty = pty
        self.stdin = stdin
        self.terminal_size = terminal_size
        self.started = defer.Deferred()
        self.finished = defer.Deferred()
        self.stdout = b""
        self.stderr = b""
        self.status = None
        self._waiters = []
        self._closed = False

    def channelOpen(self, specificData):
        if self.pty:
            cols, rows = self.terminal_size
            self.conn.sendRequest(
                self, b"pty-req",
                session.packRequest_pty_req(b"xterm", (rows, cols, 0, 0), b""),
            )
        d = self.conn.sendRequest(self, self.request, self.request_data, wantReply=True)
        d.addCallbacks(self._accepted, self._fail_started)
        if self.stdin is not None:
            self.write(self.stdin)
            self.conn.sendEOF(self)

    def _accepted(self, ignored):
        self.started.callback(self)

    def _fail_started(self, reason):
        self.started.errback(reason)

    def openFailed(self, reason):
        self.started.errback(reason)
        self.finished.errback(reason)

    def dataReceived(self, data):
        self.stdout += data
        self._check_waiters()

    def extReceived(self, dataType, data):
        self.stderr += data

    def request_exit_status(self, data):
        (self.status,) = struct.unpack(">L", data[:4])
        return True

    def closed(self):
        self._closed = True
        self.loseConnection()
        self._check_waiters()
        if not self.finished.called:
            self.finished.callback(ExecResult(self.status, self.stdout, self.stderr))

    # -- for interactive tests ----------------------------------------------

    def send(self, data):
        """Type C{data} (bytes) at the shell."""
        self.write(data)

    def wait_for(self, needle, *, after=0, timeout=DEFAULT_TIMEOUT):
        """A Deferred that fires with the output offset just past C{needle}.

        Only output from offset C{after} on is searched, so a test can wait
        for the second prompt after the first.
        """
        d = defer.Deferred()
        self._waiters.append((needle, after, d))
        self._check_waiters()
        return d.addTimeout(timeout, self.conn.factory.reactor)

    def _check_waiters(self):
        fire, still = [], []
        for needle, after, d in self._waiters:
            index = self.stdout.find(needle, after)
            if index >= 0:
                fire.append((d, index + len(needle)))
            elif self._closed:
                fire.append((d, AssertionError(
                    f"channel closed before {needle!r} appeared; output was {self.stdout!r}"
                )))
            else:
                still.append((needle, after, d))
        # Fire after updating the list: a callback may wait for the next text.
        self._waiters = still
        for d, result in fire:
            if isinstance(result, Exception):
                d.errback(result)
            else:
                d.callback(result)


# -- the command line: one command, as ``ssh HOST CMD`` would run it -------------------

#: ssh(1)'s status when it could not run the command at all.
EXIT_CONNECT_FAILED = 255


def parse_address(text):
    """``HOST:PORT`` of a loopback admin listener (the client accepts any host key)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise argparse.ArgumentTypeError(f"{host!r} is not a loopback address "
                                         "(this client accepts any host key)")
    return host, int(port)


async def run_command(reactor, address, key, command, out, err):
    """Log in at C{address} with C{key}, run C{command}, copy its output; its exit status."""
    try:
        conn = await connect(reactor, address, key=key)
    except Exception as e:
        err.write(f"clsd.admin.client: cannot log in at {address[0]}:{address[1]}: {e}\n")
        return EXIT_CONNECT_FAILED
    try:
        result = await conn.run(command)
    finally:
        conn.close()
    out.write(result.stdout.decode("utf-8", "replace"))
    err.write(result.stderr.decode("utf-8", "replace"))
    return EXIT_CONNECT_FAILED if result.status is None else result.status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clsd.admin.client",
                                     description="Run one admin command over SSH.")
    parser.add_argument("address", type=parse_address, help="the admin SSH listener, HOST:PORT")
    parser.add_argument("key", help="an OpenSSH private key file")
    parser.add_argument("command", nargs="+", help="the admin command and its arguments")
    args = parser.parse_args(argv)
    with open(args.key, "rb") as f:
        key = keys.Key.fromString(f.read())
    status = []

    def run(reactor):
        d = defer.ensureDeferred(run_command(reactor, args.address, key, " ".join(args.command),
                                             sys.stdout, sys.stderr))
        return d.addCallback(status.append)

    try:
        task.react(run)
    except SystemExit:
        pass
    sys.stdout.flush()
    sys.exit(status[0] if status else EXIT_CONNECT_FAILED)


if __name__ == "__main__":
    main()
