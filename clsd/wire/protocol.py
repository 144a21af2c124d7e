"""The peer connection protocol: the Twisted shell around L{Session} and L{Codec}.

It turns transport events (connected, TLS handshake done, bytes, paused,
lost) into session events with the monotonic time, and carries out the
session's actions (write a line, deliver a message, close).  Every decision
is the session's; this module only does I/O, keeps the one timer the
session asks for, counts, and logs.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from OpenSSL import SSL
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import (
    IAddress, IConsumer, IDelayedCall, IHandshakeListener, IPushProducer, IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from clsd.certs.authority import CertificateError
from clsd.config.address import format_host_port
from clsd.logs import emit
from clsd.wire.core.codec import MAX_LINE, Codec
from clsd.wire.core.errors import RemoteProtocolError
from clsd.wire.core.interfaces import IPeer, IPeerHandler
from clsd.wire.core.lag import ReactorLag
from clsd.wire.core.messages import Message, Registry
from clsd.wire.core.session import (
    LOCAL,
    NETWORK,
    PEER,
    REMOTE,
    Action,
    CloseReason,
    Deliver,
    Disconnect,
    Established,
    Send,
    Session,
    State,
    Timeouts,
)
from clsd.wire.core.stats import PeerStats
from clsd.wire.tls import (
    classify_tls_failure, peer_certificate, peer_certificate_name, peer_hello_seen,
)

if TYPE_CHECKING:
    from clsd.wire.tls import PeerTLS

_OPEN = (State.CONNECTING, State.HANDSHAKING, State.ESTABLISHED)


class _IPeerTransport(ITCPTransport, IConsumer):
    """What a peer connection's transport (TLS over TCP) offers: a transport that takes a producer."""


def _address_of(transport: _IPeerTransport) -> tuple[str, int | None] | None:
    peer = transport.getPeer()
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is None:
        return None
    return (host, port)


@implementer(IPeer, IHandshakeListener, IPushProducer)
class PeerProtocol(Protocol):
    """One peer connection; see L{clsd.wire.core.session} for its lifecycle."""

    log = Logger()
    transport: _IPeerTransport | None

    def __init__(self, *, hello: Message, registry: Registry, handler: IPeerHandler,
                 clock: IReactorTime, initiator: bool,
                 monotonic: Callable[[], float] = time.monotonic, stats: PeerStats | None = None,
                 tls: PeerTLS | None = None, timeouts: Timeouts = Timeouts(),
                 max_line: int = MAX_LINE, peer_name: Callable[[object], str] = peer_certificate_name,
                 lag: ReactorLag | None = None,
                 on_refused: Callable[[PeerProtocol, CloseReason], object] | None = None) -> None:
        """
        @param hello: our hello L{clsd.wire.core.messages.Message}.
        @param registry: the message types this connection understands.
        @param handler: an L{clsd.wire.core.interfaces.IPeerHandler}.
        @param clock: an C{IReactorTime} for the session's one timer.
        @param initiator: whether this node dialled.
        @param monotonic: the clock every timeout is judged by.
        @param tls: the L{clsd.wire.tls.PeerTLS} in use, to explain
            handshake failures (C{None} in tests without TLS).
        @param peer_name: reads the verified peer name from the transport
            (tests substitute it when there is no real TLS).
        @param lag: a L{clsd.wire.core.lag.ReactorLag} of this process (or None):
            our own stalls do not count against the handshake.
        @param on_refused: C{callable(protocol, reason)} that reports an
            accepted connection ending before its hello checked out (not by
            our own decision, such as a shutdown), instead
            of a log line per connection (L{clsd.wire.core.preauth.RejectionLog});
            C{None}: each one is logged.
        """
        self._hello = hello
        self._handler = handler
        self._clock = clock
        self._now = monotonic
        self._tls = tls
        self._timeouts = timeouts
        self._peer_name = peer_name
        self.initiator = initiator
        self.stats = stats if stats is not None else PeerStats()
        self.codec = Codec(registry, max_line=max_line)
        self.session: Session | None = None
        self.address: tuple[str, int | None] | None = None
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self._producing = False
        self._close_waiters: list[Callable[[PeerProtocol, CloseReason], object]] = []
        self._lag = lag
        self._lag_seen = 0.0
        self._on_refused = on_refused

    # -- IPeer ---------------------------------------------------------------

    @property
    def state(self) -> State:
        return self.session.state if self.session is not None else State.CONNECTING

    @property
    def hello(self) -> Message | None:
        """The peer's hello once checked, else C{None}."""
        return self.session.peer_hello if self.session is not None else None

    @property
    def name(self) -> str | None:
        hello = self.hello
        return hello["name"] if hello is not None else None

    @property
    def generation(self) -> int | None:
        hello = self.hello
        return hello["generation"] if hello is not None else None

    @property
    def advertise(self) -> str | None:
        hello = self.hello
        return hello["advertise"] if hello is not None else None

    @property
    def protocol(self) -> int | None:
        """The protocol version negotiated with the peer, once its hello checked out."""
        return self.session.protocol if self.session is not None else None

    @property
    def software(self) -> str | None:
        """The peer's CLSD version from its hello, once checked."""
        hello = self.hello
        if hello is None:
            return None
        software = hello.get("software")
        return software if isinstance(software, str) else None

    @property
    def close_reason(self) -> CloseReason | None:
        return self.session.close_reason if self.session is not None else None

    def send(self, message: Message) -> bool:
        if self.session is None or self.session.state is not State.ESTABLISHED:
            return False
        self._write(message)
        return True

    def close(self, key: str = "local-close", detail: str = "closed by this node", *,
              blame: str = LOCAL) -> None:
        if self.session is None:
            if self.transport is not None:
                self.transport.loseConnection()
            return
        self._run(self.session.close(key, detail, self._now(), blame=blame))
        self._reschedule()

    def when_closed(self, callback: Callable[[PeerProtocol, CloseReason], object]) -> None:
        """Call C{callback(protocol, reason)} when the connection has ended."""
        self._close_waiters.append(callback)

    def __repr__(self) -> str:
        who = self.name or (self.session and self.session.certificate_name) or "?"
        where = format_host_port(self.address) if self.address else "?"
        way = "out" if self.initiator else "in"
        return f"<PeerProtocol {who} {where} {way} {self.state.value}>"

    # -- transport events ------------------------------------------------------

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.address = _address_of(self.transport)
        self.stats.connections += 1
        self.session = Session(hello=self._hello, now=self._now(), timeouts=self._timeouts)
        if self._lag is not None:
            self._lag_seen = self._lag.total
        self.transport.registerProducer(self, True)
        self._producing = True
        self._reschedule()

    def handshakeCompleted(self) -> None:
        """TLS is up and the peer's certificate verified: start the hello exchange."""
        assert self.session is not None
        now = self._now()
        try:
            name = self._peer_name(self.transport)
        except CertificateError as e:
            self._run(self.session.close("bad-certificate", str(e), now, blame=PEER))
        else:
            self._run(self.session.tls_ready(name, now, getattr(self._tls, "admission", None),
                                             peer_certificate(self.transport)))
        self._reschedule()

    def dataReceived(self, data: bytes) -> None:
        self.stats.bytes_in += len(data)
        codec = self.codec
        session = self.session
        assert session is not None
        if session.state not in _OPEN:
            return  # closing: nothing more is processed, or kept
        if self._lag is not None:
            # Stalls up to now count for the silence that this data ends,
            # not for the next one.
            self._credit_lag()
        codec.receive_data(data)
        now = self._now()
        while session.state in _OPEN:
            try:
                event = codec.next_event()
            except RemoteProtocolError as e:
                self._run(session.protocol_error(e, now))
                break
            if not isinstance(event, Message):  # NEED_DATA
                break
            self.stats.messages_in += 1
            actions = session.message_received(event, now)
            if actions:
                self._run(actions)
        self._reschedule()

    def connectionLost(self, reason: Failure | None = None) -> None:
        self._cancel_timer()
        session = self.session
        if session is None:
            return
        was_established = session.peer_hello is not None
        final = session.lost(self._describe_loss(reason, session.state), self._now())
        self._count(final, was_established)
        if (self._on_refused is not None and not was_established and not self.initiator
                and final.blame != LOCAL):
            self._on_refused(self, final)
        else:
            self._log_close(final, was_established)
        if was_established:
            self._notify(self._handler.peer_disconnected, final)
        waiters, self._close_waiters = self._close_waiters, []
        for callback in waiters:
            callback(self, final)

    # -- IPushProducer: the transport tells us when the peer stops reading -----

    def pauseProducing(self) -> None:
        if self.session is not None:
            self.session.write_paused(self._now())
            self._reschedule()

    def resumeProducing(self) -> None:
        if self.session is not None:
            self.session.write_resumed(self._now())

    def stopProducing(self) -> None:
        pass  # the connection is going away; connectionLost follows

    # -- carrying out the session's actions ------------------------------------

    def _run(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if type(action) is Deliver:
                self._notify(self._handler.message_received, action.message)
            elif type(action) is Send:
                self._write(action.message)
            elif type(action) is Established:
                self.codec.negotiated(self.protocol)
                self.stats.established += 1
                self._notify(self._handler.peer_connected)
            elif type(action) is Disconnect:
                # A TLS transport postpones its close_notify until the
                # producer is gone, so unregister before closing.
                assert self.transport is not None
                if self._producing:
                    self._producing = False
                    self.transport.unregisterProducer()
                if action.abort:
                    self.transport.abortConnection()
                else:
                    self.transport.loseConnection()

    def _notify(self, method: Callable[..., object], *args: object) -> None:
        """Call the upper layer; its bug is logged, not blamed on the peer.

        The connection stays up: the peer did nothing wrong, and dropping
        it would turn one node's bug into a cluster-wide flap.
        """
        try:
            method(self, *args)
        except Exception:
            self.stats.handler_errors += 1
            self.log.failure("the upper layer failed in {method} for peer {name}",
                             method=getattr(method, "__name__", repr(method)), name=self.name)

    def _write(self, message: Message) -> None:
        assert self.transport is not None and self.session is not None
        data = self.codec.send(message)
        self.transport.write(data)
        stats = self.stats
        stats.messages_out += 1
        stats.bytes_out += len(data)
        actions = self.session.message_sent(len(data), self._now())
        if actions:
            self._run(actions)

    # -- the one timer -------------------------------------------------------

    def _reschedule(self) -> None:
        deadline = self.session.deadline() if self.session is not None else None
        if deadline is None:
            self._cancel_timer()
            return
        if self._timer is not None:
            assert self._timer_at is not None
            if self._timer_at <= deadline:
                return  # fires early; the tick finds nothing due and re-arms
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self._clock.callLater(max(0.0, deadline - self._now()), self._on_timer)

    def _on_timer(self) -> None:
        assert self.session is not None
        self._timer = None
        if self._lag is not None:
            self._credit_lag()
        self._run(self.session.tick(self._now()))
        self._reschedule()

    def _credit_lag(self) -> None:
        """Hand the session this process's stalls since the last time (clsd.wire.core.lag)."""
        assert self._lag is not None and self.session is not None
        total = self._lag.total
        self.session.credit_stall(total - self._lag_seen)
        self._lag_seen = total

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None

    # -- endings ---------------------------------------------------------------

    def _describe_loss(self, reason: Failure | None, state: State) -> CloseReason:
        """Why the transport says it went, as a L{CloseReason}."""
        error = reason.value if reason is not None else ConnectionDone()
        assert error is not None
        verify_errno = self._tls.verify_error(self.transport) if self._tls is not None else None
        if verify_errno is not None or isinstance(error, SSL.Error):
            key, detail = classify_tls_failure(
                error, verify_errno,
                hello_seen=peer_hello_seen(self.transport, self.initiator))
            blame = REMOTE if key.startswith("tls-refused-") else PEER
            return CloseReason(key, detail, blame)
        if state is State.CONNECTING:
            return CloseReason("tls-incomplete",
                               "the connection ended before the TLS handshake completed",
                               NETWORK)
        if isinstance(error, ConnectionDone):
            return CloseReason("connection-closed", "the peer closed the connection", NETWORK)
        return CloseReason("connection-lost", str(error), NETWORK)

    def _count(self, reason: CloseReason, was_established: bool) -> None:
        stats = self.stats
        stats.closed[reason.key] += 1
        if reason.blame == PEER:
            if was_established:
                stats.dropped[reason.key] += 1
            else:
                stats.rejected[reason.key] += 1
        elif reason.blame == REMOTE:
            stats.refused[reason.key] += 1

    def _log_close(self, reason: CloseReason, was_established: bool) -> None:
        address = format_host_port(self.address) if self.address else "?"
        direction = "to" if self.initiator else "from"
        if reason.key == "forged":
            return  # the router logs forgeries, at most once per peer per minute
        if reason.blame == PEER and not was_established:
            emit(self.log, "peer.rejected",
                 "peer connection {direction} {address} rejected: {reason}: {detail}",
                 direction=direction, address=address, reason=reason.key,
                 detail=reason.detail)
        elif reason.blame == PEER:
            self.log.warn(
                "peer {name} ({address}) dropped: {key}: {detail}",
                name=self.name, address=address, key=reason.key, detail=reason.detail,
            )
        elif reason.blame == REMOTE:
            self.log.warn(
                "peer connection {direction} {address} refused by the peer: {key}: {detail}",
                direction=direction, address=address, key=reason.key, detail=reason.detail,
            )
        else:
            self.log.info(
                "peer connection {direction} {name} {address} closed: {key}: {detail}",
                direction=direction, name=self.name or "", address=address,
                key=reason.key, detail=reason.detail,
            )


class PeerFactory(Factory):
    """Builds L{PeerProtocol}s that share one configuration and one L{PeerStats}."""

    def __init__(self, *, initiator: bool, **settings: Any) -> None:
        self.initiator = initiator
        self.settings = settings

    def buildProtocol(self, addr: IAddress | None) -> PeerProtocol:
        protocol = PeerProtocol(initiator=self.initiator, **self.settings)
        protocol.factory = self
        return protocol
