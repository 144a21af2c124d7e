"""Lease messages: every type round-trips through JSON; bad dicts get a clear WireError."""

import json

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.messages import (
    MESSAGE_TYPES, Accepted, Handover, MoveRequest, Prepare, Promise, Propose, Release,
    WireError, from_wire,
)

names = st.text(min_size=1, max_size=12)
ballots = st.builds(Ballot, st.integers(0, 2**62), names, st.integers(0, 2**62))
durations = st.floats(0.001, 1e6, allow_nan=False)

messages = st.one_of(
    st.builds(Prepare, names, ballots),
    st.builds(Promise, names, ballots, st.booleans(), st.sampled_from(["", "stale", "quiet"]),
              st.integers(0, 2**62),
              holder=st.none() | st.tuples(names, st.integers(0, 2**62)),
              epoch=st.integers(0, 2**62), remaining=durations, previous=st.none() | names,
              previous_released=st.booleans()),
    ballots.flatmap(lambda b: st.builds(Propose, names, st.just(b), durations,
                                        st.integers(0, b.counter))),
    st.builds(Accepted, names, ballots, st.booleans(), st.sampled_from(["", "held"]),
              st.integers(0, 2**62), remaining=durations),
    st.builds(Release, names, ballots),
    st.builds(Handover, names, st.integers(0, 2**62)),
    st.builds(MoveRequest, names, names, st.just("") | names, st.just("") | names),
)


class WireTests(unittest.TestCase):
    @given(messages)
    def test_round_trip_through_json(self, message):
        wire = json.loads(json.dumps(message.to_wire()))
        self.assertEqual(from_wire(wire), message)
        self.assertIn(wire["type"], MESSAGE_TYPES)

    @given(messages)
    def test_class_from_wire(self, message):
        self.assertEqual(type(message).from_wire(message.to_wire()), message)

    def test_class_from_wire_checks_the_type(self):
        wire = Release("A", Ballot(1, "a", 1)).to_wire()
        e = self.assertRaises(WireError, Prepare.from_wire, wire)
        self.assertIn("expected a lease.prepare message, got 'lease.release'", str(e))

    def test_unknown_type(self):
        e = self.assertRaises(WireError, from_wire, {"type": "lease.steal"})
        self.assertIn("unknown message type 'lease.steal'", str(e))

    def test_not_an_object(self):
        e = self.assertRaises(WireError, from_wire, ["lease.prepare"])
        self.assertIn("must be an object", str(e))

    def test_missing_field_is_named(self):
        e = self.assertRaises(WireError, from_wire, {"type": "lease.prepare", "resource": "A"})
        self.assertIn("lease.prepare.ballot: ", str(e))

    def test_bad_ballot_is_named(self):
        for ballot, words in [([1, "a"], "[counter, node, generation]"),
                              (["1", "a", 2], "counter must be int"),
                              ([-1, "a", 2], "must not be negative"),
                              ([True, "a", 2], "counter must be int")]:
            e = self.assertRaises(WireError, from_wire,
                                  {"type": "lease.prepare", "resource": "A", "ballot": ballot})
            self.assertIn(words, str(e))

    def test_wrong_type_is_named(self):
        e = self.assertRaises(WireError, from_wire, {
            "type": "lease.propose", "resource": "A", "ballot": [1, "a", 1],
            "duration": "2", "epoch": 1})
        self.assertIn("lease.propose.duration: must be a number, got a string", str(e))

    def test_non_positive_duration_refused(self):
        e = self.assertRaises(WireError, from_wire, {
            "type": "lease.propose", "resource": "A", "ballot": [1, "a", 1],
            "duration": 0, "epoch": 1})
        self.assertIn("must be positive", str(e))

    def test_nan_refused(self):
        e = self.assertRaises(WireError, from_wire, {
            "type": "lease.accepted", "resource": "A", "ballot": [1, "a", 1], "ok": True,
            "remaining": float("nan")})
        self.assertIn("remaining", str(e))

    def test_bad_holder_refused(self):
        e = self.assertRaises(WireError, from_wire, {
            "type": "lease.promise", "resource": "A", "ballot": [1, "a", 1], "ok": True,
            "holder": ["a"]})
        self.assertIn("[node, generation]", str(e))


class BoundedIntegerTests(unittest.TestCase):
    """Every integer of a lease message is within int64 (issue 16, attack 5)."""

    def refused(self, data, words):
        e = self.assertRaises(WireError, from_wire, data)
        self.assertIn(words, str(e))

    def test_ballot_counter_above_int64(self):
        for kind in ("lease.prepare", "lease.release"):
            self.refused({"type": kind, "resource": "A", "ballot": [2**63 + 10, "a", 1]},
                         "ballot[0]: is out of range for a 64-bit integer")

    def test_a_4300_digit_counter(self):
        self.refused({"type": "lease.prepare", "resource": "A",
                      "ballot": [int("9" * 4300), "a", 1]},
                     "out of range")

    def test_generation_above_int64(self):
        self.refused({"type": "lease.prepare", "resource": "A", "ballot": [1, "a", 2**63]},
                     "ballot[2]: is out of range")
        self.refused({"type": "lease.promise", "resource": "A", "ballot": [1, "a", 1],
                      "ok": True, "holder": ["b", -(2**63) - 1]}, "out of range")

    def test_epochs_and_promises_within_int64(self):
        self.refused({"type": "cluster.handover", "resource": "A", "epoch": 2**63},
                     "cluster.handover.epoch: is out of range")
        self.refused({"type": "lease.accepted", "resource": "A", "ballot": [1, "a", 1],
                      "ok": False, "promised": 2**64}, "lease.accepted.promised: is out of range")

    def test_propose_epoch_is_at_most_its_counter(self):
        self.refused({"type": "lease.propose", "resource": "A", "ballot": [5, "a", 1],
                      "duration": 2, "epoch": 6}, "lease.propose.epoch: must be in [0,")
        self.assertEqual(from_wire({"type": "lease.propose", "resource": "A",
                                    "ballot": [5, "a", 1], "duration": 2, "epoch": 5}).epoch, 5)

    def test_the_limits_themselves_pass(self):
        top = 2**63 - 1
        message = from_wire({"type": "lease.prepare", "resource": "A", "ballot": [top, "a", top]})
        self.assertEqual(message.ballot.counter, top)


class BallotTests(unittest.TestCase):
    def test_order_is_by_counter_first(self):
        self.assertLess(Ballot(1, "z", 9), Ballot(2, "a", 0))
        self.assertLess(Ballot(1, "a", 9), Ballot(1, "b", 0))
        self.assertEqual(Ballot(3, "a", 1).owner, ("a", 1))
