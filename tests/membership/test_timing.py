"""Table tests of the timing formulas."""

from twisted.trial import unittest

from clsd.membership.core import timing


class Formulas(unittest.TestCase):
    def test_retransmit_limit(self):
        # (mult, n, limit): mult * ceil(log10(n + 1)), at least mult.
        for mult, n, expected in [
            (4, 0, 4), (4, 1, 4), (4, 9, 4), (4, 10, 8), (4, 64, 8),
            (4, 99, 8), (4, 100, 12), (4, 1024, 16), (4, 10000, 20), (3, 1000, 12),
        ]:
            self.assertEqual(timing.retransmit_limit(mult, n), expected, (mult, n))

    def test_sync_period(self):
        # memberlist's pushPullScale: one more interval per doubling beyond 32.
        for n, expected in [(1, 10.0), (32, 10.0), (33, 20.0), (64, 20.0), (65, 30.0),
                            (256, 40.0), (1024, 60.0), (10000, 100.0)]:
            self.assertEqual(timing.sync_period(10.0, n), expected, n)

    def test_scaled_timeout(self):
        for base, score, expected in [(4.0, 0, 4.0), (4.0, 1, 8.0), (4.0, 7, 32.0), (0.5, 3, 2.0)]:
            self.assertEqual(timing.scaled_timeout(base, score), expected)

    def test_suspicion_timeout(self):
        # (base, members, reporters, expected confirmations, timeout)
        for base, members, reporters, expected, timeout in [
            (10.0, 5, 1, 0, 10.0),      # small cluster, nothing to wait for: the base
            (10.0, 5, 1, 5, 40.0),      # one reporter of an expected six: 4 x the minimum
            (10.0, 5, 6, 5, 10.0),      # all confirmations in: the minimum
            (10.0, 5, 9, 5, 10.0),      # more than expected: still the minimum
            (10.0, 5, 2, 1, 10.0),      # small cluster whose two observers both reported
            (10.0, 100, 1, 0, 20.0),    # log10(100) = 2 times the base
            (10.0, 1000, 1, 5, 120.0),
            (10.0, 1, 1, 5, 40.0),      # log10 below 1 never shortens the base
        ]:
            self.assertAlmostEqual(timing.suspicion_timeout(base, members, reporters, expected),
                                   timeout, msg=(members, reporters, expected))
        # Each further reporter shortens the wait, on a log scale.
        waits = [timing.suspicion_timeout(10.0, 64, r, 5) for r in range(1, 7)]
        self.assertEqual(waits, sorted(waits, reverse=True))
        self.assertGreater(waits[0] - waits[1], waits[4] - waits[5])

    def test_lateness(self):
        for now, due, expected in [(10.0, 9.0, 1.0), (10.0, 10.0, 0.0), (9.0, 10.0, 0.0)]:
            self.assertEqual(timing.lateness(now, due), expected)

    def test_tolerated_pause(self):
        for timeout, interval, latency, expected in [
            (4.0, 1.0, 0.0, 3.0), (4.0, 1.0, 0.5, 2.5), (10.0, 2.0, 0.001, 7.999),
        ]:
            self.assertAlmostEqual(timing.tolerated_pause(timeout, interval, latency), expected)

    def test_backoff(self):
        for attempt, expected in [(0, 0.5), (1, 1.0), (2, 2.0), (5, 16.0), (6, 30.0), (20, 30.0)]:
            self.assertEqual(timing.backoff(attempt, 0.5, 30.0), expected)

    def test_quorum_for(self):
        # Fewer distinct observers than H: all of them.
        for observers, quorum, expected in [(8, 6, 6), (10, 6, 6), (5, 6, 5), (1, 6, 1), (0, 6, 1)]:
            self.assertEqual(timing.quorum_for(observers, quorum), expected)

    def test_gossip_hops(self):
        for n, fanout, expected in [(1, 3, 0), (2, 3, 1), (4, 3, 1), (64, 3, 3), (1024, 3, 5),
                                    (10000, 3, 7)]:
            self.assertEqual(timing.gossip_hops(n, fanout), expected, n)

    def test_expected_detection(self):
        self.assertAlmostEqual(timing.expected_detection(1.0, 0.2, 5), 2.0)
