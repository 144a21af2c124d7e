"""Health checkers: run one probe (exec, tcp or http) and say whether it passed.

A checker only answers "is it healthy right now?"; counting rise/fall and
deciding to restart belongs to the supervision policy. So every probe ends in
a L{CheckResult} -- never an errback -- and every probe ends within its
timeout (and the reactor turn after it, which reads an answer already
there): the checker enforces the timeout itself on the injected reactor and
then abandons the probe (kills the probe's process group, aborts the
connection), so a hung service cannot pile up probes.
"""

import signal
import time

import attrs
from twisted.internet import defer, error
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.protocol import Factory, ProcessProtocol, Protocol
from twisted.logger import Logger
from twisted.web.client import (
    Agent,
    BrowserLikePolicyForHTTPS,
    HTTPConnectionPool,
    RequestTransmissionFailed,
    ResponseFailed,
)
from twisted.web.iweb import IAgentEndpointFactory, IPolicyForHTTPS
from zope.interface import implementer

from clsd.supervision.context import ExecContext, minimal_environment
from clsd.supervision.pgroups import signal_group
from clsd.supervision.spawn import spawn_in_new_group

log = Logger()

#: How much of an exec probe's output is kept for the detail: enough for the
#: last line or two of an error message, small enough for an event log line.
OUTPUT_TAIL_CHARS = 200

#: Output kept in memory while an exec probe runs; a chatty probe must not
#: grow the daemon.
OUTPUT_BUFFER_BYTES = 4096


@attrs.frozen
class CheckResult:
    """The outcome of one probe.

    @ivar ok: the probe passed.
    @ivar detail: one short line for events and logs (``exit 1: refused``,
        ``HTTP 503 Service Unavailable``, ``timed out after 0.5s``).
    @ivar latency: seconds from the start of the probe to its outcome.
    """

    ok: bool
    detail: str
    latency: float


class ProbeFailed(Exception):
    """A probe finished and failed; its message is the result's detail."""


def make_checker(check, reactor, *, monotonic=time.monotonic):
    """The checker for C{check} (a L{clsd.config.service.HealthCheck}).

    @param reactor: the reactor that runs probes and times them out
        (IReactorTime, plus IReactorProcess for exec and IReactorTCP for tcp/http).
    @param monotonic: the clock that measures C{latency}.
    @return: an object whose C{check()} returns a Deferred that fires with a
        L{CheckResult} and never errbacks. Cancelling that Deferred abandons
        the probe (as a timeout does) and fires it with C{detail="cancelled"}.
    """
    kinds = {"exec": ExecChecker, "tcp": TCPChecker, "http": HTTPChecker}
    try:
        kind = kinds[check.type]
    except KeyError:
        raise ValueError(
            f"unknown health check type {check.type!r} (one of {', '.join(kinds)})"
        ) from None
    return kind(check.target, check.timeout, reactor, monotonic=monotonic)


class _Checker:
    """Times one probe, enforces its timeout and turns every outcome into a result.

    Subclasses implement C{_probe()}: a Deferred firing with the success
    detail, failing with L{ProbeFailed} (or a Twisted connection error), and
    whose canceller abandons the probe.
    """

    def __init__(self, target, timeout, reactor, *, monotonic=time.monotonic):
        self.target = target
        self.timeout = timeout
        self._reactor = reactor
        self._monotonic = monotonic

    def check(self):
        started = self._monotonic()

        def result(ok, detail):
            return CheckResult(ok=ok, detail=detail, latency=self._monotonic() - started)

        def failed(failure):
            if failure.check(defer.TimeoutError):
                return result(False, f"timed out after {self.timeout:g}s")
            return result(False, self._describe_failure(failure))

        try:
            d = self._probe()
        except Exception as e:
            log.failure("health probe of {target!r} could not start", target=self.target)
            return defer.succeed(result(False, f"probe could not start: {e}"))
        _time_out_after_reads(d, self.timeout, self._reactor)
        d.addCallbacks(lambda detail: result(True, detail), failed)
        return d

    def _describe_failure(self, failure):
        if failure.check(ProbeFailed):
            return str(failure.value)
        if failure.check(defer.CancelledError):
            # The caller cancelled check() (e.g. the service is stopping): the
            # probe was abandoned as at a timeout.
            return "cancelled"
        if failure.check(error.ConnectionRefusedError):
            return "connection refused"
        if failure.check(error.DNSLookupError):
            return _short(f"cannot resolve host: {failure.value}")
        if failure.check(error.ConnectError):
            return _short(f"cannot connect: {failure.getErrorMessage()}")
        # Unexpected: keep the probe's contract (a result) but leave a trace.
        log.failure("health probe of {target!r} failed unexpectedly", failure,
                    target=self.target)
        return _short(f"probe error: {failure.getErrorMessage()}")


class ExecChecker(_Checker):
    """Run an argv (no shell) in its own process group; passes iff it exits 0."""

    def __init__(self, target, timeout, reactor, *, monotonic=time.monotonic,
                 spawn=None, kill_group=signal_group, env=None):
        super().__init__(tuple(target), timeout, reactor, monotonic=monotonic)
        self._spawn = spawn if spawn is not None else _spawn_probe
        self._kill_group = kill_group
        # A service's minimal environment: a probe behaves the same whatever
        # environment the daemon was started with.
        self._env = dict(env) if env is not None else minimal_environment()

    def _probe(self):
        protocol = _ExecProbeProtocol()
        try:
            transport = self._spawn(self._reactor, protocol, self.target, env=self._env)
        except OSError as e:
            return defer.fail(ProbeFailed(f"cannot run {self.target[0]!r}: {e.strerror or e}"))

        def abandon(d):
            # The whole group: a probe script's own children die with it.
            if transport.pid is not None:
                self._kill_group(transport.pid, signal.SIGKILL)
            transport.loseConnection()

        protocol.finished = defer.Deferred(abandon)
        return protocol.finished


def _spawn_probe(reactor, protocol, argv, env):
    """Start a probe as the leader of a new process group, like a service."""
    return spawn_in_new_group(reactor, protocol, ExecContext(argv=tuple(argv), env=env))


class _ExecProbeProtocol(ProcessProtocol):
    """Collects a bounded tail of the probe's output and reports how it ended."""

    finished = None

    def __init__(self):
        self._output = bytearray()

    def outReceived(self, data):
        self._output += data
        del self._output[:-OUTPUT_BUFFER_BYTES]

    errReceived = outReceived

    def processEnded(self, reason):
        if self.finished is None or self.finished.called:
            return  # abandoned at the timeout: the result is already out
        code = getattr(reason.value, "exitCode", None)
        signum = getattr(reason.value, "signal", None)
        if code is not None:
            how = f"exit {code}"
        elif signum is not None:
            how = f"killed by {_signal_name(signum)}"
        else:
            how = _short(reason.getErrorMessage())
        tail = self._tail()
        detail = f"{how}: {tail}" if tail else how
        if code == 0:
            self.finished.callback(detail)
        else:
            self.finished.errback(ProbeFailed(detail))

    def _tail(self):
        text = " ".join(self._output.decode("utf-8", "replace").split())
        if len(text) > OUTPUT_TAIL_CHARS:
            text = "..." + text[-(OUTPUT_TAIL_CHARS - 3):]
        return text


class TCPChecker(_Checker):
    """Connect to (host, port); passes iff the connection is established."""

    def __init__(self, target, timeout, reactor, *, monotonic=time.monotonic):
        host, port = target
        super().__init__((host, int(port)), timeout, reactor, monotonic=monotonic)

    def _probe(self):
        host, port = self.target
        endpoint = client_endpoint(self._reactor, host, port)
        # Cancelling the connect Deferred (at the timeout) stops connecting.
        d = endpoint.connect(Factory.forProtocol(Protocol))

        def connected(protocol):
            protocol.transport.loseConnection()
            return "connected"

        return d.addCallback(connected)


def client_endpoint(reactor, host, port):
    """A TCP client endpoint for C{host}: literal IPv4, literal IPv6, or a name."""
    if isIPAddress(host):
        return TCP4ClientEndpoint(reactor, host, port)
    if isIPv6Address(host):
        return TCP6ClientEndpoint(reactor, host, port)
    return HostnameEndpoint(reactor, host, port)


class HTTPChecker(_Checker):
    """GET the URL; passes iff the status is 2xx or 3xx (redirects not followed).

    HTTPS certificates are verified against the system's trust roots, like a
    browser; pass C{tls_policy} to trust something else.
    """

    def __init__(self, target, timeout, reactor, *, monotonic=time.monotonic,
                 endpoint_factory=None, tls_policy=None):
        super().__init__(target, timeout, reactor, monotonic=monotonic)
        if endpoint_factory is None:
            endpoint_factory = _ProbeEndpointFactory(
                reactor, tls_policy if tls_policy is not None else BrowserLikePolicyForHTTPS()
            )
        # Not persistent: each probe is a fresh connection, as a client would
        # make, and nothing stays open between probes.
        pool = HTTPConnectionPool(reactor, persistent=False)
        self._agent = Agent.usingEndpointFactory(reactor, endpoint_factory, pool=pool)

    def _probe(self):
        # Cancelling the request Deferred (at the timeout) aborts the connection.
        d = self._agent.request(b"GET", self.target.encode("ascii"),
                                _probe_headers())
        d.addCallbacks(self._examine, self._request_failed)
        return d

    def _examine(self, response):
        # The body does not matter: drop it and the connection with it.
        response.deliverBody(_DiscardBody())
        phrase = response.phrase.decode("latin-1", "replace")
        detail = _short(f"HTTP {response.code} {phrase}")
        if 200 <= response.code < 400:
            return detail
        raise ProbeFailed(detail)

    def _request_failed(self, failure):
        # Agent wraps the real reasons (a TLS error, a connection closed early).
        if failure.check(ResponseFailed, RequestTransmissionFailed):
            if any(r.check(defer.CancelledError) for r in failure.value.reasons):
                raise defer.CancelledError()  # check() was cancelled
            messages = [r.getErrorMessage() for r in failure.value.reasons]
            raise ProbeFailed(_short("no HTTP response: "
                                     + ("; ".join(messages) or "connection lost")))
        return failure


def _probe_headers():
    from twisted.web.http_headers import Headers

    return Headers({b"User-Agent": [b"clsd-health-check"], b"Connection": [b"close"]})


@implementer(IAgentEndpointFactory)
class _ProbeEndpointFactory:
    """Plain TCP endpoints for the URL's host (see L{client_endpoint}), TLS for https.

    Agent's own factory uses HostnameEndpoint even for an address literal,
    whose connection attempts are paced 0.3 s apart: a refused connection
    would only be reported after that delay.
    """

    def __init__(self, reactor, tls_policy):
        self._reactor = reactor
        self._tls_policy = IPolicyForHTTPS(tls_policy)

    def endpointForURI(self, uri):
        host = uri.host.decode("ascii")
        endpoint = client_endpoint(self._reactor, host, uri.port)
        if uri.scheme == b"https":
            creator = self._tls_policy.creatorForNetloc(uri.host, uri.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return endpoint


class _DiscardBody(Protocol):
    """Drops the body: at its first bytes, stops it, which closes the connection.

    (A body that ends at once needs nothing: the connection is not persistent.)
    """

    def dataReceived(self, data):
        self.transport.stopProducing()

    def connectionLost(self, reason):
        pass


def _time_out_after_reads(d, timeout, reactor):
    """Cancel C{d} as timed out if it has not fired C{timeout} seconds from now.

    Unlike C{Deferred.addTimeout}, the probe is abandoned one reactor turn
    after its timer: a reactor runs the timers that are due before it reads
    its sockets, so a daemon woken late (a loaded machine) would otherwise
    call a probe timed out whose answer is already waiting to be read, and
    its service would be found running (or healthy) an interval later.
    """
    expired = []

    def expire():
        expired.append(True)
        d.cancel()

    def last_turn():
        # callLater(0) from a timer runs after the reactor's next pass over its sockets.
        calls[0] = reactor.callLater(0, expire)

    calls = [reactor.callLater(timeout, last_turn)]

    def settle(value):
        if calls[0].active():
            calls[0].cancel()
        if expired:
            raise defer.TimeoutError(timeout, "health probe")
        return value

    d.addBoth(settle)


def _signal_name(signum):
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _one_line(text):
    return " ".join(str(text).split())


def _short(text, limit=OUTPUT_TAIL_CHARS):
    """One line of at most C{limit} characters, for details from long errors."""
    text = _one_line(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
