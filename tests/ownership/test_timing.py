"""Lease timing formulas, as a table, and the drift inequality the margin must satisfy."""

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.ownership.core.timing import (
    DEFAULT_DRIFT_MARGIN, DEFAULT_LEASE, KILL_LATENCY, MAX_DRIFT_RATE, LeaseTiming,
    minimum_drift_margin,
)


class FormulaTests(unittest.TestCase):
    def test_table(self):
        t = LeaseTiming(lease=2.0, drift_margin=0.1)
        table = [
            (t.holder_expiry(10.0), 11.9),
            (t.renew_after, 2.0 / 3),
            (t.renew_retry, 2.0 / 12),
            (t.stop_window, 0.5),
            (t.stop_at(10.0), 11.4),
            (t.round_timeout, 0.25),
            (t.acquire_retry, 0.5),
            (t.voter_quiet, 2.1),
            (t.retry_slack, 0.02),
            (t.failover_after_crash(0.0), 2.02),
        ]
        for got, expected in table:
            self.assertAlmostEqual(got, expected)

    def test_defaults_cover_drift_and_the_kill_with_room(self):
        self.assertGreater(DEFAULT_DRIFT_MARGIN, 3 * 2 * MAX_DRIFT_RATE * DEFAULT_LEASE + KILL_LATENCY)
        self.assertGreater(DEFAULT_DRIFT_MARGIN, minimum_drift_margin(DEFAULT_LEASE))

    def test_renewal_happens_before_the_stop_point(self):
        t = LeaseTiming()
        self.assertLess(t.renew_after + 3 * t.renew_retry, t.stop_at(0.0))

    def test_bad_settings_refused(self):
        self.assertRaises(ValueError, LeaseTiming, lease=0)
        self.assertRaises(ValueError, LeaseTiming, lease=2.0, drift_margin=0.5)
        self.assertRaises(ValueError, LeaseTiming, lease=2.0, drift_margin=-0.1)


class DriftProperty(unittest.TestCase):
    @given(st.floats(0.2, 60.0), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
    def test_holder_ends_before_any_voter_with_the_minimum_margin(self, lease, fast, slow):
        """Holder's clock as slow, voter's as fast as allowed: the margin still covers it, and the kill."""
        margin = minimum_drift_margin(lease)
        t = LeaseTiming(lease=lease, drift_margin=margin)
        holder_rate = 1 - slow * MAX_DRIFT_RATE
        voter_rate = 1 + fast * MAX_DRIFT_RATE
        # True seconds from the send until each considers the lease over.
        holder_end = (t.holder_expiry(0.0) - 0.0) / holder_rate
        voter_end = lease / voter_rate  # counted from arrival, which is later still
        self.assertLessEqual(holder_end + KILL_LATENCY, voter_end * (1 + 1e-12))
