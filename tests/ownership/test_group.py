"""L{GroupSequencer}: the order of an ordered group, sans-IO.

Unit tests of each rule, then a hypothesis property over random member
failures on two nodes that hand the group over: no member ever starts out of
order, stops out of order, or runs on both nodes at once.
"""

import os

from hypothesis import given, settings, strategies as st
from twisted.trial import unittest

from clsd.ownership.core.group import (
    GroupSequencer, Phase, ReleaseMember, ReportGroup, StartMember, StopMember,
)

NAMES = ("volume", "db", "exporter")


def running(seq, index):
    return seq.observed(index, running=True, alive=True)


def start_all(seq):
    actions = seq.start()
    for index in range(len(seq.members)):
        assert actions == [StartMember(index)], actions
        actions = running(seq, index)
    assert actions == [] and seq.phase is Phase.RUNNING


class OrderTests(unittest.TestCase):
    def setUp(self):
        self.seq = GroupSequencer(NAMES)

    def test_members_start_one_after_the_other_once_the_previous_runs(self):
        self.assertEqual(self.seq.start(), [StartMember(0)])
        # Spawned but not running yet (its check has not risen): db waits.
        self.assertEqual(self.seq.observed(0, running=False, alive=True), [])
        self.assertEqual(running(self.seq, 0), [StartMember(1)])
        self.assertEqual(running(self.seq, 1), [StartMember(2)])
        self.assertEqual(running(self.seq, 2), [])
        self.assertIs(self.seq.phase, Phase.RUNNING)
        self.assertIsNone(self.seq.waiting_for())

    def test_a_spawn_out_of_order_is_refused_with_the_reason(self):
        self.seq.start()
        self.seq.members[1].wanted = True  # as if its supervisor tried on its own
        self.assertEqual(self.seq.may_spawn(1), "waiting for volume (before it in the group) "
                                                "to run")
        self.assertIsNone(self.seq.may_spawn(0))
        self.assertEqual(self.seq.waiting_for(), "volume")

    def test_nothing_spawns_outside_a_tenure(self):
        self.assertEqual(self.seq.may_spawn(0), "the group does not want volume running")

    def test_stop_is_in_reverse_each_after_the_one_above_is_gone(self):
        start_all(self.seq)
        self.assertEqual(self.seq.stop(), [StopMember(2)])
        self.assertEqual(self.seq.observed(2, running=False, alive=False), [],
                         "the next stop waits for the stop's own completion")
        self.assertEqual(self.seq.member_stopped(2), [StopMember(1)])
        self.assertEqual(self.seq.member_stopped(1), [StopMember(0)])
        self.assertEqual(self.seq.member_stopped(0), [ReportGroup("service_stopped")])
        self.assertIs(self.seq.phase, Phase.IDLE)

    def test_a_stop_during_the_start_stops_only_what_was_started(self):
        self.seq.start()
        running(self.seq, 0)  # db asked to start, not yet running
        self.assertEqual(self.seq.stop(), [StopMember(1)])
        self.assertEqual(self.seq.member_stopped(1), [StopMember(0)])
        self.assertEqual(self.seq.member_stopped(0), [ReportGroup("service_stopped")])

    def test_a_stop_with_nothing_started_reports_stopped_at_once(self):
        self.assertEqual(self.seq.stop(), [ReportGroup("service_stopped")])

    def test_a_new_tenure_after_a_stop_starts_from_the_bottom_again(self):
        start_all(self.seq)
        self.seq.stop()
        for index in (2, 1, 0):
            self.seq.member_stopped(index)
        start_all(self.seq)


class RecoveryTests(unittest.TestCase):
    def setUp(self):
        self.seq = GroupSequencer(NAMES)
        start_all(self.seq)

    def test_a_failed_member_restarts_after_the_members_above_it_stop_then_they_start(self):
        # db crashes; its supervisor restarts it at once, but exporter still runs.
        self.assertEqual(self.seq.observed(1, running=False, alive=False), [StopMember(2)])
        self.assertEqual(self.seq.may_spawn(1), "waiting for exporter (after it in the group) "
                                                "to stop")
        self.seq.spawn_held(1)
        self.assertEqual(self.seq.observed(1, running=False, alive=False), [])
        self.assertEqual(self.seq.member_stopped(2), [ReleaseMember(1)])
        self.assertIsNone(self.seq.may_spawn(1))
        self.assertEqual(self.seq.observed(1, running=False, alive=True), [])
        self.assertEqual(running(self.seq, 1), [StartMember(2)])
        self.assertEqual(running(self.seq, 2), [])
        self.assertIs(self.seq.phase, Phase.RUNNING)

    def test_a_failure_of_the_bottom_member_stops_everything_above_top_down(self):
        self.assertEqual(self.seq.observed(0, running=False, alive=False), [StopMember(2)])
        self.assertEqual(self.seq.member_stopped(2), [StopMember(1)])
        self.assertEqual(self.seq.member_stopped(1), [],
                         "volume restarts on its own (its backoff): nothing to release")
        self.assertEqual(running(self.seq, 0), [StartMember(1)])

    def test_a_member_in_its_own_backoff_is_not_released_early(self):
        self.seq.observed(1, running=False, alive=False)
        self.assertEqual(self.seq.member_stopped(2), [])
        self.assertEqual(self.seq.phase, Phase.RECOVERING)

    def test_the_top_member_restarts_alone(self):
        self.assertEqual(self.seq.observed(2, running=False, alive=False), [])
        self.assertIsNone(self.seq.may_spawn(2))
        self.assertEqual(running(self.seq, 2), [])

    def test_a_member_that_gives_up_moves_the_whole_group(self):
        self.seq.observed(1, running=False, alive=False)  # exporter being stopped
        self.assertEqual(self.seq.member_failed(1, "crash-loop 5 in 60s"), [])
        self.assertIs(self.seq.phase, Phase.FAILING)
        self.assertEqual(self.seq.member_stopped(2), [StopMember(0)])
        self.assertEqual(self.seq.member_stopped(0),
                         [ReportGroup("service_failed", "crash-loop 5 in 60s")])
        self.assertIs(self.seq.phase, Phase.IDLE)

    def test_a_lease_stop_during_the_recovery_finishes_the_member_stop_first(self):
        self.seq.observed(1, running=False, alive=False)   # StopMember(2) under way
        self.assertEqual(self.seq.stop(), [])
        self.assertEqual(self.seq.member_stopped(2), [StopMember(1)],
                         "db is in its backoff: its restart is cancelled by a stop")
        self.assertEqual(self.seq.member_stopped(1), [StopMember(0)])
        self.assertEqual(self.seq.member_stopped(0), [ReportGroup("service_stopped")])

    def test_stuck_is_reported_once_per_stop(self):
        self.seq.stop()
        self.assertEqual(self.seq.member_stuck(2),
                         [ReportGroup("service_stuck", "member exporter is stuck")])
        self.assertEqual(self.seq.member_stuck(2), [])


# -- the property ----------------------------------------------------------------

class Member:
    """A member's supervisor, as the property needs it: restarts at once, a crash-loop limit."""

    LIMIT = 3

    def __init__(self):
        self.state = "stopped"     # stopped starting running backoff stopping failed
        self.refused = False
        self.failures = 0

    @property
    def alive(self):
        return self.state in ("starting", "running", "stopping")


class Node:
    def __init__(self, name, world):
        self.name = name
        self.world = world
        self.seq = GroupSequencer(NAMES)
        self.members = [Member() for _ in NAMES]
        self.reports = []          # queued member reports: (kind, index)

    def execute(self, actions):
        for action in actions:
            if isinstance(action, StartMember):
                member = self.members[action.index]
                if member.state == "failed":
                    member.failures = 0
                member.state = "stopped"
                self.spawn(action.index)
            elif isinstance(action, StopMember):
                self.world.check_stop_order(self, action.index)
                member = self.members[action.index]
                if member.alive:
                    member.state = "stopping"
                else:
                    member.state = "stopped"
                    self.reports.append(("stopped", action.index))
            elif isinstance(action, ReleaseMember):
                member = self.members[action.index]
                if member.state == "backoff" and member.refused:
                    self.spawn(action.index)
            elif isinstance(action, ReportGroup):
                self.world.group_reported(self, action)

    def spawn(self, index):
        member = self.members[index]
        reason = self.seq.may_spawn(index)
        if reason is not None:
            self.seq.spawn_held(index)
            member.state, member.refused = "backoff", True
        else:
            self.world.check_spawn(self, index)
            member.state, member.refused = "starting", False
        self.observe(index)

    def observe(self, index):
        member = self.members[index]
        self.execute(self.seq.observed(index, running=member.state == "running",
                                       alive=member.alive))


class World:
    def __init__(self, test):
        self.test = test
        self.nodes = [Node("alpha", self), Node("beta", self)]
        self.holder = self.nodes[0]
        self.handing_over = False

    def check_spawn(self, node, index):
        members = node.members
        for below in range(index):
            self.test.assertEqual(members[below].state, "running",
                                  f"{NAMES[index]} started before {NAMES[below]} ran")
        for above in range(index + 1, len(members)):
            self.test.assertFalse(members[above].alive,
                                  f"{NAMES[index]} started while {NAMES[above]} lived")
        self.test.assertIs(node, self.holder, "a member started without the lease")
        other = self.nodes[1] if node is self.nodes[0] else self.nodes[0]
        self.test.assertFalse(other.members[index].alive,
                              f"{NAMES[index]} would run on two nodes")

    def check_stop_order(self, node, index):
        for above in range(index + 1, len(node.members)):
            self.test.assertFalse(node.members[above].alive,
                                  f"{NAMES[index]} stopped while {NAMES[above]} lived")

    def group_reported(self, node, action):
        if action.method == "service_stuck":
            return
        self.test.assertFalse(any(m.alive for m in node.members),
                              f"{action.method} reported while a member lives")
        if node is self.holder and self.handing_over:
            # The lease moves only once the holder reported its group gone.
            self.handing_over = False
            self.holder = self.nodes[1] if node is self.nodes[0] else self.nodes[0]
            self.holder.execute(self.holder.seq.start())
        elif node is self.holder and action.method == "service_failed":
            self.holder = self.nodes[1] if node is self.nodes[0] else self.nodes[0]
            self.holder.execute(self.holder.seq.start())

    def step(self, choice, index):
        node = self.holder if choice != "deliver-other" else (
            self.nodes[1] if self.holder is self.nodes[0] else self.nodes[0])
        member = node.members[index]
        if choice == "up" and member.state == "starting":
            member.state = "running"
            node.observe(index)
        elif choice == "crash" and member.state in ("starting", "running"):
            member.failures += 1
            if member.failures >= Member.LIMIT:
                member.state = "failed"
                node.observe(index)
                node.reports.append(("failed", index))
            else:
                member.state = "stopped"
                node.spawn(index)       # the first restart is immediate
        elif choice == "retry" and member.state == "backoff":
            node.spawn(index)
        elif choice == "stopped" and member.state == "stopping":
            member.state = "stopped"
            node.observe(index)
            node.reports.append(("stopped", index))
        elif choice in ("deliver", "deliver-other") and node.reports:
            kind, which = node.reports.pop(0)
            if kind == "stopped":
                node.execute(node.seq.member_stopped(which))
            else:
                node.execute(node.seq.member_failed(which))
        elif choice == "move" and not self.handing_over and node.seq.phase is not Phase.IDLE:
            self.handing_over = True
            node.execute(node.seq.stop())


STEPS = st.lists(st.tuples(
    st.sampled_from(["up", "up", "up", "crash", "retry", "stopped", "stopped", "deliver",
                     "deliver", "deliver-other", "move"]),
    st.integers(min_value=0, max_value=len(NAMES) - 1)), max_size=300)


class PropertyTests(unittest.TestCase):
    @settings(max_examples=int(os.environ.get("CLSD_GROUP_EXAMPLES", "300")), deadline=None)
    @given(STEPS)
    def test_members_never_run_out_of_order_nor_on_two_nodes(self, steps):
        world = World(self)
        world.holder.execute(world.holder.seq.start())
        for choice, index in steps:
            world.step(choice, index)
            for position, name in enumerate(NAMES):
                self.assertFalse(all(n.members[position].alive for n in world.nodes),
                                 f"{name} runs on both nodes")
