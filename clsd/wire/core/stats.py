"""Counters of the peer layer: plain integers and Counters, read by metrics later."""

import collections

import attrs


@attrs.define
class PeerStats:
    """What happened on peer connections since start.

    Every ended connection lands in C{closed} under its reason key; those
    that were the peer's fault also in C{rejected} (refused before the hello
    completed: bad TLS, bad hello, handshake timeout) or C{dropped} (an
    established peer we cut off: bad line, idle, slow reader); those where
    the peer refused or closed us in C{refused}.  Byte counts are of the
    line protocol, inside TLS.
    """

    connections: int = 0
    #: Accepted connections not yet past TLS and the hello, now (a gauge).
    pending: int = 0
    established: int = 0
    messages_in: int = 0
    messages_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    #: Exceptions raised by the upper layer's handler (our bugs, logged).
    handler_errors: int = 0
    rejected: collections.Counter[str] = attrs.field(factory=collections.Counter)
    dropped: collections.Counter[str] = attrs.field(factory=collections.Counter)
    refused: collections.Counter[str] = attrs.field(factory=collections.Counter)
    closed: collections.Counter[str] = attrs.field(factory=collections.Counter)

    def snapshot(self) -> dict[str, int | dict[str, int]]:
        """A plain dict copy, for logs, tests and the benchmark."""
        return {
            "connections": self.connections,
            "pending": self.pending,
            "established": self.established,
            "messages_in": self.messages_in,
            "messages_out": self.messages_out,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "handler_errors": self.handler_errors,
            "rejected": dict(self.rejected),
            "dropped": dict(self.dropped),
            "refused": dict(self.refused),
            "closed": dict(self.closed),
        }
