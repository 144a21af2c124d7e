"""A node whose lease clock runs at another rate: a crystal (or a slew) off by a few per cent.

The node's lease clock (L{clsd.clock}: ``CLOCK_MONOTONIC_RAW`` less the
test-only offset in L{clsd.clock.OFFSET_ENV}) is made to run C{1 + rate}
times as fast as the real one by a thread of the rig that moves the offset
steadily: every C{STEP} seconds it subtracts C{rate} times the time passed
(the clock re-reads the file every 10 ms). The services' records stay on the
machine's real clock. libfaketime's rate option is no substitute: it reaches
``CLOCK_MONOTONIC_RAW`` only together with every other clock (doc/ownership.md).

At the heal the thread stops and the offset stays where it is: the clock
runs at the real rate again from the time it shows, never backwards.
"""

import threading

from clsd.clock import raw_clock
from rig.faults.cleanup import default_cleanups
from rig.faults.freeze import add_offset

#: Seconds between two moves of the offset (0.02 s at 2 %: 0.4 ms steps).
STEP = 0.02


class RateDrift:
    """Run the lease clock whose offset file is C{offset_path} at C{1 + rate} from now until L{heal}."""

    def __init__(self, offset_path, rate, *, cleanups=None, step=STEP):
        if not -0.5 < rate < 0.5:
            raise ValueError(f"rate must be within ±50 %, got {rate!r}")
        self.offset_path = offset_path
        self.rate = rate
        self.step = step
        #: Seconds the clock gained (negative: lost) against the real one so far.
        self.moved = 0.0
        self._stop = threading.Event()
        self._cleanups = cleanups or default_cleanups
        self._token = self._cleanups.add(self._halt, f"stop the clock rate on {offset_path}")
        self._thread = threading.Thread(target=self._run, name="clsd-rig-clock-rate", daemon=True)
        self._thread.start()

    def _run(self):
        last = raw_clock()
        while not self._stop.wait(self.step):
            now = raw_clock()
            self._move(now - last)
            last = now
        self._move(raw_clock() - last)

    def _move(self, elapsed):
        gained = self.rate * elapsed
        # The lease clock is raw - offset: to gain, the offset shrinks.
        add_offset(self.offset_path, -gained)
        self.moved += gained

    def heal(self):
        if self._token is None:
            return
        self._cleanups.run(self._token)
        self._token = None

    def _halt(self):
        self._stop.set()
        self._thread.join()
