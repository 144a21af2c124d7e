"""How far behind its own schedule this process runs (Lifeguard, for the peer layer).

A TLS and hello handshake needs a few round trips, each of which waits for
both reactors to get round to the connection. When this process is saturated
(a reactor iteration takes seconds), a handshake can outlast its timeout
although the peer answered every step at once; abandoning it then means a
new dial and a new handshake, more work for a process that is already
behind, and the handshakes that follow time out too: a collapse. Lifeguard's
answer for failure detection applies here as well: a node that is itself
slow blames itself first.

L{ReactorLag} runs one timer every C{probe} seconds and adds the time by
which each one fires late to L{total} (seconds; it only grows). A session
compares L{total} at two moments: the difference is time this process could
not run, which L{clsd.wire.core.session.Session.credit_stall} gives back to the
handshake. One instance serves every connection of a process.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

#: How often the reactor's lateness is sampled: lag shorter than this is
#: not seen, which is fine (handshake timeouts are seconds).
PROBE_INTERVAL = 0.25


class ReactorLag:
    def __init__(self, clock: IReactorTime, monotonic: Callable[[], float] = time.monotonic,
                 probe: float = PROBE_INTERVAL) -> None:
        """
        @param clock: the C{IReactorTime} whose lateness is measured.
        @param monotonic: the clock lateness is measured with.
        """
        self._clock = clock
        self._monotonic = monotonic
        self._probe = probe
        self._call: IDelayedCall | None = None
        self._due: float | None = None
        self._past = 0.0
        self._worst = 0.0

    @property
    def total(self) -> float:
        """Seconds, summed over every probe, by which this process ran late.

        The probe that is due but not yet run counts with its lateness so
        far: a timer that fires in the same late reactor turn as the probe,
        but before it, still sees the stall.
        """
        if self._due is None:
            return self._past
        return self._past + max(0.0, self._monotonic() - self._due)

    @property
    def running(self) -> bool:
        return self._call is not None

    def start(self) -> None:
        if self._call is None:
            self._schedule()

    def stop(self) -> None:
        if self._call is not None:
            if self._call.active():
                self._call.cancel()
            self._call = None
            self._due = None

    def _schedule(self) -> None:
        self._due = self._monotonic() + self._probe
        self._call = self._clock.callLater(self._probe, self._fired)

    def take_worst(self) -> float:
        """The longest single stall since the last call (for progress reports), then 0."""
        worst, self._worst = self._worst, 0.0
        return worst

    def _fired(self) -> None:
        assert self._due is not None
        late = max(0.0, self._monotonic() - self._due)
        self._past += late
        self._worst = max(self._worst, late)
        self._schedule()
