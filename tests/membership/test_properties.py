"""Hypothesis-driven simulations: the three promises of membership.

1. Every crashed node is eventually declared dead by every live node.
2. No node that stays connected and responsive is ever declared dead, with
   loss on some links and pauses shorter than the tolerated pause.
3. After a partition heals, all views converge.

Example counts are bounded so that the module runs in seconds.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.membership.core.members import State
from clsd.membership.core.timing import tolerated_pause
from rig.sim.cluster import SimCluster, node_name

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

#: Small clusters stress the corner cases (fewer distinct observers than K).
sizes = st.integers(min_value=3, max_value=24)


class CrashedNodesAreDeclaredDead(unittest.TestCase):
    @SETTINGS
    @given(n=sizes, seed=st.integers(0, 2**16), data=st.data())
    def test_every_crash_is_seen_by_every_live_node(self, n, seed, data):
        crashes = data.draw(st.lists(
            st.tuples(st.integers(0, n - 1), st.floats(0.0, 20.0)),
            min_size=1, max_size=max(1, (n - 1) // 2), unique_by=lambda c: c[0]))
        loss = data.draw(st.sampled_from([0.0, 0.05]))
        cluster = SimCluster(n, seed=seed)
        cluster.set_loss(loss=loss)
        cluster.run_for(5.0)
        for index, at in sorted(crashes, key=lambda c: c[1]):
            cluster.run_until(5.0 + at)
            cluster.crash(node_name(index))
        # Crashes close connections: link_down_grace + gossip, well under 30 s,
        # even for a node whose observers were all crashed (silence timeout).
        cluster.run_for(30.0)
        for index, _ in crashes:
            name = node_name(index)
            for node in cluster.live():
                member = node.core.member(name)
                self.assertIsNotNone(member, f"{node.name} forgot {name}")
                self.assertIs(member.state, State.DEAD,
                              f"{node.name} sees crashed {name} as {member.state.value}")

    @SETTINGS
    @given(n=st.integers(4, 16), seed=st.integers(0, 2**16))
    def test_a_silent_node_is_declared_dead(self, n, seed):
        """A node cut off without its connections closing (a pulled cable)."""
        cluster = SimCluster(n, seed=seed)
        cluster.run_for(5.0)
        victim = node_name(n - 1)
        cluster.set_loss(victim, 1.0)
        cluster.run_for(20.0)
        for node in cluster.live():
            if node.name != victim:
                self.assertIs(node.core.member(victim).state, State.DEAD, node.name)


class ResponsiveNodesAreNeverDeclaredDead(unittest.TestCase):
    @SETTINGS
    @given(n=st.integers(3, 20), seed=st.integers(0, 2**16), data=st.data())
    def test_no_false_deaths_under_loss_and_short_pauses(self, n, seed, data):
        config = MembershipConfig()
        cluster = SimCluster(n, config, seed=seed)
        lossy = data.draw(st.lists(st.integers(0, n - 1), max_size=max(1, n // 4), unique=True))
        for index in lossy:
            # Every link of this node loses 5-20% of its messages.
            cluster.set_loss(node_name(index), data.draw(st.floats(0.05, 0.20)))
        longest = tolerated_pause(config.failure_timeout, config.heartbeat_interval,
                                  cluster.latency + cluster.jitter)
        pauses = data.draw(st.lists(
            st.tuples(st.integers(0, n - 1), st.floats(1.0, 50.0),
                      st.floats(0.1, longest * 0.9)),
            max_size=4))
        events = sorted(pauses, key=lambda p: p[1])
        for index, at, length in events:
            cluster.run_until(at)
            name = node_name(index)
            if not cluster.by_name[name].paused:
                cluster.pause(name)
                cluster.scheduler.at(at + length, cluster.resume, name)
        cluster.run_until(60.0)
        self.assertEqual(cluster.deaths, [])
        for node in cluster.live():
            for other in cluster.nodes:
                self.assertIs(node.core.member(other.name).state in (State.ALIVE, State.SUSPECT),
                              True)

    @SETTINGS
    @given(n=st.integers(9, 24), seed=st.integers(0, 2**16))
    def test_one_flaky_observer_cannot_evict(self, n, seed):
        """One observer that hears nothing from its subject reports it, in vain."""
        cluster = SimCluster(n, seed=seed)
        cluster.run_for(3.0)
        subject = node_name(0)
        observer = cluster.by_name[node_name(1)].core.observers_of(subject)[0]
        cluster.set_loss(subject, 1.0, peer=observer)
        cluster.run_for(40.0)
        self.assertEqual(cluster.deaths, [])
        self.assertGreater(cluster.by_name[observer].core.stats["reports"], 0)


class PartitionsHeal(unittest.TestCase):
    @settings(max_examples=15, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow])
    @given(n=st.integers(4, 16), seed=st.integers(0, 2**16), data=st.data())
    def test_views_converge_after_a_partition_heals(self, n, seed, data):
        config = MembershipConfig(reconnect_interval=5.0, sync_interval=3.0)
        cluster = SimCluster(n, config, seed=seed)
        cluster.run_for(5.0)
        cut = data.draw(st.integers(1, n - 1))
        side = [node_name(i) for i in range(cut)]
        other = [node_name(i) for i in range(cut, n)]
        cluster.partition(side)
        cluster.run_for(data.draw(st.floats(25.0, 40.0)))
        # The larger side has declared every node of the smaller side dead.
        if len(side) != len(other):
            big, small = (side, other) if len(side) > len(other) else (other, side)
            for name in big:
                for gone in small:
                    self.assertIs(cluster.view(name, gone).state, State.DEAD, (name, gone))
        cluster.heal()
        for _ in range(120):
            cluster.run_for(1.0)
            if cluster.converged():
                break
        self.assertTrue(cluster.converged(), "views did not converge within 120 s of the heal")
        # Nobody on the same side as a node ever declared it dead.
        for when, observer, member in cluster.deaths:
            self.assertNotEqual(observer in side, member.name in side,
                                f"{observer} declared {member.name} (same side) dead at {when}")
