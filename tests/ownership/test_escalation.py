"""Escalation: ineligible for a cooldown after a crash loop; FAILED when every candidate failed."""

from twisted.trial import unittest

from clsd.ownership.core.escalation import FAILED, RUNNING, Escalation, cluster_status, notifier
from clsd.ownership.core.placement import MemberState


class EscalationTests(unittest.TestCase):
    def test_cooldown(self):
        e = Escalation()
        self.assertEqual(e.gave_up("A", 10.0, 300.0), 310.0)
        self.assertEqual(e.ineligible(309.9), frozenset({"A"}))
        self.assertEqual(e.next_wakeup(), 310.0)
        self.assertEqual(e.ineligible(310.0), frozenset())
        self.assertIsNone(e.next_wakeup())

    def test_remaining(self):
        """What the admin ``status`` shows as ``ineligible: cooldown 4m``."""
        e = Escalation()
        e.gave_up("A", 10.0, 300.0)
        self.assertEqual(e.remaining("A", 70.0), 240.0)
        self.assertIsNone(e.remaining("A", 310.0))
        self.assertIsNone(e.remaining("B", 70.0))

    def test_clear(self):
        e = Escalation()
        e.gave_up("A", 0.0, 300.0)
        e.clear("A")
        self.assertEqual(e.ineligible(1.0), frozenset())

    def test_cluster_failed_only_when_every_registered_member_failed(self):
        a = MemberState("a", registrations={"A": 1}, failed=frozenset({"A"}))
        b = MemberState("b", registrations={"A": 1})
        w = MemberState("w")
        self.assertEqual(cluster_status("A", [a, b, w]), RUNNING)
        b_failed = MemberState("b", registrations={"A": 1}, failed=frozenset({"A"}))
        self.assertEqual(cluster_status("A", [a, b_failed, w]), FAILED)

    def test_standby_is_not_failure(self):
        a = MemberState("a", registrations={"A": 1}, standby=True)
        self.assertEqual(cluster_status("A", [a]), RUNNING)

    def test_one_notifier(self):
        members = [MemberState("b", registrations={"A": 1}),
                   MemberState("a", registrations={"A": 1}), MemberState("0witness")]
        self.assertEqual(notifier("A", members), "a")
