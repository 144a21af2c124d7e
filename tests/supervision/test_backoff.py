"""Table tests for L{clsd.supervision.core.backoff.restart_delay}."""

from twisted.trial import unittest

from clsd.config import Backoff
from clsd.supervision.core.backoff import restart_delay

NO_JITTER = 0.5


class RestartDelayTests(unittest.TestCase):
    def assertDelays(self, backoff, table, random01=NO_JITTER):
        for failures, expected in table:
            self.assertAlmostEqual(
                restart_delay(failures, backoff, random01), expected, places=9,
                msg=f"consecutive_failures={failures}",
            )

    def test_first_restart_is_immediate(self):
        self.assertDelays(Backoff(initial=5.0, max=60.0, factor=3.0, jitter=0.5),
                          [(0, 0.0), (1, 0.0)], random01=0.99)

    def test_exponential_then_capped(self):
        backoff = Backoff(initial=0.1, max=1.0, factor=2.0, jitter=0.0)
        self.assertDelays(backoff, [
            (2, 0.1), (3, 0.2), (4, 0.4), (5, 0.8), (6, 1.0), (7, 1.0), (50, 1.0),
        ])

    def test_factor_one_is_constant(self):
        backoff = Backoff(initial=0.5, max=30.0, factor=1.0, jitter=0.0)
        self.assertDelays(backoff, [(2, 0.5), (3, 0.5), (100, 0.5)])

    def test_huge_failure_count_does_not_overflow(self):
        backoff = Backoff(initial=0.1, max=30.0, factor=10.0, jitter=0.0)
        self.assertDelays(backoff, [(10_000, 30.0)])

    def test_jitter_bounds(self):
        backoff = Backoff(initial=1.0, max=30.0, factor=2.0, jitter=0.1)
        # random01 = 0 -> -10 %, 0.5 -> exact, ~1 -> +10 %.
        self.assertDelays(backoff, [(2, 0.9), (3, 1.8)], random01=0.0)
        self.assertDelays(backoff, [(2, 1.0), (3, 2.0)], random01=0.5)
        self.assertDelays(backoff, [(2, 1.1), (3, 2.2)], random01=1.0)

    def test_jitter_never_exceeds_max(self):
        backoff = Backoff(initial=1.0, max=4.0, factor=2.0, jitter=0.5)
        self.assertDelays(backoff, [(4, 4.0), (5, 4.0)], random01=1.0)
        self.assertDelays(backoff, [(4, 2.0)], random01=0.0)

    def test_full_jitter_never_negative(self):
        backoff = Backoff(initial=1.0, max=4.0, factor=2.0, jitter=1.0)
        self.assertDelays(backoff, [(2, 0.0)], random01=0.0)

    def test_zero_initial(self):
        backoff = Backoff(initial=0.0, max=4.0, factor=2.0, jitter=0.3)
        self.assertDelays(backoff, [(2, 0.0), (9, 0.0)], random01=0.9)
