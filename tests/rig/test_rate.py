"""A lease clock at another rate (rig.faults.rate): the offset moves, the clock follows."""

import os
import tempfile

from twisted.trial import unittest

from clsd.clock import _OffsetClock, raw_clock
from rig.faults.cleanup import Cleanups
from rig.faults.rate import RateDrift


class RateDriftTests(unittest.TestCase):
    def setUp(self):
        self.path = os.path.join(tempfile.mkdtemp(), "offset")
        with open(self.path, "w") as f:
            f.write("0\n")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def offset(self):
        with open(self.path) as f:
            return float(f.read())

    def test_fast_clock_gains_rate_times_the_time_passed(self):
        drift = RateDrift(self.path, 0.02, cleanups=self.cleanups, step=3600)
        drift._move(10.0)
        # The lease clock is raw - offset: 10 s later it shows 10.2 s more.
        self.assertAlmostEqual(self.offset(), -0.2)
        self.assertAlmostEqual(drift.moved, 0.2)
        drift.heal()

    def test_slow_clock_loses_and_pauses_compose(self):
        from rig.faults.freeze import add_offset

        drift = RateDrift(self.path, -0.01, cleanups=self.cleanups, step=3600)
        add_offset(self.path, 1.5)  # a machine pause wound it back meanwhile
        drift._move(4.0)
        self.assertAlmostEqual(self.offset(), 1.54)
        drift.heal()

    def test_heal_stops_the_thread_and_keeps_the_offset(self):
        drift = RateDrift(self.path, 0.05, cleanups=self.cleanups, step=0.001)
        drift.heal()
        after = self.offset()
        self.assertFalse(drift._thread.is_alive())
        self.assertLess(after, 0.0)
        self.assertEqual(self.offset(), after)
        self.assertEqual(self.cleanups.pending(), [])

    def test_the_lease_clock_reads_the_moved_offset(self):
        drift = RateDrift(self.path, 0.02, cleanups=self.cleanups, step=3600)
        drift._move(150.0)
        drift.heal()
        clock = _OffsetClock(self.path)
        # 3 s gained (150 s at 2 %), plus what the thread moved before it stopped.
        before = raw_clock()
        shown = clock()
        after = raw_clock()
        self.assertGreaterEqual(shown - before, 3.0)
        self.assertLess(shown - after, 3.01)

    def test_rates_out_of_range_are_refused(self):
        self.assertRaises(ValueError, RateDrift, self.path, 0.9, cleanups=self.cleanups)
