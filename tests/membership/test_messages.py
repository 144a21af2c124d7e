"""Messages to wire dicts and back; every malformed input is a MessageError."""

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import (
    MAX_REPORTERS, MAX_SYNC_RECORDS, MAX_UPDATES, SYNC_BUCKETS, Gossip, Heartbeat, Join, JoinAck, MemberUpdate, MessageError,
    Report, SyncDigest, SyncRecords, Unwatch, Watch, from_wire,
)
from clsd.membership.core.notary import MAX_CERTIFICATE, MAX_SIGNATURE, FakeNotary

ALPHA = Member("alpha", "127.0.0.11:7400", 17, 3, State.SUSPECT)


def roundtrip(message):
    return from_wire(json.loads(json.dumps(message.to_wire())))


class SharedRecords(unittest.TestCase):
    """Records are decoded once and encoded once; sharing must not loosen the checks."""

    def test_the_same_record_decodes_to_the_same_member(self):
        first = roundtrip(Gossip((MemberUpdate(ALPHA),))).updates[0].member
        second = roundtrip(Gossip((MemberUpdate(ALPHA),))).updates[0].member
        self.assertEqual(first, ALPHA)
        self.assertIs(first, second)

    def test_a_cached_record_does_not_admit_lookalikes(self):
        good = Gossip((MemberUpdate(ALPHA),)).to_wire()
        from_wire(good)  # now cached
        update = good["updates"][0]
        for field, bad, fragment in [("g", True, "updates[0].g: must be an integer"),
                                     ("g", 17.0, "updates[0].g: must be an integer"),
                                     ("i", False, "updates[0].i: must be an integer"),
                                     ("n", ["alpha"], "updates[0].n: must be a string")]:
            with self.assertRaises(MessageError) as caught:
                from_wire(dict(good, updates=[dict(update, **{field: bad})]))
            self.assertIn(fragment, str(caught.exception))

    def test_reports_and_plain_updates_are_shared_and_still_checked(self):
        report = Report("alpha", 17, 3, "beta").signed(FakeNotary("beta"))
        wire = Gossip((report, MemberUpdate(ALPHA))).to_wire()
        first, second = from_wire(wire), from_wire(json.loads(json.dumps(wire)))
        self.assertEqual(first.updates, (report, MemberUpdate(ALPHA)))
        for a, b in zip(first.updates, second.updates):
            self.assertIs(a, b)
        for field, bad in [("g", True), ("i", 3.0), ("o", ""), ("n", 5)]:
            with self.assertRaises(MessageError) as caught:
                from_wire(dict(wire, updates=[dict(wire["updates"][0], **{field: bad})]))
            self.assertIn(f"m.gossip.updates[0].{field}: must be", str(caught.exception))

    def test_list_records_are_shared_and_still_checked(self):
        wire = SyncRecords((MemberUpdate(ALPHA),), (), False, 0).to_wire()
        first, second = from_wire(wire), from_wire(json.loads(json.dumps(wire)))
        self.assertIs(first.records[0], second.records[0])
        self.assertIs(first.records[0], roundtrip(Gossip((MemberUpdate(ALPHA),))).updates[0])
        for field, bad in [("g", True), ("i", 3.0), ("a", 5), ("n", "")]:
            with self.assertRaises(MessageError) as caught:
                from_wire(dict(wire, records=[dict(wire["records"][0], **{field: bad})]))
            self.assertIn(f"m.sync-records.records[0].{field}: must be", str(caught.exception))

    def test_the_wire_dict_of_an_update_is_built_once(self):
        update = MemberUpdate(ALPHA.evolve(state=State.DEAD), 3.0, ("beta",))
        self.assertIs(update.to_wire(), MemberUpdate(ALPHA.evolve(state=State.DEAD), 3.0,
                                                     ("beta",)).to_wire())
        self.assertEqual(update.to_wire(), {"n": "alpha", "a": "127.0.0.11:7400", "g": 17,
                                            "i": 3, "s": "dead", "k": "m", "age": 3.0,
                                            "by": ["beta"]})


class RoundTrip(unittest.TestCase):
    def test_every_message(self):
        updates = (MemberUpdate(ALPHA), MemberUpdate(ALPHA.evolve(state=State.DEAD), 12.5,
                                                     ("beta", "gamma")),
                   Report("alpha", 17, 3, "beta"))
        for message in [
            Heartbeat(17, 3), Heartbeat(17, 3, updates), Heartbeat(17, 3, (), 2**64 - 1),
            Heartbeat(17, 3, (), 12, 1024),
            Gossip(updates), Watch(), Unwatch(),
            Join(ALPHA), JoinAck(ALPHA), JoinAck(ALPHA, 1023), SyncDigest(tuple(range(SYNC_BUCKETS)), 2),
            SyncRecords((MemberUpdate(ALPHA),), (1, 5), True, 3),
        ]:
            self.assertEqual(roundtrip(message), message)
            self.assertIsInstance(message.to_wire()["type"], str)

    def test_the_largest_messages_stay_under_64_kib(self):
        name, reporter = "n" * 63, "r" * 63
        worst = Member(name, "a" * 255, 2**64 - 1, 2**64 - 1, State.SUSPECT)
        update = MemberUpdate(worst, 999999.9, (reporter,) * MAX_REPORTERS)
        gossip = Heartbeat(2**64 - 1, 2**64 - 1, (update,) * MAX_UPDATES)
        sync = SyncRecords((MemberUpdate(worst, 999999.9),) * MAX_SYNC_RECORDS,
                           tuple(range(SYNC_BUCKETS)), True, 1 << 16)
        report = Report(name, 2**64 - 1, 2**64 - 1, reporter, "s" * MAX_SIGNATURE,
                        "c" * MAX_CERTIFICATE)
        reports = Gossip((report,) * MAX_UPDATES)
        for message in (gossip, reports, sync, SyncDigest((2**64 - 1,) * SYNC_BUCKETS, 1 << 16)):
            self.assertLess(len(json.dumps(message.to_wire()).encode()), 64 * 1024)
            self.assertEqual(roundtrip(message), message)


class Rejected(unittest.TestCase):
    def assertRejected(self, data, fragment):
        with self.assertRaises(MessageError) as caught:
            from_wire(data)
        self.assertIn(fragment, str(caught.exception))

    def test_mistakes_name_the_field(self):
        good = Heartbeat(1, 2, (MemberUpdate(ALPHA),)).to_wire()
        self.assertRejected({"type": "m.nope"}, "unknown membership message")
        self.assertRejected({}, "message.type: is required")
        self.assertRejected([], "must be an object")
        self.assertRejected(dict(good, g="1"), "m.heartbeat.g: must be an integer")
        self.assertRejected(dict(good, g=-1), "m.heartbeat.g: -1 out of range")
        self.assertRejected(dict(good, i=True), "m.heartbeat.i: must be an integer")
        self.assertRejected(dict(good, t="12"), "m.heartbeat.t: must be an integer")
        self.assertRejected(dict(good, t=2**64), "m.heartbeat.t: 18446744073709551616 out of range")
        self.assertRejected(dict(good, n="5"), "m.heartbeat.n: must be an integer")
        self.assertRejected(dict(good, n=-1), "m.heartbeat.n: -1 out of range")
        bad_update = dict(good["updates"][0], s="zombie")
        self.assertRejected(dict(good, updates=[bad_update]), "m.heartbeat.updates[0].s")
        self.assertRejected(dict(good, updates=[{"k": "x"}]), "unknown kind")
        self.assertRejected(dict(good, updates=[good["updates"][0]] * (MAX_UPDATES + 1)),
                            f"at most {MAX_UPDATES}")
        self.assertRejected(dict(good, updates=[dict(good["updates"][0], n="x" * 64)]),
                            ".n: must be a string of 1 to 63")
        self.assertRejected({"type": "m.sync-digest", "buckets": [0] * 3, "round": 0},
                            "must have 64 items")
        self.assertRejected({"type": "m.sync-records", "records": [], "want": [64],
                             "more": False, "round": 0}, "want[0]")
        self.assertRejected({"type": "m.sync-records", "records": [], "want": [],
                             "more": 1, "round": 0}, "more: must be true or false")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["type", "g", "i", "n", "a", "s", "k", "o", "updates",
                                       "member", "buckets", "round", "records", "want",
                                       "more", "age", "by"]), children, max_size=6),
    max_leaves=20)


class Fuzz(unittest.TestCase):
    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.sampled_from(["m.heartbeat", "m.gossip", "m.watch", "m.join", "m.join-ack",
                            "m.sync-digest", "m.sync-records", "x"]),
           st.dictionaries(st.sampled_from(["g", "i", "updates", "member", "buckets", "round",
                                            "records", "want", "more"]), json_values))
    def test_only_message_errors(self, kind, data):
        data = dict(data, type=kind)
        try:
            message = from_wire(data)
        except MessageError:
            return
        self.assertEqual(from_wire(message.to_wire()), message)
