"""Changing the voters: joint majorities (``previous_voters``), the voters' compatibility rule,
the published voter tag, the hello's settings, and a simulated 3 -> 5 change one node at a time."""

from twisted.trial import unittest

from clsd.config import ConfigError, parse_config
from clsd.daemon import cluster_settings
from clsd.ownership.core.actions import Send
from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.messages import Prepare, Propose, WireError, from_wire
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.published import state_from_wire, state_to_wire
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voter import LeaseVoter
from clsd.ownership.core.voterset import VoterSet, compatible
from rig.sim.leases import LeaseSim
from clsd.wire.core.messages import settings_hash
from tests.ownership.scenarios import DETECTION, TIMING, cluster

OLD = ("a", "b", "c")
NEW = ("a", "b", "c", "d", "e")
O, J, N = VoterSet(OLD), VoterSet(NEW, OLD), VoterSet(NEW)


class VoterSetTests(unittest.TestCase):
    def test_joint_step_needs_a_majority_of_both_sets(self):
        self.assertTrue(O.granted_by({"b", "c"}))
        self.assertTrue(N.granted_by({"a", "d", "e"}))
        # The two disjoint majorities of the naive change: neither is enough in J.
        self.assertFalse(J.granted_by({"b", "c"}))
        self.assertFalse(J.granted_by({"a", "d", "e"}))
        self.assertTrue(J.granted_by({"a", "b", "d"}))
        self.assertEqual(J.members, NEW)
        self.assertEqual(VoterSet(("a", "b", "x"), NEW).members, ("a", "b", "x", "c", "d", "e"))

    def test_hopeless_when_either_set_cannot_reach_a_majority(self):
        self.assertTrue(J.hopeless({"b", "c"}))          # 2 of the old 3 refused
        self.assertFalse(J.hopeless({"d", "e"}))         # a, b, c still make both
        self.assertTrue(J.hopeless({"c", "d", "e"}))     # 3 of the new 5 refused

    def test_a_voter_grants_only_one_step_away(self):
        admits = {(v, p): voter.admits(proposer.tag)
                  for v, voter in zip("OJN", (O, J, N))
                  for p, proposer in zip("OJN", (O, J, N))}
        self.assertEqual(admits, {
            ("O", "O"): True, ("O", "J"): True, ("O", "N"): False,
            ("J", "O"): False, ("J", "J"): True, ("J", "N"): True,
            ("N", "O"): False, ("N", "J"): True, ("N", "N"): True,
        })
        self.assertTrue(O.admits(None))   # an older daemon, no change in progress
        self.assertFalse(J.admits(None))  # during a change: cannot tell its step

    def test_compatible_is_at_most_one_step(self):
        self.assertTrue(compatible(O.tag, J.tag) and compatible(J.tag, O.tag))
        self.assertTrue(compatible(J.tag, N.tag) and compatible(N.tag, N.tag))
        self.assertFalse(compatible(O.tag, N.tag) or compatible(N.tag, O.tag))

    def test_order_of_names_does_not_matter(self):
        self.assertEqual(VoterSet(("c", "a", "b")).tag, O.tag)


class VoterRuleTests(unittest.TestCase):
    T = LeaseTiming(lease=2.0, drift_margin=0.1)

    def test_a_voter_in_the_joint_step_refuses_a_proposer_of_the_old_set(self):
        voter = LeaseVoter("b", self.T, 0.0, quiet=False, voter_set=J)
        for message in (Prepare("A", Ballot(1, "c", 1), O.tag),
                        Propose("A", Ballot(2, "c", 1), 2.0, 2, O.tag),
                        Prepare("A", Ballot(3, "c", 1))):
            (send,) = [a for a in voter.receive("c", message, 1.0) if isinstance(a, Send)]
            self.assertEqual((send.message.ok, send.message.reason), (False, "voters"))
        (send,) = voter.receive("d", Prepare("A", Ballot(4, "d", 1), N.tag), 1.0)
        self.assertTrue(send.message.ok)

    def test_the_tag_travels_and_is_checked(self):
        message = Propose("A", Ballot(2, "c", 1), 2.0, 2, J.tag)
        self.assertEqual(from_wire(message.to_wire()), message)
        self.assertNotIn("voters", Prepare("A", Ballot(1, "c", 1)).to_wire())
        bad = {**Prepare("A", Ballot(1, "c", 1)).to_wire(), "voters": 7}
        self.assertRaises(WireError, from_wire, bad)
        bad["voters"] = "x" * 65
        self.assertRaises(WireError, from_wire, bad)

    def test_the_tag_is_published(self):
        state = MemberState("b", voters=J.tag)
        self.assertEqual(state_from_wire("b", state_to_wire(state)), state)
        self.assertIsNone(state_from_wire("b", state_to_wire(MemberState("b"))).voters)
        self.assertRaises(WireError, state_from_wire, "b", {**state_to_wire(state), "voters": 1})


HEAD = """
[node]
name = "a"
data_dir = "/tmp/clsd-test"
"""


def parse(quorum):
    return parse_config(HEAD + "[quorum]\n" + quorum, "test.toml", euid=1000)


class ConfigTests(unittest.TestCase):
    def test_previous_voters(self):
        config = parse('voters = ["a", "b", "c", "d", "e"]\nprevious_voters = ["a", "b", "c"]\n')
        self.assertEqual(config.quorum.previous_voters, OLD)
        self.assertEqual(parse('voters = ["a"]\n').quorum.previous_voters, ())

    def test_mistakes_are_named(self):
        cases = [
            ('voters = ["a", "b", "c"]\nprevious_voters = ["c", "b", "a"]\n', "same nodes"),
            ('voters = ["a", "b", "c"]\nprevious_voters = ["a", "a"]\n',
             "previous_voters[1]"),
            ('voters = ["a", "b", "c"]\nprevious_voters = ["a", "b", "c", "d"]\n',
             "quorum.previous_voters"),
            ('arbiter = "etcd"\nprevious_voters = ["a"]\n', "quorum.previous_voters"),
        ]
        for text, words in cases:
            with self.assertRaises(ConfigError) as e:
                parse(text)
            self.assertIn(words, str(e.exception))

    def test_voters_are_not_in_the_hello_settings(self):
        """Nodes one step apart must connect; the voters check the step on every request."""
        old = settings_hash(cluster_settings(parse('voters = ["a", "b", "c"]\n')))
        joint = settings_hash(cluster_settings(parse(
            'voters = ["a", "b", "c", "d", "e"]\nprevious_voters = ["a", "b", "c"]\n')))
        new = settings_hash(cluster_settings(parse('voters = ["a", "b", "c", "d", "e"]\n')))
        self.assertEqual({old, joint, new}, {old})
        longer = settings_hash(cluster_settings(parse('voters = ["a"]\nlease = 3.0\n')))
        self.assertNotEqual(longer, old)


# -- the rolling change in the simulation ------------------------------------------------------

PRIORITY = {"a": 100, "b": 90, "c": 80, "d": 70, "e": 60}


def five_nodes(seed):
    """a, b, c run with voters [a, b, c]; d and e are new machines, not yet started."""
    nodes = {name: (cluster("A", priority),) for name, priority in PRIORITY.items()}
    sim = LeaseSim(nodes, OLD, TIMING, detection=DETECTION, seed=seed,
                   voter_sets=dict.fromkeys("abc", O))
    for name in "de":
        sim.crash(name, "not started yet")
    return sim


def restart_with(sim, name, voter_set, at):
    """Restart node C{name} with a new [quorum] at true time C{at} (quorum is restart-only)."""
    def stop(s):
        s.voter_sets[name] = voter_set
        s.crash(name, "restart with new voters")
    sim.at(at, stop)
    sim.at(at + 0.3, lambda s: s.restart(name))


def split_between(sim, at, group, heal_after=4.0):
    sim.at(at, lambda s: s.split(group), f"split {group}")
    sim.at(at + heal_after, lambda s: s.heal(), "heal")


class RollingVoterChangeTests(unittest.TestCase):
    def test_the_naive_change_gives_two_disjoint_majorities(self):
        """What the procedure prevents: a at [a..e] beside b, c at [a, b, c], split apart."""
        overlaps = 0
        for seed in range(4):
            sim = five_nodes(seed)
            sim.at(6.0, lambda s: (s.restart("d"), s.restart("e")))
            sim.voter_sets.update(d=N, e=N)
            restart_with(sim, "a", N, 7.0)
            split_between(sim, 9.0, {"a", "d", "e"})
            sim.run_until(14.0)
            overlaps += bool(sim.overlaps())
        self.assertGreater(overlaps, 0)

    def test_joint_step_then_new_set_one_node_at_a_time(self):
        for seed in range(6):
            sim = five_nodes(seed)
            sim.voter_sets.update(d=J, e=J)
            sim.at(6.0, lambda s: (s.restart("d"), s.restart("e")))
            t = 8.0
            # Step 1: every old node to the joint step, one at a time; after
            # each, split the cluster where two disjoint majorities would be.
            for name in "abc":
                restart_with(sim, name, J, t)
                split_between(sim, t + 2.0, {"a", "d", "e"})
                t += 8.0
            # Step 2: every node to the new set, one at a time.
            for name in "abcde":
                restart_with(sim, name, N, t)
                split_between(sim, t + 2.0, {"b", "c"} if name in "ade" else {"a", "d", "e"})
                t += 8.0
            sim.run_until(t + 6.0)
            sim.check_safety()
            self.assertEqual(len(sim.running("A")), 1, f"seed {seed}: {sim.faults}")

    def test_one_step_too_early_is_caught_by_the_voters(self):
        """a moves to the new set while c is still in the old one: split {a, d, e} | {b, c}.

        b's voter, in the joint step, refuses c's old-set requests, so c has
        no majority of [a, b, c] on its side; membership cannot help across
        the split.
        """
        for seed in range(6):
            sim = five_nodes(seed)
            sim.voter_sets.update(d=J, e=J)
            sim.at(6.0, lambda s: (s.restart("d"), s.restart("e")))
            restart_with(sim, "b", J, 7.0)
            restart_with(sim, "a", N, 9.0)
            split_between(sim, 12.0, {"a", "d", "e"}, heal_after=6.0)
            sim.run_until(20.0)
            sim.check_safety()

    def test_a_node_two_steps_away_is_seen_and_nothing_is_acquired(self):
        sim = five_nodes(seed=1)
        sim.voter_sets.update(d=N, e=N)
        sim.at(6.0, lambda s: (s.restart("d"), s.restart("e")))
        sim.run_until(10.0)
        manager = sim.nodes["d"].core.manager
        self.assertEqual(manager.voters_apart(), ["a", "b", "c"])
        self.assertIn("voters-mismatch", [r.what for _, n, r in sim.reports if n == "d"])
        self.assertEqual(sim.nodes["b"].core.manager.voters_apart(), ["d", "e"])
        # a holds A and keeps it; when a dies nobody may take it over (which
        # side is right cannot be told) until d and e are in the joint step.
        self.assertEqual(sim.running("A"), ["a"])
        sim.at(10.0, lambda s: s.crash("a"))
        sim.run_until(16.0)
        self.assertEqual(sim.running("A"), [])
        restart_with(sim, "d", J, 16.0)
        restart_with(sim, "e", J, 16.0)
        sim.run_until(22.0)
        self.assertEqual(sim.running("A"), ["b"])
        self.assertIn("voters-agreed", [r.what for _, n, r in sim.reports if n == "b"])
        sim.check_safety()


class AdminStatusTests(unittest.TestCase):
    def test_status_names_the_change_and_the_nodes_apart(self):
        from clsd.admin.backend import QuorumInfo, Status
        from clsd.admin.commands import render_status

        quorum = QuorumInfo(NEW, True, previous_voters=OLD, voters_apart=("x",))
        text = render_status(Status(node="a", members=(), clusters=(), services=(),
                                    quorum=quorum))
        self.assertIn("(voters: a, b, c, d, e; changing from: a, b, c)", text)
        self.assertIn("other voter sets on x: nothing new is acquired", text)
