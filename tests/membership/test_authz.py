"""Every membership claim is the sender's own, or carries proof a relay cannot forge.

The rules (doc/membership.md, "What each message may claim"): a join or its
answer speaks for the authenticated sender; a heartbeat refreshes only its
sender; a report is signed by its observer; the reporters a death names are
a claim, the evidence is the signed reports a node holds; a force-removal is
of a dead member only; no news raises a member's incarnation by more than
2**32. Unit tests of each, a hypothesis property over every message type,
and the shell: a forgery closes the connection as ``forged``.
"""

import random

import attrs
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.events import EventLog
from clsd.layers import membership_message
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import (
    MAX_SYNC_PROOFS, Gossip, Heartbeat, Join, JoinAck, MemberUpdate, MessageError, Report,
    SyncDigest, SyncRecords, Unwatch, Watch, from_wire,
)
from clsd.membership.core.node import (
    MAX_INCARNATION_STEP, TICK, Core, ForceRemove, JoinRequested, LeaveRequested, LinkUp,
    MemberChanged, Send, TimerFired,
)
from clsd.membership.core.notary import FakeNotary
from clsd.membership.core.table import build_snapshots
from clsd.membership.service import MembershipService
from clsd.metrics import Metrics
from clsd.wire.core.errors import Forged
from clsd.wire.router import Router
from tests.metrics.test_metrics import scrape, value

NAMES = [f"n{i}" for i in range(12)]


def formed(me="n0", names=NAMES):
    members = [Member(n, f"127.0.0.{i + 2}:7400", 1, 0, State.ALIVE)
               for i, n in enumerate(names)]
    snapshot, rings = build_snapshots(members, 8)
    address = next(m.address for m in members if m.name == me)
    core = Core(me, address, 1, MembershipConfig(), rng=random.Random(2),
                snapshot=snapshot, ring_snapshot=rings)
    core.handle(JoinRequested(), 0.0)
    return core


def signed(subject, observer, generation=1, incarnation=0, by=None):
    """A report on C{subject} by C{observer}, signed by C{by} (default: the observer)."""
    return Report(subject, generation, incarnation, observer).signed(FakeNotary(by or observer))


def view(core):
    return {m.name: (m.state, m.incarnation) for m in core._table}


class Reports(unittest.TestCase):
    def setUp(self):
        self.core = formed()
        self.before = view(self.core)

    def assertForged(self, sender, message, claimed):
        with self.assertRaises(Forged) as caught:
            self.core.receive(sender, message, 1.0)
        self.assertEqual(caught.exception.claimed, claimed)
        self.assertEqual(view(self.core), self.before, "a refused message changed the view")
        self.assertFalse(self.core._queue, "a refused piece was queued for relaying")

    def test_a_relayed_report_without_a_signature_is_forged(self):
        self.assertForged("n3", Gossip((Report("n7", 1, 0, "n5"),)), "n5")
        self.assertEqual(self.core.refused["report-proof"], 1)

    def test_a_report_signed_by_the_relay_is_forged(self):
        self.assertForged("n3", Gossip((signed("n7", "n5", by="n3"),)), "n5")

    def test_an_altered_report_is_forged(self):
        altered = attrs.evolve(signed("n7", "n5"), subject="n8")
        self.assertForged("n3", Heartbeat(1, 0, (altered,)), "n5")

    def test_one_forged_piece_refuses_the_whole_message(self):
        good = MemberUpdate(Member("new", "127.0.1.9:7400", 1, 0, State.ALIVE))
        self.assertForged("n3", Gossip((good, signed("n7", "n6"), Report("n7", 1, 0, "n5"))),
                          "n5")

    def test_a_signed_relayed_report_is_believed_and_relayed(self):
        report = signed("n7", "n5")
        self.core.receive("n3", Gossip((report,)), 1.0)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        self.assertIs(self.core._queue.get(report.key), report)

    def test_own_reports_are_signed(self):
        core = formed()
        subject = core.subjects[0]
        for now in range(1, 12):
            core.handle(TimerFired(TICK), float(now))
        queued = [core._queue.get(key) for key in core._queue._level_of]
        mine = [p for p in queued
                if type(p) is Report and p.observer == "n0" and p.subject == subject]
        self.assertEqual(len(mine), 1)
        self.assertTrue(mine[0].verified(FakeNotary("anyone")))


class Deaths(unittest.TestCase):
    def setUp(self):
        self.core = formed()
        self.observers = self.core.observers_of("n7")

    def test_forged_deaths_naming_observers_make_at_most_a_suspicion(self):
        """Issue 16's attack: "reported unreachable by witness, beta", from mallory."""
        dead = Member("n7", "127.0.0.9:7400", 1, 0, State.DEAD)
        for now in range(1, 13):
            self.core.receive("mallory", Gossip((MemberUpdate(dead, 0.0, self.observers),)),
                              float(now))
        self.assertIs(self.core.member("n7").state, State.SUSPECT)
        self.assertEqual(self.core._reports.reporters("n7", (1, 0)), frozenset())

    def test_a_death_with_its_signed_reports_is_accepted(self):
        dead = Member("n7", "127.0.0.9:7400", 1, 0, State.DEAD)
        reports = tuple(signed("n7", o) for o in self.observers[:6])
        actions = self.core.receive("n3", Gossip(reports + (MemberUpdate(dead, 0.0,
                                                                         self.observers[:6]),)),
                                    1.0)
        self.assertIs(self.core.member("n7").state, State.DEAD)
        self.assertEqual(set(of_changes(actions)[-1].reporters), set(self.observers[:6]))

    def test_the_evidence_goes_out_ahead_of_the_death(self):
        reports = tuple(signed("n7", o) for o in self.observers[:6])
        self.core.receive("n3", Gossip(reports), 1.0)
        self.assertIs(self.core.member("n7").state, State.DEAD)
        pieces = [p for p in self.core._queue.take(16, 100)
                  if (p.member.name if type(p) is MemberUpdate else p.subject) == "n7"]
        death = next(i for i, p in enumerate(pieces) if type(p) is MemberUpdate)
        self.assertEqual(set(pieces[:death]), set(reports))
        # A node that gets this message believes the death at once.
        other = formed("n1")
        other.receive("n0", Gossip(tuple(pieces)), 2.0)
        self.assertIs(other.member("n7").state, State.DEAD)

    def test_a_force_removal_of_a_live_member_is_refused(self):
        left = Member("n7", "127.0.0.9:7400", 1, 0, State.LEFT)
        self.core.receive("mallory", Gossip((MemberUpdate(left, 0.0, ("n3",)),)), 1.0)
        self.assertIs(self.core.member("n7").state, State.ALIVE)
        self.assertEqual(self.core.refused["removal-of-live"], 1)

    def test_a_force_removal_of_a_member_dead_here_is_taken(self):
        reports = tuple(signed("n7", o) for o in self.observers[:6])
        self.core.receive("n3", Gossip(reports), 1.0)
        self.assertIs(self.core.member("n7").state, State.DEAD)
        left = Member("n7", "127.0.0.9:7400", 1, 0, State.LEFT)
        self.core.receive("n3", Gossip((MemberUpdate(left, 0.0, ("n3",)),)), 2.0)
        self.assertIs(self.core.member("n7").state, State.LEFT)


class Leaves(unittest.TestCase):
    def setUp(self):
        self.core = formed()
        self.left = MemberUpdate(self.core.member("n7").evolve(state=State.LEFT))

    def test_a_leave_without_the_members_signature_is_forged(self):
        for update in (self.left, self.left.signed(FakeNotary("n3"))):
            for message in (Gossip((update,)), Heartbeat(1, 0, (update,)),
                            SyncRecords((update,))):
                with self.assertRaises(Forged) as caught:
                    self.core.receive("n3", message, 1.0)
                self.assertEqual(caught.exception.claimed, "n7")
                self.assertIs(self.core.member("n7").state, State.ALIVE)
        self.assertEqual(self.core.refused["leave-proof"], 6)

    def test_a_signed_leave_is_taken_and_travels_with_its_proof(self):
        signed_left = self.left.signed(FakeNotary("n7"))
        self.core.receive("n3", Gossip((signed_left,)), 1.0)
        self.assertIs(self.core.member("n7").state, State.LEFT)
        self.assertEqual(self.core._queue.get(("m", "n7")).proof, signed_left.proof)
        # ... and in anti-entropy: another node takes it from our list.
        records, _ = self.core._records_for(range(64))
        relayed = next(r for r in records if r.member.name == "n7")
        other = formed("n1")
        other.receive("n0", SyncRecords((relayed,)), 2.0)
        self.assertIs(other.member("n7").state, State.LEFT)

    def test_a_force_removal_keeps_its_remover_in_anti_entropy(self):
        observers = self.core.observers_of("n7")
        reports = tuple(signed("n7", o) for o in observers[:6])
        self.core.receive("n3", Gossip(reports), 1.0)
        self.core.handle(ForceRemove("n7"), 2.0)
        records, _ = self.core._records_for(range(64))
        removal = next(r for r in records if r.member.name == "n7")
        self.assertEqual(removal.reporters, ("n0",))
        other = formed("n1")
        other.receive("n3", Gossip(reports), 1.0)
        other.receive("n0", SyncRecords((removal,)), 3.0)  # not forged: it names its remover
        self.assertIs(other.member("n7").state, State.LEFT)

    def test_own_leave_is_signed(self):
        core = formed()
        core.handle(LinkUp("n3"), 0.1)
        actions = core.handle(LeaveRequested(), 1.0)
        sent = [a.message.updates[0] for a in actions if isinstance(a, Send)]
        self.assertTrue(sent and all(u.verified(FakeNotary("n3")) for u in sent))

    def test_list_messages_carry_a_bounded_number_of_signed_records(self):
        names = [f"m{i:03}" for i in range(100)]
        seed = formed("m000", names)
        for name in names[1:80]:
            left = MemberUpdate(seed.member(name).evolve(state=State.LEFT)).signed(
                FakeNotary(name))
            seed.receive("m001" if name != "m001" else "m002", Gossip((left,)), 1.0)
        fresh = Member("new", "127.0.9.1:7400", 1, 0, State.ALIVE)
        pushed = [a.message for a in seed.receive("new", Join(fresh), 2.0)
                  if isinstance(a, Send) and isinstance(a.message, SyncRecords)]
        self.assertGreater(len(pushed), 1)
        self.assertTrue(all(sum(1 for r in m.records if r.proof) <= MAX_SYNC_PROOFS
                            for m in pushed))
        self.assertEqual(sum(len(m.records) for m in pushed), 100)
        records, more = seed._records_for(range(64))
        self.assertLessEqual(sum(1 for r in records if r.proof), MAX_SYNC_PROOFS)
        self.assertTrue(more)
        # A peer sending more is refused at decoding.
        too_many = SyncRecords(tuple(p for m in pushed for p in m.records if p.proof)[:33])
        with self.assertRaises(MessageError):
            from_wire(too_many.to_wire())


def of_changes(actions):
    return [a for a in actions if isinstance(a, MemberChanged)]


class Incarnations(unittest.TestCase):
    def setUp(self):
        self.core = formed()

    def test_a_jump_beyond_the_bound_is_refused_in_every_kind_of_news(self):
        huge = MAX_INCARNATION_STEP + 1
        for piece in (MemberUpdate(Member("n7", "127.0.0.9:7400", 1, huge, State.SUSPECT)),
                      MemberUpdate(Member("n7", "127.0.0.9:7400", 1, huge, State.ALIVE)),
                      signed("n7", "n5", incarnation=huge)):
            self.core.receive("n3", Gossip((piece,)), 1.0)
            self.assertEqual(self.core.member("n7").incarnation, 0, piece)
            self.assertIs(self.core.member("n7").state, State.ALIVE)
        self.assertEqual(self.core.refused["incarnation-step"], 3)

    def test_a_newer_life_of_itself_is_counted(self):
        phantom = Member("n0", "127.0.9.9:7400", 2, 0, State.ALIVE)
        self.core.receive("n3", Gossip((MemberUpdate(phantom),)), 1.0)
        self.assertEqual(self.core.refused["newer-life-of-self"], 1)
        self.assertEqual(self.core.me.generation, 1)

    def test_a_node_does_not_follow_a_forged_jump_of_its_own_incarnation(self):
        suspicion = Member("n0", "127.0.0.2:7400", 1, 2**64 - 1, State.SUSPECT)
        self.core.receive("n3", Gossip((MemberUpdate(suspicion),)), 1.0)
        self.assertEqual(self.core.incarnation, 0)
        # a step within the bound is refuted as usual
        self.core.receive("n3", Gossip((MemberUpdate(suspicion.evolve(incarnation=5)),)), 1.1)
        self.assertEqual(self.core.incarnation, 6)


class Heartbeats(unittest.TestCase):
    def test_a_heartbeat_refreshes_its_sender_only(self):
        """Mallory beating with a subject's generation and incarnation does not keep it alive.

        A heartbeat names no one but its sender (its generation and
        incarnation are read for nobody else): this holds by construction
        and guards it against a change that would read them.
        """
        core = formed()
        subject = core.subjects[0]
        core.handle(LinkUp(subject), 0.1)
        core.handle(LinkUp("mallory"), 0.1)
        me = core.member(subject)
        now = 0.1
        while now < 6.0:
            now += 0.5
            core.receive("mallory", Heartbeat(me.generation, me.incarnation), now)
            core.handle(TimerFired(TICK), now)
        self.assertIs(core.member(subject).state, State.SUSPECT)
        self.assertIn("reported unreachable by n0", core.info(subject).reason)


# -- the property: every message type, forged identities -------------------------------

SENDERS = ("mallory", "n3")


def _forgeries(core, sender, victim, observer):
    """Copies of each message type whose named identities are not the sender's."""
    victim_record = core.member(victim)
    return {
        "m.heartbeat": Heartbeat(1, 0, (Report(victim, 1, 0, observer),)),
        "m.heartbeat (signed by the relay)": Heartbeat(
            1, 0, (signed(victim, observer, by=sender),)),
        "m.gossip": Gossip((Report(victim, 1, 0, observer),)),
        "m.gossip (a death naming observers)": Gossip((MemberUpdate(
            victim_record.evolve(state=State.DEAD), 0.0, (observer,)),)),
        "m.gossip (a removal)": Gossip((MemberUpdate(
            victim_record.evolve(state=State.LEFT), 0.0, (observer,)),)),
        "m.gossip (a leave)": Gossip((MemberUpdate(victim_record.evolve(state=State.LEFT)),)),
        "m.sync-records (a leave signed by the relay)": SyncRecords((MemberUpdate(
            victim_record.evolve(state=State.LEFT)).signed(FakeNotary(sender)),)),
        "m.join": Join(victim_record),
        "m.join-ack": JoinAck(victim_record, 0),
        "m.sync-records (a death naming observers)": SyncRecords((MemberUpdate(
            victim_record.evolve(state=State.DEAD), 0.0, (observer,)),)),
        "m.watch": Watch(),
        "m.unwatch": Unwatch(),
        "m.sync-digest": SyncDigest((0,) * 64),
    }


class EveryMessageType(unittest.TestCase):
    @settings(max_examples=60, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(sender=st.sampled_from(SENDERS), victim=st.sampled_from(NAMES[1:]),
           observer=st.sampled_from(NAMES[1:] + ["mallory"]), data=st.data())
    def test_a_copy_naming_others_than_the_sender_is_refused(self, sender, victim, observer,
                                                             data):
        assume(victim != sender)
        core = formed()
        if observer in (sender, victim):
            observer = next(o for o in core.observers_of(victim) if o != sender)
        kind = data.draw(st.sampled_from(sorted(_forgeries(core, sender, victim, observer))))
        message = _forgeries(core, sender, victim, observer)[kind]
        try:
            core.receive(sender, message, 1.0)
        except Forged as forged:
            self.assertIn(forged.claimed, (victim, observer), kind)
        # Whatever the message: the victim is not dead or gone, the claimed
        # observer's report is not held, nothing speaks for them.
        self.assertIn(core.member(victim).state, (State.ALIVE, State.SUSPECT), kind)
        self.assertNotIn(observer, core._reports.reporters(victim, (1, 0)), kind)
        if kind.startswith(("m.join", "m.heartbeat", "m.gossip")) and "death" not in kind \
                and "removal" not in kind:
            # claims of an identity, not of a state: refused outright
            self.assertIs(core.member(victim).state, State.ALIVE, kind)
        self.assertNotIn(victim, core._watchers, kind)


# -- the shell ------------------------------------------------------------------------

class ClosingPeer:
    def __init__(self, name):
        self.name = name
        self.address = None
        self.initiator = False
        self.closed = None

    def close(self, key="local-close", detail="", *, blame="local"):
        self.closed = (key, detail, blame)


class FakeNetwork:
    advertise = listen_address = ("127.0.0.11", 7400)
    generation = 1000

    def connect(self, address):
        pass

    def disconnect(self, address):
        pass

    def send_to(self, name, message):
        return True


class ServiceForgery(unittest.TestCase):
    def test_a_forged_report_closes_the_connection_and_is_counted(self):
        clock = Clock()
        router = Router(clock=clock)
        service = MembershipService(
            name="alpha", config=MembershipConfig(), network=FakeNetwork(), router=router,
            reactor=clock, events=EventLog(monotonic=clock.seconds), seeds=(),
            monotonic=clock.seconds, rng=random.Random(3))
        service.startService()
        mallory = ClosingPeer("mallory")
        message = Gossip((Report("beta", 1, 0, "witness"),))
        wire = membership_message(message)
        router.message_received(mallory, type(wire)(wire.type, wire.fields, parsed=message))
        self.assertEqual(mallory.closed[0], "forged")
        self.assertIn("witness", mallory.closed[1])
        self.assertEqual(router.forged["mallory"], 1)
        self.assertEqual(service.refused(), {"report-proof": 1})
        # A join as someone else too.
        eve = ClosingPeer("eve")
        join = Join(Member("beta", "127.0.0.12:7400", 1, 0, State.ALIVE))
        wire = membership_message(join)
        router.message_received(eve, type(wire)(wire.type, wire.fields, parsed=join))
        self.assertEqual(eve.closed[0], "forged")
        self.assertIsNone(service.core.member("beta"))



class RefusalMetric(unittest.TestCase):
    def test_refusals_are_exposed_by_reason(self):
        metrics = Metrics(node="alpha", version="test")
        core = formed()
        for _ in range(2):
            try:
                core.receive("mallory", Gossip((Report("n7", 1, 0, "n5"),)), 1.0)
            except Forged:
                pass
        metrics.watch_membership_refused(lambda: dict(core.refused))
        samples, types = scrape(metrics)
        self.assertEqual(types["clsd_membership_refused"], "counter")
        self.assertEqual(value(samples, "clsd_membership_refused_total", reason="report-proof"),
                         2)
