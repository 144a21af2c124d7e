"""This node's peer network: one listener, persistent dialers, one connection per peer.

L{PeerNetwork} is a Twisted service.  It listens with mutual TLS on the
node's address, keeps a connection to every address it is asked to
L{connect <PeerNetwork.connect>} (each through a C{ClientService} with
exponential backoff, its socket bound to the node's own address), and
reports established peers to an upper-layer L{IPeerHandler}, which sends
with L{send_to <PeerNetwork.send_to>}.

Two nodes that dial each other at the same moment end up with one
connection, the same one on both sides: of two connections to one peer
(same generation) both keep the one dialled by the node whose name sorts
first (ties, as when one node dialled twice, by the dialling side's source
port).  A connection from a new generation of the peer (it restarted)
replaces the old one at once; one from an older generation never does.  A
dialer whose peer is already connected the other way waits until that
connection ends before dialling again, so the loser of the race does not
redial forever.

Accepted connections are bounded until they authenticate (TLS and hello):
L{clsd.wire.core.preauth} caps how many may be pending, in all and per source
address, refusing the rest before any TLS work, and sums up refusals into
one log line per interval.  After a flood the freed heap is given back to
the system (L{clsd.memory.trim}).
"""

from __future__ import annotations

import datetime
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from twisted.application.internet import ClientService, backoffPolicy
from twisted.application.service import MultiService
from twisted.internet import defer
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.endpoints import (
    SSL4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
)
from twisted.internet.interfaces import (
    IAddress, IDelayedCall, IListeningPort, IProtocol, IProtocolFactory, IReactorCore,
    IReactorTCP, IReactorTime, IStreamClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from clsd import memory, version
from clsd.config.address import format_host_port, ip_version
from clsd.listener import ListenError
from clsd.logs import emit
from clsd.wire.core.codec import MAX_LINE
from clsd.wire.core.interfaces import IPeer, IPeerHandler
from clsd.wire.core.lag import ReactorLag
from clsd.wire.core.messages import (
    HELLO, Message, Registry, peer_registry, settings_digests, settings_hash,
)
from clsd.wire.core.preauth import PendingGate, PreauthLimits, RejectionLog, RejectionSummary
from clsd.wire.core.session import LOCAL, PEER, CloseReason, State, Timeouts
from clsd.wire.core.stats import PeerStats
from clsd.wire.core.versions import ProtocolRange
from clsd.wire.protocol import PeerProtocol

if TYPE_CHECKING:
    from clsd.config import Config
    from clsd.wire.tls import PeerTLS


class _IReactor(IReactorTime, IReactorTCP, IReactorCore):
    """What the peer network needs of its reactor."""

#: First redial delay: a restarted peer is usually back within a second.
BACKOFF_INITIAL = 0.5
#: Longest delay between redials of an unreachable peer.  At 30 s, 1024
#: nodes each redialling ~10 dead observers cost a few handshakes per second
#: in the whole cluster (about 2.5 ms of CPU each).
BACKOFF_MAX = 30.0
BACKOFF_FACTOR = 2.0
#: TCP connect timeout for a dial; the TLS and hello steps have their own.
CONNECT_TIMEOUT = 10.0
#: Pending TCP connections the kernel may queue: a whole cluster restarting
#: at once must not see refused connections.
LISTEN_BACKLOG = 1024
#: Connections refused before authentication that make a flood: when one
#: is over (a summary interval without refusals), freed memory is returned.
FLOOD = 100


def _port_number(port: IListeningPort) -> int:
    """The number of a listening TCP port (Twisted types its address as any IAddress)."""
    return cast("IPv4Address | IPv6Address", port.getHost()).port


def new_generation() -> int:
    """A per-start generation: practically unique, and larger after a restart.

    Nanoseconds of wall time, used only as an identifier (a restarted peer's
    connections are told from its old ones by being different), never to
    measure time.
    """
    return time.time_ns()


@implementer(IPeerHandler)
class _NullHandler:
    def peer_connected(self, peer: IPeer) -> None:
        pass

    def message_received(self, peer: IPeer, message: Message) -> None:
        pass

    def peer_disconnected(self, peer: IPeer, reason: CloseReason) -> None:
        pass


def _initiator_endpoint(protocol: PeerProtocol) -> tuple[str, int]:
    """The dialling side's (host, port) of a connection, the same on both ends."""
    transport = protocol.transport
    assert transport is not None
    address = transport.getHost() if protocol.initiator else transport.getPeer()
    return (getattr(address, "host", ""), getattr(address, "port", 0))


def _connection_rank(protocol: PeerProtocol,
                     local_name: str | None) -> tuple[str | None, tuple[str, int]]:
    """Lower ranks win; both ends of a connection compute the same rank."""
    initiator_name = local_name if protocol.initiator else protocol.name
    return (initiator_name, _initiator_endpoint(protocol))


@implementer(IStreamClientEndpoint)
class _WaitingEndpoint:
    """Dials through C{endpoint}, but first waits while the peer is connected another way."""

    def __init__(self, dialer: _Dialer, endpoint: IStreamClientEndpoint) -> None:
        self._dialer = dialer
        self._endpoint = endpoint

    def connect(self, factory: IProtocolFactory) -> defer.Deferred[IProtocol]:
        waiting = self._dialer.network._until_disconnected(self._dialer.peer_name)
        if waiting is None:
            return self._endpoint.connect(factory)
        return waiting.addCallback(lambda _: self._endpoint.connect(factory))

    def __repr__(self) -> str:
        return f"<dial {format_host_port(self._dialer.address)}>"


class _Dialer(Factory):
    """Keeps one outgoing connection to C{address} alive, with backoff."""

    def __init__(self, network: PeerNetwork, address: tuple[str, int],
                 endpoint: IStreamClientEndpoint) -> None:
        self.network = network
        self.address = address
        #: Learned from the first established connection; while that peer is
        #: connected the other way, we do not dial.
        self.peer_name: str | None = None
        #: Consecutive connections that never got established (refused TLS,
        #: bad hello): they lengthen the backoff like failed TCP connects do.
        self.failures = 0
        #: The live connection this dialer made, if any.
        self.current: PeerProtocol | None = None
        self.service = ClientService(
            _WaitingEndpoint(self, endpoint), self,
            retryPolicy=self._retry_delay, clock=network.reactor,
        )

    def _retry_delay(self, attempt: int) -> float:
        # ClientService counts only failed TCP connects and resets on every
        # connect, so a peer refusing our TLS would be redialled at the
        # initial delay forever; refused connections count here instead.
        # (ClientService's prepareConnection cannot do this in Twisted 26.10:
        # a connection lost while it is pending raises NoTransition.)
        return self.network.backoff(attempt + self.failures)

    def buildProtocol(self, addr: IAddress | None) -> PeerProtocol:
        protocol = self.network._build(initiator=True)
        protocol.when_closed(self._closed)
        self.current = protocol
        return protocol

    def stop(self) -> object:
        """Close our connection with a bye, then stop the ClientService.

        ClientService.stopService would cut the transport itself, and a TLS
        transport holds its close back while our producer is registered;
        closing through the protocol first avoids both.
        """
        if self.current is not None:
            self.current.close("disconnect", "this node no longer keeps this connection")
        return self.service.disownServiceParent()  # type: ignore[no-untyped-call]

    def _closed(self, protocol: PeerProtocol, reason: CloseReason) -> None:
        if self.current is protocol:
            self.current = None
        if protocol.hello is not None:
            self.peer_name = protocol.name
            self.failures = 0
        else:
            self.failures += 1
        if reason.key == "self-connection":
            # Our own address: dialling it again cannot help.
            self.network.reactor.callLater(0, self.network.disconnect, self.address)


@implementer(IPeerHandler)
class PeerNetwork(MultiService):
    """The peer connections of one node (see the module docstring)."""

    log = Logger()

    def __init__(self, *, reactor: _IReactor, tls: PeerTLS, name: str, listen: tuple[str, int],
                 advertise: tuple[str, int] | None = None, handler: IPeerHandler | None = None,
                 registry: Registry | None = None, settings: Mapping[str, object] | None = None,
                 generation: int | None = None, source_host: str | None = None,
                 join: Iterable[tuple[str, int]] = (),
                 monotonic: Callable[[], float] = time.monotonic, timeouts: Timeouts = Timeouts(),
                 max_line: int = MAX_LINE, backoff: Callable[[int], float] | None = None,
                 connect_timeout: float = CONNECT_TIMEOUT, lag: ReactorLag | None = None,
                 limits: PreauthLimits = PreauthLimits(), listen_setting: str = "node.listen",
                 trim: Callable[[], object] = memory.trim,
                 resident: Callable[[], int | None] = memory.resident_bytes,
                 protocols: ProtocolRange | None = None, software: str | None = None) -> None:
        """
        @param tls: a L{clsd.wire.tls.PeerTLS} for this node's identity.
        @param name: this node's name (the one in its certificate).
        @param listen: C{(host, port)} to listen on; port 0 picks a free port.
        @param advertise: C{(host, port)} others dial; default C{listen}
            (with the real port when C{listen} asked for port 0).
        @param handler: the upper layer's L{IPeerHandler}.
        @param registry: message types (default: the peer layer's own).
        @param settings: the cluster-wide settings dict that every node must
            share; only its L{settings_hash} travels.
        @param source_host: the address outgoing connections are bound to;
            default the host of C{listen}.
        @param join: addresses to L{connect} to when the service starts.
        @param backoff: C{attempt -> delay} (default L{backoffPolicy} with
            L{BACKOFF_INITIAL}, L{BACKOFF_MAX}, L{BACKOFF_FACTOR}).
        @param lag: the process's L{ReactorLag}, shared by the nodes of one
            process (default: this network runs its own while it runs).
        @param limits: the L{PreauthLimits} on unauthenticated connections.
        @param listen_setting: the configuration key of C{listen}, named
            when the address cannot be bound (L{ListenError}).
        @param trim: returns freed heap memory to the system after a flood.
        @param resident: this process's resident size in bytes (or C{None}),
            logged with the trim.
        @param protocols: the L{ProtocolRange} offered in the hello (default
            L{clsd.version.protocol_range}).
        @param software: the CLSD version told to peers (default
            L{clsd.version.software_version}).
        """
        super().__init__()  # type: ignore[no-untyped-call]
        self.reactor = reactor
        self.tls = tls
        self.name = name  # type: ignore[assignment, unused-ignore]  # Service.name: None
        self.listen_address = listen
        self.advertise = advertise
        self.handler: IPeerHandler = handler if handler is not None else _NullHandler()
        self.registry = registry if registry is not None else peer_registry()
        self.settings_hash = settings_hash(settings or {})
        self.settings_digests = settings_digests(settings or {})
        if protocols is None:
            protocols = ProtocolRange(*version.protocol_range())
        self.protocols = protocols
        self.software = software if software is not None else version.software_version()
        #: Peers refused because no protocol version is common: name -> the refusal's line.
        self.incompatible: dict[str, str] = {}
        self.generation = generation if generation is not None else new_generation()
        self.source_host = source_host if source_host is not None else listen[0]
        self.stats = PeerStats()
        self.backoff: Callable[[int], float] = backoff or backoffPolicy(
            initialDelay=BACKOFF_INITIAL, maxDelay=BACKOFF_MAX, factor=BACKOFF_FACTOR,
            jitter=lambda: random.random() * BACKOFF_INITIAL,
        )
        self._join = tuple(join)
        self._monotonic = monotonic
        self._timeouts = timeouts
        self._max_line = max_line
        self._connect_timeout = connect_timeout
        #: Our own stalls are not held against a handshake (clsd.wire.core.lag).
        self.lag = lag if lag is not None else ReactorLag(reactor, monotonic)
        self._own_lag = lag is None
        self._port: IListeningPort | None = None
        self._hello: Message | None = None
        self._connections: set[PeerProtocol] = set()
        self._peers: dict[str, PeerProtocol] = {}
        self._dialers: dict[tuple[str, int], _Dialer] = {}
        self._waiters: dict[str, list[defer.Deferred[None]]] = {}
        self.limits = limits
        self._listen_setting = listen_setting
        self.gate = PendingGate(limits)
        self.rejections = RejectionLog(limits.log_interval)
        #: Accepted connections holding a slot of the gate: protocol -> source host.
        self._pending: dict[PeerProtocol, str | None] = {}
        self._summary_call: IDelayedCall | None = None
        self._refused_since_trim = 0
        self._trim = trim
        self._resident = resident

    @classmethod
    def from_config(cls, config: Config, *, reactor: _IReactor, handler: IPeerHandler | None = None,
                    registry: Registry | None = None, settings: Mapping[str, object] | None = None,
                    now: datetime.datetime | None = None,
                    **kwargs: Any) -> PeerNetwork | None:
        """The peer network of a node configured by C{config} (a L{clsd.config.Config}).

        Loads and checks the ``[tls]`` files first (L{load_identity}), so a
        bad certificate or key raises L{clsd.config.ConfigError} here and
        the daemon refuses to start.  Returns C{None} when C{node.listen} is
        not set (a node alone has no peers).
        """
        from clsd.certs.identity import load_identity
        from clsd.wire.tls import PeerTLS

        node = config.node
        if node.listen is None:
            return None
        identity = load_identity(config, now=now)
        peer = config.peer
        kwargs.setdefault("limits", peer.limits)
        kwargs.setdefault("timeouts", Timeouts(handshake=peer.handshake_timeout))
        return cls(
            reactor=reactor, tls=PeerTLS(identity, allow=config.membership.allow),
            name=node.name, listen=node.listen,
            advertise=node.advertise, join=kwargs.pop("join", node.join),
            source_host=node.source_host, handler=handler, registry=registry,
            settings=settings, **kwargs)

    # -- the service -----------------------------------------------------------

    def startService(self) -> None:
        host, port = self.listen_address
        tcp = TCP6ServerEndpoint if ip_version(host) == 6 else TCP4ServerEndpoint
        endpoint = tcp(self.reactor, port, backlog=LISTEN_BACKLOG, interface=host)
        # TLS wraps the connections the gate lets through, so that a refused
        # one costs no TLS state (what SSL4ServerEndpoint builds the same way).
        factory = _Gate(self, TLSMemoryBIOFactory(self.tls, False, _ListenerFactory(self)))
        failed: list[Failure] = []
        # Listening on TCP completes at once; a failure (address in use, no
        # such address) is raised here so that the daemon refuses to start.
        endpoint.listen(factory).addCallbacks(  # type: ignore[no-untyped-call]
            self._listening, failed.append)
        if failed:
            raise ListenError.from_failure(self._listen_setting, failed[0])
        if self._own_lag:
            self.lag.start()
        super().startService()  # type: ignore[no-untyped-call]
        for address in self._join:
            self.connect(address)

    def _listening(self, port: IListeningPort) -> None:
        self._port = port
        if self.advertise is None:
            self.advertise = (self.listen_address[0], _port_number(port))
        self._hello = None
        self.log.info("peer listener on {address} (advertised as {advertise})",
                      address=format_host_port((self.listen_address[0], _port_number(port))),
                      advertise=format_host_port(self.advertise))

    @property
    def listening_port(self) -> int | None:
        """The port actually bound (useful when C{listen} asked for port 0)."""
        return _port_number(self._port) if self._port is not None else None

    def stopService(self) -> defer.Deferred[None]:
        if self._own_lag:
            self.lag.stop()
        if self._summary_call is not None:
            if self._summary_call.active():
                self._summary_call.cancel()
            self._summary_call = None
        held = self.rejections.flush(self._monotonic(), early=True)
        if held is not None:
            self._log_refusals(held)
        waits: list[defer.Deferred[Any]] = []
        if self._port is not None:
            waits.append(defer.maybeDeferred(self._port.stopListening))
            self._port = None
        # Say goodbye on every connection first, then stop the dialers (a
        # ClientService would otherwise cut its connection without a bye).
        for protocol in list(self._connections):
            waits.append(self._closed_deferred(protocol))
            protocol.close("shutdown", "the node is stopping")
        waits.append(defer.maybeDeferred(super().stopService))
        return defer.gatherResults(waits, consumeErrors=True).addCallback(lambda _: None)

    def _closed_deferred(self, protocol: PeerProtocol) -> defer.Deferred[None]:
        d: defer.Deferred[None] = defer.Deferred()
        if protocol.state is State.CLOSED:
            d.callback(None)
        else:
            protocol.when_closed(lambda p, reason: d.callback(None))
        return d

    # -- what upper layers use -----------------------------------------------------

    def connect(self, address: tuple[str, int | str]) -> _Dialer:
        """Keep a connection to C{address} (C{(host, port)}) until L{disconnect}."""
        address = (address[0], int(address[1]))
        dialer = self._dialers.get(address)
        if dialer is not None:
            return dialer
        endpoint = SSL4ClientEndpoint(  # type: ignore[no-untyped-call]
            self.reactor, address[0], address[1], self.tls,
            timeout=self._connect_timeout,
            bindAddress=(self.source_host, 0) if self.source_host else None,
        )
        dialer = _Dialer(self, address, endpoint)
        self._dialers[address] = dialer
        dialer.service.setServiceParent(self)  # type: ignore[no-untyped-call]
        return dialer

    def disconnect(self, address: tuple[str, int | str]) -> defer.Deferred[object]:
        """Stop keeping a connection to C{address}; closes the dialled one."""
        dialer = self._dialers.pop((address[0], int(address[1])), None)
        if dialer is None:
            return defer.succeed(None)
        return defer.maybeDeferred(dialer.stop)

    def send_to(self, name: str, message: Message) -> bool:
        """Send C{message} to peer C{name}; C{False} if it is not connected."""
        peer = self._peers.get(name)
        if peer is None:
            return False
        return peer.send(message)

    def peer(self, name: str) -> PeerProtocol | None:
        """The established L{IPeer} for C{name}, or C{None}."""
        return self._peers.get(name)

    def peers(self) -> list[str]:
        """Names of the peers connected now, sorted."""
        return sorted(self._peers)

    def connections(self) -> list[PeerProtocol]:
        """Every live connection, established or not (for tests and debugging)."""
        return list(self._connections)

    def dialing(self) -> list[tuple[str, int]]:
        return sorted(self._dialers)

    def expel(self, refusal: Callable[[PeerProtocol], tuple[str, str] | None]) -> list[str]:
        """Close at once every connection whose peer C{refusal} no longer admits.

        @param refusal: C{protocol -> (reason key, detail) or None}, asked
            of every live connection (see L{clsd.wire.core.admission}).
        @return: the names of the established peers expelled, sorted.
        """
        expelled: set[str] = set()
        for protocol in list(self._connections):
            verdict = refusal(protocol)
            if verdict is None:
                continue
            if protocol.hello is not None:
                assert protocol.name is not None
                expelled.add(protocol.name)
            protocol.close(*verdict, blame=PEER)
        return sorted(expelled)

    # -- building connections --------------------------------------------------

    def hello(self) -> Message:
        if self._hello is None:
            advertise = self.advertise or self.listen_address
            self._hello = HELLO.build(
                protocol=self.protocols.high, protocol_min=self.protocols.low,
                software=self.software, name=self.name, generation=self.generation,
                advertise=format_host_port(advertise), settings=self.settings_hash,
                settings_digests=self.settings_digests,
            )
        return self._hello

    def _build(self, *, initiator: bool, source_host: str | None = None) -> PeerProtocol:
        """A connection's protocol; C{source_host}: an accepted one holding a gate slot."""
        protocol = PeerProtocol(
            hello=self.hello(), registry=self.registry, handler=self,
            clock=self.reactor, initiator=initiator, monotonic=self._monotonic,
            stats=self.stats, tls=self.tls, timeouts=self._timeouts,
            max_line=self._max_line, lag=self.lag,
            on_refused=None if initiator else self._refused,
        )
        self._connections.add(protocol)
        if source_host is not None:
            self._pending[protocol] = source_host
        protocol.when_closed(self._forget)
        return protocol

    def _forget(self, protocol: PeerProtocol, reason: CloseReason) -> None:
        self._connections.discard(protocol)
        self._authenticated(protocol)
        if (reason is not None and reason.key == "incompatible"
                and protocol.session is not None):
            name = protocol.session.certificate_name
            if name is not None:
                self.incompatible[name] = reason.detail

    # -- connections that have not authenticated yet -----------------------------

    def _admit(self, address: IAddress | None) -> bool:
        """Whether to accept a connection from C{address}; a refusal is counted and summed up."""
        host = getattr(address, "host", None)
        reason = self.gate.admit(host)
        if reason is None:
            self.stats.pending = self.gate.pending
            return True
        stats = self.stats
        stats.rejected[reason] += 1
        stats.closed[reason] += 1
        if reason == "pending-cap":
            detail = (f"{self.gate.pending} unauthenticated connections pending "
                      f"(max_pending = {self.limits.max_pending})")
        else:
            detail = (f"{self.gate.pending_from(host)} unauthenticated connections pending "
                      f"from {host} (max_pending_per_address = "
                      f"{self.limits.max_pending_per_address})")
        self._record_refusal(reason, host, getattr(address, "port", None), detail)
        return False

    def _authenticated(self, protocol: PeerProtocol) -> None:
        """C{protocol} passed the hello or ended: its gate slot is free."""
        host = self._pending.pop(protocol, _NOT_PENDING)
        if host is not _NOT_PENDING:
            self.gate.release(cast("str | None", host))  # not the sentinel
            self.stats.pending = self.gate.pending

    def _refused(self, protocol: PeerProtocol, reason: CloseReason) -> None:
        """An accepted connection ended before its hello checked out."""
        address = protocol.address or (None, None)
        self._record_refusal(reason.key, address[0], address[1], reason.detail)

    def _record_refusal(self, reason: str, host: str | None, port: int | None,
                        detail: str) -> None:
        self._refused_since_trim += 1
        where = format_host_port((host, port)) if host is not None else "?"
        summary = self.rejections.record(reason, host, where, detail, self._monotonic())
        if summary is not None:
            self._log_refusals(summary)
        self._arm_summary()

    def _arm_summary(self) -> None:
        # Connections still ending after stopService must not leave a timer behind.
        if self._summary_call is not None or not self.running:
            return
        deadline = self.rejections.deadline()
        if deadline is None:
            if self._refused_since_trim < FLOOD:
                return
            # Wait one quiet interval before trimming: the flood may go on.
            deadline = self._monotonic() + self.limits.log_interval
        self._summary_call = self.reactor.callLater(
            max(0.0, deadline - self._monotonic()), self._report_refusals)

    def _report_refusals(self) -> None:
        self._summary_call = None
        summary = self.rejections.flush(self._monotonic())
        if summary is not None:
            self._log_refusals(summary)
        elif self._refused_since_trim >= FLOOD and self.rejections.deadline() is None:
            self._after_flood()
            return
        self._arm_summary()

    def _log_refusals(self, summary: RejectionSummary) -> None:
        emit(self.log, "peer.refused", "{summary}", summary=summary.text(),
             count=summary.count, seconds=round(summary.seconds, 3),
             reasons=summary.reasons, sources=dict(summary.sources),
             source_count=summary.source_count)

    def _after_flood(self) -> None:
        """A flood of unauthenticated connections is over: give the memory back."""
        refused, self._refused_since_trim = self._refused_since_trim, 0
        before = self._resident()
        started = self._monotonic()
        self._trim()
        took = self._monotonic() - started
        after = self._resident()
        if before is not None and after is not None:
            self.log.info(
                "peer flood over ({refused} connections refused since the last one): "
                "resident memory {before:.0f} MB, {after:.0f} MB after returning free memory "
                "({took:.3f} s)",
                refused=refused, before=before / 1e6, after=after / 1e6, took=took)

    # -- IPeerHandler, for our own connections --------------------------------

    # The network is the handler of the PeerProtocols it builds only (L{_build}).
    def peer_connected(self, protocol: PeerProtocol) -> None:  # type: ignore[override]
        self._authenticated(protocol)
        name = protocol.name
        assert name is not None
        self.incompatible.pop(name, None)
        current = self._peers.get(name)
        if current is None:
            self._peers[name] = protocol
            self._log_connected(protocol)
            self.handler.peer_connected(protocol)
            return
        assert protocol.generation is not None and current.generation is not None
        if self._prefer_new(current, protocol):
            self._peers[name] = protocol
            reason = CloseReason("replaced", f"replaced by a newer connection to {name}", LOCAL)
            self._log_disconnected(current, reason)
            self.handler.peer_disconnected(current, reason)
            current.close("duplicate", f"{self.name} keeps another connection to {name}")
            self._log_connected(protocol)
            self.handler.peer_connected(protocol)
        elif protocol.generation < current.generation:
            protocol.close(
                "stale-generation",
                f"{self.name} is connected to a newer start of {name} (generation "
                f"{current.generation}, this connection {protocol.generation})")
        else:
            protocol.close("duplicate", f"{self.name} keeps another connection to {name}")

    def _prefer_new(self, current: PeerProtocol, new: PeerProtocol) -> bool:
        assert new.generation is not None and current.generation is not None
        if new.generation > current.generation:
            return True  # the peer restarted: its old connection is a ghost
        if new.generation < current.generation:
            return False  # a ghost of an earlier start never displaces the live one
        return _connection_rank(new, self.name) < _connection_rank(current, self.name)

    def message_received(self, protocol: PeerProtocol,  # type: ignore[override]
                         message: Message) -> None:
        if self._peers.get(protocol.name) is protocol:  # type: ignore[arg-type]
            self.handler.message_received(protocol, message)

    def peer_disconnected(self, protocol: PeerProtocol,  # type: ignore[override]
                          reason: CloseReason) -> None:
        name = protocol.name
        assert name is not None
        if self._peers.get(name) is not protocol:
            return  # a duplicate or replaced connection: already accounted for
        del self._peers[name]
        self._log_disconnected(protocol, reason)
        self.handler.peer_disconnected(protocol, reason)
        for waiter in self._waiters.pop(name, []):
            waiter.callback(None)

    def _log_connected(self, protocol: PeerProtocol) -> None:
        address = getattr(protocol, "address", None)  # IPeer does not promise one
        emit(self.log, "peer.connected", "peer {peer} connected ({direction} {address})",
             peer=protocol.name, address=format_host_port(address) if address else None,
             direction="outgoing" if protocol.initiator else "incoming")

    def _log_disconnected(self, protocol: PeerProtocol, reason: CloseReason) -> None:
        emit(self.log, "peer.disconnected", "peer {peer} disconnected: {reason}: {detail}",
             peer=protocol.name, reason=reason.key, detail=reason.detail)

    def _until_disconnected(self, name: str | None) -> defer.Deferred[None] | None:
        """C{None} if C{name} is not connected, else a Deferred for when it is not."""
        if name is None or name not in self._peers:
            return None
        waiters = self._waiters.setdefault(name, [])

        def cancel(d: defer.Deferred[None]) -> None:
            if d in waiters:
                waiters.remove(d)

        d: defer.Deferred[None] = defer.Deferred(cancel)
        waiters.append(d)
        return d


_NOT_PENDING = object()


class _Gate(Factory):
    """The listener's factory: admits a connection (L{PendingGate}) before TLS wraps it.

    Returning C{None} from C{buildProtocol} makes Twisted close the accepted
    socket at once, so a refused connection never gets TLS state.
    """

    def __init__(self, network: PeerNetwork, tls_factory: TLSMemoryBIOFactory) -> None:
        self.network = network
        self.tls_factory = tls_factory

    def doStart(self) -> None:
        self.tls_factory.doStart()  # type: ignore[no-untyped-call]

    def doStop(self) -> None:
        self.tls_factory.doStop()  # type: ignore[no-untyped-call]

    def buildProtocol(self, addr: IAddress | None) -> Protocol | None:
        if not self.network._admit(addr):
            return None
        return self.tls_factory.buildProtocol(addr)


class _ListenerFactory(Factory):
    """Builds the accepted side of connections for a L{PeerNetwork}."""

    def __init__(self, network: PeerNetwork) -> None:
        self.network = network

    def buildProtocol(self, addr: IAddress | None) -> PeerProtocol:
        return self.network._build(initiator=False, source_host=getattr(addr, "host", None))
