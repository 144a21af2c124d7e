"""Member metadata: set by the node itself, carried by updates, sync and joins."""

import json

from twisted.trial import unittest

from clsd.membership.core.members import MAX_META, Member, MetaError, State, record_hash
from clsd.membership.core.messages import (
    MAX_SYNC_PROOFS, MAX_SYNC_RECORDS, Gossip, Join, MemberUpdate, MessageError, SyncRecords,
    from_wire,
)
from clsd.membership.core.notary import FINGERPRINT_LENGTH, MAX_CERTIFICATE, MAX_SIGNATURE
from clsd.wire.core.codec import MAX_LINE
from tests.membership.test_core import formed, new_core, of
from tests.support.membership_signing import signed_update
from clsd.membership.core.node import (
    GOSSIP, JoinRequested, LeaveRequested, LinkUp, MemberChanged, MetaChanged, Received,
    Send, TimerFired,
)


def gossiped(actions):
    return [u.member for a in of(actions, Send) if isinstance(a.message, Gossip)
            for u in a.message.updates if isinstance(u, MemberUpdate)]


class SetMeta(unittest.TestCase):
    def test_set_meta_bumps_incarnation_and_gossips(self):
        core, _ = formed(["alpha", "beta", "gamma"], "alpha")
        core.handle(LinkUp("beta"), 0.1)
        before = core.incarnation
        core.set_meta({"standby": False, "holding": {"web": 3}}, 0.2)
        self.assertEqual(core.incarnation, before + 1)
        self.assertEqual(core.meta("alpha"), {"standby": False, "holding": {"web": 3}})
        actions = core.handle(TimerFired(GOSSIP), 0.5)
        sent = gossiped(actions)
        self.assertTrue(sent)
        self.assertEqual(json.loads(sent[0].meta), {"holding": {"web": 3}, "standby": False})

    def test_unchanged_meta_costs_nothing(self):
        core, _ = formed(["alpha", "beta"], "alpha")
        core.set_meta({"a": 1}, 0.1)
        incarnation = core.incarnation
        self.assertEqual(core.set_meta({"a": 1}, 0.2), [])
        self.assertEqual(core.incarnation, incarnation)

    def test_bad_meta_refused(self):
        core = new_core()
        self.assertRaises(MetaError, core.set_meta, ["not", "a", "dict"], 0.0)
        self.assertRaises(MetaError, core.set_meta, {"x": float("nan")}, 0.0)
        self.assertRaises(MetaError, core.set_meta, {"x": "y" * MAX_META}, 0.0)

    def test_meta_set_before_join_travels_in_the_join(self):
        core = new_core()
        core.set_meta({"role": "witness"}, 0.0)
        core.handle(JoinRequested(("127.0.0.12:7400",)), 0.0)
        actions = core.handle(LinkUp("beta", "127.0.0.12:7400"), 0.1)
        joins = [a.message for a in of(actions, Send) if isinstance(a.message, Join)]
        self.assertEqual(json.loads(joins[0].member.meta), {"role": "witness"})

    def test_leaving_ignores_meta(self):
        core, _ = formed(["alpha", "beta"], "alpha")
        core.handle(LeaveRequested(), 0.1)
        core.set_meta({"a": 1}, 0.2)
        self.assertEqual(core.meta("alpha"), {})


class Receiving(unittest.TestCase):
    def test_news_of_new_meta_is_a_meta_change_not_a_state_change(self):
        core, _ = formed(["alpha", "beta", "gamma"], "alpha", generation=1)
        beta = core.member("beta")
        newer = beta.evolve(incarnation=beta.incarnation + 1, meta='{"x":1}')
        actions = core.handle(Received("gamma", Gossip((signed_update(newer),))), 1.0)
        self.assertEqual(of(actions, MetaChanged), [MetaChanged(newer)])
        self.assertEqual(of(actions, MemberChanged), [])
        self.assertEqual(core.meta("beta"), {"x": 1})

    def test_meta_changes_the_sync_digest(self):
        plain = Member("a", "127.0.0.2:1", 1, 0, State.ALIVE)
        self.assertNotEqual(record_hash(plain), record_hash(plain.evolve(meta='{"x":1}')))

    def test_meta_round_trips_and_bad_meta_is_a_message_error(self):
        member = Member("a", "127.0.0.2:1", 1, 3, State.ALIVE, meta='{"h":{"web":2}}')
        wire = json.loads(json.dumps(Gossip((signed_update(member),)).to_wire()))
        self.assertEqual(from_wire(wire).updates[0].member, member)
        wire["updates"][0]["d"] = [1]
        self.assertRaises(MessageError, from_wire, wire)
        wire["updates"][0]["d"] = {"x": "y" * MAX_META}
        self.assertRaises(MessageError, from_wire, wire)

    def test_old_records_without_meta_still_parse(self):
        wire = {"type": "m.gossip", "updates": [
            {"k": "m", "n": "a", "a": "h:1", "g": 1, "i": 0, "s": "alive"}]}
        self.assertEqual(from_wire(wire).updates[0].member.meta, "")

    def test_largest_sync_message_with_full_meta_fits_a_line(self):
        filler = "é" * ((MAX_META - 20) // 2)
        meta = json.dumps({"f": filler}, separators=(",", ":"), ensure_ascii=False)
        worst = Member("n" * 63, "a" * 255, 2**64 - 1, 2**64 - 1, State.SUSPECT, meta=meta)
        # ... of which the most a list may carry are signed leaves (the longest proofs).
        left = signed_update(worst.evolve(state=State.LEFT), 1e8,
                            proof=("s" * MAX_SIGNATURE, "c" * MAX_CERTIFICATE))
        # ... and the rest alive records with their life signatures (the longest).
        alive = MemberUpdate(worst.evolve(state=State.ALIVE),
                             life=("s" * MAX_SIGNATURE, "f" * FINGERPRINT_LENGTH))
        records = ((left,) * MAX_SYNC_PROOFS
                   + (alive,) * (MAX_SYNC_RECORDS - MAX_SYNC_PROOFS))
        sync = SyncRecords(records, tuple(range(64)), True, 1 << 16)
        encoded = json.dumps({"v": 1, **sync.to_wire()}, separators=(",", ":"),
                             ensure_ascii=False).encode()
        self.assertLess(len(encoded), MAX_LINE)
        self.assertEqual(from_wire(sync.to_wire()), sync)
