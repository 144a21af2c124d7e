"""Expel: a node this node no longer admits is declared gone at once, and stays gone."""

from twisted.trial import unittest

from clsd.membership.core.members import State
from clsd.membership.core.node import Expel, Gossip, MemberChanged, Received

from tests.membership.test_core import formed, of
from tests.support.membership_signing import signed_update


class ExpelTests(unittest.TestCase):
    def setUp(self):
        self.core, _ = formed(["a", "b", "c", "m"], "a")

    def test_a_live_member_is_declared_left_at_once(self):
        actions = self.core.handle(Expel("m", "its certificate has been revoked"), 1.0)
        changed = of(actions, MemberChanged)
        self.assertEqual(len(changed), 1)
        self.assertEqual(changed[0].member.state, State.LEFT)
        self.assertEqual(changed[0].reason, "expelled on a: its certificate has been revoked")
        self.assertEqual(self.core.member("m").state, State.LEFT)
        # The news is queued for gossip: the others hear of the removal too.
        self.assertEqual(self.core._queue.get(("m", "m")).member.state, State.LEFT)

    def test_its_refutation_relayed_by_others_is_ignored(self):
        self.core.handle(Expel("m", "revoked"), 1.0)
        m = self.core.member("m")
        refuted = m.evolve(state=State.ALIVE, incarnation=m.incarnation + 5)
        actions = self.core.handle(Received("b", Gossip((signed_update(refuted),))), 2.0)
        self.assertEqual(of(actions, MemberChanged), [])
        self.assertEqual(self.core.member("m").state, State.LEFT)

    def test_a_new_life_is_admitted_again(self):
        """A restart (new generation, e.g. with a newly issued certificate) may join."""
        self.core.handle(Expel("m", "revoked"), 1.0)
        m = self.core.member("m")
        reborn = m.evolve(state=State.ALIVE, generation=m.generation + 1, incarnation=0)
        self.core.handle(Received("b", Gossip((signed_update(reborn),))), 2.0)
        self.assertEqual(self.core.member("m").state, State.ALIVE)

    def test_unknown_names_and_itself_change_nothing(self):
        self.assertEqual(of(self.core.handle(Expel("nobody", "x"), 1.0), MemberChanged), [])
        self.assertEqual(of(self.core.handle(Expel("a", "x"), 1.0), MemberChanged), [])
        self.assertEqual(self.core.member("a").state, State.ALIVE)
