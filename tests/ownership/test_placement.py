"""Placement: priority then name, stickiness, preempt with delay, n-active spread."""

from twisted.trial import unittest

from clsd.ownership.core.placement import Candidate, MemberState, is_eligible, place


def c(name, priority, since=0.0, slot=None):
    return Candidate(name, priority, since, slot)


class ActiveStandbyTests(unittest.TestCase):
    def test_highest_priority_then_name(self):
        cases = [
            ([c("a", 10), c("b", 20)], "b", "a"),
            ([c("b", 20), c("a", 20)], "a", "b"),
            ([c("a", 5)], "a", None),
            ([], None, None),
        ]
        for candidates, target, successor in cases:
            placement = place(candidates, 1)
            self.assertEqual(placement.targets, (target,), candidates)
            self.assertEqual(placement.successors, (successor,), candidates)

    def test_current_holder_is_sticky(self):
        placement = place([c("a", 10, slot=0), c("b", 99)], 1)
        self.assertEqual(placement.targets, ("a",))
        self.assertEqual(placement.role("b"), ("successor", 0))

    def test_preempt_only_after_the_delay(self):
        candidates = [c("a", 10, slot=0), c("b", 99, since=100.0)]
        self.assertEqual(place(candidates, 1, preempt=True, preempt_delay=30.0,
                               now=129.0).targets, ("a",))
        self.assertEqual(place(candidates, 1, preempt=True, preempt_delay=30.0,
                               now=130.0).targets, ("b",))

    def test_preempt_needs_strictly_higher_priority(self):
        candidates = [c("b", 10, slot=0), c("a", 10)]
        self.assertEqual(place(candidates, 1, preempt=True, now=1e9).targets, ("b",))


class NActiveTests(unittest.TestCase):
    def test_slots_on_distinct_nodes_best_first(self):
        placement = place([c("a", 1), c("b", 3), c("c", 2), c("d", 0)], 3)
        self.assertEqual(placement.targets, ("b", "c", "a"))
        self.assertEqual(placement.successors, ("d", None, None))

    def test_holders_keep_their_slots(self):
        placement = place([c("a", 1, slot=2), c("b", 3), c("c", 2, slot=0)], 3)
        self.assertEqual(placement.targets, ("c", "b", "a"))

    def test_fewer_candidates_than_slots(self):
        self.assertEqual(place([c("a", 1)], 3).targets, ("a", None, None))

    def test_preempt_replaces_the_worst_holder(self):
        candidates = [c("a", 1, slot=0), c("b", 5, slot=1), c("z", 9)]
        placement = place(candidates, 2, preempt=True, preempt_delay=0.0, now=1.0)
        self.assertEqual(placement.targets, ("z", "b"))
        self.assertEqual(placement.successors, ("a", None))


class EligibilityTests(unittest.TestCase):
    def test_registered_not_standby_not_failed(self):
        member = MemberState("a", registrations={"A": 1, "B": 2}, failed=frozenset({"B"}))
        self.assertTrue(is_eligible(member, "A"))
        self.assertFalse(is_eligible(member, "B"))
        self.assertFalse(is_eligible(member, "C"))
        self.assertFalse(is_eligible(MemberState("a", registrations={"A": 1}, standby=True), "A"))


from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@st.composite
def candidate_sets(draw):
    count = draw(st.integers(1, 4))
    names = draw(st.lists(st.sampled_from("abcdefg"), unique=True, max_size=7))
    slots = list(range(count)) + [None] * 7
    result = []
    used_slots = set()
    for name in names:
        slot = draw(st.sampled_from(slots))
        if slot in used_slots:
            slot = None
        if slot is not None:
            used_slots.add(slot)
        result.append(c(name, draw(st.integers(0, 3)), draw(st.floats(0, 100)), slot))
    return count, result


class PlacementProperties(unittest.TestCase):
    @given(candidate_sets(), st.booleans(), st.floats(0, 100))
    def test_invariants(self, case, preempt, now):
        count, candidates = case
        placement = place(candidates, count, preempt=preempt, preempt_delay=10.0, now=now)
        chosen = [t for t in placement.targets if t is not None]
        self.assertEqual(len(chosen), len(set(chosen)))  # distinct nodes
        self.assertEqual(len(chosen), min(count, len(candidates)))
        names = {x.name for x in candidates}
        self.assertTrue(set(chosen) <= names)
        successors = [s for s in placement.successors if s is not None]
        self.assertFalse(set(successors) & set(chosen))
        if not preempt:
            for x in candidates:  # stickiness
                if x.slot is not None:
                    self.assertEqual(placement.targets[x.slot], x.name)
