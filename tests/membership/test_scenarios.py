"""Whole-cluster scenarios on the simulator: join, restart, leave, force-remove, reap."""

from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.membership.core.node import MembershipError
from clsd.membership.core.members import State
from rig.sim.cluster import SimCluster, node_name


def steady_rate(n, seconds=30.0, seed=1):
    cluster = SimCluster(n, seed=seed)
    cluster.run_for(10.0)
    before = cluster.messages
    cluster.run_for(seconds)
    return (cluster.messages - before) / n / seconds


class Join(unittest.TestCase):
    def test_nodes_join_through_seeds_and_converge(self):
        cluster = SimCluster(12, seed=3, formed=False, stagger=2.0, wire_check=True)
        cluster.run_for(30.0)
        self.assertTrue(all(node.joined_at is not None for node in cluster.nodes))
        self.assertTrue(cluster.converged())
        self.assertEqual(len(cluster.by_name[node_name(11)].core), 12)
        self.assertEqual(cluster.deaths, [])

    def test_a_node_whose_seeds_are_down_waits_then_joins(self):
        cluster = SimCluster(4, seed=4, formed=False, seeds=1, stagger=0.0)
        cluster.crash(node_name(0))  # the only seed
        cluster.run_for(10.0)
        self.assertEqual([node.joined_at for node in cluster.nodes[1:]], [None] * 3)
        cluster.restart(node_name(0))
        cluster.run_for(20.0)
        self.assertTrue(all(node.joined_at is not None for node in cluster.nodes))
        self.assertTrue(cluster.converged())


class Restart(unittest.TestCase):
    def test_a_restarted_node_is_a_new_generation(self):
        cluster = SimCluster(10, seed=5)
        cluster.run_for(5.0)
        victim = node_name(4)
        cluster.crash(victim)
        cluster.run_for(10.0)
        self.assertTrue(cluster.all_see(victim, State.DEAD, generation=1))
        cluster.restart(victim)
        cluster.run_for(15.0)
        self.assertTrue(cluster.all_see(victim, State.ALIVE, generation=2))
        # The new life ignores news about the old one and was never refuted.
        self.assertEqual(cluster.by_name[victim].core.incarnation, 0)
        self.assertTrue(cluster.converged())

    def test_a_quick_restart_replaces_the_old_life_at_once(self):
        cluster = SimCluster(10, seed=6)
        cluster.run_for(5.0)
        victim = node_name(2)
        cluster.restart(victim)  # crash and start again in the same instant
        cluster.run_for(10.0)
        self.assertTrue(cluster.all_see(victim, State.ALIVE, generation=2))
        self.assertTrue(cluster.converged())


class Leave(unittest.TestCase):
    def test_a_graceful_leave_is_not_a_failure(self):
        cluster = SimCluster(10, seed=7)
        cluster.run_for(5.0)
        cluster.leave(node_name(3))
        cluster.run_for(10.0)
        self.assertTrue(cluster.by_name[node_name(3)].left)
        self.assertTrue(cluster.all_see(node_name(3), State.LEFT))
        self.assertEqual(cluster.deaths, [])
        info = cluster.by_name[node_name(0)].core.info(node_name(3))
        self.assertEqual(info.reason, "left gracefully")


class ForceRemove(unittest.TestCase):
    def test_an_operator_removes_a_dead_member(self):
        cluster = SimCluster(8, seed=8)
        cluster.run_for(5.0)
        cluster.crash(node_name(5))
        cluster.run_for(10.0)
        cluster.force_remove(node_name(0), node_name(5))
        cluster.run_for(5.0)
        self.assertTrue(cluster.all_see(node_name(5), State.LEFT))
        info = cluster.by_name[node_name(7)].core.info(node_name(5))
        self.assertEqual(info.reason, f"force-removed by operator on {node_name(0)}")

    def test_only_a_dead_member_can_be_force_removed(self):
        cluster = SimCluster(4, seed=9)
        cluster.run_for(3.0)
        with self.assertRaises(MembershipError) as caught:
            cluster.force_remove(node_name(0), node_name(1))
        self.assertIn("is alive, not dead", str(caught.exception))
        with self.assertRaises(MembershipError):
            cluster.force_remove(node_name(0), "nobody")
        with self.assertRaises(MembershipError):
            cluster.force_remove(node_name(0), node_name(0))

    def test_a_live_member_removed_by_mistake_comes_back(self):
        """If the operator's removal reaches a member that is in fact alive, it refutes."""
        cluster = SimCluster(6, seed=10)
        cluster.run_for(3.0)
        cluster.partition([node_name(5)])
        cluster.run_for(25.0)
        cluster.force_remove(node_name(0), node_name(5))
        cluster.heal()
        cluster.run_for(60.0)
        self.assertTrue(cluster.all_see(node_name(5), State.ALIVE))


class Reap(unittest.TestCase):
    def test_dead_members_are_forgotten_after_reap_after(self):
        removed = []
        cluster = SimCluster(
            6, MembershipConfig(reap_after=30.0), seed=11,
            on_change=lambda c, node, change: change.removed and removed.append(node.name))
        cluster.run_for(3.0)
        cluster.crash(node_name(1))
        cluster.run_for(10.0)
        self.assertTrue(cluster.all_see(node_name(1), State.DEAD))
        cluster.run_for(40.0)
        self.assertTrue(cluster.all_see(node_name(1), None))
        self.assertEqual(sorted(removed), [node_name(i) for i in (0, 2, 3, 4, 5)])
        # Nobody re-learns it from a peer that has not reaped yet.
        cluster.run_for(60.0)
        self.assertTrue(cluster.all_see(node_name(1), None))


class Faults(unittest.TestCase):
    def test_a_node_losing_20_percent_of_its_messages_is_never_declared_dead(self):
        cluster = SimCluster(32, seed=12)
        cluster.set_loss(node_name(7), 0.2)
        cluster.run_for(300.0)
        self.assertEqual(cluster.deaths, [])

    def test_a_long_pause_is_a_death_then_a_refutation(self):
        cluster = SimCluster(10, seed=13)
        cluster.run_for(5.0)
        victim = node_name(3)
        cluster.pause(victim)
        cluster.run_for(12.0)
        self.assertTrue(cluster.all_see(victim, State.DEAD))
        cluster.resume(victim)
        cluster.run_for(10.0)
        self.assertTrue(cluster.all_see(victim, State.ALIVE, generation=1))
        self.assertGreater(cluster.by_name[victim].core.incarnation, 0)

    def test_runs_are_deterministic_given_a_seed(self):
        def run():
            cluster = SimCluster(16, seed=14)
            cluster.set_loss(loss=0.05)
            cluster.run_for(5.0)
            cluster.crash(node_name(2))
            cluster.run_for(10.0)
            return cluster.messages, [(t, o, m.name) for t, o, m in cluster.deaths]
        self.assertEqual(run(), run())


class Cost(unittest.TestCase):
    def test_messages_per_node_do_not_grow_with_n(self):
        small, large = steady_rate(32), steady_rate(256)
        self.assertLess(abs(large - small) / small, 0.2, (small, large))
        # K heartbeats per second plus a little anti-entropy.
        self.assertLess(large, MembershipConfig().observers + 1)


class Speed(unittest.TestCase):
    def test_a_killed_node_is_declared_dead_by_all_within_two_seconds(self):
        cluster = SimCluster(64, seed=15)
        cluster.run_for(10.0)
        for index in (3, 17, 40, 51, 60):
            name = node_name(index)
            cluster.crash(name)
            crashed_at = cluster.now
            cluster.run_for(2.0)
            seen = {observer for when, observer, member in cluster.deaths
                    if member.name == name and when - crashed_at <= 2.0}
            self.assertEqual(seen, {node.name for node in cluster.live()})
            cluster.run_for(5.0)


class Memory(unittest.TestCase):
    def test_nodes_with_the_same_view_share_one_snapshot(self):
        cluster = SimCluster(300, seed=16)
        initial = cluster.nodes[0].core._table.rings.snapshot
        cluster.run_for(5.0)
        cluster.crash(node_name(9))
        cluster.run_for(30.0)
        live = cluster.live()
        for node in live:  # what every node does once its overlay is large enough
            node.core._table.compact()
        rings = {id(node.core._table.rings.snapshot) for node in live}
        members = {id(node.core._table._base) for node in live}
        self.assertEqual((len(rings), len(members)), (1, 1))
        self.assertIsNot(live[0].core._table.rings.snapshot, initial)
        self.assertNotIn(node_name(9), live[0].core._table.rings.snapshot.names)


class AdminView(unittest.TestCase):
    def test_members_lists_state_incarnation_address_and_reason(self):
        cluster = SimCluster(5, seed=17)
        cluster.run_for(3.0)
        cluster.crash(node_name(4))
        cluster.run_for(5.0)
        rows = cluster.by_name[node_name(0)].core.members()
        self.assertEqual([row.member.name for row in rows], [node_name(i) for i in range(5)])
        dead = rows[4]
        self.assertIs(dead.member.state, State.DEAD)
        self.assertEqual(dead.member.address, "127.0.0.6:7400")
        self.assertIn("reported unreachable by", dead.reason)
        self.assertGreater(dead.since, 3.0)
        self.assertEqual(rows[1].reason, "known at start")


class Latency(unittest.TestCase):
    def test_a_slow_link_delays_messages_but_kills_nobody(self):
        arrivals = []
        cluster = SimCluster(6, seed=18)
        cluster.set_latency(node_name(2), 0.5)             # every message of n2: +0.5 s
        cluster.set_latency(node_name(0), 1.5, peer=node_name(1))
        original = cluster._deliver_message

        def spy(node, epoch, sender, message):
            arrivals.append((cluster.now, sender, node.name))
            original(node, epoch, sender, message)

        cluster._deliver_message = spy
        sent_at = cluster.now
        cluster.run_for(30.0)
        self.assertEqual(cluster.deaths, [])
        slow = [t for t, s, r in arrivals if {s, r} == {node_name(0), node_name(1)}]
        self.assertTrue(slow)
        self.assertGreaterEqual(min(slow) - sent_at, 1.5)
        self.assertTrue(all(t >= 0.5 for t, s, r in arrivals if node_name(2) in (s, r)))
