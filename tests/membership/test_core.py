"""The core state machine, one event at a time (no simulator)."""

import random

from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.membership.core import node as mcore
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import (
    Gossip, Heartbeat, Join, Report, SyncDigest, SyncRecords, Unwatch,
    Watch,
)
from clsd.membership.core.table import build_snapshots
from clsd.membership.core.notary import FakeNotary
from clsd.wire.core.errors import Forged
from clsd.membership.core.timing import suspicion_timeout
from rig.sim.cluster import signed_lives
from tests.support.membership_signing import join, join_ack, signed_update
from clsd.membership.core.node import (
    Connect, Core, Disconnect, ForceRemove, Joined, JoinRequested, LeaveDone, LeaveRequested,
    LinkDown, LinkUp, MemberChanged, Received, Send, SetTimer, TimerFired,
)

SEED = "127.0.0.12:7400"



def signed_report(subject, generation, incarnation, observer):
    """A report as its observer makes it: signed (with the simulator's notary)."""
    return Report(subject, generation, incarnation, observer).signed(FakeNotary(observer))


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def new_core(name="alpha", address="127.0.0.11:7400", generation=5, **kwargs):
    return Core(name, address, generation, MembershipConfig(), rng=random.Random(1), **kwargs)


def formed(names, me, generation=1):
    members = [Member(n, f"127.0.0.{i + 2}:7400", generation, 0, State.ALIVE)
               for i, n in enumerate(names)]
    snapshot, rings = build_snapshots(members, 8)
    address = next(m.address for m in members if m.name == me)
    core = Core(me, address, generation, MembershipConfig(), rng=random.Random(2),
                snapshot=snapshot, ring_snapshot=rings,
                lives=signed_lives(members))
    return core, core.handle(JoinRequested(), 0.0)


def pushed_join(size):
    """A newcomer that joined a formed cluster of C{size} through its seed n000.

    Returns (newcomer core, seed core, the seed's JoinAck, the list chunks it pushed);
    the newcomer has received the JoinAck but no chunk yet.
    """
    seed, _ = formed([f"n{i:03}" for i in range(size)], "n000")
    core = new_core("new", "127.0.1.1:7400")
    core.handle(JoinRequested((seed.me.address,)), 0.0)
    core.handle(LinkUp("n000", seed.me.address), 0.1)
    ack, *chunks = [s.message for s in of(seed.handle(Received("new", join(core.me)), 0.2),
                                          Send)]
    return core, seed, ack, chunks


class Joining(unittest.TestCase):
    def test_no_seeds_forms_a_cluster_alone(self):
        core = new_core()
        actions = core.handle(JoinRequested(()), 0.0)
        self.assertEqual(of(actions, Joined), [Joined()])
        self.assertEqual(len(of(actions, SetTimer)), 1)
        self.assertTrue(core.joined)

    def test_only_itself_as_seed_forms_alone(self):
        core = new_core()
        core.handle(JoinRequested(("127.0.0.11:7400",)), 0.0)
        self.assertTrue(core.joined)

    def test_with_seeds_it_waits_and_keeps_asking(self):
        core = new_core()
        actions = core.handle(JoinRequested((SEED,)), 0.0)
        self.assertEqual(of(actions, Connect), [Connect(SEED, None)])
        self.assertFalse(core.joined)
        for tick in range(1, 11):  # on time: no stall of ours widens the retry
            actions = core.handle(TimerFired(mcore.TICK), tick / 2)
            self.assertEqual(of(actions, Send), [])  # no connection yet: nothing to ask
        actions = core.handle(LinkUp("beta", SEED), 6.0)
        self.assertEqual(of(actions, Send), [Send("beta", join(core.member("alpha")))])
        actions = core.handle(TimerFired(mcore.TICK), 9.0)
        self.assertEqual([s.message for s in of(actions, Send)], [join(core.member("alpha"))])
        self.assertFalse(core.joined)
        beta = Member("beta", SEED, 3, 0, State.ALIVE)
        actions = core.handle(Received("beta", join_ack(beta)), 9.1)
        self.assertTrue(core.joined)
        self.assertEqual(of(actions, Joined), [Joined()])
        self.assertEqual(core.member("beta"), beta)
        # The seed is now a subject too: watched as well as synced with.
        self.assertEqual(sorted(type(s.message).__name__ for s in of(actions, Send)),
                         ["SyncDigest", "Watch"])
        self.assertEqual(of(actions, MemberChanged)[0].reason, "joined")

    def test_it_asks_one_seed_at_a_time(self):
        other = "127.0.0.13:7400"
        core = new_core()
        core.handle(JoinRequested((SEED, other)), 0.0)
        first = core.handle(LinkUp("beta", SEED), 0.1)
        self.assertEqual(of(first, Send), [Send("beta", join(core.member("alpha")))])
        # The second seed's link: no second Join (and whole list) while the first is asked.
        self.assertEqual(of(core.handle(LinkUp("gamma", other), 0.2), Send), [])
        # No answer by the retry: every seed link is asked.
        actions = core.handle(TimerFired(mcore.TICK), 2.5)
        self.assertEqual(sorted(s.to for s in of(actions, Send) if type(s.message) is Join),
                         ["beta", "gamma"])

    def test_a_join_lost_with_its_connection_is_sent_again_on_the_next(self):
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)
        core.handle(LinkUp("beta", SEED), 0.1)  # Join sent
        core.handle(LinkDown("beta"), 0.2)  # closed: a duplicate of beta's own dial
        # beta's connection to us (inbound: no address) is a seed link too
        actions = core.handle(LinkUp("beta"), 0.3)
        self.assertEqual(of(actions, Send)[-1], Send("beta", join(core.member("alpha"))))

    def test_join_retries_go_to_a_seed_connected_inbound_too(self):
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)
        core.handle(LinkUp("beta", SEED), 0.1)
        core.handle(LinkDown("beta"), 0.2)
        core.handle(LinkUp("beta"), 0.3)
        actions = core.handle(TimerFired(mcore.TICK), 2.5)
        self.assertIn(Send("beta", join(core.member("alpha"))), of(actions, Send))

    def test_a_seed_whose_own_dial_won_is_asked_on_that_link(self):
        # Only the seed's connection to us is up (ours was closed as its
        # duplicate): it carries no seed address, and must still be asked.
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)
        core.handle(LinkUp("beta"), 0.1)  # an unknown peer's link: not asked at once
        actions = core.handle(TimerFired(mcore.TICK), 2.5)  # the retry asks every link
        self.assertIn(Send("beta", join(core.member("alpha"))), of(actions, Send))
        beta = Member("beta", SEED, 3, 0, State.ALIVE)
        core.handle(Received("beta", join_ack(beta)), 7.0)
        self.assertTrue(core.joined)

    def test_a_retry_waits_for_a_join_still_within_its_time(self):
        core = new_core()
        core.handle(JoinRequested((SEED, "127.0.0.13:7400")), 0.0)
        core.handle(LinkUp("gamma", "127.0.0.13:7400"), 0.1)  # gamma asked, until 2.1 s
        core.handle(LinkUp("beta", SEED), 1.9)  # not asked: gamma's Join has time left
        actions = core.handle(TimerFired(mcore.TICK), 2.0)  # nor by the retry
        self.assertEqual([s for s in of(actions, Send) if type(s.message) is Join], [])

    def test_join_retries_back_off(self):
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)
        core.handle(LinkUp("beta", SEED), 0.1)
        asked = []
        now = 0.0
        while now < 40.0:
            now += 0.5
            if any(type(s.message) is Join for s in of(core.handle(TimerFired(mcore.TICK), now),
                                                      Send)):
                asked.append(now)
        # The Join sent on the link at 0.1 s is given until 2.1 s; then the
        # ticks (every 0.5 s here) retry 4, 8, 16 s apart.
        self.assertEqual(asked, [2.5, 6.5, 14.5, 30.5])

    def test_a_slow_node_waits_longer_for_its_seed(self):
        """Late ticks (our own stalls) widen the time a Join is given, retries too."""
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)
        for now in (1.0, 4.0, 7.0):  # each tick 2 s late
            core.handle(TimerFired(mcore.TICK), now)
        self.assertGreater(core.health_score, 0)
        core.handle(LinkUp("beta", SEED), 7.1)
        wait = core.health_score + 1
        actions = core.handle(TimerFired(mcore.TICK), 7.1 + 2.0 * wait - 0.01)
        self.assertEqual([s for s in of(actions, Send) if type(s.message) is Join], [])

    def test_a_seed_accepts_a_join_and_answers(self):
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)  # itself waiting for its seed
        gamma = Member("gamma", "127.0.0.13:7400", 1, 0, State.ALIVE)
        actions = core.handle(Received("gamma", join(gamma)), 1.0)
        # Its list follows the answer at once: here only itself.
        self.assertEqual(of(actions, Send), [
            Send("gamma", join_ack(core.member("alpha"), 1)),
            Send("gamma", SyncRecords((signed_update(core.member("alpha")),)))])
        self.assertTrue(core.joined)  # being joined is being in a cluster
        self.assertEqual(core.member("gamma"), gamma)

    def test_a_seed_pushes_its_whole_list_in_bounded_messages(self):
        names = [f"n{i:03}" for i in range(300)]
        core, _ = formed(names, "n000")
        joiner = Member("new", "127.0.1.1:7400", 1, 0, State.ALIVE)
        sends = of(core.handle(Received("new", join(joiner)), 1.0), Send)
        self.assertEqual(sends[0], Send("new", join_ack(core.member("n000"), 300)))
        chunks = [s.message for s in sends[1:]]
        self.assertEqual([len(c.records) for c in chunks], [128, 128, 44])
        pushed = sorted(u.member.name for c in chunks for u in c.records)
        self.assertEqual(pushed, names)  # everyone but the joiner, once
        self.assertFalse(any(c.more or c.want for c in chunks))

    def test_a_joiner_chooses_its_subjects_once_the_pushed_list_is_in(self):
        core, _, ack, chunks = pushed_join(40)
        actions = core.handle(Received("n000", ack), 0.3)
        self.assertEqual(of(actions, Send), [])  # no pull: the list is coming
        self.assertEqual(of(actions, Connect), [])  # no subjects from a list of two
        connects = [of(core.handle(Received("n000", chunk), 0.4), Connect) for chunk in chunks]
        self.assertEqual(len(core), 41)
        self.assertTrue(core.subjects)
        self.assertEqual([sorted(c.name for c in each) for each in connects],
                         [sorted(core.subjects)])  # one chunk here: dialled after it

    def test_subjects_are_dialled_only_after_the_last_pushed_chunk(self):
        core, _, ack, chunks = pushed_join(300)
        core.handle(Received("n000", ack), 0.3)
        connects = [len(of(core.handle(Received("n000", c), 0.4), Connect)) for c in chunks]
        self.assertEqual(connects[:-1], [0, 0])
        self.assertEqual(connects[-1], len(core.subjects))

    def test_once_the_pushed_list_is_in_the_joiner_asks_the_seed_what_came_since(self):
        core, _, ack, chunks = pushed_join(300)
        core.handle(Received("n000", ack), 0.3)
        digests = []
        for chunk in chunks:
            sends = of(core.handle(Received("n000", chunk), 0.4), Send)
            digests.append([s for s in sends if type(s.message) is SyncDigest])
        self.assertEqual(digests[:-1], [[], []])
        self.assertEqual(digests[-1], [Send("n000", SyncDigest(core.digest()))])

    def test_a_pushed_list_that_stops_short_holds_the_overlay_for_a_bounded_time(self):
        core, _, ack, (first, *_lost) = pushed_join(300)
        core.handle(Received("n000", ack), 0.3)
        self.assertEqual(of(core.handle(Received("n000", first), 0.4), Connect), [])
        actions = core.handle(TimerFired(mcore.TICK), 0.3 + mcore._OVERLAY_HOLD + 0.01)
        self.assertTrue(of(actions, Connect))

    def test_a_join_ack_without_a_list_makes_the_joiner_pull_it(self):
        core = new_core()
        core.handle(JoinRequested((SEED,)), 0.0)
        core.handle(LinkUp("beta", SEED), 0.1)
        beta = Member("beta", SEED, 3, 0, State.ALIVE)
        actions = core.handle(Received("beta", join_ack(beta)), 0.2)
        self.assertIn("SyncDigest", [type(s.message).__name__ for s in of(actions, Send)])

    def test_a_peer_can_only_join_as_itself(self):
        core = new_core()
        core.handle(JoinRequested(()), 0.0)
        gamma = Member("gamma", "127.0.0.13:7400", 1, 0, State.ALIVE)
        with self.assertRaises(Forged) as caught:
            core.handle(Received("mallory", join(gamma)), 1.0)
        self.assertEqual(caught.exception.claimed, "gamma")
        self.assertIsNone(core.member("gamma"))
        self.assertEqual(core.refused["join-name"], 1)

    def test_messages_before_start_are_ignored(self):
        core = new_core()
        self.assertEqual(core.receive("x", Gossip(()), 0.0), [])


class Refuting(unittest.TestCase):
    def setUp(self):
        self.core, _ = formed([f"n{i}" for i in range(60)], "n0")

    def test_a_report_about_itself_is_refuted(self):
        actions = self.core.receive("n3", Gossip((signed_report("n0", 1, 0, "n5"),)), 1.0)
        self.assertEqual(self.core.incarnation, 1)
        self.assertEqual(self.core.member("n0").incarnation, 1)
        self.assertEqual([a.name for a in of(actions, SetTimer)], [mcore.GOSSIP])
        self.assertEqual(self.core.stats["refutations"], 1)

    def test_a_suspicion_already_refuted_is_not_refuted_again(self):
        suspect = signed_update(Member("n0", "127.0.0.2:7400", 1, 0, State.SUSPECT))
        self.core.receive("n3", Gossip((suspect,)), 1.0)
        self.assertEqual(self.core.incarnation, 1)
        for sender in ("n4", "n5", "n6"):  # copies of the same suspicion arrive later
            self.core.receive(sender, Gossip((suspect,)), 1.5)
        self.assertEqual(self.core.incarnation, 1)
        self.assertEqual(self.core.stats["refutations"], 1)
        # A death at our current incarnation is refuted.
        dead = signed_update(Member("n0", "127.0.0.2:7400", 1, 1, State.DEAD))
        self.core.receive("n3", Gossip((dead,)), 2.0)
        self.assertEqual(self.core.incarnation, 2)

    def test_the_suspect_itself_is_told_when_linked(self):
        """Lifeguard's buddy system: the suspicion goes straight to the suspect."""
        core = self.core
        core.handle(LinkUp("n4", core.member("n4").address), 0.5)
        actions = core.receive("n3", Gossip((signed_report("n4", 1, 0, "n5"),)), 1.0)
        told = [s for s in of(actions, Send) if s.to == "n4"]
        self.assertEqual(told, [Send("n4", Gossip((signed_update(core.member("n4")),)))])
        self.assertIs(core.member("n4").state, State.SUSPECT)
        # A second report of the same suspicion tells it nothing new.
        actions = core.receive("n3", Gossip((signed_report("n4", 1, 0, "n6"),)), 1.1)
        self.assertEqual([s for s in of(actions, Send) if s.to == "n4"], [])
        # Not linked: nothing is sent to it (gossip will get there).
        actions = core.receive("n3", Gossip((signed_report("n7", 1, 0, "n5"),)), 1.2)
        self.assertEqual([s for s in of(actions, Send) if s.to == "n7"], [])

    def test_news_of_a_previous_life_is_ignored(self):
        old = Member("n0", "127.0.0.2:7400", 0, 7, State.DEAD)
        self.core.receive("n3", Gossip((signed_update(old),)), 1.0)
        self.assertEqual(self.core.incarnation, 0)

    def test_a_suspect_refutation_clears_reports(self):
        core = self.core
        core.receive("n3", Gossip((signed_report("n4", 1, 0, "n5"),)), 1.0)
        self.assertIs(core.member("n4").state, State.SUSPECT)
        self.assertEqual(core.suspect_count, 1)
        actions = core.receive("n3", Gossip((signed_update(
            Member("n4", "127.0.0.6:7400", 1, 1, State.ALIVE)),)), 2.0)
        self.assertIs(core.member("n4").state, State.ALIVE)
        self.assertEqual(core.suspect_count, 0)
        self.assertEqual(of(actions, MemberChanged)[0].reason,
                         "refuted suspicion (incarnation 1)")

    def test_h_reports_from_healthy_observers_make_a_death(self):
        core = self.core
        observers = core.observers_of("n7")
        self.assertGreaterEqual(len(observers), 6)
        reports = tuple(signed_report("n7", 1, 0, o) for o in observers[:5])
        core.receive("n3", Gossip(reports), 1.0)
        self.assertIs(core.member("n7").state, State.SUSPECT)
        actions = core.receive("n3", Gossip((signed_report("n7", 1, 0, observers[5]),)), 1.1)
        self.assertIs(core.member("n7").state, State.DEAD)
        change = of(actions, MemberChanged)[0]
        self.assertIn(f"(6 of {len(observers)} observers)", change.reason)

    def test_a_death_announced_without_evidence_is_only_a_suspicion(self):
        self.core.receive("n3", Gossip((signed_report("n7", 1, 0, "n1"),)), 1.0)
        dead = Member("n7", "127.0.0.9:7400", 1, 0, State.DEAD)
        self.core.receive("n3", Gossip((signed_update(dead, 0.0, ("n1",)),)), 1.0)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        # ... until nobody refutes it for the slow path's minimum (another
        # node's rule held, and its reporter's signed report is here: that
        # is a confirmation in full).
        wait = suspicion_timeout(10.0, 60, 1, expected=0)
        self.tick_until(1.0 + wait - 0.1)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        self.tick_until(1.0 + wait + 0.1)
        self.assertIs(self.core.member("n7").state, State.DEAD)

    def test_the_reporters_of_an_announced_death_are_only_a_claim(self):
        # Named reporters whose signed reports never came: no evidence, and
        # no shortcut on the slow path (a relay could have written them).
        observers = self.core.observers_of("n7")
        dead = Member("n7", "127.0.0.9:7400", 1, 0, State.DEAD)
        self.core.receive("n3", Gossip((signed_update(dead, 0.0, observers[:6]),)), 1.0)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        wait = suspicion_timeout(10.0, 60, 1, expected=0)
        self.tick_until(1.0 + wait + 0.5)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        # With their signed reports here (on a fresh node), the rule holds at once.
        self.setUp()
        self.core.receive("n3", Gossip((signed_update(dead, 0.0, observers[:6]),)), 1.0)
        actions = self.core.receive("n3", Gossip(tuple(
            signed_report("n7", 1, 0, o) for o in observers[:6])), 1.1)
        self.assertIs(self.core.member("n7").state, State.DEAD)
        self.assertIn("(6 of", of(actions, MemberChanged)[-1].reason)

    def test_a_single_report_waits_longest_on_the_slow_path(self):
        self.core.receive("n3", Gossip((signed_report("n7", 1, 0, self.core.observers_of("n7")[0]),)),
                          1.0)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        shortest = suspicion_timeout(10.0, 60, 1, expected=0)
        longest = suspicion_timeout(10.0, 60, 1, expected=5)
        self.assertGreater(longest, 3 * shortest)
        self.tick_until(1.0 + shortest + 0.1)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        self.tick_until(1.0 + longest + 0.1)
        self.assertIs(self.core.member("n7").state, State.DEAD)

    def tick_until(self, end):
        """Ticks on time (a late tick would be our own stall: Lifeguard widens timeouts)."""
        now = getattr(self, "_ticked", 1.0)
        while now < end:
            now = min(end, now + 0.5)
            self.core.handle(TimerFired(mcore.TICK), now)
        self._ticked = now


class Watching(unittest.TestCase):
    def test_watch_is_answered_and_heartbeats_follow(self):
        core, _ = formed(["a", "b", "c"], "a")
        core.handle(LinkUp("b", "127.0.0.3:7400"), 0.1)
        actions = core.receive("b", Watch(), 0.2)
        beat = Heartbeat(1, 0, (), core.fingerprint(), len(core))
        self.assertEqual(of(actions, Send), [Send("b", beat)])
        actions = core.handle(TimerFired(mcore.TICK), 1.0)
        self.assertIn(Send("b", beat), actions)
        core.handle(LinkDown("b"), 1.5)
        self.assertNotIn("b", core.watchers)

    def test_plain_heartbeats_follow_watchers_and_incarnation(self):
        """The tick reuses its plain heartbeats: every change of watchers or
        of our own record must still show in the next tick's."""
        core, _ = formed(["a", "b", "c", "d"], "a")

        def beats(now):
            actions = core.handle(TimerFired(mcore.TICK), now)
            return sorted((s.to, s.message) for s in of(actions, Send)
                          if type(s.message) is Heartbeat)

        for name, host in (("b", 3), ("c", 4), ("d", 5)):
            core.handle(LinkUp(name, f"127.0.0.{host}:7400"), 0.1)
        core.receive("b", Watch(), 0.2)
        core.receive("c", Watch(), 0.2)
        beat = Heartbeat(1, 0, (), core.fingerprint(), len(core))
        self.assertEqual(beats(1.0), [("b", beat), ("c", beat)])
        self.assertEqual(beats(2.0), [("b", beat), ("c", beat)])
        core.receive("d", Watch(), 2.1)
        self.assertEqual([to for to, _ in beats(3.0)], ["b", "c", "d"])
        core.receive("c", Unwatch(), 3.1)
        self.assertEqual([to for to, _ in beats(4.0)], ["b", "d"])
        core.handle(LinkDown("b"), 4.1)
        self.assertEqual([to for to, _ in beats(5.0)], ["d"])
        # A refutation raises our incarnation: the heartbeats carry it.
        me = core.member("a")
        core.receive("d", Gossip((signed_report("a", me.generation, me.incarnation, "d"),)), 5.1)
        incarnation = core.member("a").incarnation
        self.assertGreater(incarnation, 0)
        # Once the news is sent out, the plain heartbeat carries it too.
        for second in range(6, 60):
            sent = beats(float(second))
            if not sent[0][1].updates:
                break
        self.assertEqual(sent, [("d", Heartbeat(1, incarnation, (), core.fingerprint(), len(core)))])

    def test_subjects_are_connected_and_watched(self):
        core, actions = formed([f"n{i}" for i in range(20)], "n0")
        self.assertEqual(sorted(c.name for c in of(actions, Connect)), sorted(core.subjects))
        subject = core.subjects[0]
        actions = core.handle(LinkUp(subject, core.member(subject).address), 0.1)
        self.assertEqual(of(actions, Send), [Send(subject, Watch())])

    def test_a_closed_link_is_reported_after_the_grace(self):
        core, _ = formed([f"n{i}" for i in range(20)], "n0")
        for name in core.subjects:
            core.handle(LinkUp(name, core.member(name).address), 0.1)
        subject = core.subjects[0]
        actions = core.handle(LinkDown(subject), 2.0)
        check = of(actions, SetTimer)[0]
        self.assertEqual(check.name, mcore.CHECK)
        self.assertAlmostEqual(check.at, 3.0, places=2)
        core.handle(TimerFired(mcore.CHECK), check.at)
        self.assertIs(core.member(subject).state, State.SUSPECT)
        self.assertEqual(core.stats["reports"], 1)

    def test_a_late_tick_does_not_blame_the_subjects(self):
        core, actions = formed([f"n{i}" for i in range(20)], "n0")
        first = of(actions, SetTimer)[0].at
        for subject in core.subjects:
            core.handle(LinkUp(subject, core.member(subject).address), 0.01)
        core.handle(TimerFired(mcore.TICK), first + 30.0)  # we were frozen for 30 s
        self.assertEqual(core.stats["reports"], 0)
        self.assertGreater(core.health_score, 0)


class Leaving(unittest.TestCase):
    def test_leave_is_announced_then_done(self):
        core, _ = formed(["a", "b", "c"], "a")
        core.handle(LinkUp("b", "127.0.0.3:7400"), 0.1)
        actions = core.handle(LeaveRequested(), 1.0)
        left = signed_update(core.member("a")).signed(FakeNotary("a"))
        self.assertIs(left.member.state, State.LEFT)
        self.assertIn(Send("b", Gossip((left,))), actions)
        self.assertEqual(of(actions, SetTimer)[0].name, mcore.LEAVE)
        actions = core.handle(TimerFired(mcore.LEAVE), 2.0)
        self.assertEqual(of(actions, LeaveDone), [LeaveDone()])
        self.assertTrue(of(actions, Disconnect))
        # A leaving node does not refute.
        core.receive("b", Gossip((signed_report("a", 1, 0, "b"),)), 2.5)
        self.assertEqual(core.incarnation, 0)

    def test_force_remove_requires_a_dead_member(self):
        core, _ = formed(["a", "b", "c"], "a")
        with self.assertRaises(mcore.MembershipError):
            core.handle(ForceRemove("b"), 1.0)


class AntiEntropy(unittest.TestCase):
    def test_two_different_lists_become_equal(self):
        one, _ = formed([f"n{i}" for i in range(30)], "n0")
        two = new_core("x0", "127.0.0.99:7400", 1)
        two.handle(JoinRequested(()), 0.0)
        pending = [("x0", "n0", SyncDigest(two.digest()))]
        cores = {"n0": one, "x0": two}
        for _ in range(50):
            if not pending:
                break
            sender, to, message = pending.pop(0)
            for action in cores[to].receive(sender, message, 1.0):
                if isinstance(action, Send) and isinstance(action.message, (SyncDigest,
                                                                            SyncRecords)):
                    pending.append((to, action.to, action.message))
        self.assertEqual(one.digest(), two.digest())
        self.assertEqual(len(two), 31)


class BadEvents(unittest.TestCase):
    def test_unknown_event(self):
        self.assertRaises(TypeError, new_core().handle, object(), 0.0)


class NoSyncStorm(unittest.TestCase):
    def test_rejected_records_start_no_follow_up(self):
        core, _ = formed([f"n{i}" for i in range(10)], "n0")
        stale = Member("n3", "127.0.0.5:7400", 0, 0, State.DEAD)  # an older life
        before = core._next_sync
        actions = core.receive("n1", SyncRecords((signed_update(stale),), (), True, 0), 1.0)
        self.assertEqual(of(actions, Send), [])
        self.assertEqual(core._next_sync, before)

    def test_accepted_records_are_followed_up(self):
        core, _ = formed([f"n{i}" for i in range(10)], "n0")
        newer = Member("n3", "127.0.0.5:7400", 2, 0, State.ALIVE)  # a restart
        actions = core.receive("n1", SyncRecords((signed_update(newer),), (), True, 0), 1.0)
        self.assertEqual([type(a.message) for a in of(actions, Send)], [SyncDigest])
        self.assertEqual(of(actions, MemberChanged)[0].reason, "restarted (generation 2)")


class UnverifiedDeath(unittest.TestCase):
    def test_the_suspicion_is_gossiped_so_the_member_can_refute(self):
        core, _ = formed([f"n{i}" for i in range(30)], "n0")
        dead = Member("n7", "127.0.0.9:7400", 1, 0, State.DEAD)
        actions = core.receive("n3", Gossip((signed_update(dead, 0.0, ("n1",)),)), 1.0)
        self.assertIs(core.member("n7").state, State.SUSPECT)
        self.assertEqual([a.name for a in of(actions, SetTimer)], [mcore.GOSSIP])
        queued = core._queue.take(16, 10)
        self.assertIn(signed_update(dead.evolve(state=State.SUSPECT)), queued)


class CopiesHeard(unittest.TestCase):
    """A gossip copy of news we are spreading counts as one of our sends (rumour mongering)."""

    def sends_of_news(self, copies):
        core, _ = formed([f"n{i:02}" for i in range(10)], "n00")
        for i in range(1, 10):
            core.handle(LinkUp(f"n{i:02}", core.member(f"n{i:02}").address), 0.1)
        news = signed_update(Member("new", "127.0.1.1:7400", 1, 0, State.ALIVE))
        core.receive("n01", Gossip((news,)), 1.0)
        for i in range(copies):
            core.receive(f"n{i % 9 + 1:02}", Gossip((news,)), 1.0)
        self.assertEqual((core.stats["gossip_records"], core.stats["gossip_news"]), (1 + copies, 1))
        sent, now = 0, 1.0
        while now < 30.0:
            now += 0.05
            for send in of(core.handle(TimerFired(mcore.GOSSIP), now), Send):
                sent += news in getattr(send.message, "updates", ())
        return sent, core._limit()

    def test_copies_count_as_sends_but_leave_the_last_two(self):
        sent, limit = self.sends_of_news(0)
        self.assertEqual(sent, limit)
        self.assertEqual(self.sends_of_news(3), (limit - 3, limit))
        self.assertEqual(self.sends_of_news(2 * limit), (2, limit))
