"""One L{IPeerHandler} for the peer network, many upper layers behind it.

The peer network reports to a single handler; membership and ownership
each want their own messages and both want to know when a peer comes and
goes.  The router dispatches C{message_received} by message type to the
layer that registered it, and fans the connection events out to every
layer, in registration order (membership first, so it knows a link is up
before anything it triggers is sent on it).

A handler that raises is logged and counted; the other layers still hear
the event, and the connection is not blamed for our bug.
"""

import collections

from twisted.logger import Logger
from zope.interface import implementer

from clsd.wire.interfaces import IPeerHandler


@implementer(IPeerHandler)
class Router:
    log = Logger()

    def __init__(self):
        self._by_type = {}
        self._links = []
        self.counters = collections.Counter()

    def route(self, type_names, receive):
        """Deliver messages of C{type_names} to C{receive(peer, message)}."""
        for name in type_names:
            if name in self._by_type:
                raise ValueError(f"message type {name!r} is already routed")
            self._by_type[name] = receive

    def watch(self, connected, disconnected):
        """Call C{connected(peer)} / C{disconnected(peer, reason)} for every peer."""
        self._links.append((connected, disconnected))

    # -- IPeerHandler -------------------------------------------------------------

    def peer_connected(self, peer):
        for connected, _ in self._links:
            self._call(connected, peer)

    def peer_disconnected(self, peer, reason):
        for _, disconnected in self._links:
            self._call(disconnected, peer, reason)

    def message_received(self, peer, message):
        receive = self._by_type.get(message.type)
        if receive is None:
            # Registered on the wire but nobody here handles it (e.g. lease
            # messages on a node without [quorum]): dropped, counted.
            self.counters["unrouted"] += 1
            return
        self._call(receive, peer, message)

    def _call(self, function, *args):
        try:
            function(*args)
        except Exception:
            self.counters["handler_errors"] += 1
            self.log.failure("peer event handler {handler} failed", handler=function)
