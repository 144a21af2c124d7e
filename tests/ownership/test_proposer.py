"""The lease holder: acquire, renew with one message, stop in time, release, fenced voters."""

import random

from twisted.trial import unittest

from clsd.ownership.core.actions import Send
from clsd.ownership.core.arbiter import IArbiter, QuorumArbiter
from clsd.ownership.core.arbiter_events import (
    LeaseAcquired, LeaseEnding, LeaseLost, LeaseObserved, LeaseRenewed,
)
from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.messages import Prepare, Propose, Release
from clsd.ownership.core.proposer import LeaseProposer
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voter import LeaseVoter
from zope.interface.verify import verifyObject

T = LeaseTiming(lease=2.0, drift_margin=0.1)
NOW = 10.0


class Net:
    """Voters that answer at once; C{reachable} decides who hears what."""

    def __init__(self, names=("v1", "v2", "v3")):
        self.voters = {n: LeaseVoter(n, T, NOW - 100) for n in names}
        self.reachable = set(names)
        self.sent = []

    def run(self, proposer, items, now):
        events = []
        pending = list(items)
        while pending:
            item = pending.pop(0)
            if isinstance(item, Send):
                self.sent.append(item)
                if item.to in self.reachable:
                    for answer in self.voters[item.to].receive(proposer.node, item.message, now):
                        pending += proposer.receive(item.to, answer.message, now)
            else:
                events.append(item)
        return events


def make(net, node="a", gen=1):
    return LeaseProposer("X", node, gen, sorted(net.voters), T, random.Random(0))


class AcquireTests(unittest.TestCase):
    def test_acquire_with_a_majority(self):
        net = Net()
        p = make(net)
        events = net.run(p, p.acquire(NOW), NOW)
        acquired = [e for e in events if isinstance(e, LeaseAcquired)]
        self.assertEqual(len(acquired), 1)
        # Counted from when the Propose was sent, minus the margin.
        self.assertEqual(acquired[0].expiry, NOW + T.lease - T.drift_margin)
        self.assertEqual(p.holding(NOW), (acquired[0].epoch, acquired[0].expiry))

    def test_minority_cannot_acquire(self):
        net = Net()
        net.reachable = {"v1"}
        p = make(net)
        events = net.run(p, p.acquire(NOW), NOW)
        events += net.run(p, p.tick(NOW + T.round_timeout), NOW + T.round_timeout)
        self.assertFalse([e for e in events if isinstance(e, LeaseAcquired)])
        self.assertIsNone(p.holding(NOW + 1))
        # It keeps retrying.
        self.assertIsNotNone(p.next_wakeup())

    def test_second_proposer_sees_the_holder_and_waits(self):
        net = Net()
        a, c = make(net, "a"), make(net, "c")
        net.run(a, a.acquire(NOW), NOW)
        events = net.run(c, c.acquire(NOW + 0.5), NOW + 0.5)
        # Outbid once (same counter as 'a'): it retries soon with a higher one.
        retry = c.next_wakeup()
        self.assertLess(retry, NOW + 0.5 + 5 * T.retry_slack)
        events += net.run(c, c.tick(retry), retry)
        observed = [e for e in events if isinstance(e, LeaseObserved) and e.holder]
        self.assertEqual(observed[-1].holder, "a")
        self.assertIsNone(c.holding(retry))
        # Next try just after the voters' grant ends.
        self.assertAlmostEqual(c.next_wakeup(), retry + observed[-1].remaining
                               + T.retry_slack, places=6)


    def test_after_a_handover_a_release_in_flight_is_not_waited_out(self):
        """A voter that has not yet heard the holder's Release delays the successor briefly."""
        net, c, late = released_but_not_to_v1()
        # The Handover arrives; v1 answers c before a's Release reaches it.
        blocked = until_blocked_by_grant(net, c, c.acquire(NOW + 0.2) + c.hurry(NOW + 0.2))
        first = c.next_wakeup()
        self.assertAlmostEqual(first - blocked, T.retry_slack, places=6)
        # Still there: the pause doubles; the grant still blocks the round.
        events = net.run(c, c.tick(first), first)
        self.assertFalse([e for e in events if isinstance(e, LeaseAcquired)])
        second = c.next_wakeup()
        self.assertAlmostEqual(second - first, 2 * T.retry_slack, places=6)
        # The Release lands: the next try acquires, long before a's grant would end.
        for send in late:
            net.voters["v1"].receive("a", send.message, second)
        events = net.run(c, c.tick(second), second)
        self.assertEqual(len([e for e in events if isinstance(e, LeaseAcquired)]), 1)
        self.assertLess(second, NOW + T.lease / 4)

    def test_without_a_hurry_a_grant_is_waited_out(self):
        net, c, _ = released_but_not_to_v1()
        blocked = until_blocked_by_grant(net, c, c.acquire(NOW + 0.2))
        self.assertGreater(c.next_wakeup() - blocked, T.lease / 2)


def released_but_not_to_v1():
    """'a' held the lease and released it; its Release to v1 is still in flight."""
    net = Net()
    a, c = make(net, "a"), make(net, "c")
    net.run(a, a.acquire(NOW), NOW)
    release = a.release(NOW + 0.2)
    net.reachable = {"v2", "v3"}
    net.run(a, release, NOW + 0.2)
    net.reachable = {"v1", "v2", "v3"}
    return net, c, [send for send in release if send.to == "v1"]


def until_blocked_by_grant(net, proposer, actions):
    """Run C{proposer}'s rounds until a voter shows it another's grant; return when."""
    now = NOW + 0.2
    events = net.run(proposer, actions, now)
    while not [e for e in events if isinstance(e, LeaseObserved) and e.holder]:
        assert not [e for e in events if isinstance(e, LeaseAcquired)]
        now = proposer.next_wakeup()
        events = net.run(proposer, proposer.tick(now), now)
    return now

class RenewalTests(unittest.TestCase):
    def setUp(self):
        self.net = Net()
        self.p = make(self.net)
        (self.acq,) = [e for e in self.net.run(self.p, self.p.acquire(NOW), NOW)
                       if isinstance(e, LeaseAcquired)]

    def test_renews_at_a_third_with_a_single_propose(self):
        at = NOW + T.renew_after
        self.assertEqual(self.p.next_wakeup(), at)
        self.net.sent.clear()
        events = self.net.run(self.p, self.p.tick(at), at)
        self.assertEqual({type(s.message) for s in self.net.sent}, {Propose})
        (renewed,) = [e for e in events if isinstance(e, LeaseRenewed)]
        self.assertEqual(renewed.epoch, self.acq.epoch)
        self.assertEqual(renewed.expiry, at + T.lease - T.drift_margin)

    def test_unrenewable_lease_ends_then_is_lost(self):
        self.net.reachable = set()
        now = NOW
        events = []
        while now < NOW + 3:
            now = self.p.next_wakeup() or now + 0.1
            events += self.net.run(self.p, self.p.tick(now), now)
            if any(isinstance(e, LeaseLost) for e in events):
                break
        ending = [e for e in events if isinstance(e, LeaseEnding)]
        lost = [e for e in events if isinstance(e, LeaseLost)]
        self.assertEqual(len(ending), 1)
        self.assertEqual(ending[0].deadline, self.acq.expiry)
        self.assertEqual(len(lost), 1)
        # The stop began a quarter lease before the deadline.
        self.assertAlmostEqual(T.stop_at(NOW), self.acq.expiry - T.stop_window)

    def test_no_renewal_once_ending(self):
        self.net.reachable = set()
        stop_at = T.stop_at(NOW)
        self.net.run(self.p, self.p.tick(stop_at), stop_at)
        self.net.reachable = set(self.net.voters)
        self.net.sent.clear()
        events = self.net.run(self.p, self.p.tick(stop_at + 0.1), stop_at + 0.1)
        self.assertFalse([e for e in events if isinstance(e, LeaseRenewed)])
        self.assertFalse(self.net.sent)
        self.assertIsNone(self.p.holding(stop_at + 0.1))

    def test_release_uses_a_ballot_above_every_one_used(self):
        self.net.sent.clear()
        actions = self.p.release(NOW + 0.5)
        releases = [a.message for a in actions]
        self.assertEqual({type(m) for m in releases}, {Release})
        self.assertGreater(releases[0].ballot.counter, self.acq.epoch)
        self.net.run(self.p, actions, NOW + 0.5)
        for voter in self.net.voters.values():
            self.assertIsNone(voter.holder("X", NOW + 0.5))
        self.assertIsNone(self.p.holding(NOW + 0.5))

    def test_late_grant_is_not_used(self):
        # 'z' sends its Propose, then freezes past the expiry before reading the grants.
        net = Net()
        z = make(net, "z")
        proposes = []
        for item in z.acquire(NOW):
            for answer in net.voters[item.to].receive("z", item.message, NOW):
                proposes += [a for a in z.receive(item.to, answer.message, NOW)
                             if isinstance(a, Send)]
        self.assertEqual({type(a.message) for a in proposes}, {Propose})
        late = NOW + T.lease
        events = []
        for item in proposes:
            for answer in net.voters[item.to].receive("z", item.message, NOW):
                events += z.receive(item.to, answer.message, late)
        self.assertFalse([e for e in events if isinstance(e, LeaseAcquired)])
        self.assertIsNone(z.holding(late))


class PreviousTenureTests(unittest.TestCase):
    """Whether the previous holder released is a fact about its *last* tenure, not its name."""

    def acquire(self, net, proposer, now):
        """Drive C{proposer} (outbid rounds retried) until it holds; its L{LeaseAcquired}."""
        events = net.run(proposer, proposer.acquire(now), now)
        while not any(isinstance(e, LeaseAcquired) for e in events):
            now = proposer.next_wakeup()
            events += net.run(proposer, proposer.tick(now), now)
        [acquired] = [e for e in events if isinstance(e, LeaseAcquired)]
        return acquired

    def test_a_release_of_an_older_tenure_does_not_hide_a_later_expiry(self):
        net = Net()
        a, c = make(net, "a"), make(net, "c")
        first = self.acquire(net, a, NOW)
        net.run(a, a.release(NOW + 0.1), NOW + 0.1)        # epoch 1 released everywhere
        net.reachable = {"v2", "v3"}                       # v1 misses the next tenure
        second = self.acquire(net, a, NOW + 0.2)
        self.assertGreater(second.epoch, first.epoch)
        # 'a' dies holding its second tenure; its grants expire at v2 and v3.
        net.reachable = {"v1", "v2"}
        later = NOW + 0.2 + T.lease + 0.1
        acquired = self.acquire(net, c, later)
        self.assertEqual(acquired.previous, "a")
        self.assertFalse(acquired.previous_released)

    def test_the_highest_tenure_names_the_previous_holder(self):
        net = Net()
        a, b, c = make(net, "a"), make(net, "b"), make(net, "c")
        net.run(a, a.acquire(NOW), NOW)
        net.run(a, a.release(NOW + 0.1), NOW + 0.1)
        net.reachable = {"v2", "v3"}
        self.acquire(net, b, NOW + 0.2)                    # 'b' then dies holding it
        net.reachable = {"v1", "v2"}
        later = NOW + 0.2 + T.lease + 0.1
        acquired = self.acquire(net, c, later)
        self.assertEqual((acquired.previous, acquired.previous_released), ("b", False))


class PausedHolderTests(unittest.TestCase):
    """A whole machine paused: its clock stopped, so its deadline still lies ahead on resume."""

    def taken_over_while_v1_was_paused(self):
        """'a' held the lease; 'c' took it over through v2 and v3 (v1 paused with 'a')."""
        net = Net()
        a, c = make(net, "a"), make(net, "c")
        net.run(a, a.acquire(NOW), NOW)
        net.reachable = {"v2", "v3"}
        later = NOW + T.lease + 0.1
        events = net.run(c, c.acquire(later), later)
        while not any(isinstance(e, LeaseAcquired) for e in events):
            later = c.next_wakeup()
            events += net.run(c, c.tick(later), later)
        return net, c, later

    def test_a_renewal_refused_for_another_holder_ends_the_tenure_at_once(self):
        net = Net()
        a, c = make(net, "a"), make(net, "c")
        [held] = [e for e in net.run(a, a.acquire(NOW), NOW) if isinstance(e, LeaseAcquired)]
        # 'a' is paused; the voters' clocks go on and 'c' takes over.
        later = NOW + T.lease + 0.1
        events = net.run(c, c.acquire(later), later)
        while not any(isinstance(e, LeaseAcquired) for e in events):
            later = c.next_wakeup()
            events += net.run(c, c.acquire(later), later)
        # 'a' resumes: on its clock almost no time passed; its renewal is due.
        resumed = NOW + T.renew_after
        self.assertIsNotNone(a.holding(resumed))
        events = []
        for item in a.tick(resumed):
            if isinstance(item, Send):
                answers = net.voters[item.to].receive("a", item.message, later + 0.5)
                for answer in answers:
                    events += a.receive(item.to, answer.message, resumed + 0.002)
            else:
                events.append(item)
        now = resumed + 0.002
        [ending] = [e for e in events if isinstance(e, LeaseEnding)]
        self.assertEqual((ending.epoch, ending.deadline), (held.epoch, now))
        self.assertTrue([e for e in events if isinstance(e, LeaseLost)])
        self.assertIsNone(a.tenure(now))

    def test_a_held_refusal_from_a_voter_that_was_paused_too_does_not_end_the_new_tenure(self):
        # v1 was on the paused machine with 'a': on resume its clock shows a's
        # grant unexpired, and it refuses 'c''s renewal "held". Its promise is
        # older than c's tenure: not authoritative, c goes on with v2 and v3.
        net, c, later = self.taken_over_while_v1_was_paused()
        at = later + T.renew_after
        events = []
        for item in c.tick(at):
            self.assertIsInstance(item, Send)
            voter_time = NOW + 0.5 if item.to == "v1" else at   # v1's clock stopped
            for answer in net.voters[item.to].receive("c", item.message, voter_time):
                if item.to == "v1":
                    self.assertEqual(answer.message.reason, "held")
                events += c.receive(item.to, answer.message, at)
        self.assertFalse([e for e in events if isinstance(e, (LeaseEnding, LeaseLost))])
        self.assertTrue([e for e in events if isinstance(e, LeaseRenewed)])

    def test_a_stale_held_refusal_with_a_newer_promise_does_not_end_the_new_tenure(self):
        # As above, but the old holder polled v1 since (a Prepare above every
        # ballot of c): v1's promise is newer than c's renewal, its grant is not.
        net, c, later = self.taken_over_while_v1_was_paused()
        net.voters["v1"].receive("a", Prepare("X", Ballot(1000, "a", 1)), NOW + 0.4)
        at = later + T.renew_after
        events = []
        for item in c.tick(at):
            voter_time = NOW + 0.5 if item.to == "v1" else at   # v1's clock stopped
            for answer in net.voters[item.to].receive("c", item.message, voter_time):
                if item.to == "v1":
                    self.assertEqual((answer.message.reason, answer.message.promised),
                                     ("held", 1000))
                events += c.receive(item.to, answer.message, at)
        self.assertFalse([e for e in events if isinstance(e, (LeaseEnding, LeaseLost))])
        self.assertTrue([e for e in events if isinstance(e, LeaseRenewed)])

    def test_a_refusal_that_names_no_other_holder_is_retried(self):
        net = Net()
        a = make(net)
        net.run(a, a.acquire(NOW), NOW)
        for voter in net.voters.values():   # every voter saw a higher ballot (a prepare)
            voter.receive("c", Prepare("X", Ballot(50, "c", 1)), NOW + 0.1)
        at = NOW + T.renew_after
        events = net.run(a, a.tick(at), at)
        self.assertFalse([e for e in events if isinstance(e, (LeaseEnding, LeaseLost))])
        self.assertIsNotNone(a.holding(at))


class AbandonTests(unittest.TestCase):
    def test_abandon_during_propose_takes_the_grant_back(self):
        net = Net()
        p = make(net)
        proposes = []
        for item in p.acquire(NOW):
            for answer in net.voters[item.to].receive("a", item.message, NOW):
                proposes += [a for a in p.receive(item.to, answer.message, NOW)
                             if isinstance(a, Send)]
        for item in proposes:  # the voters grant, but the answers are still in flight
            net.voters[item.to].receive("a", item.message, NOW)
        actions = p.abandon(NOW + 0.01)
        self.assertEqual({type(a.message) for a in actions}, {Release})
        net.run(p, actions, NOW + 0.01)
        for voter in net.voters.values():
            self.assertIsNone(voter.holder("X", NOW + 0.01))


class FencedVoterTests(unittest.TestCase):
    def test_assumed_grant_lets_the_survivor_of_two_voters_acquire(self):
        net = Net(("a", "b"))
        net.reachable = {"a"}
        p = make(net, "a")
        events = net.run(p, p.acquire(NOW), NOW)
        self.assertFalse([e for e in events if isinstance(e, LeaseAcquired)])
        p.assume_granted("b")
        later = NOW + 1
        events = net.run(p, p.hurry(later), later)
        events += net.run(p, p.tick(p.next_wakeup()), p.next_wakeup())
        self.assertTrue([e for e in events if isinstance(e, LeaseAcquired)])

    def test_assumption_ends_when_the_voter_answers(self):
        net = Net(("a", "b"))
        p = make(net, "a")
        p.assume_granted("b")
        net.run(p, p.acquire(NOW), NOW)
        self.assertNotIn("b", p._assumed)


class ArbiterTests(unittest.TestCase):
    def test_quorum_arbiter_provides_the_interface(self):
        arbiter = QuorumArbiter("a", 1, ("a", "b", "c"), T, random.Random(0))
        self.assertTrue(verifyObject(IArbiter, arbiter))
