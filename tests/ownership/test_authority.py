"""Who may send what (issue 16): the sans-IO rules of lease and cluster messages.

Forgeries (a claim that is not the sender's) are refused by
L{OwnershipNode.authorise} and never acted on by L{OwnershipNode.receive};
policy refusals (not registered, over budget, a counter jump, a floor that
cannot be stored) are the voter's answers with a reason.
"""

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.ownership.core.actions import PersistEpochFloor, Report, Send
from clsd.ownership.core.arbiter import QuorumArbiter
from clsd.ownership.core.authority import forgery
from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.manager import ClusterManager, stall_after
from clsd.ownership.core.messages import (
    Accepted, Handover, MoveRequest, Prepare, Promise, Propose, Release,
)
from clsd.ownership.core.node import OwnershipNode
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.ratelimit import BURST, RATE_PER_LEASE, RequestBudget
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voter import MAX_COUNTER_JUMP, LeaseVoter
from tests.ownership.test_manager import spec

T = LeaseTiming(lease=2.0, drift_margin=0.1)
START = 100.0
OPEN = START + T.voter_quiet
VOTERS = ("alpha", "beta", "witness")


def replies(actions):
    return [a.message for a in actions if isinstance(a, Send)]


def reply(actions):
    (message,) = replies(actions)
    return message


def make_node(name="witness", clusters=(), voter=True):
    arbiter = QuorumArbiter(name, 7, VOTERS, T, random.Random(1))
    manager = ClusterManager(name, list(clusters), arbiter, T, START, voters=VOTERS)
    v = LeaseVoter(name, T, START) if voter else None
    return OwnershipNode(name, v, manager, voters=VOTERS)


ALPHA = MemberState("alpha", registrations={"A": 100}, holding={"A": 5})
BETA = MemberState("beta", registrations={"A": 50})

# -- the property: a copy naming someone else is refused -------------------------------

names = st.sampled_from(["alpha", "beta", "witness", "mallory", "gamma"])
resources = st.sampled_from(["A", "A/0", "B"])
counters = st.integers(0, 2**40)


def ballot_of(node):
    return st.builds(Ballot, counters, st.just(node), st.integers(0, 2**62))


@st.composite
def forged_messages(draw):
    """(sender, message) where the message names a node other than the sender in a role."""
    sender = draw(names)
    other = draw(names.filter(lambda n: n != sender))
    kind = draw(st.sampled_from(["prepare", "propose", "release", "promise", "accepted",
                                 "move", "handover"]))
    resource = draw(resources)
    if kind == "prepare":
        return sender, Prepare(resource, draw(ballot_of(other)))
    if kind == "release":
        return sender, Release(resource, draw(ballot_of(other)))
    if kind == "propose":
        ballot = draw(ballot_of(other))
        return sender, Propose(resource, ballot, 2.0, ballot.counter)
    if kind in ("promise", "accepted"):
        # A voter's reply answering another node's ballot, or from a non-voter.
        if draw(st.booleans()):
            answered = draw(names.filter(lambda n: n != "witness"))
            ballot, sender = draw(ballot_of(answered)), draw(st.sampled_from(VOTERS))
        else:
            ballot, sender = draw(ballot_of("witness")), draw(st.sampled_from(["mallory",
                                                                               "gamma"]))
        cls = Promise if kind == "promise" else Accepted
        return sender, cls(resource, ballot, ok=True)
    if kind == "move":
        return sender, MoveRequest("A", "beta", by=other)
    # A handover from someone who is not the known holder (alpha).
    sender = draw(names.filter(lambda n: n != "alpha"))
    return sender, Handover("A", 5)


class ForgeryPropertyTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None)
    @given(forged_messages())
    def test_a_message_naming_another_node_is_refused(self, case):
        sender, message = case
        node = make_node("witness", clusters=[spec()])
        node.members_changed([ALPHA, BETA], OPEN)
        self.assertIsNotNone(node.authorise(sender, message),
                             f"{message!r} from {sender!r} was not refused")
        # The core never acts on it, even when the shell did not ask first.
        before = node.voter._resources.copy()
        self.assertEqual(node.receive(sender, message, OPEN), [])
        self.assertEqual(node.voter._resources, before)

    @settings(max_examples=200, deadline=None)
    @given(names, resources, counters)
    def test_the_senders_own_ballot_is_not_a_forgery(self, sender, resource, counter):
        ballot = Ballot(counter, sender, 1)
        for message in (Prepare(resource, ballot), Release(resource, ballot),
                        Propose(resource, ballot, 2.0, counter)):
            self.assertIsNone(forgery(sender, message, node="w", voters=VOTERS, holders=()))


class ClaimTests(unittest.TestCase):
    def test_release_naming_the_holder_from_another_is_forged_and_changes_nothing(self):
        """Attack 1: mallory releases alpha's grant in alpha's name."""
        node = make_node()
        node.members_changed([ALPHA, BETA], OPEN)
        alpha = Ballot(10, "alpha", 3)
        node.receive("alpha", Prepare("A", alpha), OPEN)
        self.assertTrue(reply(node.receive("alpha", Propose("A", alpha, 2.0, 10), OPEN)).ok)
        forged = Release("A", Ballot(11, "alpha", 3))
        refusal = node.authorise("mallory", forged)
        self.assertEqual(refusal.claimed, "alpha")
        self.assertIn("sent by 'mallory'", refusal.detail)
        node.receive("mallory", forged, OPEN + 0.1)
        self.assertEqual(node.voter.holder("A", OPEN + 0.1)[0], ("alpha", 3))

    def test_replies_only_from_voters_and_for_this_node(self):
        node = make_node("alpha", clusters=[spec()])
        mine = Ballot(3, "alpha", 7)
        self.assertIsNone(node.authorise("beta", Promise("A", mine, ok=True)))
        self.assertEqual(node.authorise("mallory", Promise("A", mine, ok=True)).claimed,
                         "mallory")
        refusal = node.authorise("beta", Accepted("A", Ballot(3, "gamma", 1), ok=True))
        self.assertEqual(refusal.claimed, "gamma")

    def test_handover_only_from_the_known_holder(self):
        node = make_node("beta", clusters=[spec(priority=50)])
        self.assertIsNone(node.authorise("mallory", Handover("A", 5)),
                          "no holder known: nothing to check against, not a forgery")
        node.members_changed([ALPHA], OPEN)
        self.assertIsNone(node.authorise("alpha", Handover("A", 5)))
        refusal = node.authorise("mallory", Handover("A", 5))
        self.assertEqual(refusal.claimed, "alpha")
        # Alpha published its release (holding gone) before its handover came: still alpha.
        node.members_changed([MemberState("alpha", registrations={"A": 100})], OPEN + 1)
        self.assertIsNone(node.authorise("alpha", Handover("A", 5)))
        self.assertIsNotNone(node.authorise("mallory", Handover("A", 5)))

    def test_move_by_must_be_the_sender(self):
        node = make_node("alpha", clusters=[spec()])
        self.assertIsNone(node.authorise("beta", MoveRequest("A", "beta", by="beta")))
        self.assertIsNone(node.authorise("beta", MoveRequest("A", "beta")))
        self.assertEqual(node.authorise("mallory", MoveRequest("A", "beta", by="beta")).claimed,
                         "beta")


class RoleTests(unittest.TestCase):
    def setUp(self):
        self.node = make_node()
        self.node.members_changed([ALPHA, BETA], OPEN)

    def test_only_registered_members_are_answered(self):
        answer = reply(self.node.receive("mallory", Prepare("A", Ballot(1, "mallory", 1)), OPEN))
        self.assertEqual((answer.ok, answer.reason), (False, "not-registered"))
        answer = reply(self.node.receive("beta", Prepare("B", Ballot(1, "beta", 1)), OPEN))
        self.assertEqual((answer.ok, answer.reason), (False, "not-registered"))
        self.assertTrue(reply(self.node.receive("beta", Prepare("A", Ballot(1, "beta", 1)),
                                                OPEN)).ok)
        self.assertNotIn("B", self.node.voter._resources, "a refusal keeps no state")

    def test_a_registered_slot_of_an_n_active_cluster(self):
        self.node.members_changed([MemberState("gamma", registrations={"N": 1})], OPEN)
        self.assertTrue(reply(self.node.receive("gamma", Prepare("N/1", Ballot(1, "gamma", 1)),
                                                OPEN)).ok)

    def test_the_holder_keeps_renewing_once_its_registration_is_gone(self):
        alpha = Ballot(1, "alpha", 3)
        self.node.receive("alpha", Prepare("A", alpha), OPEN)
        self.assertTrue(reply(self.node.receive("alpha", Propose("A", alpha, 2.0, 1), OPEN)).ok)
        self.node.members_changed([BETA], OPEN + 0.5)  # alpha withdrawing, or a lagging list
        renewal = Ballot(2, "alpha", 3)
        self.assertTrue(reply(self.node.receive("alpha", Propose("A", renewal, 2.0, 1),
                                                OPEN + 0.6)).ok)

    def test_a_proposer_on_this_node_counts_as_registered(self):
        node = make_node("alpha", clusters=[spec()])
        node.members_changed([], OPEN)
        answer = reply(node.voter.receive("alpha", Prepare("A", Ballot(1, "alpha", 7)), OPEN,
                                          registered=node._registered("alpha", "A")))
        self.assertTrue(answer.ok)
        self.assertFalse(node._registered("alpha", "B"))


class StormTests(unittest.TestCase):
    """Attack 3: a registered sender's prepare storm costs the stormer, not the holder."""

    def setUp(self):
        self.voter = LeaseVoter("witness", T, START)
        alpha = Ballot(10, "alpha", 3)
        self.voter.receive("alpha", Prepare("A", alpha), OPEN)
        self.voter.receive("alpha", Propose("A", alpha, T.lease, 10), OPEN)

    def test_a_storm_of_rising_counters_does_not_outbid_the_holders_renewals(self):
        now, counter, renewal, refused = OPEN, 100, 11, 0
        next_renewal = OPEN + T.renew_after
        while now < OPEN + 20.0:
            answer = reply(self.voter.receive("beta", Prepare("A", Ballot(counter, "beta", 1)),
                                              now))
            counter += 1000
            if answer.ok:
                self.assertEqual(answer.holder, ("alpha", 3), "the holder is shown")
            else:
                refused += 1
                self.assertEqual(answer.reason, "rate-limited")
            if now >= next_renewal:
                ok = reply(self.voter.receive(
                    "alpha", Propose("A", Ballot(renewal, "alpha", 3), T.lease, 10), now))
                self.assertTrue(ok.ok, f"the holder's renewal at {now - OPEN:.2f} s: {ok}")
                renewal += 1
                next_renewal = now + T.renew_after
            now += 0.05
        self.assertGreater(refused, 0)
        self.assertEqual(self.voter.holder("A", now)[0], ("alpha", 3))

    def test_after_the_grant_ends_the_successor_is_promised(self):
        after = OPEN + T.lease + 0.01
        answer = reply(self.voter.receive("beta", Prepare("A", Ballot(50, "beta", 1)), after))
        self.assertTrue(answer.ok)
        self.assertIsNone(answer.holder)
        self.assertTrue(reply(self.voter.receive(
            "beta", Propose("A", Ballot(50, "beta", 1), T.lease, 50), after)).ok)

    def test_release_in_anothers_name_while_held_is_dropped(self):
        self.assertEqual(self.voter.receive("beta", Release("A", Ballot(99, "beta", 1)),
                                            OPEN + 0.1), [])
        self.assertEqual(self.voter._resources["A"].promised.node, "alpha")

    def test_the_budget_allows_the_documented_rate(self):
        budget = RequestBudget.for_lease(T.lease)
        allowed = sum(budget.take("k", i * 0.01) for i in range(int(10 * T.lease / 0.01)))
        # 10 leases at 100 requests/s: the burst plus the rate, nothing more.
        self.assertLessEqual(abs(allowed - (BURST + 10 * RATE_PER_LEASE)), 2)
        budget.prune(1000.0)
        self.assertEqual(len(budget), 0)


class CounterTests(unittest.TestCase):
    def test_a_counter_may_not_jump_more_than_2_to_the_32(self):
        voter = LeaseVoter("w", T, START, epoch_floor=0, reserve_block=100)
        voter.persisted(10**12)
        answer = reply(voter.receive("a", Prepare("A", Ballot(MAX_COUNTER_JUMP + 10**12 + 1,
                                                               "a", 1)), OPEN))
        self.assertEqual((answer.ok, answer.reason), (False, "counter-jump"))
        actions = voter.receive("a", Prepare("A", Ballot(2**63 - 1, "a", 1)), OPEN)
        self.assertEqual([a for a in actions if isinstance(a, PersistEpochFloor)], [],
                         "a refused counter reserves nothing")
        self.assertTrue(reply(voter.receive("a", Prepare("A", Ballot(5, "a", 1)), OPEN)).ok)

    def test_at_most_one_floor_write_per_interval(self):
        """A sender climbing by large jumps on its own resource costs one write a second."""
        voter = LeaseVoter("w", T, START, epoch_floor=0, reserve_block=100)
        voter.start()
        voter.persisted(100)
        writes, promised = [], 0

        def prepare(counter, now):
            actions = voter.receive("a", Prepare("A", Ballot(counter, "a", 1)), now)
            new = [a for a in actions if isinstance(a, PersistEpochFloor)]
            writes.extend(new)
            for write in new:
                voter.persisted(write.value)
            return reply(actions)

        for step in range(20):  # 20 jumps in 0.95 s, each within the jump bound
            now = OPEN + step * 0.05
            answer = prepare(promised + MAX_COUNTER_JUMP, now)
            if not answer.ok:
                self.assertEqual(answer.reason, "reserving")
                answer = prepare(promised + MAX_COUNTER_JUMP, now)  # reserved now?
            if answer.ok:
                promised += MAX_COUNTER_JUMP
        self.assertEqual(len(writes), 1)
        self.assertEqual(promised, MAX_COUNTER_JUMP, "one jump got through, the rest waited")
        from clsd.ownership.core.voter import RESERVE_INTERVAL
        self.assertFalse(prepare(2 * MAX_COUNTER_JUMP, OPEN + RESERVE_INTERVAL).ok)
        self.assertEqual(len(writes), 2, "the next block after the interval")

    def test_the_voter_grants_nothing_while_its_floor_cannot_be_stored(self):
        voter = LeaseVoter("w", T, START, epoch_floor=0, reserve_block=100)
        voter.start()
        voter.floor_failed(100, "disk full")
        answer = reply(voter.receive("a", Prepare("A", Ballot(1, "a", 1)), OPEN))
        self.assertEqual((answer.ok, answer.reason), (False, "floor-unsaved"))
        voter.persisted(100)
        self.assertTrue(reply(voter.receive("a", Prepare("A", Ballot(1, "a", 1)), OPEN)).ok)


class MoveTests(unittest.TestCase):
    def holder(self):
        node = make_node("alpha", clusters=[spec()], voter=False)
        m = node.manager
        m.members_changed([BETA], START)
        return node, m

    def test_a_move_from_a_non_member_is_refused_and_reported(self):
        node, m = self.holder()
        out = m.receive("mallory", MoveRequest("A", "beta", by="mallory", key="SHA256:x"), START)
        (report,) = [a for a in out if isinstance(a, Report)]
        self.assertEqual((report.what, report.by, report.key, report.target),
                         ("move-refused", "mallory", "SHA256:x", "beta"))

    def test_a_members_move_that_cannot_be_done_is_refused_with_the_reason(self):
        node, m = self.holder()
        out = m.receive("beta", MoveRequest("A", "beta", by="beta", key="SHA256:k"), START)
        (report,) = [a for a in out if isinstance(a, Report)]
        self.assertEqual((report.what, report.by, report.key),
                         ("move-refused", "beta", "SHA256:k"))
        self.assertIn("nobody holds it", report.reason)  # alpha holds nothing: says why

    def test_a_request_is_never_passed_on(self):
        node, m = self.holder()
        m.members_changed([BETA, MemberState("gamma", registrations={"A": 1},
                                             holding={"A": 4})], START)
        out = m.receive("beta", MoveRequest("A", "beta", by="beta"), START)
        self.assertEqual([a for a in out if isinstance(a, Send)], [])
        (report,) = [a for a in out if isinstance(a, Report)]
        self.assertIn("does not hold it", report.reason)

    def test_the_operator_s_key_travels_to_the_holder(self):
        node, m = self.holder()
        m.members_changed([MemberState("beta", registrations={"A": 50}, holding={"A": 4})],
                          START)
        out = m.move("A", "beta", START, key="SHA256:abc")
        self.assertEqual(replies(out), [MoveRequest("A", "beta", by="alpha", key="SHA256:abc")])


class StallTests(unittest.TestCase):
    """Attack 2: a node placed first that never takes the cluster is skipped after a bound."""

    def test_a_target_that_never_acquires_is_skipped_and_the_next_one_acquires(self):
        node = make_node("alpha", clusters=[spec(priority=100)], voter=False)
        m = node.manager
        mallory = MemberState("mallory", registrations={"A": 1_000_000})
        others = [MemberState("beta", registrations={"A": 50}), MemberState("witness")]
        m.members_changed([mallory] + others, START)
        self.assertEqual(m.status(START).get("A", ("idle",))[0], "idle")
        bound = stall_after(T)
        m.tick(START + bound - 0.01)
        self.assertFalse(m.stalled("mallory", "A", START + bound - 0.01))
        out = m.tick(START + bound)
        (report,) = [a for a in out if isinstance(a, Report) and a.what == "stalled"]
        self.assertEqual(report.target, "mallory")
        self.assertEqual(m.status(START + bound)["A"][0], "acquiring")
        self.assertLessEqual(m.next_wakeup(), START + bound + T.lease)

    def test_no_quorum_in_view_blames_nobody(self):
        node = make_node("alpha", clusters=[spec(priority=100)], voter=False)
        m = node.manager
        m.members_changed([MemberState("mallory", registrations={"A": 1_000_000})], START)
        out = m.tick(START + 10 * stall_after(T))
        self.assertEqual([a for a in out if isinstance(a, Report) and a.what == "stalled"], [])
        self.assertFalse(m.stalled("mallory", "A", START + 10 * stall_after(T)))

    def test_a_stalled_node_cannot_be_moved_to(self):
        node = make_node("alpha", clusters=[spec(priority=100)], voter=False)
        m = node.manager
        m.members_changed([MemberState("mallory", registrations={"A": 1_000_000}),
                           MemberState("beta", registrations={"A": 50}),
                           MemberState("witness")], START)
        m.tick(START + stall_after(T))
        self.assertTrue(m.stalled("mallory", "A", START + stall_after(T)))
        from clsd.ownership.core.manager import ManagerError
        e = self.assertRaises(ManagerError, m.move, "A", "mallory", START + stall_after(T))
        self.assertIn("did not take it in time", str(e))
