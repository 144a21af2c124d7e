"""A cluster's shape (mode, count, lease settings) must agree between nodes: voters, published
state, the manager's refusal, and the simulated rolling reload that changes ``mode``."""

import ipaddress

import attrs
from twisted.trial import unittest

from clsd.config.floating import FloatingAddress

from clsd.ownership.core.actions import Send
from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.messages import Prepare, Propose, WireError
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.published import MAX_FINGERPRINT, state_from_wire, state_to_wire
from clsd.ownership.core.shape import (
    SHAPE_KEYS, base, change_refusal, cluster_of, describe, detailed,
    differing, disagreeing, fingerprint, shape, shape_changed,
)
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voter import LeaseVoter
from rig.sim.leases import LeaseSim
from tests.ownership.scenarios import DETECTION, TIMING, cluster

T = LeaseTiming(lease=2.0, drift_margin=0.1)
OPEN = 100.0 + T.voter_quiet


def reply(actions):
    (send,) = [a for a in actions if isinstance(a, Send)]
    return send.message


class FingerprintTests(unittest.TestCase):
    def test_every_lease_relevant_setting_changes_it(self):
        base = cluster("A", 100)
        same = fingerprint(base, T, "voters")
        self.assertEqual(fingerprint(cluster("A", 5, preempt=True), T, "voters"), same)
        others = {
            fingerprint(cluster("A", 100, mode="n-active"), T, "voters"),
            fingerprint(cluster("A", 100, mode="n-active", count=2), T, "voters"),
            fingerprint(base, LeaseTiming(lease=3.0, drift_margin=0.1), "voters"),
            fingerprint(base, LeaseTiming(lease=2.0, drift_margin=0.2), "voters"),
            fingerprint(base, T, "etcd"),
        }
        self.assertEqual(len(others), 5)
        self.assertNotIn(same, others)

    def test_the_floating_address_is_part_of_it(self):
        v4 = FloatingAddress((ipaddress.ip_interface("192.0.2.10/24"),), "eth0")
        base = fingerprint(cluster("A", 100), T, "voters")
        with_address = fingerprint(cluster("A", 100, floating=v4), T, "voters")
        self.assertNotEqual(with_address, base)
        others = {
            fingerprint(cluster("A", 100, floating=attrs.evolve(
                v4, addresses=(ipaddress.ip_interface("192.0.2.11/24"),))), T, "voters"),
            fingerprint(cluster("A", 100, floating=attrs.evolve(v4, interface="eth1")),
                        T, "voters"),
            fingerprint(cluster("A", 100, floating=attrs.evolve(v4, order="after")),
                        T, "voters"),
        }
        self.assertEqual(len(others), 3)
        self.assertNotIn(with_address, others)
        # How often it is announced is this node's business.
        self.assertEqual(fingerprint(cluster("A", 100, floating=attrs.evolve(
            v4, announce_count=1)), T, "voters"), with_address)
        self.assertTrue(shape_changed(cluster("A", 1), cluster("A", 1, floating=v4)))
        self.assertFalse(shape_changed(cluster("A", 1, floating=v4),
                                       cluster("A", 1, floating=attrs.evolve(
                                           v4, announce_interval=1.0))))

    def test_cluster_of_a_lease_name(self):
        self.assertEqual((cluster_of("A"), cluster_of("A/3")), ("A", "A"))

    def test_shape_changed_only_for_mode_and_count(self):
        self.assertFalse(shape_changed(cluster("A", 1), cluster("A", 2, preempt=True)))
        self.assertTrue(shape_changed(cluster("A", 1), cluster("A", 1, mode="n-active")))

    def test_disagreeing_ignores_members_without_a_say(self):
        mine = "f1"
        members = [
            MemberState("b", registrations={"A": 1}, shapes={"A": "f2"}),
            MemberState("c", registrations={"A": 1}, shapes={"A": "f1"}),
            MemberState("d", registrations={"A": 1}),              # older daemon
            MemberState("e", registrations={"B": 1}, shapes={"B": "f2"}),
        ]
        self.assertEqual(disagreeing("A", mine, members), ["b"])


class DetailedShapeTests(unittest.TestCase):
    """While nodes disagree they publish per-setting digests, so each names what differs."""

    def test_it_names_each_setting_that_differs(self):
        mine = detailed(cluster("A", 100), T, "voters")
        self.assertEqual(base(mine), fingerprint(cluster("A", 100), T, "voters"))
        self.assertLessEqual(len(mine), MAX_FINGERPRINT)
        other_lease = detailed(cluster("A", 100), LeaseTiming(lease=3.0, drift_margin=0.1),
                               "voters")
        self.assertEqual(differing(mine, other_lease), ["lease"])
        n_active = detailed(cluster("A", 100, mode="n-active", count=2), T, "etcd")
        self.assertEqual(differing(mine, n_active), ["mode", "count", "arbiter"])
        group = detailed(cluster("A", 100, services=("vol", "db")), T, "voters")
        self.assertEqual(differing(mine, group), ["services"])
        self.assertEqual(differing(mine, mine), [])

    def test_a_bare_fingerprint_names_nothing(self):
        mine = detailed(cluster("A", 100), T, "voters")
        self.assertEqual(differing(mine, "0123456789ab"), [])
        self.assertEqual(differing("0123456789ab", mine), [])

    def test_a_peer_that_knows_fewer_settings_compares_the_ones_both_know(self):
        mine = detailed(cluster("A", 100, mode="n-active", count=2), T, "voters")
        older = detailed(cluster("A", 100), T, "voters")[:-2]  # one setting fewer
        self.assertEqual(differing(mine, older), ["mode", "count"])

    def test_every_shape_key_is_named(self):
        v4 = FloatingAddress((ipaddress.ip_interface("192.0.2.10/24"),), "eth0")
        full = shape(cluster("A", 100, mode="n-active", count=2, services=("a", "b"),
                             after=("DB",), with_=("X",), not_with=("Y",),
                             after_failover="stop", floating=v4), T, "voters")
        self.assertEqual(set(full) - set(SHAPE_KEYS), set())

    def test_disagreement_compares_the_fingerprint_part_only(self):
        mine = fingerprint(cluster("A", 100), T, "voters")
        members = [MemberState("b", registrations={"A": 1},
                               shapes={"A": detailed(cluster("A", 100), T, "voters")})]
        self.assertEqual(disagreeing("A", mine, members), [])
        self.assertIsNone(change_refusal("A", mine, True, members))

    def test_describe(self):
        self.assertEqual(describe({"gamma": [], "beta": ["lease", "address"]}),
                         "beta (lease, address), gamma")


class ChangeRefusalTests(unittest.TestCase):
    def test_the_nodes_that_run_it_change_last(self):
        idle_old = MemberState("z", registrations={"N": 1}, shapes={"N": "old"})
        idle_new = MemberState("z", registrations={"N": 1}, shapes={"N": "new"})
        running_old = MemberState("y", registrations={"N": 1}, shapes={"N": "old"},
                                  holding={"N/1": 7})
        self.assertIsNone(change_refusal("N", "new", False, [idle_old, running_old]))
        refusal = change_refusal("N", "new", True, [idle_old, running_old])
        self.assertIn("z still has its old mode/count", refusal)
        # Another node that runs it (n-active) is no reason to wait: it changes after us.
        self.assertIsNone(change_refusal("N", "new", True, [idle_new, running_old]))
        older = MemberState("x", registrations={"N": 1})  # publishes no fingerprint
        self.assertIn("x still has", change_refusal("N", "new", True, [older]))


class VoterShapeTests(unittest.TestCase):
    """The voter keeps ``A`` and ``A/k`` of one cluster apart, whatever membership says."""

    def setUp(self):
        self.voter = LeaseVoter("v1", T, 100.0)

    def grant(self, resource, counter, node, now=OPEN):
        ballot = Ballot(counter, node, 1)
        self.voter.receive(node, Prepare(resource, ballot), now)
        return reply(self.voter.receive(node, Propose(resource, ballot, T.lease, counter), now))

    def test_no_slot_grant_beside_another_owners_whole_cluster_grant(self):
        self.assertTrue(self.grant("A", 5, "alpha").ok)
        answer = self.grant("A/0", 6, "beta", OPEN + 0.5)
        self.assertEqual((answer.ok, answer.reason), (False, "held"))
        self.assertAlmostEqual(answer.remaining, T.lease - 0.5)
        # The Prepare already shows the other shape's holder, so beta waits.
        promise = reply(self.voter.receive("beta", Prepare("A/0", Ballot(9, "beta", 1)),
                                           OPEN + 0.5))
        self.assertEqual((promise.ok, tuple(promise.holder)), (True, ("alpha", 1)))
        # Another cluster's slots are not affected.
        self.assertTrue(self.grant("AB/0", 10, "beta", OPEN + 0.5).ok)
        # Once alpha's grant expired, beta gets the slot.
        self.assertTrue(self.grant("A/0", 11, "beta", OPEN + T.lease).ok)

    def test_no_whole_cluster_grant_beside_another_owners_slot(self):
        self.assertTrue(self.grant("A/1", 5, "beta").ok)
        answer = self.grant("A", 6, "alpha", OPEN + 0.5)
        self.assertEqual((answer.ok, answer.reason), (False, "held"))

    def test_the_same_owner_may_hold_both(self):
        self.assertTrue(self.grant("A", 5, "alpha").ok)
        self.assertTrue(self.grant("A/0", 6, "alpha").ok)

    def test_slots_of_one_shape_do_not_block_each_other(self):
        self.assertTrue(self.grant("A/0", 5, "alpha").ok)
        self.assertTrue(self.grant("A/1", 3, "beta").ok)

    def test_the_epoch_grows_across_a_change_of_mode(self):
        self.assertTrue(self.grant("A", 40, "alpha").ok)
        answer = reply(self.voter.receive("beta", Prepare("A/0", Ballot(3, "beta", 1)),
                                          OPEN + T.lease))
        self.assertEqual((answer.ok, answer.reason, answer.promised), (False, "stale", 40))
        self.assertTrue(self.grant("A/0", 41, "beta", OPEN + T.lease).ok)
        answer = reply(self.voter.receive("alpha", Prepare("A", Ballot(41, "alpha", 1)),
                                          OPEN + 2 * T.lease))
        self.assertEqual((answer.ok, answer.promised), (False, 41))


class PublishedShapeTests(unittest.TestCase):
    def test_round_trip_and_optional(self):
        state = MemberState("beta", registrations={"A": 1}, shapes={"A": "0123456789ab"})
        wire = state_to_wire(state)
        self.assertEqual(wire["shapes"], {"A": "0123456789ab"})
        self.assertEqual(state_from_wire("beta", wire), state)
        del wire["shapes"]  # what an older daemon publishes
        self.assertEqual(state_from_wire("beta", wire).shapes, {})

    def test_bad_shapes_are_named(self):
        good = state_to_wire(MemberState("beta", registrations={"A": 1}, shapes={"A": "f"}))
        cases = [
            ({**good, "shapes": []}, "'shapes' must be an object"),
            ({**good, "shapes": {"B": "f"}}, "not registered for"),
            ({**good, "shapes": {"A": 7}}, "must be a string"),
            ({**good, "shapes": {"A": "f" * 65}}, "must be a string"),
        ]
        for data, words in cases:
            with self.assertRaises(WireError) as e:
                state_from_wire("beta", data)
            self.assertIn(words, str(e.exception))


def mixed_shapes(**sim_kw):
    """alpha runs A active-standby; beta (higher priority) has it n-active with one copy."""
    nodes = {
        "alpha": (cluster("A", 100),),
        "beta": (cluster("A", 200, mode="n-active", count=1),),
        "witness": (),
    }
    return LeaseSim(nodes, ["alpha", "beta", "witness"], TIMING, detection=DETECTION,
                    **sim_kw)


def without_membership_check(sim):
    """Every node behaves like a daemon that publishes no shape: only the voters' rule is left."""
    for node in sim.nodes.values():
        node.core.manager.shape_mismatch = lambda cluster_id: []


class MixedShapeSimTests(unittest.TestCase):
    def test_voters_alone_keep_two_shapes_from_running_at_once(self):
        for seed in range(6):
            sim = mixed_shapes(seed=seed)
            without_membership_check(sim)
            # alpha takes A while beta is down; beta then ranks first for A/0,
            # which nobody holds.
            sim.at(0.0, lambda s: s.crash("beta"))
            sim.at(5.0, lambda s: s.restart("beta"))
            sim.at(5.0, without_membership_check)
            sim.run_until(20.0)
            sim.check_safety()
            self.assertEqual(sim.running("A"), ["alpha"])

    def test_a_node_whose_shape_differs_does_not_acquire_and_says_so(self):
        sim = mixed_shapes(seed=3)
        sim.run_until(10.0)
        sim.check_safety()
        # No live registered node agrees with another: nobody may run it.
        self.assertEqual(sim.running("A"), [])
        reports = [(n, r.what, r.reason) for _, n, r in sim.reports
                   if r.what == "shape-mismatch"]
        # Each reports it, and again once the other names the settings that differ.
        self.assertEqual(sorted(set(n for n, _, _ in reports)), ["alpha", "beta"])
        self.assertIn("beta", dict((n, why) for n, _, why in reports)["alpha"])
        beta = sim.nodes["beta"].core.manager
        self.assertEqual(beta.shape_mismatch("A"), ["alpha"])
        # Both name what differs once each has seen the other disagree.
        self.assertEqual(beta.shape_differences("A"), {"alpha": ["mode"]})
        self.assertIn("between beta and alpha (mode)",
                      [why for n, _, why in reports if n == "beta"][-1])
        self.assertEqual(beta.status(sim.local("beta"))["A/0"][0], "shape-mismatch")
        # The disagreeing node leaves: the other acquires, and says so.
        sim.at(10.0, lambda s: s.crash("alpha"))
        sim.run_until(16.0)
        self.assertEqual(sim.running("A"), ["beta"])
        self.assertIn("shape-agreed", [r.what for _, n, r in sim.reports if n == "beta"])
        sim.check_safety()

    def test_nodes_with_other_group_members_do_not_co_own_and_say_who(self):
        nodes = {"alpha": (cluster("A", 100, services=("vol", "db")),),
                 "beta": (cluster("A", 200, services=("vol", "db", "exp")),),
                 "witness": ()}
        sim = LeaseSim(nodes, ["alpha", "beta", "witness"], TIMING, detection=DETECTION,
                       seed=5)
        sim.run_until(10.0)
        sim.check_safety()
        self.assertEqual(sim.running("A"), [])
        reasons = {n: r.reason for _, n, r in sim.reports if r.what == "shape-mismatch"}
        self.assertIn("group members", reasons["alpha"])
        self.assertIn("between alpha and beta", reasons["alpha"])
        self.assertIn("between beta and alpha", reasons["beta"])
        # The same members in the same order agree.
        same = {"alpha": (cluster("A", 100, services=("vol", "db")),),
                "beta": (cluster("A", 200, services=("vol", "db")),), "witness": ()}
        sim = LeaseSim(same, ["alpha", "beta", "witness"], TIMING, detection=DETECTION, seed=5)
        sim.run_until(10.0)
        self.assertEqual(sim.running("A"), ["beta"])

    def test_rolling_reload_that_changes_mode(self):
        """alpha holds A; beta, then alpha, are reloaded to n-active (count 1)."""
        for seed in range(4):
            nodes = {"alpha": (cluster("A", 100),), "beta": (cluster("A", 50),),
                     "witness": ()}
            sim = LeaseSim(nodes, ["alpha", "beta", "witness"], TIMING, detection=DETECTION,
                           seed=seed)
            sim.run_until(6.0)
            self.assertEqual(sim.running("A"), ["alpha"])
            first_epoch = sim.service_log["A"][0].epoch
            # beta now ranks first for A/0, which nobody holds: without the shape
            # rule it starts a second copy beside alpha's.
            sim.at(6.0, lambda s: s.reconfigure(
                "beta", (cluster("A", 200, mode="n-active", count=1),)))
            sim.run_until(12.0)
            sim.check_safety()
            self.assertEqual(sim.running("A"), ["alpha"])
            self.assertEqual(sim.nodes["beta"].core.manager.shape_mismatch("A"), ["alpha"])
            sim.at(12.0, lambda s: s.reconfigure(
                "alpha", (cluster("A", 100, mode="n-active", count=1),)))
            sim.run_until(20.0)
            sim.check_safety()
            self.assertEqual(sim.running("A"), ["beta"])
            (latest,) = sim.service_log["A/0"]
            self.assertGreater(latest.epoch, first_epoch)


class NamedEventTests(unittest.TestCase):
    def test_the_reports_are_named_log_events(self):
        from clsd.named_events import named_events

        record = {"kind": "cluster", "subject": "A", "reason": "",
                  "fields": {"what": "shape-mismatch", "why": "differ from beta"}}
        self.assertEqual(named_events(record),
                         [("cluster.mismatch", {"cluster": "A", "reason": "differ from beta"})])
        record["fields"] = {"what": "shape-agreed"}
        self.assertEqual(named_events(record), [("cluster.agreed", {"cluster": "A"})])
        record = {"kind": "ownership", "subject": "alpha", "reason": "",
                  "fields": {"what": "voters-mismatch", "why": "x"}}
        self.assertEqual(named_events(record), [("voters.apart", {"reason": "x"})])
