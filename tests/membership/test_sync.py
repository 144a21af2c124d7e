"""Anti-entropy timing: the follow-up backoff, the round rule, the overlay hold, a healed partition.

The unit tests drive one L{Core} with times and hand-made sync messages (no
simulator); the last test runs the simulator. See doc/membership.md,
"Anti-entropy".
"""

import random

from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.membership.core import node as mcore
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import (
    MAX_SYNC_RECORDS, Heartbeat, SyncDigest, SyncRecords,
)
from clsd.membership.core.table import build_snapshots
from rig.sim.cluster import SimCluster, node_name
from rig.sim.cluster import signed_lives
from tests.support.membership_signing import join_ack, signed_update
from clsd.membership.core.node import (
    Connect, Core, JoinRequested, LinkUp, Received, Send, SetTimer, TimerFired,
)


def of(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def digests_sent(actions):
    return [s for s in of(actions, Send) if isinstance(s.message, SyncDigest)]


def formed(names, me, config=None):
    """A core already in a formed cluster of C{names} (every member known and alive)."""
    config = config if config is not None else MembershipConfig()
    members = [Member(n, f"127.0.0.{i + 2}:7400", 1, 0, State.ALIVE)
               for i, n in enumerate(names)]
    snapshot, rings = build_snapshots(members, config.observers)
    address = next(m.address for m in members if m.name == me)
    core = Core(me, address, 1, config, rng=random.Random(2),
                snapshot=snapshot, ring_snapshot=rings,
                lives=signed_lives(members))
    return core, core.handle(JoinRequested(), 0.0)


def newcomers(count, start=0):
    """Records of members nobody in L{formed} knows yet (news to a sync)."""
    return tuple(signed_update(Member(f"new{i:03}", f"127.0.1.{i % 250 + 1}:{7400 + i // 250}",
                                     1, 0, State.ALIVE))
                 for i in range(start, start + count))


class Ticking:
    """Run a formed core's ticks at the times it asks for, its subjects linked and alive.

    Every sync it starts is answered at once by C{answer(digest_send)} (the
    partner's SyncRecords, or None), as if the partner were next door.
    """

    def __init__(self, core, actions):
        self.core = core
        self.tick_at = self._tick_time(actions)
        for name in core.subjects:
            core.handle(LinkUp(name, core.member(name).address), 0.0)
        self.syncs = []   # the times of the syncs this core started

    @staticmethod
    def _tick_time(actions):
        return [a.at for a in of(actions, SetTimer) if a.name == mcore.TICK][-1]

    def run_until(self, end, answer):
        core = self.core
        while self.tick_at <= end:
            now = self.tick_at
            for name in core.subjects:  # heard from every subject: nobody fails
                member = core.member(name)
                core.receive(name, Heartbeat(member.generation, member.incarnation), now)
            actions = core.handle(TimerFired(mcore.TICK), now)
            self.tick_at = self._tick_time(actions)
            for send in digests_sent(actions):
                self.syncs.append(now)
                reply = answer(send)
                if reply is not None:
                    core.handle(Received(send.to, reply), now)

    def gaps(self):
        return [round(b - a, 6) for a, b in zip(self.syncs, self.syncs[1:])]


def news_from(core):
    """An answer to a sync that brings one piece of news (a member's new incarnation)."""
    others = [info.member.name for info in core.members() if info.member.name != core.name]
    turn = iter(range(1 << 30))

    def answer(send):
        name = others[next(turn) % len(others)]
        member = core.member(name)
        return SyncRecords((signed_update(member.evolve(incarnation=member.incarnation + 1)),))
    return answer


def nothing_new_from(core):
    """An answer to a sync with records we hold already (the lists differed elsewhere)."""
    def answer(send):
        known = [core.member(n) for n in core.subjects]
        return SyncRecords(tuple(signed_update(m) for m in known))
    return answer


class Backoff(unittest.TestCase):
    """The doubling itself, with the cap (_SYNC_AGAIN_MAX) out of the way."""

    def setUp(self):
        self.patch(mcore, "_SYNC_AGAIN_MAX", 1000.0)
        self.core, actions = formed([f"n{i:03}" for i in range(20)], "n000")
        self.ticking = Ticking(self.core, actions)

    def test_syncs_that_keep_bringing_news_back_off_to_sync_interval(self):
        self.ticking.run_until(80.0, news_from(self.core))
        gaps = self.ticking.gaps()
        self.assertEqual(gaps[:4], [1.0, 2.0, 4.0, 8.0])
        # Then at most sync_interval apart (less its jitter, and whole ticks):
        # the wait would be 16 s, but a plain sync comes sooner anyway.
        interval = self.core.config.sync_interval
        self.assertTrue(gaps[4:], gaps)
        for gap in gaps[4:]:
            self.assertGreaterEqual(gap, 0.9 * interval - 1.0, gaps)
            self.assertLessEqual(gap, interval, gaps)

    def test_syncs_without_news_keep_sync_interval(self):
        self.ticking.run_until(60.0, nothing_new_from(self.core))
        interval = self.core.config.sync_interval
        gaps = self.ticking.gaps()
        self.assertGreaterEqual(len(gaps), 3)
        for gap in gaps:
            self.assertGreaterEqual(gap, 0.9 * interval - 1.0, gaps)
            self.assertLessEqual(gap, 1.1 * interval + 1.0, gaps)

    def test_one_sync_without_news_resets_the_wait_to_one_second(self):
        core = self.core
        news, nothing = news_from(core), nothing_new_from(core)
        answers = iter([news, news, news, nothing, news, news])
        self.ticking.run_until(80.0, lambda send: next(answers, news)(send))
        gaps = self.ticking.gaps()
        interval = core.config.sync_interval
        self.assertEqual(gaps[:2], [1.0, 2.0])
        # The third sync brought news (4 s), the fourth none: the fifth is a
        # plain one, and its news is followed again after 1 s, then 2 s.
        self.assertEqual(gaps[2], 4.0)
        self.assertGreaterEqual(gaps[3], 0.9 * interval - 1.0, gaps)
        self.assertLessEqual(gaps[3], 1.1 * interval + 1.0, gaps)
        self.assertEqual(gaps[4:6], [1.0, 2.0])

    def test_a_sync_that_gets_no_answer_also_resets_the_streak(self):
        core = self.core
        news = news_from(core)
        answers = iter([news, news, news, lambda send: None, news, news])
        self.ticking.run_until(80.0, lambda send: next(answers, news)(send))
        gaps = self.ticking.gaps()
        self.assertEqual(gaps[:3], [1.0, 2.0, 4.0])
        self.assertGreater(gaps[3], 4.0)
        self.assertEqual(gaps[4:6], [1.0, 2.0])

    def test_the_wait_is_capped_by_a_short_sync_interval(self):
        config = MembershipConfig(sync_interval=3.0)
        core, actions = formed([f"n{i:03}" for i in range(20)], "n000", config)
        ticking = Ticking(core, actions)
        ticking.run_until(40.0, news_from(core))
        gaps = ticking.gaps()
        self.assertEqual(gaps[:2], [1.0, 2.0])
        self.assertTrue(gaps[2:], gaps)
        self.assertTrue(all(2.0 <= gap <= 3.0 for gap in gaps[2:]), gaps)


class BackoffCap(unittest.TestCase):
    def test_while_syncs_keep_bringing_news_they_come_every_two_seconds(self):
        self.assertEqual(mcore._SYNC_AGAIN_MAX, 2.0)
        core, actions = formed([f"n{i:03}" for i in range(20)], "n000")
        ticking = Ticking(core, actions)
        ticking.run_until(40.0, news_from(core))
        gaps = ticking.gaps()
        self.assertEqual(gaps[0], 1.0)
        self.assertGreater(len(gaps), 10)
        self.assertEqual(set(gaps[1:]), {2.0})


class Rounds(unittest.TestCase):
    """Another round at once only while at least _ROUND_NEWS of a round's records were news."""

    def setUp(self):
        self.names = [f"n{i:03}" for i in range(20)]
        self.core, _ = formed(self.names, "n000")
        self.core.handle(LinkUp("n001", self.core.member("n001").address), 0.1)

    def known(self, count):
        return tuple(signed_update(self.core.member(n)) for n in self.names[1:count + 1])

    def round_of(self, records, more=True, round=3, at=1.0):
        actions = self.core.handle(Received("n001", SyncRecords(records, (), more, round)), at)
        return digests_sent(actions)

    def test_a_round_of_mostly_news_is_followed_at_once(self):
        sends = self.round_of(newcomers(6) + self.known(2))
        self.assertEqual(sends, [Send("n001", SyncDigest(self.core.digest(), 4))])

    def test_a_quarter_of_news_is_enough(self):
        self.assertEqual(mcore._ROUND_NEWS, 0.25)
        sends = self.round_of(newcomers(2) + self.known(6))
        self.assertEqual([s.message.round for s in sends], [4])

    def test_a_round_of_less_than_a_quarter_news_is_not_followed(self):
        sends = self.round_of(newcomers(1) + self.known(7))
        self.assertEqual(sends, [])
        self.assertEqual(len(self.core), 21)  # the news itself was taken
        # ... but so little news does not bring the next sync forward either
        # (during a mass join gossip carries it; see _on_sync_records).
        self.assertGreater(self.core._next_sync, 1.0 + mcore._SYNC_AGAIN_MAX)

    def test_a_round_without_news_is_not_followed(self):
        self.assertEqual(self.round_of(self.known(8)), [])

    def test_the_last_round_is_not_followed(self):
        self.assertEqual(self.round_of(newcomers(8), more=False), [])

    def test_rounds_stop_after_the_maximum(self):
        last = mcore._MAX_SYNC_ROUNDS
        self.assertEqual(len(self.round_of(newcomers(8), round=last - 1)), 1)
        self.assertEqual(self.round_of(newcomers(8, start=8), round=last), [])


class OverlayHold(unittest.TestCase):
    """A list pulled in rounds: subjects are chosen once it is in, or after _OVERLAY_HOLD."""

    def setUp(self):
        names = [f"n{i:03}" for i in range(300)]
        self.seed, _ = formed(names, "n000")
        self.core = Core("new", "127.0.1.1:7400", 1, MembershipConfig(), rng=random.Random(1))
        seed_address = self.seed.me.address
        self.core.handle(JoinRequested((seed_address,)), 0.0)
        self.core.handle(LinkUp("n000", seed_address), 0.1)
        # A seed that does not push its list (listed 0): the joiner pulls it.
        actions = self.core.handle(Received("n000", join_ack(self.seed.me)), 0.2)
        [self.digest] = [s.message for s in digests_sent(actions)]
        self.assertEqual(self.digest.round, 0)

    def answer(self, digest, at):
        """The seed's answer to C{digest}, handed to the joiner: its actions."""
        [reply] = of(self.seed.handle(Received("new", digest), at), Send)
        return reply.message, self.core.handle(Received("n000", reply.message), at)

    def test_no_subjects_are_dialled_until_the_last_round(self):
        digest, at, rounds = self.digest, 0.3, []
        while True:
            records, actions = self.answer(digest, at)
            rounds.append((records.more, [c.name for c in of(actions, Connect)]))
            following = digests_sent(actions)
            if not following:
                break
            [send] = following
            digest, at = send.message, at + 0.1
        self.assertGreater(len(rounds), 2)  # 300 records: several rounds of <= 128
        self.assertEqual([more for more, _ in rounds], [True] * (len(rounds) - 1) + [False])
        self.assertEqual([c for _, c in rounds[:-1]], [[]] * (len(rounds) - 1))
        self.assertEqual(len(self.core), 301)
        self.assertEqual(sorted(rounds[-1][1]), sorted(self.core.subjects))
        self.assertEqual(len(self.core.subjects), self.core.config.observers)

    def test_the_hold_ends_after_overlay_hold_if_the_rounds_stop(self):
        records, actions = self.answer(self.digest, 0.3)
        self.assertTrue(records.more)
        self.assertTrue(digests_sent(actions))  # the next round was asked for ...
        self.assertEqual(of(actions, Connect), [])
        # ... and never comes. Until the hold runs out the overlay waits:
        before = self.core.handle(TimerFired(mcore.TICK), 0.3 + mcore._OVERLAY_HOLD - 0.01)
        self.assertEqual(of(before, Connect), [])
        after = self.core.handle(TimerFired(mcore.TICK), 0.3 + mcore._OVERLAY_HOLD + 0.01)
        self.assertEqual(sorted(c.name for c in of(after, Connect)), sorted(self.core.subjects))
        self.assertEqual(len(self.core.subjects), self.core.config.observers)

    def test_each_round_extends_the_hold(self):
        records, actions = self.answer(self.digest, 0.3)
        [send] = digests_sent(actions)
        at = 0.3 + mcore._OVERLAY_HOLD * 0.75
        records, actions = self.answer(send.message, at)
        self.assertTrue(records.more)
        self.assertEqual(of(actions, Connect), [])
        # Past the first round's hold, but within the second's:
        tick = self.core.handle(TimerFired(mcore.TICK), 0.3 + mcore._OVERLAY_HOLD + 0.1)
        self.assertEqual(of(tick, Connect), [])
        tick = self.core.handle(TimerFired(mcore.TICK), at + mcore._OVERLAY_HOLD + 0.01)
        self.assertTrue(of(tick, Connect))

    def test_a_list_that_fits_one_round_is_dialled_at_once(self):
        # A seed with a shorter list (the same n000 record, so the same JoinAck).
        self.seed, _ = formed([f"n{i:03}" for i in range(MAX_SYNC_RECORDS // 2)], "n000")
        records, actions = self.answer(self.digest, 0.3)
        self.assertFalse(records.more)
        self.assertEqual(digests_sent(actions), [])
        self.assertEqual(sorted(c.name for c in of(actions, Connect)), sorted(self.core.subjects))


class HealedPartition(unittest.TestCase):
    def test_two_sides_of_twenty_merge_their_views_within_25_seconds(self):
        """Two halves of 40 nodes (default timing), cut for 30 s, agree within 25 s of the heal.

        The bound: on the heal every node whose reconnect probe to a member
        it declared dead is pending (one every reconnect_interval, kept
        _TRANSIENT_TTL; checked below) reconnects at once and syncs. Both
        lists (40 records) fit in one round; the dead records make their
        subjects refute (new incarnations, gossiped in ~2 s); syncs that
        bring news follow each other after 1, 2, 2 s; a record gossip missed
        waits at most one plain sync (1.1 x sync_interval = 11 s):
        2 + 5 + 11 = 18 s, 25 s with margin. Measured: 1.2-10 s over 60
        seeds. tests/membership/test_properties.py (PartitionsHeal) covers
        other sizes and cuts, with a short sync_interval and a 120 s bound.
        """
        config = MembershipConfig()
        bound = 25.0
        for seed in (1, 4, 7):
            cluster = SimCluster(40, config, seed=seed)
            cluster.run_for(5.0)
            side = [node_name(i) for i in range(20)]
            other = [node_name(i) for i in range(20, 40)]
            cluster.partition(side)
            cluster.run_for(30.0)
            for a, b in ((side[0], other[0]), (other[-1], side[-1])):
                self.assertIs(cluster.view(a, b).state, State.DEAD, (seed, a, b))
            self.assertTrue(any(node.core._sync_on_connect for node in cluster.live()))
            healed = cluster.now
            cluster.heal()
            while not cluster.converged() and cluster.now - healed < bound:
                cluster.run_for(0.25)
            self.assertTrue(cluster.converged(),
                            f"seed {seed}: views differ {bound} s after the heal")


class ListsCompared(unittest.TestCase):
    """Heartbeats carry the sender's list fingerprint; a quiet list that differs syncs at once."""

    def setUp(self):
        self.core, _ = formed([f"n{i:02}" for i in range(10)], "n00")
        self.other, _ = formed([f"n{i:02}" for i in range(11)], "n01")  # knows n10 too
        self.core.handle(LinkUp("n01", self.other.me.address), 0.1)

    def beat(self, now, table=None):
        table = self.other.fingerprint() if table is None else table
        return digests_sent(self.core.receive("n01", Heartbeat(1, 0, (), table), now))

    def test_the_same_list_costs_nothing(self):
        for now in (5.0, 6.0, 7.0):
            self.assertEqual(self.beat(now, table=self.core.fingerprint()), [])
        self.assertEqual(self.core.stats["list_syncs"], 0)

    def test_a_quiet_list_that_differs_syncs_with_the_sender(self):
        self.assertEqual(self.beat(5.0), [])  # their list may still be changing
        sent = self.beat(6.0)  # the same again: it is not
        self.assertEqual([s.to for s in sent], ["n01"])
        self.assertEqual(sent[0].message.buckets, self.core.digest())
        self.assertEqual(self.core.stats["list_syncs"], 1)
        # The answer brings the missing record: the lists agree.
        answer = of(self.other.receive("n00", sent[0].message, 6.1), Send)[0].message
        self.core.receive("n01", answer, 6.2)
        self.assertEqual(self.core.fingerprint(), self.other.fingerprint())
        self.assertEqual(self.core.stats["list_news"], 1)
        self.assertEqual(self.core.stats["list_records"], len(answer.records))

    def test_a_list_that_keeps_changing_elsewhere_waits_for_gossip(self):
        for now, table in ((5.0, 11), (6.0, 12), (7.0, 13)):
            self.assertEqual(self.beat(now, table=table), [])

    def test_at_most_one_such_sync_per_list_quiet(self):
        self.beat(4.0)
        self.assertEqual(len(self.beat(5.0)), 1)
        self.assertEqual(self.beat(5.0 + mcore._LIST_QUIET / 2), [])
        self.assertEqual(len(self.beat(5.0 + mcore._LIST_QUIET)), 1)

    def test_a_list_still_changing_here_waits_for_gossip(self):
        self.core.receive("n01", SyncRecords(newcomers(1), (), False, 0), 5.0)
        self.beat(5.0 + mcore._LIST_QUIET / 4)
        self.assertEqual(self.beat(5.0 + mcore._LIST_QUIET / 2), [])
        self.assertEqual(len(self.beat(5.0 + mcore._LIST_QUIET)), 1)

    def test_a_list_clearly_behind_syncs_at_once_while_lists_change(self):
        """Fingerprints that change with every heartbeat (members joining) do
        not hold back a node that knows clearly fewer members."""
        size = len(self.core)
        behind = size + mcore._BEHIND_MIN + 2  # with the newcomer: 11 of 22 missing
        self.core.receive("n01", SyncRecords(newcomers(1), (), False, 0), 5.0)  # not quiet
        sent = digests_sent(self.core.receive(
            "n01", Heartbeat(1, 0, (), 11, behind + 1), 5.1))
        self.assertEqual([s.to for s in sent], ["n01"])
        self.assertEqual(self.core.stats["list_syncs"], 1)
        # At most one per _LIST_QUIET; a list a few records behind waits for gossip.
        self.assertEqual(digests_sent(self.core.receive(
            "n01", Heartbeat(1, 0, (), 12, behind + 2), 5.2)), [])
        self.assertEqual(digests_sent(self.core.receive(
            "n01", Heartbeat(1, 0, (), 13, len(self.core) + 3), 5.1 + mcore._LIST_QUIET)), [])

    def test_behind_means_a_share_and_a_minimum(self):
        self.assertTrue(mcore._behind(100, 108))
        self.assertFalse(mcore._behind(100, 107))  # fewer than _BEHIND_MIN missing
        self.assertTrue(mcore._behind(900, 1000))
        self.assertFalse(mcore._behind(960, 1000))  # under 5 %
        self.assertFalse(mcore._behind(1000, 900))  # we know more

    def test_heartbeats_without_a_fingerprint_are_plain(self):
        for now in (5.0, 6.0):
            self.assertEqual(digests_sent(self.core.receive("n01", Heartbeat(1, 0), now)), [])
