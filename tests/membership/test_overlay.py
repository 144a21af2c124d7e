"""The K-ring overlay and the member table (snapshot + overlay, digests)."""

import functools
import operator
import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.membership.core.members import Member, State
from clsd.membership.core.rings import RingSnapshot, Rings, SnapshotCache, positions
from clsd.membership.core.table import MemberTable, build_snapshots

NAMES = [f"node{i}" for i in range(40)]


class RingTests(unittest.TestCase):
    def test_positions_are_stable(self):
        self.assertEqual(positions("alpha", 2), positions("alpha", 2))
        self.assertEqual(len(set(positions("alpha", 8))), 8)

    def test_observers_and_subjects_mirror_each_other(self):
        rings = Rings(8, RingSnapshot.build(8, NAMES))
        for name in NAMES:
            observers = rings.observers(name)
            self.assertLessEqual(len(observers), 8)
            self.assertNotIn(name, observers)
            for observer in observers:
                self.assertIn(name, rings.subjects(observer))

    def test_every_ring_is_a_cycle_so_everyone_is_watched(self):
        rings = Rings(3, RingSnapshot.build(3, NAMES))
        watched = {s for name in NAMES for s in rings.subjects(name)}
        self.assertEqual(watched, set(NAMES))

    def test_small_rings(self):
        rings = Rings(8, RingSnapshot.build(8, ["a", "b"]))
        self.assertEqual(rings.observers("a"), ["b"])
        self.assertEqual(Rings(8, RingSnapshot.build(8, ["a"])).observers("a"), [])

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.lists(st.tuples(st.booleans(), st.sampled_from(NAMES + ["x1", "x2", "x3"])),
                    max_size=40), st.booleans())
    def test_overlay_answers_like_a_fresh_build(self, changes, compact):
        rings = Rings(4, RingSnapshot.build(4, NAMES))
        names = set(NAMES)
        for add, name in changes:
            if add:
                rings.add(name)
                names.add(name)
            else:
                rings.remove(name)
                names.discard(name)
        if compact:
            rings.compact()
        fresh = Rings(4, RingSnapshot.build(4, names))
        self.assertEqual(len(rings), len(names))
        for name in sorted(names) + ["outsider"]:
            self.assertEqual(rings.observers(name), fresh.observers(name), name)
            self.assertEqual(rings.subjects(name), fresh.subjects(name), name)

    def test_nodes_folding_the_same_changes_share_a_snapshot(self):
        cache = SnapshotCache()
        base = RingSnapshot.build(4, NAMES)
        one, two = Rings(4, base, cache), Rings(4, base, cache)
        for rings in (one, two):
            rings.remove("node3")
            rings.add("new")
            rings.compact()
        self.assertIs(one.snapshot, two.snapshot)
        self.assertIsNot(one.snapshot, base)


def member(name, incarnation=0, state=State.ALIVE):
    return Member(name, f"127.0.0.{NAMES.index(name) + 2}:7400" if name in NAMES
                  else "127.0.0.250:7400", 1, incarnation, state)


class TableTests(unittest.TestCase):
    def test_digest_is_updated_incrementally(self):
        rng = random.Random(1)
        snapshot, ring_snapshot = build_snapshots([member(n) for n in NAMES], 4)
        table = MemberTable(4, snapshot, ring_snapshot)
        for step in range(200):
            name = rng.choice(NAMES)
            if rng.random() < 0.1:
                table.delete(name)
            else:
                table.set(member(name, step, rng.choice(list(State))))
            if step % 50 == 0:
                table.compact()
            self.assertEqual(table.fingerprint, functools.reduce(operator.xor, table.digests()))
        fresh = MemberTable(4, build_snapshots(list(table), 4)[0])
        self.assertEqual(table.digests(), fresh.digests())
        self.assertEqual(table.fingerprint, fresh.fingerprint)
        self.assertEqual(len(table), len(list(table)))
        for bucket in range(64):
            self.assertEqual(sorted(m.name for m in table.records_in(bucket)),
                             sorted(m.name for m in fresh.records_in(bucket)))

    def test_only_alive_and_suspect_members_are_on_the_rings(self):
        table = MemberTable(4)
        table.set(member("node1"))
        table.set(member("node2", state=State.SUSPECT))
        table.set(member("node3", state=State.DEAD))
        table.set(member("node4", state=State.LEFT))
        self.assertEqual(sorted(n for n in NAMES if n in table.rings), ["node1", "node2"])
        table.set(member("node3", 1))
        self.assertIn("node3", table.rings)

    def test_compacting_when_quiet_or_large(self):
        table = MemberTable(4)
        for name in NAMES:
            table.set(member(name), now=0.0)
        table.maybe_compact(1.0)
        self.assertEqual(table.overlay_size, 40)  # small and not quiet yet
        for i in range(300):
            table.set(member("node1", i + 1), now=2.0)
        table.maybe_compact(2.0)
        self.assertEqual(table.overlay_size, 40)  # one entry per name
        table.maybe_compact(10.0)
        self.assertEqual(table.overlay_size, 40)  # below COMPACT_MIN
        big = MemberTable(4)
        for i in range(300):
            big.set(Member(f"n{i}", "127.0.0.1:1", 1, 0, State.ALIVE), now=0.0)
        big.maybe_compact(0.0)
        self.assertEqual(big.overlay_size, 0)
        self.assertEqual(len(big), 300)
