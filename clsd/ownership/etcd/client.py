"""The Twisted shell of the etcd arbiter: HTTPS calls to etcd's JSON gateway, and the watch stream.

L{EtcdGateway} speaks to the gateway with C{twisted.web.client.Agent}: mutual
TLS (the CA from ``[etcd] ca``, our certificate and key), a deadline on every
call, the endpoints tried in order when one fails (starting from the last
one that answered), and one long-lived watch stream read line by line.  It
never raises to its caller: every outcome is a value.

L{EtcdDriver} carries out the core's L{EtcdCall}, L{EtcdWatch} and
L{EtcdLog} actions and hands the results back as inputs for
C{IArbiter.receive}.  No blocking client, no threads.
"""

import json
from io import BytesIO

from twisted.internet import defer, error as net_error, ssl
from twisted.internet.task import Cooperator
from twisted.logger import Logger
from twisted.protocols.basic import LineOnlyReceiver
from twisted.web.client import (
    Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone, readBody,
)
from twisted.web.http_headers import Headers
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from clsd.ownership.etcd.core.actions import (
    ETCD_ACTIONS, EtcdCall, EtcdLog, EtcdReply, EtcdWatch, EtcdWatchClosed, EtcdWatchMessage,
)
from clsd.ownership.etcd.core import codec

#: A watch line longer than this is not an etcd message we asked for: close the stream.
MAX_WATCH_LINE = 1 << 20

#: Answers longer than this are refused (a txn answer is a few hundred bytes).
MAX_BODY = 1 << 20

#: Persistent connections kept per etcd member: the calls of one node overlap
#: little (keepalives, a txn, a revoke), and each TLS handshake costs ~3 ms.
POOL_PER_HOST = 4

_HEADERS = {b"Content-Type": [b"application/json"], b"User-Agent": [b"clsd"]}


class EtcdTLSError(ValueError):
    """The ``[etcd]`` TLS files cannot be used; ``str()`` says which and why."""


@implementer(IPolicyForHTTPS)
class EtcdTLSPolicy:
    """Trust only C{ca} for etcd's server certificate (checked against the URL's host);
    present our certificate and key (etcd's ``--client-cert-auth``)."""

    def __init__(self, ca_pem, cert_pem, key_pem):
        self._trust = ssl.Certificate.loadPEM(ca_pem)
        self._client = ssl.PrivateCertificate.loadPEM(cert_pem + b"\n" + key_pem)

    @classmethod
    def from_files(cls, ca, cert, key):
        blobs = []
        for what, path in (("ca", ca), ("cert", cert), ("key", key)):
            try:
                with open(path, "rb") as f:
                    blobs.append(f.read())
            except OSError as e:
                raise EtcdTLSError(f"etcd.{what}: cannot read {path}: {e.strerror}") from None
        try:
            return cls(*blobs)
        except Exception as e:  # pyOpenSSL raises its own Error types
            raise EtcdTLSError(f"etcd.ca/cert/key ({ca}, {cert}, {key}) are not a usable "
                               f"PEM certificate and key: {e}") from None

    def creatorForNetloc(self, hostname, port):
        return ssl.optionsForClientTLS(hostname.decode("ascii"), trustRoot=self._trust,
                                       clientCertificate=self._client)


def _describe(failure):
    if failure.check(defer.CancelledError):
        return "timed out"
    if failure.check(net_error.ConnectionRefusedError):
        return "connection refused"
    value = failure.value
    reasons = getattr(value, "reasons", None)  # ResponseNeverReceived & co
    if reasons:
        return "; ".join(_describe(r) for r in reasons)
    return f"{type(value).__name__}: {value}".strip()


class _Lines(LineOnlyReceiver):
    """Splits a streamed response body into lines (one JSON object each).

    A line longer than L{MAX_WATCH_LINE} closes the stream with a reason
    that says so, rather than growing the buffer.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_WATCH_LINE

    def __init__(self, on_line, on_closed):
        self._on_line = on_line
        self._on_closed = on_closed
        self.closed = False

    def lineReceived(self, line):
        if line.strip():
            self._on_line(line)

    def lineLengthExceeded(self, line):
        self._buffer = b""
        if not self.closed:
            self.closed = True
            self._on_closed(f"watch line longer than {self.MAX_LENGTH} bytes: stream closed")
        self.transport.stopProducing()

    def connectionLost(self, reason):
        if self.closed:
            return
        self.closed = True
        if reason.check(ResponseDone):
            self._on_closed("etcd ended the stream")
        else:
            self._on_closed(f"stream lost: {_describe(reason)}")

    def stop(self):
        """Close the stream without reporting it (we asked for it)."""
        self.closed = True
        if self.transport is not None:
            self.transport.stopProducing()


class _Watch:
    def __init__(self):
        self.request = None
        self.lines = None
        self.timer = None
        self.stopped = False

    def cancel(self):
        self.stopped = True
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        if self.lines is not None:
            self.lines.stop()
        elif self.request is not None:
            self.request.cancel()


class EtcdGateway:
    """POST JSON to etcd members' ``/v3/...`` gateway, with deadlines and failover."""

    log = Logger()

    def __init__(self, reactor, endpoints, policy, *, monotonic, bind_host=None):
        """
        @param bind_host: the local address calls leave from (the node's own
            address, like its peer connections), or None for the kernel's pick.
        """
        self._reactor = reactor
        self._monotonic = monotonic
        self.endpoints = [url.rstrip("/").encode("ascii") for url in endpoints]
        self._preferred = 0
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = POOL_PER_HOST
        self._pool.retryAutomatically = False
        bind = (bind_host, 0) if bind_host is not None else None
        self._agent = Agent(reactor, contextFactory=policy, pool=self._pool, bindAddress=bind)
        self._stream_agent = Agent(reactor, contextFactory=policy, bindAddress=bind,
                                   pool=HTTPConnectionPool(reactor, persistent=False))
        self._in_flight = set()
        # Request bodies are written by FileBodyProducer, paced by this reactor.
        self._cooperator = Cooperator(scheduler=lambda work: reactor.callLater(0, work))

    def _body(self, data):
        return FileBodyProducer(BytesIO(data), cooperator=self._cooperator)

    @property
    def preferred(self):
        """The endpoint the next call starts with (the last one that answered)."""
        return self.endpoints[self._preferred].decode("ascii")

    def _rotate_from(self, index):
        if index == self._preferred:
            self._preferred = (index + 1) % len(self.endpoints)

    def call(self, path, body, timeout):
        """A Deferred firing C{(status, body_bytes, error)}; never fails.

        C{status} None: no member answered within C{timeout} (C{error} says
        what happened at each one tried).
        """
        result = defer.Deferred()
        self._in_flight.add(result)
        result.addBoth(lambda r: (self._in_flight.discard(result), r)[1])
        deadline = self._monotonic() + timeout
        data = json.dumps(body).encode("utf-8")
        order = [(self._preferred + i) % len(self.endpoints) for i in range(len(self.endpoints))]
        errors = []

        def attempt(position):
            remaining = deadline - self._monotonic()
            if position >= len(order) or remaining <= 0:
                result.callback((None, b"", "; ".join(errors) or f"timed out after {timeout:g}s"))
                return
            index = order[position]
            url = self.endpoints[index] + path.encode("ascii")
            d = self._agent.request(b"POST", url, Headers(_HEADERS), self._body(data))
            d.addCallback(lambda response: readBody(response).addCallback(
                lambda content: (response.code, content)))
            timer = self._reactor.callLater(remaining, d.cancel)

            def done(answer):
                if timer.active():
                    timer.cancel()
                self._preferred = index
                result.callback((answer[0], answer[1], None))

            def failed(failure):
                if timer.active():
                    timer.cancel()
                errors.append(f"{self.endpoints[index].decode('ascii')}: {_describe(failure)}")
                self._rotate_from(index)
                attempt(position + 1)

            d.addCallbacks(done, failed)

        attempt(0)
        return result

    def watch(self, body, on_line, on_closed, timeout):
        """Open a streaming POST to ``/v3/watch`` on the preferred member.

        C{on_line(bytes)} for each message; C{on_closed(reason)} once, when the
        stream ends, fails or cannot be opened within C{timeout} (then the next
        member is preferred).  Returns a handle whose C{cancel()} closes it
        silently.
        """
        handle = _Watch()
        index = self._preferred
        url = self.endpoints[index] + codec.WATCH.encode("ascii")
        request = self._stream_agent.request(
            b"POST", url, Headers(_HEADERS), self._body(json.dumps(body).encode("utf-8")))
        handle.request = request
        handle.timer = self._reactor.callLater(timeout, request.cancel)

        def opened(response):
            if handle.timer.active():
                handle.timer.cancel()
            if handle.stopped:
                lines = _Lines(lambda line: None, lambda reason: None)
                response.deliverBody(lines)
                lines.stop()
                return
            if response.code != 200:
                self._rotate_from(index)
                readBody(response).addBoth(lambda _: on_closed(f"HTTP {response.code}"))
                return
            handle.lines = _Lines(on_line, on_closed)
            response.deliverBody(handle.lines)

        def failed(failure):
            if handle.timer.active():
                handle.timer.cancel()
            if handle.stopped:
                return
            self._rotate_from(index)
            on_closed(f"cannot open on {self.endpoints[index].decode('ascii')}: "
                      f"{_describe(failure)}")

        request.addCallbacks(opened, failed)
        return handle

    def drain(self, timeout):
        """A Deferred that fires when every call in flight has its answer, or after C{timeout}."""
        waits = [_observe(d) for d in self._in_flight]
        if not waits:
            return defer.succeed(None)
        d = defer.DeferredList(waits, consumeErrors=True)
        timer = self._reactor.callLater(timeout, d.cancel)
        d.addBoth(lambda _: timer.cancel() if timer.active() else None)
        return d

    def close(self):
        return self._pool.closeCachedConnections()


def _observe(d):
    """A Deferred that fires when C{d} does, without taking C{d}'s result."""
    waiter = defer.Deferred()
    d.addBoth(lambda r: (waiter.callback(None) if not waiter.called else None, r)[1])
    return waiter


class EtcdDriver:
    """Executes the etcd core's actions on an L{EtcdGateway}; results go to C{deliver(input)}.

    @param deliver: called with an L{EtcdReply}, L{EtcdWatchMessage} or
        L{EtcdWatchClosed} for the core (C{OwnershipService} feeds it to
        C{IArbiter.receive}).
    @param events: the daemon's L{clsd.events.EventLog} (for L{EtcdLog}).
    """

    log = Logger()

    def __init__(self, gateway, deliver, events):
        self.gateway = gateway
        self._deliver = deliver
        self._events = events
        self._watch = None
        self._stopped = False

    @classmethod
    def from_config(cls, etcd, reactor, deliver, events, *, monotonic, bind_host=None):
        policy = EtcdTLSPolicy.from_files(etcd.ca, etcd.cert, etcd.key)
        return cls(EtcdGateway(reactor, etcd.endpoints, policy, monotonic=monotonic,
                               bind_host=bind_host), deliver, events)

    def handles(self, action):
        return isinstance(action, ETCD_ACTIONS)

    def execute(self, action):
        if isinstance(action, EtcdCall):
            d = self.gateway.call(action.path, action.body, action.timeout)
            d.addCallback(lambda answer: self._give(EtcdReply(action.id, *answer)))
        elif isinstance(action, EtcdWatch):
            if self._watch is not None:
                self._watch.cancel()
            self._watch = self.gateway.watch(
                action.body,
                lambda line: self._give(EtcdWatchMessage(action.id, line)),
                lambda reason: self._give(EtcdWatchClosed(action.id, reason)),
                action.timeout)
        elif isinstance(action, EtcdLog):
            self._events.record("etcd", action.resource, action.text)
            self.log.warn("etcd: {resource}: {text}", resource=action.resource,
                          text=action.text)
        else:
            raise TypeError(f"not an etcd action: {action!r}")

    def _give(self, message):
        if self._stopped:
            return
        try:
            self._deliver(message)
        except Exception:
            self.log.failure("etcd: the core failed on {message!r}", message=message)

    def stop(self, timeout):
        """Let calls in flight (the final release and revoke) finish, then close everything."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        d = self.gateway.drain(timeout)

        def close(_):
            self._stopped = True
            return self.gateway.close()
        return d.addBoth(close)
