"""Bounds on peer connections that have not authenticated yet (pure).

Anyone who can reach the peer port can open connections without a
certificate. Until such a connection has passed TLS and the hello it costs
this node memory (a TLS object, buffers) and a timer, and each one that ends
used to be a log line: a flood of them took memory that was never returned,
filled the log, and slowed the reactor enough for a lease renewal to be late.

Three parts, all without I/O or clocks (the shell in L{clsd.wire.network}
feeds them the time):

- L{PendingGate} caps the accepted connections that are still pending
  (accepted, not yet established), in all and per source address; a
  connection over a cap is refused before any TLS work.
- L{RejectionLog} sums up the refusals: the first one after a quiet
  interval is reported at once (a misconfigured peer is seen without
  delay), the rest as one summary per interval, with counts by reason
  and by source address.
- L{PreauthLimits} holds the settings (``[peer]`` in the configuration).
"""

from __future__ import annotations

import collections

import attrs

#: A connection refused because the node already has C{max_pending}
#: unauthenticated connections.
PENDING_CAP = "pending-cap"
#: A connection refused because its source address already has
#: C{max_pending_per_address} unauthenticated connections.
PENDING_CAP_ADDRESS = "pending-cap-address"

#: Source addresses named in a summary line (the busiest first).
SUMMARY_SOURCES = 3


@attrs.frozen
class PreauthLimits:
    """How many unauthenticated connections a node keeps, and how it reports refusals."""

    #: Accepted connections not yet past TLS and the hello, in all. A mutual
    #: TLS handshake costs about 2.5 ms of CPU, so 256 at once are more than
    #: half a second of work: more would add memory (about 50 KB each while
    #: handshaking) and reactor stalls, not throughput. With 1024 pending,
    #: floods of 10,000 made the holder miss renewals (doc/performance.md).
    #: Dialers over the cap (a whole cluster restarting against one seed)
    #: are refused at once and redial with backoff.
    max_pending: int = 256
    #: The same, from one source address: one host cannot take the whole
    #: budget, while nodes sharing an address (NAT) still have room.
    max_pending_per_address: int = 32
    #: Refusals are logged as one summary line per this many seconds.
    log_interval: float = 10.0


class PendingGate:
    """Counts pending accepted connections and refuses those over a cap."""

    def __init__(self, limits: PreauthLimits = PreauthLimits()) -> None:
        self.limits = limits
        self._total = 0
        self._by_address: collections.Counter[str | None] = collections.Counter()
        #: The most connections pending at once since the last L{take_peak}.
        self._peak = 0

    @property
    def pending(self) -> int:
        return self._total

    def pending_from(self, address: str | None) -> int:
        return self._by_address[address]

    def admit(self, address: str | None) -> str | None:
        """Take a slot for a connection from C{address}, or say why not.

        @return: C{None} when admitted (call L{release} when the connection
            is established or ends), else L{PENDING_CAP} or
            L{PENDING_CAP_ADDRESS}.
        """
        if self._total >= self.limits.max_pending:
            return PENDING_CAP
        if self._by_address[address] >= self.limits.max_pending_per_address:
            return PENDING_CAP_ADDRESS
        self._total += 1
        self._by_address[address] += 1
        self._peak = max(self._peak, self._total)
        return None

    def release(self, address: str | None) -> None:
        """The connection from C{address} admitted earlier is established or gone."""
        self._total -= 1
        left = self._by_address[address] - 1
        if left:
            self._by_address[address] = left
        else:
            del self._by_address[address]

    def take_peak(self) -> int:
        """The most connections pending at once since the last call; restarts from now."""
        peak, self._peak = self._peak, self._total
        return peak


@attrs.frozen
class RejectionSummary:
    """Refusals of one interval, for one log line and the JSON log."""

    count: int
    #: Seconds the summary covers (0 for the first refusal after a quiet spell).
    seconds: float
    #: C{{reason: count}}.
    reasons: dict[str, int]
    #: C{((address, count), ...)}: the busiest source addresses first.
    sources: tuple[tuple[str | None, int], ...]
    #: How many distinct source addresses there were.
    source_count: int
    #: C{(reason, "host:port", detail)} of the first refusal of the interval.
    example: tuple[str, str, str]

    def text(self) -> str:
        """The summary as words, e.g. for the text log."""
        reasons = ", ".join(f"{reason} {n}" for reason, n in
                            sorted(self.reasons.items(), key=lambda item: (-item[1], item[0])))
        sources = ", ".join(f"{address} ({n})" for address, n in self.sources)
        more = self.source_count - len(self.sources)
        if more > 0:
            sources += f" and {more} more"
        reason, where, detail = self.example
        span = f" in {self.seconds:.0f} s" if self.seconds else ""
        return (f"{self.count} peer connection(s) refused before authentication{span} "
                f"({reasons}) from {sources}; first: {where}: {reason}: {detail}")


class RejectionLog:
    """Sums up refused connections into at most one report per interval."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._reasons: collections.Counter[str] = collections.Counter()
        self._sources: collections.Counter[str | None] = collections.Counter()
        self._example: tuple[str, str, str] | None = None
        self._since: float | None = None
        #: When the last report was made (C{None}: never, or long ago).
        self._reported_at: float | None = None

    def record(self, reason: str, address: str | None, where: str, detail: str,
               now: float) -> RejectionSummary | None:
        """One connection from C{address} was refused for C{reason}.

        @param where: C{"host:port"} for the example in the report.
        @return: a L{RejectionSummary} to log now (the first refusal after
            a quiet interval), else C{None}: it is held for L{flush}.
        """
        if not self._reasons:
            self._since = now
            self._example = (reason, where, detail)
        self._reasons[reason] += 1
        self._sources[address] += 1
        if self._reported_at is None or now - self._reported_at >= self.interval:
            return self._report(now)
        return None

    def deadline(self) -> float | None:
        """When L{flush} has something to report, or C{None}."""
        if not self._reasons:
            return None
        assert self._reported_at is not None
        return self._reported_at + self.interval

    def flush(self, now: float, *, early: bool = False) -> RejectionSummary | None:
        """The refusals held since the last report, once the interval has passed.

        Also forgets the last report after a quiet interval, so the next
        refusal is reported at once.

        @param early: report what is held even before the interval has
            passed (the node is stopping).
        """
        if early and self._reasons:
            return self._report(now)
        if self._reported_at is None or now - self._reported_at < self.interval:
            return None
        if not self._reasons:
            self._reported_at = None
            return None
        return self._report(now)

    def _report(self, now: float) -> RejectionSummary:
        assert self._example is not None
        seconds = now - self._reported_at if self._reported_at is not None else 0.0
        summary = RejectionSummary(
            count=sum(self._reasons.values()), seconds=seconds,
            reasons=dict(self._reasons),
            sources=tuple(self._sources.most_common(SUMMARY_SOURCES)),
            source_count=len(self._sources), example=self._example)
        self._reasons = collections.Counter()
        self._sources = collections.Counter()
        self._example = None
        self._reported_at = now
        return summary
