"""Incremental evaluation of suspects, and the ring's observer cache.

The core re-evaluates only the suspects an event may have changed (a report
about them, one of their observers changing health or joining or leaving the
rings) and caches each member's observers. These tests hold it to the simple
rule it replaces: after every event, every suspect re-evaluated until nothing
changes, with observers computed afresh each time.
"""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.membership.core import node as mcore
from clsd.membership.core.cut import is_failed
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import Gossip, MemberUpdate, Report, SyncRecords
from clsd.membership.core.node import Core, JoinRequested, LinkDown, LinkUp, Received, TimerFired
from clsd.membership.core.notary import FakeNotary
from clsd.membership.core.rings import Rings
from clsd.membership.core.table import build_snapshots



def signed_report(subject, generation, incarnation, observer):
    """A report as its observer makes it: signed (with the simulator's notary)."""
    return Report(subject, generation, incarnation, observer).signed(FakeNotary(observer))


class FullEvaluationCore(Core):
    """The reference: after every event, every suspect is evaluated again, in
    the order they became suspect, until a whole pass changes nothing; the
    observers are computed from the rings each time (no cache)."""

    def _observers(self, name):
        return tuple(self._table.rings._neighbours(name, True))

    def _settle(self):
        table = self._table
        for _ in range(100):
            if self._overlay_due():
                self._rings_dirty = False
                self._refresh_overlay()
            self._affected.clear()
            changed = False
            for subject in list(self._suspects):
                before = table.get(subject)
                self._evaluate(subject)
                changed |= table.get(subject) is not before
            self._affected.clear()
            if not (self._overlay_due() or changed):
                break


def pair(n, config):
    """Two cores of node n0 in the same formed cluster of n: incremental and reference."""
    names = [f"n{i}" for i in range(n)]
    members = [Member(name, f"127.0.0.{i + 2}:7400", 1, 0, State.ALIVE)
               for i, name in enumerate(names)]
    cores = []
    for cls in (Core, FullEvaluationCore):
        snapshot, rings = build_snapshots(members, config.observers)
        core = cls("n0", "127.0.0.2:7400", 1, config, rng=random.Random(3),
                   snapshot=snapshot, ring_snapshot=rings)
        cores.append(core)
    return cores


def no_suspect_meets_the_rule(core):
    """The fixpoint: no suspect left that the detection rule declares failed."""
    table = core._table
    for subject in core._suspects:
        member = table.get(subject)
        reporters = core._reports.reporters(subject, member.version)
        observers = table.rings._neighbours(subject, True)
        healthy = {o for o in observers
                   if table.get(o) is not None and table.get(o).state is State.ALIVE}
        if reporters and is_failed(observers, reporters, healthy, core.config.quorum):
            return subject
    return None


@st.composite
def scripts(draw):
    """A cluster size, a config and a list of abstract steps (resolved against
    the incremental core's view when they run, the same for both cores)."""
    n = draw(st.integers(6, 28))
    k = draw(st.sampled_from([3, 4, 8]))
    h = draw(st.integers(1, k))
    step = st.tuples(
        st.sampled_from(["report", "report", "report", "reports", "update", "update",
                         "sync", "join", "tick", "link"]),
        st.integers(0, 10 ** 6), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6),
        st.floats(0.0, 4.0))
    return n, k, h, draw(st.lists(step, min_size=5, max_size=80))


def resolve(view, kind, a, b, c, gap, names, joined):
    """The event for one abstract step; a list of events for the core."""
    subject = names[a % len(names)]
    member = view.member(subject)
    if kind in ("report", "reports"):
        if member is None:
            return []
        observers = view.observers_of(subject) or names
        count = 1 if kind == "report" else 1 + c % max(1, len(observers))
        chosen = [observers[(b + i) % len(observers)] for i in range(count)]
        if c % 7 == 0:
            chosen.append(names[c % len(names)])  # a non-observer's report
        inc = member.incarnation + (1 if c % 11 == 0 else 0)
        reports = tuple(signed_report(subject, member.generation, inc, o) for o in chosen)
        return [Received(names[b % len(names)], Gossip(reports))]
    if kind in ("update", "sync"):
        if member is None:
            member = Member(subject, f"127.0.1.{a % 200}:7400", 1, 0, State.ALIVE)
        state = [State.ALIVE, State.SUSPECT, State.DEAD, State.DEAD, State.LEFT][b % 5]
        generation = member.generation + (1 if c % 13 == 0 else 0)
        incarnation = member.incarnation + (c % 3 if state is State.ALIVE else c % 2)
        observers = view.observers_of(subject)
        reporters = tuple(observers[:b % (len(observers) + 1)]) if state is State.DEAD else ()
        update = MemberUpdate(member.evolve(state=state, generation=generation,
                                            incarnation=incarnation), 0.0, reporters)
        if state is State.LEFT:
            update = update.signed(FakeNotary(subject))  # a graceful leave is signed
        sender = names[c % len(names)]
        if kind == "sync":
            return [Received(sender, SyncRecords((update,), (), False, 0))]
        return [Received(sender, Gossip((update,)))]
    if kind == "join":
        name = f"x{len(joined)}"
        joined.append(name)
        names.append(name)
        fresh = Member(name, f"127.0.2.{len(joined)}:7400", 1, 0, State.ALIVE)
        return [Received(names[b % len(names)], Gossip((MemberUpdate(fresh),)))]
    if kind == "link":
        peer = names[b % len(names)]
        return [LinkUp(peer) if c % 2 else LinkDown(peer)]
    return [TimerFired(mcore.TICK if c % 3 else mcore.CHECK)]


class IncrementalEqualsFullEvaluation(unittest.TestCase):
    @settings(max_examples=200, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(scripts())
    def test_same_actions_and_lists_as_a_full_re_evaluation(self, script):
        n, k, h, steps = script
        config = MembershipConfig(observers=k, quorum=h)
        fast, full = pair(n, config)
        now = 0.0
        self.assertEqual(fast.handle(JoinRequested(), now), full.handle(JoinRequested(), now))
        names = [f"n{i}" for i in range(n)]
        joined = []
        for kind, a, b, c, gap in steps:
            now += gap
            for event in resolve(fast, kind, a, b, c, gap, names, joined):
                self.assertEqual(fast.handle(event, now), full.handle(event, now), event)
                self.assertIsNone(no_suspect_meets_the_rule(fast))
        self.assertEqual(fast.members(), full.members())
        self.assertEqual(sorted(fast._suspects), sorted(full._suspects))


class OnlyAffectedSuspectsAreEvaluated(unittest.TestCase):
    def setUp(self):
        config = MembershipConfig()
        self.core = pair(200, config)[0]
        self.core.handle(JoinRequested(), 0.0)
        self.evaluated = []
        real = self.core._evaluate

        def evaluate(subject):
            self.evaluated.append(subject)
            real(subject)
        self.core._evaluate = evaluate

    def suspect(self, subject, now):
        observer = self.core.observers_of(subject)[0]
        self.core.receive("n1", Gossip((signed_report(subject, 1, 0, observer),)), now)

    def test_a_report_evaluates_its_subject_only(self):
        for i in range(100, 140):
            self.suspect(f"n{i}", 1.0)
        self.assertEqual(len(self.core._suspects), 40)
        self.evaluated.clear()
        self.suspect("n150", 2.0)
        # n150 itself, and the suspects whose observer n150 is (its health changed).
        self.assertIn("n150", self.evaluated)
        watched = set(self.core._table.rings.subjects("n150"))
        self.assertLessEqual(set(self.evaluated) - {"n150"}, watched)
        self.assertLess(len(self.evaluated), 10)

    def test_a_change_of_health_evaluates_the_suspects_it_observes(self):
        for i in range(100, 140):
            self.suspect(f"n{i}", 1.0)
        # An observer of n120 becomes suspect itself: its report no longer
        # counts, so n120 (and only the suspects it observes) is looked at again.
        watcher = self.core.observers_of("n120")[1]
        watched = set(self.core._table.rings.subjects(watcher))
        self.evaluated.clear()
        self.suspect(watcher, 2.0)
        self.assertIn("n120", self.evaluated)
        self.assertLessEqual(set(self.evaluated), (watched & set(self.core._suspects)) | {watcher})

    def test_news_about_a_healthy_member_evaluates_nobody(self):
        for i in range(100, 140):
            self.suspect(f"n{i}", 1.0)
        self.evaluated.clear()
        member = self.core.member("n5")
        self.core.receive("n1", Gossip((MemberUpdate(member.evolve(incarnation=3)),)), 2.0)
        self.assertEqual(self.evaluated, [])


class NeighbourCache(unittest.TestCase):
    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(st.integers(1, 8), st.lists(st.tuples(st.booleans(), st.integers(0, 40)),
                                      max_size=120),
           st.sets(st.integers(0, 40)), st.integers(0, 5))
    def test_cached_neighbours_equal_fresh_ones(self, k, changes, start, compact_every):
        rings = Rings(k)
        for i in start:
            rings.add(f"m{i}")
        for step, (add, i) in enumerate(changes):
            # Fill the cache, change the rings, compare every entry.
            for name in [f"m{j}" for j in range(41)]:
                if name in rings:
                    rings.observers_tuple(name)
            (rings.add if add else rings.remove)(f"m{i}")
            if compact_every and step % compact_every == 0:
                rings.compact()
            if step % 7 == 3:
                rings.forget_neighbours()
            for name in [f"m{j}" for j in range(41)]:
                if name in rings:
                    self.assertEqual(rings.observers_tuple(name),
                                     tuple(rings._neighbours(name, True)), (name, step))
                    self.assertEqual(rings.subjects(name),
                                     rings._neighbours(name, False), (name, step))
