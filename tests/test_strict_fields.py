"""A message's fields are exactly its schema's: an unknown key anywhere fixed is refused.

Membership and ownership parse their own messages (clsd.layers); the peer
protocol's rule (doc/peer-protocol.md, "Messages of upper layers") is that an
unknown field is refused like a wrong type, with the error naming it.
"""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.layers import MEMBERSHIP_TYPES, OWNERSHIP_TYPES
from clsd.membership.core import messages as membership
from clsd.membership.core.members import Member, State
from clsd.membership.core.notary import FakeNotary
from clsd.ownership.core import messages as ownership
from clsd.ownership.core.ballot import Ballot
from clsd.wire.core.errors import FieldError

ALPHA = Member("alpha", "127.0.0.11:7400", 17, 3, State.ALIVE, '{"x":1}')
BALLOT = Ballot(4, "alpha", 17)

MEMBERSHIP = [
    membership.Heartbeat(17, 3, (membership.MemberUpdate(ALPHA),), 5, 9),
    membership.Gossip((membership.MemberUpdate(ALPHA.evolve(state=State.DEAD), 3.5, ("b",)),
                       membership.Report("alpha", 17, 3, "beta").signed(FakeNotary("beta")))),
    membership.Watch(), membership.Unwatch(), membership.Join(ALPHA),
    membership.JoinAck(ALPHA, 3), membership.SyncDigest(tuple(range(64)), 1),
    membership.SyncRecords((membership.MemberUpdate(ALPHA),), (1, 2), True, 1),
]
OWNERSHIP = [
    ownership.Prepare("A", BALLOT, "v1"),
    ownership.Promise("A", BALLOT, True, "", 3, holder=("alpha", 17), epoch=2, remaining=1.5,
                      previous="beta", previous_released=True, previous_epoch=1),
    ownership.Propose("A", BALLOT, 3.0, 2, "v1"), ownership.Accepted("A", BALLOT, True),
    ownership.Release("A", BALLOT), ownership.Handover("A", 3),
    ownership.MoveRequest("A", "beta", "alpha", "SHA256:x"),
]

#: Every field a record or a piece of gossip may carry (not unknown, whatever the piece).
PIECE_FIELDS = frozenset(("k", "n", "a", "g", "i", "s", "d", "age", "by", "p", "c", "f", "o"))

junk_keys = st.text(min_size=1, max_size=12).filter(lambda k: k != "type")


def nested_places(wire):
    """(path, dict) of every fixed record inside a membership message's wire dict."""
    for key in ("updates", "records"):
        for index, item in enumerate(wire.get(key, ())):
            yield f"{key}[{index}]", item
    if "member" in wire:
        yield "member", wire["member"]


class Membership(unittest.TestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(MEMBERSHIP), junk_keys, st.integers() | st.text(max_size=4))
    def test_any_message_with_an_unknown_key_is_refused(self, message, key, value):
        wire = json.loads(json.dumps(message.to_wire()))
        self.assertEqual(membership.from_wire(wire), message)
        if key in wire or key in getattr(type(message), "FIELDS", ()):
            return  # a field of the message (optional ones too): not unknown
        with self.assertRaises(membership.MessageError) as caught:
            membership.from_wire(dict(wire, **{key: value}))
        self.assertEqual(str(caught.exception), f"{message.TYPE}.{key}: unknown field")

    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(MEMBERSHIP), junk_keys)
    def test_an_unknown_key_in_a_record_or_piece_is_refused(self, message, key):
        wire = json.loads(json.dumps(message.to_wire()))
        for path, item in nested_places(wire):
            if key in item or key in PIECE_FIELDS:
                continue  # a field the record or piece has, or may have
            original = dict(item)
            item[key] = 1
            with self.assertRaises(membership.MessageError) as caught:
                membership.from_wire(wire)
            self.assertEqual(str(caught.exception), f"{message.TYPE}.{path}.{key}: unknown field")
            item.clear()
            item.update(original)

    def test_the_codec_closes_with_bad_field_naming_it(self):
        watch = {t.name: t for t in MEMBERSHIP_TYPES}["m.watch"]
        with self.assertRaises(FieldError) as caught:
            watch.validate({"junk": 1})
        self.assertIn("junk: unknown field", str(caught.exception))


class Ownership(unittest.TestCase):
    @settings(max_examples=200, deadline=None)
    @given(st.sampled_from(OWNERSHIP), junk_keys, st.integers() | st.text(max_size=4))
    def test_any_message_with_an_unknown_key_is_refused(self, message, key, value):
        wire = json.loads(json.dumps(message.to_wire()))
        self.assertEqual(ownership.from_wire(wire), message)
        if key in type(message).FIELDS:
            return
        with self.assertRaises(ownership.WireError) as caught:
            ownership.from_wire(dict(wire, **{key: value}))
        self.assertEqual(str(caught.exception), f"{message.TYPE}.{key}: unknown field")

    def test_the_codec_refuses_it(self):
        move = {t.name: t for t in OWNERSHIP_TYPES}["cluster.move"]
        move.validate({"cluster": "A", "target": "beta"})
        with self.assertRaises(FieldError) as caught:
            move.validate({"cluster": "A", "target": "beta", "junk": 1})
        self.assertIn("junk: unknown field", str(caught.exception))
