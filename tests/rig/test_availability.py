"""The failover bound during a run: when a cluster must run, and when it ran too late."""

from twisted.trial import unittest

from rig.cluster import ring_layout
from rig.faults import availability
from rig.faults.availability import Change, judge, required, running_counts
from rig.recorder import Record

THREE = ring_layout(["n1", "n2", "n3"], spares=("j1",), n_active=2)
FIVE = ring_layout([f"n{i}" for i in range(1, 6)])


def beats(node, cluster, begin, end, *, slot=None, every=0.1, instance=None):
    """Records of one instance recording from C{begin} to C{end}."""
    instance = instance or f"{node}-{cluster}-{begin}"
    out, t = [], begin
    while t <= end + 1e-9:
        out.append(Record(kind="start" if t == begin else "heartbeat", t=round(t, 6),
                          instance=instance, node=node, cluster=cluster, epoch=1, pid=1,
                          slot=slot))
        t += every
    return out


class RequiredTests(unittest.TestCase):
    def test_nothing_wrong_everything_required(self):
        self.assertEqual(required([], THREE, 1.0), {"c1": 1, "c2": 1, "nx": 2})

    def test_isolated_holder_leaves_the_standby_with_the_majority(self):
        isolate = Change("isolate", ("n1",), {}, 1.0, 5.0)
        self.assertEqual(required([isolate], THREE, 2.0), {"c1": 1, "c2": 1, "nx": 1})
        self.assertEqual(required([isolate], THREE, 5.0), {"c1": 1, "c2": 1, "nx": 2})

    def test_no_clean_majority_excuses_everything(self):
        # n1 killed and the witness paused: one clean voter of three.
        changes = [Change("kill_daemon", ("n1",), {}, 1.0, 6.0),
                   Change("pause_daemon", ("n3",), {}, 2.0, 4.0)]
        self.assertEqual(required(changes, THREE, 3.0), {"c1": 0, "c2": 0, "nx": 0})
        self.assertEqual(required(changes, THREE, 4.5), {"c1": 1, "c2": 1, "nx": 1})

    def test_bridge_and_ring_excuse_everything(self):
        ring = Change("ring", ("n1", "n2", "n3", "n4", "n5"), {}, 1.0, 6.0)
        self.assertEqual(set(required([ring], FIVE, 2.0).values()), {0})

    def test_minority_side_of_a_split(self):
        split = Change("split", ("n1", "n2"), {"groups": [["n1", "n2"], ["n3", "n4", "n5"]]},
                       1.0, 6.0)
        need = required([split], FIVE, 2.0)
        # c1 = n1/n2, both on the minority side; c3 = n3/n4 on the majority side.
        self.assertEqual((need["c1"], need["c3"]), (0, 1))

    def test_joined_spare_is_a_candidate_and_a_leave_removes_a_node(self):
        changes = [Change("join", ("j1",), {"stays": True}, 1.0, None),
                   Change("leave", ("n1",), {}, 2.0, 8.0)]
        self.assertEqual(required(changes, THREE, 3.0), {"c1": 1, "c2": 1, "nx": 2})
        self.assertEqual(required(changes[1:], THREE, 3.0)["nx"], 1)

    def test_reshape_excuses_the_clusters_of_its_node_while_it_lasts(self):
        # n1 has another shape: failover of its clusters waits for the shapes
        # to agree (doc/ownership.md, "Settings every node must share").
        reshape = Change("reshape", ("n1",), {"change": "mode"}, 1.0, 6.0)
        mine = [c for c in THREE.clusters if "n1" in THREE.clusters[c]]
        need = required([reshape], THREE, 3.0)
        self.assertEqual({c: need[c] for c in mine}, {c: 0 for c in mine})
        self.assertEqual(required([reshape], THREE, 6.0), {"c1": 1, "c2": 1, "nx": 2})

    def test_clock_rate_does_not_excuse(self):
        rate = Change("clock_rate", ("n1",), {"rate": 0.02}, 1.0, 6.0)
        self.assertEqual(required([rate], THREE, 3.0), {"c1": 1, "c2": 1, "nx": 2})

    def test_clock_jump_and_hung_service_do_not_excuse(self):
        changes = [Change("clock_jump", ("n1",), {"seconds": 300}, 1.0, 6.0),
                   Change("pause_service", ("n2",), {}, 1.0, 6.0)]
        self.assertEqual(required(changes, THREE, 3.0), {"c1": 1, "c2": 1, "nx": 2})


class RunningCountTests(unittest.TestCase):
    def test_counts_copies_with_the_heartbeat_slack(self):
        records = beats("n1", "nx", 0.0, 5.0, slot=0) + beats("n2", "nx", 2.0, 3.0, slot=1)
        steps = running_counts(records, "nx", max_gap=0.5)
        self.assertEqual(availability._level_at(steps, 1.0), 1)
        self.assertEqual(availability._level_at(steps, 2.5), 2)
        self.assertEqual(availability._level_at(steps, 3.4), 2)
        self.assertEqual(availability._level_at(steps, 3.6), 1)
        self.assertEqual(availability._level_at(steps, 6.0), 0)


class JudgeTests(unittest.TestCase):
    def layout(self):
        return ring_layout(["n1", "n2", "n3"])

    def test_stuck_cluster_with_a_clean_majority_is_flagged(self):
        # c1 stops at t=10 with nothing wrong and never comes back before t=40.
        records = beats("n1", "c1", 0.0, 10.0) + beats("n2", "c2", 0.0, 40.0)
        verdict = judge(records, [], self.layout(), start=0.0, end=40.0, bound=5.0)
        [late] = verdict.exceeded
        self.assertEqual((late.cluster, late.required, late.running), ("c1", 1, 0))
        self.assertAlmostEqual(late.start, 10.5, places=6)
        self.assertAlmostEqual(late.end, 40.0)
        self.assertIn("BOUND EXCEEDED cluster c1", late.describe())
        self.assertAlmostEqual(verdict.worst_recovery["c1"], 29.5, places=6)
        self.assertEqual(verdict.worst_recovery["c2"], 0.0)

    def test_failover_within_the_bound_after_a_kill_is_fine(self):
        kill = Change("kill_daemon", ("n1",), {}, 10.0, 20.0)
        records = (beats("n1", "c1", 0.0, 10.0) + beats("n2", "c1", 13.0, 40.0)
                   + beats("n2", "c2", 0.0, 40.0))
        verdict = judge(records, [kill], self.layout(), start=0.0, end=40.0, bound=5.0)
        self.assertEqual(verdict.exceeded, ())
        self.assertAlmostEqual(verdict.worst_recovery["c1"], 2.5, places=6)

    def test_bound_counts_from_the_last_change_of_a_candidate(self):
        # Down from 10 to 24; n2 (c1's standby) was paused from 10 to 20, so
        # the clock starts again at 20: 4 s late is within a 5 s bound.
        changes = [Change("kill_daemon", ("n1",), {}, 10.0, 30.0),
                   Change("pause_daemon", ("n2",), {}, 10.0, 20.0)]
        records = (beats("n1", "c1", 0.0, 10.0) + beats("n2", "c1", 24.0, 40.0)
                   + beats("n2", "c2", 0.0, 9.9) + beats("n2", "c2", 21.0, 40.0))
        verdict = judge(records, changes, self.layout(), start=0.0, end=40.0, bound=5.0)
        self.assertEqual(verdict.exceeded, ())
        # ... but the same gap with the bound at 3 s is flagged.
        verdict = judge(records, changes, self.layout(), start=0.0, end=40.0, bound=3.0)
        self.assertEqual([e.cluster for e in verdict.exceeded], ["c1"])
        self.assertAlmostEqual(verdict.exceeded[0].since, 20.0)

    def test_excused_while_no_majority(self):
        changes = [Change("kill_daemon", ("n1",), {}, 10.0, 30.0),
                   Change("kill_daemon", ("n3",), {}, 10.0, 30.0)]
        records = (beats("n1", "c1", 0.0, 10.0) + beats("n2", "c1", 32.0, 40.0)
                   + beats("n2", "c2", 0.0, 10.0) + beats("n2", "c2", 32.0, 40.0))
        verdict = judge(records, changes, self.layout(), start=0.0, end=40.0, bound=5.0)
        self.assertEqual(verdict.exceeded, ())
        self.assertAlmostEqual(verdict.required_seconds["c1"], 20.0)

    def test_n_active_short_of_copies(self):
        layout = ring_layout(["n1", "n2", "n3"], n_active=2)
        records = (beats("n1", "nx", 0.0, 40.0, slot=0) + beats("n2", "nx", 0.0, 10.0, slot=1)
                   + beats("n1", "c1", 0.0, 40.0) + beats("n2", "c2", 0.0, 40.0))
        verdict = judge(records, [], layout, start=0.0, end=40.0, bound=5.0)
        [late] = verdict.exceeded
        self.assertEqual((late.cluster, late.required, late.running), ("nx", 2, 1))

    def test_default_bound_follows_the_timing(self):
        from rig.cluster import DEFAULT_TIMING, FAST_TIMING

        self.assertGreater(availability.bound_for(DEFAULT_TIMING),
                           availability.bound_for(FAST_TIMING))
        # Detection 4 + 1 + 10 s, reacquire 2.1 + 2 + 0.5 + 0.25 + 0.04, start 5 s.
        self.assertAlmostEqual(availability.bound_for(DEFAULT_TIMING), 24.89)
