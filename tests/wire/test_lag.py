"""The process's own lag, which the peer layer forgives handshakes (clsd.wire.core.lag)."""

from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.wire.core.lag import ReactorLag


class ReactorLagTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.lag = ReactorLag(self.clock, self.clock.seconds, probe=0.25)

    def test_a_reactor_on_time_has_no_lag(self):
        self.lag.start()
        self.clock.pump([0.25] * 20)
        self.assertEqual(self.lag.total, 0.0)

    def test_each_late_probe_adds_its_lateness(self):
        self.lag.start()
        self.clock.advance(3.25)  # due at 0.25
        self.assertEqual(self.lag.total, 3.0)
        self.clock.advance(0.25)  # on time again
        self.clock.advance(1.25)  # due at 3.75, run at 4.75
        self.assertEqual(self.lag.total, 4.0)

    def test_stopped_it_measures_nothing_and_leaves_no_timer(self):
        self.lag.start()
        self.lag.start()  # idempotent
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.lag.stop()
        self.assertFalse(self.lag.running)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.lag.total, 0.0)

    def test_a_probe_due_but_not_yet_run_counts_with_its_lateness_so_far(self):
        now = [0.0]
        lag = ReactorLag(self.clock, lambda: now[0], probe=0.25)
        lag.start()
        now[0] = 3.25  # the reactor is 3 s late, and another timer runs first
        self.assertEqual(lag.total, 3.0)
        self.clock.advance(3.25)  # now the probe runs: the same lag, counted once
        self.assertEqual(lag.total, 3.0)

    def test_the_worst_single_stall_is_taken_once(self):
        self.lag.start()
        self.clock.advance(1.25)  # 1 s late
        self.clock.advance(3.25)  # 3 s late
        self.clock.advance(0.25)
        self.assertEqual(self.lag.take_worst(), 3.0)
        self.assertEqual(self.lag.take_worst(), 0.0)
        self.assertEqual(self.lag.total, 4.0)
        self.lag.stop()
