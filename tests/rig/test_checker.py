"""The rig's checker over synthetic records: what it must flag, and what it must not."""

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from rig import checker
from rig.checker import Fault, check
from rig.recorder import Record, Records


class History:
    """Build records the way real instances would write them."""

    def __init__(self):
        self.records = []
        self._next = 0

    def instance(self, node, cluster, start, *, epoch=None, beats_until=None,
                 stop=None, exit=None, every=0.1, lifeline=True, slot=None):
        self._next += 1
        name = f"{node}-{cluster}-{self._next}"
        pid = 1000 + self._next

        def add(kind, t, **kw):
            self.records.append(Record(
                kind=kind, t=t, instance=name, node=node, cluster=cluster,
                epoch=epoch, pid=pid, slot=slot, **kw,
            ))

        add("start", start, lifeline=lifeline)
        if beats_until is not None:
            t = start
            while t + every <= beats_until + 1e-9:
                t = round(t + every, 6)
                add("heartbeat", t)
        if stop is not None:
            add("stop", stop)
        if exit is not None:
            add("exit", exit)
        return name

    def add_heartbeat(self, name, t):
        template = next(r for r in self.records if r.instance == name)
        self.records.append(Record(
            kind="heartbeat", t=t, instance=name, node=template.node,
            cluster=template.cluster, epoch=template.epoch, pid=template.pid,
            slot=template.slot,
        ))


class IntervalTests(unittest.TestCase):
    def test_stop_record_ends_the_interval(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=2.0, stop=2.05, exit=2.06)
        [interval] = checker.intervals(h.records)
        self.assertEqual((interval.start, interval.end, interval.end_kind), (1.0, 2.05, "stop"))

    def test_observed_exit_ends_a_killed_instance_not_its_last_heartbeat(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=2.0, exit=2.7)
        [interval] = checker.intervals(h.records)
        self.assertEqual((interval.end, interval.end_kind, interval.last_seen), (2.7, "exit", 2.0))

    def test_latest_of_several_exit_observations_wins(self):
        h = History()
        name = h.instance("a", "A", 1.0, beats_until=1.5, exit=1.6)
        first = next(r for r in h.records if r.kind == "exit")
        h.records.append(Record(kind="exit", t=1.9, instance=name, node="a",
                                cluster="A", epoch=None, pid=first.pid))
        [interval] = checker.intervals(h.records)
        self.assertEqual(interval.end, 1.9)

    def test_no_stop_and_no_exit_is_unbounded_and_runs_to_the_horizon(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=2.0)
        [interval] = checker.intervals(h.records)
        self.assertIsNone(interval.end)
        self.assertEqual(interval.end_or(10.0), 10.0)
        report = check(h.records, horizon=10.0)
        self.assertEqual(report.unbounded, (interval,))

    def test_exit_without_records_of_its_own_makes_no_interval(self):
        record = Record(kind="exit", t=1.0, instance="x", node="a", cluster="A",
                        epoch=None, pid=1)
        self.assertEqual(checker.intervals([record]), ())


class OverlapMustBeFlaggedTests(unittest.TestCase):
    def test_two_nodes_running_one_cluster(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=5.0, stop=5.0)
        h.instance("b", "A", 4.0, beats_until=8.0, stop=8.0)
        report = check(h.records)
        [overlap] = report.overlaps
        self.assertEqual((overlap.start, overlap.end), (4.0, 5.0))
        self.assertEqual(overlap.nodes, ("a", "b"))
        self.assertFalse(overlap.same_node)
        self.assertFalse(report.ok)
        self.assertIn("OVERLAP cluster A", overlap.describe())

    def test_killed_instance_counts_until_its_death_was_observed(self):
        # Its last heartbeat (3.0) is before the successor's start (3.2); a
        # checker trusting heartbeats would pass this run. The process was
        # seen dead only at 3.5, so it may have acted until then.
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0, exit=3.5)
        h.instance("b", "A", 3.2, beats_until=6.0, stop=6.0)
        [overlap] = check(h.records).overlaps
        self.assertEqual((overlap.start, overlap.end), (3.2, 3.5))

    def test_instance_with_no_known_end_overlaps_any_successor(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0)
        h.instance("b", "A", 9.0, beats_until=10.0, stop=10.0)
        [overlap] = check(h.records, horizon=12.0).overlaps
        self.assertEqual((overlap.start, overlap.end), (9.0, 10.0))

    def test_two_copies_on_one_node(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0, stop=3.0)
        h.instance("a", "A", 2.0, beats_until=4.0, stop=4.0)
        [overlap] = check(h.records).overlaps
        self.assertTrue(overlap.same_node)

    def test_tiny_overlap_is_still_an_overlap(self):
        h = History()
        h.instance("a", "A", 1.0, stop=2.000001)
        h.instance("b", "A", 2.0, stop=3.0)
        [overlap] = check(h.records).overlaps
        self.assertAlmostEqual(overlap.duration, 0.000001, places=9)

    def test_three_way_overlap_is_one_window_naming_all(self):
        h = History()
        h.instance("a", "A", 1.0, stop=4.0)
        h.instance("b", "A", 2.0, stop=5.0)
        h.instance("c", "A", 3.0, stop=6.0)
        [overlap] = check(h.records).overlaps
        self.assertEqual((overlap.start, overlap.end), (2.0, 5.0))
        self.assertEqual(overlap.nodes, ("a", "b", "c"))

    def test_n_active_over_capacity(self):
        h = History()
        h.instance("a", "N", 1.0, stop=5.0)
        h.instance("b", "N", 1.5, stop=5.0)
        h.instance("c", "N", 4.0, stop=6.0)
        [overlap] = check(h.records, capacity={"N": 2}).overlaps
        self.assertEqual((overlap.start, overlap.end, overlap.capacity), (4.0, 5.0, 2))


    def test_two_nodes_on_one_n_active_slot(self):
        # Within the cluster's capacity of 2, but slot 0 is one lease: one holder.
        h = History()
        h.instance("a", "N", 1.0, epoch=3, slot=0, stop=5.0)
        h.instance("b", "N", 2.0, epoch=4, slot=0, stop=6.0)
        [overlap] = check(h.records, capacity={"N": 2}).overlaps
        self.assertEqual((overlap.cluster, overlap.start, overlap.end, overlap.capacity),
                         ("N/0", 2.0, 5.0, 1))

    def test_two_slots_on_one_node(self):
        # n-active spreads its slots over distinct nodes: one node, two slots is a copy too many.
        h = History()
        h.instance("a", "N", 1.0, epoch=3, slot=0, stop=5.0)
        h.instance("a", "N", 2.0, epoch=1, slot=1, stop=6.0)
        [overlap] = check(h.records, capacity={"N": 2}).overlaps
        self.assertEqual((overlap.cluster, overlap.start, overlap.end), ("N@a", 2.0, 5.0))


class OverlapMustNotBeFlaggedTests(unittest.TestCase):
    def test_clean_handover(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0, stop=3.01, exit=3.02)
        h.instance("b", "A", 3.5, beats_until=5.0, stop=5.0)
        report = check(h.records)
        self.assertEqual(report.overlaps, ())
        self.assertTrue(report.ok)

    def test_killed_and_seen_dead_before_the_successor(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0, exit=3.1)
        h.instance("b", "A", 3.2, beats_until=5.0, stop=5.0)
        self.assertEqual(check(h.records).overlaps, ())

    def test_touching_intervals(self):
        h = History()
        h.instance("a", "A", 1.0, stop=2.0)
        h.instance("b", "A", 2.0, stop=3.0)
        self.assertEqual(check(h.records).overlaps, ())

    def test_different_clusters_on_different_nodes(self):
        h = History()
        h.instance("a", "A", 1.0, stop=5.0)
        h.instance("b", "B", 1.0, stop=5.0)
        h.instance("b", "A", 6.0, stop=7.0)
        self.assertEqual(check(h.records).overlaps, ())

    def test_n_active_slots_on_distinct_nodes(self):
        h = History()
        h.instance("a", "N", 1.0, epoch=3, slot=0, stop=5.0)
        h.instance("b", "N", 1.5, epoch=1, slot=1, stop=5.0)
        h.instance("c", "N", 5.0, epoch=4, slot=0, stop=7.0)
        report = check(h.records, capacity={"N": 2})
        self.assertEqual(report.violations, ())

    def test_n_active_within_capacity(self):
        h = History()
        h.instance("a", "N", 1.0, stop=5.0)
        h.instance("b", "N", 1.5, stop=5.0)
        self.assertEqual(check(h.records, capacity={"N": 2}).overlaps, ())


class EpochTests(unittest.TestCase):
    def test_epochs_of_different_slots_are_separate_leases(self):
        # Slot 1's epoch 2 after slot 0's epoch 5 is not stale; reusing 5 on slot 1 is fine.
        h = History()
        h.instance("a", "N", 1.0, epoch=5, slot=0, beats_until=3.0, stop=3.0)
        h.instance("b", "N", 2.0, epoch=2, slot=1, beats_until=3.0, stop=3.0)
        h.instance("c", "N", 4.0, epoch=5, slot=1, stop=5.0)
        report = check(h.records, capacity={"N": 2})
        self.assertEqual((report.stale_actions, report.epoch_reuses), ((), ()))

    def test_stale_epoch_within_one_slot(self):
        h = History()
        h.instance("a", "N", 1.0, epoch=5, slot=0, stop=3.0)
        h.instance("b", "N", 4.0, epoch=4, slot=0, stop=5.0)
        [stale] = check(h.records, capacity={"N": 2}).stale_actions
        self.assertEqual((stale.record.node, stale.newer_epoch), ("b", 5))
        self.assertIn("cluster N/0", stale.describe())

    def test_active_standby_cluster_under_a_slot_continues_its_epochs(self):
        # A node restarted with mode n-active, count 1 runs the ID as lease
        # A/0: its epochs may not go below those A already had.
        h = History()
        h.instance("a", "A", 1.0, epoch=5, stop=2.0)
        h.instance("b", "A", 3.0, epoch=1, slot=0, stop=4.0)
        [stale] = check(h.records).stale_actions
        self.assertEqual((stale.record.node, stale.newer_epoch), ("b", 5))
        # Slots of an n-active cluster are lines of their own.
        self.assertEqual(check(h.records, capacity={"A": 2}).stale_actions, ())

    def test_same_id_under_two_lease_names_is_an_overlap(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=5, stop=3.0)
        h.instance("b", "A", 2.0, epoch=6, slot=0, stop=4.0)
        [overlap] = check(h.records).overlaps
        self.assertEqual((overlap.cluster, overlap.start, overlap.end), ("A", 2.0, 3.0))

    def test_heartbeat_of_an_older_epoch_after_a_newer_start_is_stale(self):
        h = History()
        old = h.instance("a", "A", 1.0, epoch=1, beats_until=2.0, stop=4.0)
        h.instance("b", "A", 3.0, epoch=2, stop=5.0)
        h.add_heartbeat(old, 3.5)
        report = check(h.records)
        [stale] = report.stale_actions
        self.assertEqual((stale.record.t, stale.record.epoch, stale.newer_epoch,
                          stale.newer_node), (3.5, 1, 2, "b"))
        self.assertIn("STALE EPOCH", stale.describe())
        self.assertFalse(report.ok)

    def test_start_with_an_older_epoch_is_stale(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=5, stop=2.0)
        h.instance("b", "A", 3.0, epoch=4, stop=4.0)
        [stale] = check(h.records).stale_actions
        self.assertEqual((stale.record.kind, stale.record.epoch), ("start", 4))

    def test_growing_epochs_are_fine(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=1, beats_until=2.0, stop=2.0)
        h.instance("b", "A", 3.0, epoch=2, beats_until=4.0, stop=4.0)
        h.instance("a", "A", 5.0, epoch=3, beats_until=6.0, stop=6.0)
        report = check(h.records)
        self.assertEqual((report.stale_actions, report.epoch_reuses), ((), ()))

    def test_records_without_epoch_are_not_judged(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=None, beats_until=2.0, stop=2.0)
        h.instance("a", "A", 3.0, epoch=None, beats_until=4.0, stop=4.0)
        self.assertEqual(check(h.records).stale_actions, ())

    def test_epochs_are_per_cluster(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=9, stop=5.0)
        h.instance("b", "B", 2.0, epoch=1, beats_until=4.0, stop=4.0)
        self.assertEqual(check(h.records).stale_actions, ())

    def test_same_epoch_on_two_nodes_is_reuse(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=3, stop=2.0)
        h.instance("b", "A", 3.0, epoch=3, stop=4.0)
        [reuse] = check(h.records).epoch_reuses
        self.assertEqual((reuse.epoch, reuse.first.node, reuse.second.node), (3, "a", "b"))

    def test_local_restart_under_the_same_epoch_is_not_reuse(self):
        h = History()
        h.instance("a", "A", 1.0, epoch=3, exit=2.0)
        h.instance("a", "A", 2.1, epoch=3, stop=4.0)
        self.assertEqual(check(h.records).epoch_reuses, ())


class UnavailabilityTests(unittest.TestCase):
    def test_gap_between_instances_is_a_window_with_exact_bounds(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0, exit=3.05)
        h.instance("b", "A", 5.5, beats_until=7.0, stop=7.0)
        [window] = checker.unavailability(h.records, horizon=7.0)
        self.assertEqual((window.cluster, window.start, window.end), ("A", 3.0, 5.5))
        self.assertAlmostEqual(window.duration, 2.5)
        self.assertFalse(window.ongoing)

    def test_short_restart_is_below_the_resolution(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=3.0, exit=3.01)
        h.instance("a", "A", 3.2, beats_until=5.0, stop=5.0)
        self.assertEqual(checker.unavailability(h.records, horizon=5.0), ())

    def test_frozen_instance_stops_covering(self):
        h = History()
        name = h.instance("a", "A", 1.0, beats_until=2.0)
        h.add_heartbeat(name, 4.0)
        [window] = checker.unavailability(h.records, horizon=4.0)
        self.assertEqual((window.start, window.end), (2.0, 4.0))

    def test_down_at_the_end_is_ongoing(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=2.0, stop=2.0)
        [window] = checker.unavailability(h.records, horizon=10.0)
        self.assertEqual((window.start, window.end, window.ongoing), (2.0, 10.0, True))

    def test_two_nodes_covering_each_other_leave_no_window(self):
        h = History()
        h.instance("a", "N", 1.0, beats_until=5.0, stop=5.0)
        h.instance("b", "N", 4.0, beats_until=9.0, stop=9.0)
        self.assertEqual(checker.unavailability(h.records, horizon=9.0), ())


class FailoverTests(unittest.TestCase):
    def test_kill_on_owner_measures_fault_to_successor_start(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=10.0, exit=10.02)
        h.instance("b", "A", 12.5, beats_until=14.0, stop=14.0)
        fault = Fault(t=10.0, kind="kill_daemon", nodes=("a",))
        [failover] = check(h.records, faults=[fault]).failovers
        self.assertEqual(failover.successor.node, "b")
        self.assertAlmostEqual(failover.time, 2.5)
        self.assertAlmostEqual(failover.gap, 2.48)

    def test_fault_on_a_standby_interrupts_nothing(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=10.0, stop=10.0)
        fault = Fault(t=5.0, kind="kill_daemon", nodes=("b",))
        self.assertEqual(check(h.records, faults=[fault]).failovers, ())

    def test_instance_that_survived_the_fault_is_not_a_failover(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=10.0)
        fault = Fault(t=5.0, kind="pause_daemon", nodes=("a",))
        self.assertEqual(check(h.records, faults=[fault]).failovers, ())

    def test_no_successor_means_not_recovered(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=5.0, exit=5.01)
        fault = Fault(t=5.0, kind="kill_service", nodes=("a",))
        [failover] = check(h.records, faults=[fault], horizon=9.0).failovers
        self.assertIsNone(failover.successor)
        self.assertIsNone(failover.time)

    def test_an_end_after_the_next_fault_belongs_to_that_fault(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=8.0, exit=8.01)
        h.instance("b", "A", 9.0, stop=10.0)
        first = Fault(t=3.0, kind="loss", nodes=("a",))
        second = Fault(t=8.0, kind="kill_daemon", nodes=("a",))
        [failover] = check(h.records, faults=[first, second]).failovers
        self.assertIs(failover.fault, second)

    def test_faults_on_other_nodes_do_not_take_the_blame(self):
        h = History()
        h.instance("a", "A", 1.0, beats_until=8.0, exit=8.01)
        h.instance("a", "A", 9.0, stop=10.0)
        kill = Fault(t=3.0, kind="kill_daemon", nodes=("a",))
        elsewhere = Fault(t=5.0, kind="kill_service", nodes=("b",))
        [failover] = check(h.records, faults=[kill, elsewhere]).failovers
        self.assertIs(failover.fault, kill)
        self.assertEqual(failover.time, 6.0)

    def test_cluster_filter(self):
        h = History()
        h.instance("a", "A", 1.0, exit=5.01)
        h.instance("a", "B", 1.0, beats_until=6.0, stop=6.0)
        fault = Fault(t=5.0, kind="kill_service", nodes=("a",), clusters=("B",))
        self.assertEqual(check(h.records, faults=[fault]).failovers, ())


class ReportTests(unittest.TestCase):
    def test_problems_from_unreadable_lines_are_kept(self):
        report = check(Records(records=(), problems=("x.jsonl:3: not JSON",)))
        self.assertEqual(report.problems, ("x.jsonl:3: not JSON",))
        self.assertTrue(report.ok)

    def test_log_problems_name_file_and_line(self):
        text = "ok\nTraceback (most recent call last):\n  File x\nUnhandled Error\nfine\n"
        self.assertEqual(checker.log_problems("alpha.log", text), [
            "alpha.log:2: Traceback (most recent call last):",
            "alpha.log:4: Unhandled Error",
        ])
        self.assertEqual(checker.log_problems("beta.log", "all good\n"), [])


# Intervals of one cluster as (start, length) pairs, at millisecond resolution.
spans = st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(1, 3_000)), min_size=1, max_size=8
)


class OverlapPropertyTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(spans)
    def test_flagged_exactly_when_some_pair_overlaps(self, pairs):
        h = History()
        for index, (start, length) in enumerate(pairs):
            h.instance(f"n{index}", "A", start / 1000, stop=(start + length) / 1000)
        brute = [
            (max(a[0], b[0]), min(a[0] + a[1], b[0] + b[1]))
            for i, a in enumerate(pairs) for b in pairs[i + 1:]
            if max(a[0], b[0]) < min(a[0] + a[1], b[0] + b[1])
        ]
        found = check(h.records).overlaps
        self.assertEqual(bool(found), bool(brute))
        # Every overlapping stretch lies inside a reported window.
        for begin, end in brute:
            self.assertTrue(any(o.start <= begin / 1000 and end / 1000 <= o.end for o in found))
        # Every reported window really has two instances running in its middle.
        for overlap in found:
            middle = (overlap.start + overlap.end) / 2
            running = [i for i in checker.intervals(h.records) if i.start <= middle < i.end]
            self.assertGreater(len(running), 1)


class MachinePauseTests(unittest.TestCase):
    """A whole machine frozen by the rig: its instances did nothing while it was paused."""

    PAUSE = checker.MachinePause("a", start=2.0, end=6.0, bound=0.3)

    def history(self, killed_after_thaw):
        h = History()
        # 'a' runs epoch 1 and is frozen at 2.0; 'b' takes over at 4.0 with epoch 2.
        old = h.instance("a", "A", 1.0, epoch=1, beats_until=2.0, exit=6.0 + killed_after_thaw)
        h.add_heartbeat(old, 6.0 + killed_after_thaw / 2)   # it acts on resume
        h.instance("b", "A", 4.0, epoch=2, beats_until=8.0)
        return h

    def test_stopped_within_the_bound_is_reported_not_a_violation(self):
        report = check(self.history(0.2).records, horizon=8.0, pauses=[self.PAUSE])
        self.assertTrue(report.ok, [v.describe() for v in report.violations])
        [after] = report.after_pause
        self.assertAlmostEqual(after.ran, 0.2)
        self.assertAlmostEqual(after.overlapped, 0.2)

    def test_running_on_past_the_bound_is_an_overlap_and_a_stale_epoch(self):
        report = check(self.history(1.5).records, horizon=8.0, pauses=[self.PAUSE])
        [overlap] = report.overlaps
        self.assertEqual((round(overlap.start, 6), round(overlap.end, 6)), (6.3, 7.5))
        self.assertTrue(report.stale_actions)

    def test_without_the_pause_the_frozen_time_counts(self):
        report = check(self.history(0.2).records, horizon=8.0)
        [overlap] = report.overlaps
        self.assertAlmostEqual(overlap.start, 4.0)


class GroupOrderTests(unittest.TestCase):
    """An ordered group's members start bottom up, each while those below it run."""

    GROUPS = {"A": ("A.vol", "A.db", "A.exp")}

    def tenure(self, h, node, epoch, starts, end):
        """One tenure on C{node}: members started at C{starts}, all stopped top down at C{end}."""
        for k, (member, start) in enumerate(zip(self.GROUPS["A"], starts)):
            h.instance(node, member, start, epoch=epoch, beats_until=end - 0.1,
                       stop=end + 0.1 * (len(starts) - k))

    def test_a_failover_in_order_on_both_nodes_passes(self):
        h = History()
        self.tenure(h, "alpha", 1, (1.0, 1.5, 2.0), end=5.0)
        self.tenure(h, "beta", 2, (6.0, 6.5, 7.0), end=9.0)
        report = check(h.records, horizon=10.0, groups=self.GROUPS)
        self.assertEqual(report.out_of_order, ())
        self.assertTrue(report.ok)

    def test_a_member_started_before_the_one_below_it_is_flagged(self):
        h = History()
        self.tenure(h, "alpha", 1, (1.0, 2.0, 1.5), end=5.0)
        exp, db = check(h.records, horizon=10.0, groups=self.GROUPS).out_of_order
        self.assertEqual((exp.started.cluster, exp.missing_below), ("A.exp", ("A.db",)))
        self.assertIn("OUT OF ORDER group A: A.exp started on alpha epoch=1", exp.describe())
        # ... and db then started under it.
        self.assertEqual((db.started.cluster, [i.cluster for i in db.alive_above]),
                         ("A.db", ["A.exp"]))

    def test_a_member_below_running_under_another_epoch_does_not_count(self):
        h = History()
        h.instance("alpha", "A.vol", 1.0, epoch=1, beats_until=5.0, stop=5.1)
        h.instance("alpha", "A.db", 2.0, epoch=2, beats_until=5.0, stop=5.05)
        [found] = check(h.records, horizon=10.0, groups=self.GROUPS).out_of_order
        self.assertEqual(found.missing_below, ("A.vol",))

    def test_the_member_below_on_another_node_does_not_count(self):
        h = History()
        h.instance("beta", "A.vol", 1.0, epoch=1, beats_until=5.0, stop=5.1)
        h.instance("alpha", "A.db", 2.0, epoch=1, beats_until=5.0, stop=5.05)
        [found] = check(h.records, horizon=10.0, groups=self.GROUPS).out_of_order
        self.assertEqual((found.started.node, found.missing_below), ("alpha", ("A.vol",)))

    def test_a_restart_while_a_member_above_still_runs_is_flagged(self):
        h = History()
        self.tenure(h, "alpha", 1, (1.0, 1.5, 2.0), end=5.0)
        # db dies at 3.0 and comes back at 3.2 while exp (above it) still runs until 5.2.
        h.instance("alpha", "A.db", 3.2, epoch=1, beats_until=4.9, stop=5.15)
        found = check(h.records, horizon=10.0, groups=self.GROUPS).out_of_order
        self.assertEqual([(f.started.start, [i.cluster for i in f.alive_above]) for f in found],
                         [(3.2, ["A.exp"])])

    def test_a_restart_after_the_members_above_stopped_passes(self):
        h = History()
        h.instance("alpha", "A.vol", 1.0, epoch=1, beats_until=9.0, stop=9.3)
        h.instance("alpha", "A.db", 1.5, epoch=1, beats_until=2.9, exit=3.0)
        h.instance("alpha", "A.exp", 2.0, epoch=1, beats_until=3.0, stop=3.1)
        h.instance("alpha", "A.db", 3.3, epoch=1, beats_until=9.0, stop=9.2)
        h.instance("alpha", "A.exp", 3.8, epoch=1, beats_until=9.0, stop=9.1)
        self.assertEqual(check(h.records, horizon=10.0, groups=self.GROUPS).out_of_order, ())

    def test_a_member_below_with_no_known_end_still_runs(self):
        # Killed, its death not observed: the checker cannot tell it stopped.
        h = History()
        h.instance("alpha", "A.vol", 1.0, epoch=1, beats_until=2.0)
        h.instance("alpha", "A.db", 1.5, epoch=1, beats_until=2.0)
        h.instance("alpha", "A.exp", 2.5, epoch=1, beats_until=3.0)
        self.assertEqual(check(h.records, horizon=10.0, groups=self.GROUPS).out_of_order, ())

    def test_without_groups_nothing_is_checked(self):
        h = History()
        self.tenure(h, "alpha", 1, (2.0, 1.5, 1.0), end=5.0)
        self.assertTrue(check(h.records, horizon=10.0).ok)
