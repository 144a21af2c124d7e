"""Cold start: a node does not take a cluster nobody holds before membership has settled.

The core's hold-off (L{ClusterManager} C{settle_until}) and the shell's
"settled" signal (every live peer seen with its registrations) on a Clock.
The real-daemon measurement is L{tests.integration.test_cold_start_real}.
"""

import attrs
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.ownership.core.manager import ACQUIRING, IDLE, ClusterManager
from clsd.ownership.core.messages import Handover
from clsd.ownership.core.placement import MemberState
from clsd.ownership.service import cold_start_settle
from tests.ownership.test_manager import T, ScriptedArbiter, spec
from tests.ownership.test_service import ShellNode, cluster_table, pump


class HoldOffTests(unittest.TestCase):
    def manager(self, settle_until=5.0, priority=50):
        self.arbiter = ScriptedArbiter()
        m = ClusterManager("alpha", [spec(priority=priority)], self.arbiter, T, 0.0,
                           voters=("alpha", "beta", "w"), settle_until=settle_until)
        m.start(0.0)
        return m

    def test_nothing_is_taken_before_the_bound(self):
        m = self.manager()
        self.assertNotEqual(m.status(1.0).get("A", (IDLE,))[0], ACQUIRING)
        self.assertNotIn(("acquire", "A"), self.arbiter.calls)
        self.assertEqual(m.next_wakeup(), 5.0)
        m.tick(5.0)
        self.assertIn(("acquire", "A"), self.arbiter.calls)

    def test_a_better_candidate_seen_once_settled_keeps_us_standing_by(self):
        m = self.manager()
        m.members_changed([MemberState("beta", registrations={"A": 100})], 0.5)
        m.membership_settled(0.6)
        m.tick(6.0)
        self.assertNotIn(("acquire", "A"), self.arbiter.calls)

    def test_settled_early_when_we_are_the_best(self):
        m = self.manager(priority=200)
        m.members_changed([MemberState("beta", registrations={"A": 100})], 0.5)
        self.assertNotIn(("acquire", "A"), self.arbiter.calls)
        m.membership_settled(0.6)
        self.assertEqual(m.status(0.6)["A"][0], ACQUIRING)

    def test_a_successor_polls_a_known_holder_meanwhile(self):
        m = self.manager()
        m.members_changed([MemberState("beta", registrations={"A": 100}, holding={"A": 3})],
                          0.5)
        self.assertEqual(m.status(0.5)["A"][0], ACQUIRING)

    def test_a_handover_is_taken_at_once(self):
        m = self.manager(priority=200)
        m.members_changed([MemberState("beta", registrations={"A": 100})], 0.5)
        m.receive("beta", Handover("A", 3), 0.7)
        self.assertIn(("acquire", "A"), self.arbiter.calls)


class ShellSettleTests(unittest.TestCase):
    """alpha alone votes; with seeds in its config it waits for membership to settle."""

    def node(self, seeds=(("127.0.0.9", 7400),)):
        clock = Clock()
        clock.advance(1000)
        node = ShellNode(self, clock, "alpha", ["alpha"], [cluster_table()])
        config = node.service.config
        node.service.config = attrs.evolve(config, node=attrs.evolve(config.node, join=seeds))
        return clock, node.start()

    def test_the_bound(self):
        _, node = self.node()
        self.assertAlmostEqual(cold_start_settle(node.service.config), 2.0 + 0.1 + 2 * 2.0)
        _, node = self.node(seeds=())
        self.assertIsNone(cold_start_settle(node.service.config),
                          "no seeds: this node is the cluster")

    def test_no_start_before_settling_then_at_once(self):
        clock, node = self.node()
        pump(clock, 4.0)  # well past the voter's quiet period
        self.assertEqual(node.spawns, [])
        node.service.members_changed({"beta": None})  # seen, not published yet
        pump(clock, 0.5)
        self.assertEqual(node.spawns, [])
        node.service.members_changed({"beta": {"v": 1, "registrations": {"A": 50},
                                               "standby": False, "failed": [], "holding": {}}})
        pump(clock, 0.5)
        self.assertEqual(len(node.spawns), 1)
        self.assertTrue(any("membership settled" in r for r in node.reasons("ownership")))

    def test_alone_it_starts_after_the_bound(self):
        clock, node = self.node()
        bound = cold_start_settle(node.service.config)
        pump(clock, bound - 0.1)
        self.assertEqual(node.spawns, [])
        pump(clock, 1.0)
        self.assertEqual(len(node.spawns), 1)

    def test_without_seeds_nothing_waits(self):
        clock, node = self.node(seeds=())
        pump(clock, 3.0)
        self.assertEqual(len(node.spawns), 1)
