"""One L{IPeerHandler} for the peer network, many upper layers behind it.

The peer network reports to a single handler; membership and ownership
each want their own messages and both want to know when a peer comes and
goes.  The router dispatches C{message_received} by message type to the
layer that registered it, and fans the connection events out to every
layer, in registration order (membership first, so it knows a link is up
before anything it triggers is sent on it).

A handler that raises is logged and counted; the other layers still hear
the event, and the connection is not blamed for our bug.  The one exception
is L{Forged}: a layer found the message speaking for another node, so the
peer *is* to blame: its connection is closed as ``forged``, counted per
sender (C{forged}), and logged at most once per sender per
L{FORGED_LOG_INTERVAL}, so that a hostile peer cannot flood the log.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from clsd.logs import emit
from clsd.wire.core.errors import Forged
from clsd.wire.core.interfaces import IPeer, IPeerHandler
from clsd.wire.core.messages import Message
from clsd.wire.core.session import PEER, CloseReason

#: A sender's forged messages are logged at most once per this many seconds.
FORGED_LOG_INTERVAL = 60.0

#: An upper layer's receiver of the messages it routed: C{receive(peer, message)}.
Receive = Callable[[IPeer, Message], object]


@implementer(IPeerHandler)
class Router:
    log = Logger()

    def __init__(self, clock: IReactorTime | None = None) -> None:
        """@param clock: an C{IReactorTime} for the rate of forgery log lines
        (default: every forgery is logged)."""
        self._by_type: dict[str, Receive] = {}
        self._links: list[tuple[Callable[[IPeer], object],
                                Callable[[IPeer, CloseReason], object]]] = []
        self._clock = clock
        self.counters: collections.Counter[str] = collections.Counter()
        #: Connections closed as forged, by sender name.
        self.forged: collections.Counter[str] = collections.Counter()
        self._forged_logged: dict[str, tuple[float | None, int]] = {}     # sender -> (time of the last line, forgeries since)

    def route(self, type_names: Iterable[str], receive: Receive) -> None:
        """Deliver messages of C{type_names} to C{receive(peer, message)}."""
        for name in type_names:
            if name in self._by_type:
                raise ValueError(f"message type {name!r} is already routed")
            self._by_type[name] = receive

    def watch(self, connected: Callable[[IPeer], object],
              disconnected: Callable[[IPeer, CloseReason], object]) -> None:
        """Call C{connected(peer)} / C{disconnected(peer, reason)} for every peer."""
        self._links.append((connected, disconnected))

    # -- IPeerHandler -------------------------------------------------------------

    def peer_connected(self, peer: IPeer) -> None:
        for connected, _ in self._links:
            self._call(connected, peer)

    def peer_disconnected(self, peer: IPeer, reason: CloseReason) -> None:
        for _, disconnected in self._links:
            self._call(disconnected, peer, reason)

    def message_received(self, peer: IPeer, message: Message) -> None:
        receive = self._by_type.get(message.type)
        if receive is None:
            # Registered on the wire but nobody here handles it (e.g. lease
            # messages on a node without [quorum]): dropped, counted.
            self.counters["unrouted"] += 1
            return
        try:
            receive(peer, message)
        except Forged as forged:
            self._forged(peer, message, forged)
        except Exception:
            self.counters["handler_errors"] += 1
            self.log.failure("peer event handler {handler} failed", handler=receive)

    def _forged(self, peer: IPeer, message: Message, forged: Forged) -> None:
        self.forged[peer.name] += 1
        detail = f"{message.type} {forged}"
        now = self._clock.seconds() if self._clock is not None else None
        last, since = self._forged_logged.get(peer.name, (None, 0))
        if now is not None and last is not None and now - last < FORGED_LOG_INTERVAL:
            self._forged_logged[peer.name] = (last, since + 1)
        else:
            self._forged_logged[peer.name] = (now, 0)
            emit(self.log, "peer.forged", "peer {peer} sent a forged message, connection "
                 "closed: {detail} ({suppressed} more since the last line)",
                 peer=peer.name, detail=detail, suppressed=since)
        peer.close("forged", detail, blame=PEER)

    def _call(self, function: Callable[..., object], *args: object) -> None:
        try:
            function(*args)
        except Exception:
            self.counters["handler_errors"] += 1
            self.log.failure("peer event handler {handler} failed", handler=function)
