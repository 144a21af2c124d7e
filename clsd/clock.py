"""The clock leases are timed on: one that no time daemon adjusts.

Linux's CLOCK_MONOTONIC follows NTP/chrony slewing, and chrony may slew its
rate far beyond the 500 ppm the drift margin assumes (its ``maxslewrate``
default is 83 333 ppm; adjtimex tick changes go further). A holder whose clock
is slewed slow would believe in its lease past the voters' expiry.
CLOCK_MONOTONIC_RAW counts the hardware clock source unadjusted: its error is
the crystal's, well inside 500 ppm. Elsewhere ``time.monotonic``: on Solaris
and illumos that is ``gethrtime()``, which is never adjusted either.

Every lease decision on one machine reads this clock: the ownership core and
its shell, the voters, and the lease guard (``guard_process.py``, a
stdlib-only program with its own copy of L{lease_clock}), because the daemon
hands the guard its deadlines as readings of it.

Test rigs only: when ``CLSD_TEST_CLOCK_OFFSET_FILE`` is set, the number of
seconds in that file is subtracted from every reading (re-read at most every
C{OFFSET_REREAD} s). The fault rig freezes a whole node and, before thawing
it, adds the pause to the file: the node's lease clock then shows the pause
as if it never happened, as a paused virtual machine's clock does. The
variable is passed on to the guard and nowhere else.
"""

import os
import time
from collections.abc import Callable

#: The test-only offset file (see the module docstring).
OFFSET_ENV = "CLSD_TEST_CLOCK_OFFSET_FILE"
#: How often (in seconds of the raw clock) the offset file is read again.
OFFSET_REREAD = 0.01

_raw = getattr(time, "CLOCK_MONOTONIC_RAW", None)


def raw_clock() -> float:
    """Seconds on the unadjusted monotonic clock (CLOCK_MONOTONIC_RAW, else time.monotonic)."""
    if _raw is not None:
        return time.clock_gettime(_raw)
    return time.monotonic()


class _OffsetClock:
    """L{raw_clock} minus the seconds in a file that a test rig rewrites."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.offset = 0.0
        self.read_at: float | None = None

    def __call__(self) -> float:
        now = raw_clock()
        if self.read_at is None or now - self.read_at >= OFFSET_REREAD:
            self.read_at = now
            try:
                with open(self.path) as f:
                    self.offset = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass  # no file yet (no pause so far), or caught mid-write: keep the last
        return now - self.offset


def _make_lease_clock() -> Callable[[], float]:
    path = os.environ.get(OFFSET_ENV)
    return _OffsetClock(path) if path else raw_clock


#: The lease clock: call it for the current time, in seconds.
lease_clock: Callable[[], float] = _make_lease_clock()


def guard_environment() -> dict[str, str]:
    """What of this process's environment the lease guard must see: the test offset file."""
    path = os.environ.get(OFFSET_ENV)
    return {OFFSET_ENV: path} if path else {}
