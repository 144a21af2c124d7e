"""The order of news about a member, and record hashes."""

from twisted.trial import unittest

from clsd.membership.core.members import Member, State, record_hash, supersedes

A, S, D, L = State.ALIVE, State.SUSPECT, State.DEAD, State.LEFT


def m(generation, incarnation, state, address="127.0.0.2:7400"):
    return Member("alpha", address, generation, incarnation, state)


class Supersedes(unittest.TestCase):
    def test_table(self):
        for new, old, expected in [
            (m(1, 0, A), None, True),
            (m(1, 0, S), m(1, 0, A), True),     # suspicion beats alive at equal incarnation
            (m(1, 0, A), m(1, 0, S), False),    # ... and only a refutation beats it
            (m(1, 1, A), m(1, 0, S), True),
            (m(1, 0, D), m(1, 0, S), True),
            (m(1, 1, A), m(1, 0, D), True),     # a live node refutes its death
            (m(1, 0, L), m(1, 0, D), True),     # a leave is not a failure
            (m(1, 0, D), m(1, 0, L), False),
            (m(1, 0, A), m(1, 0, A), False),    # nothing new
            (m(1, 5, A), m(2, 0, A), False),    # an old life never beats a new one
            (m(2, 0, A), m(1, 9, L), True),     # a restart beats anything of the old life
            (m(1, 0, S), m(1, 1, A), False),
        ]:
            self.assertEqual(supersedes(new, old), expected, (new, old))

    def test_total_order(self):
        """For two different records exactly one way wins, or they are equal."""
        records = [m(g, i, s) for g in (1, 2) for i in (0, 1) for s in State]
        for a in records:
            for b in records:
                if a == b:
                    self.assertFalse(supersedes(a, b))
                else:
                    self.assertNotEqual(supersedes(a, b), supersedes(b, a), (a, b))


class RecordHash(unittest.TestCase):
    def test_stable_across_processes(self):
        # A fixed value: blake2b, not Python's per-process string hash, so that
        # digests compare across machines.
        self.assertEqual(record_hash(m(1, 0, A)), 0xB2A367BF82BE4808)

    def test_every_field_counts(self):
        base = m(1, 0, A)
        variants = [m(2, 0, A), m(1, 1, A), m(1, 0, S), m(1, 0, A, "127.0.0.3:7400"),
                    Member("beta", "127.0.0.2:7400", 1, 0, A)]
        hashes = {record_hash(v) for v in variants}
        self.assertEqual(len(hashes), len(variants))
        self.assertNotIn(record_hash(base), hashes)
