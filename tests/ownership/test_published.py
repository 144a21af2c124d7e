"""The published ownership state as a dict: round trip, and each kind of bad input named."""

from twisted.trial import unittest

from clsd.ownership.core.messages import WireError
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.published import state_from_wire, state_to_wire


class PublishedStateTests(unittest.TestCase):
    def test_round_trip(self):
        state = MemberState("beta", registrations={"A": 100, "B": 50}, standby=True,
                            failed=frozenset({"B"}), holding={"A": 12, "N/1": 3})
        wire = state_to_wire(state)
        self.assertEqual(wire, {"v": 1, "registrations": {"A": 100, "B": 50}, "standby": True,
                                "failed": ["B"], "holding": {"A": 12, "N/1": 3}})
        self.assertEqual(state_from_wire("beta", wire), state)

    def test_the_name_comes_from_membership_not_the_dict(self):
        wire = state_to_wire(MemberState("beta"))
        wire["name"] = "alpha"
        self.assertEqual(state_from_wire("beta", wire).name, "beta")

    def test_bad_input_is_named(self):
        good = state_to_wire(MemberState("beta", registrations={"A": 1}))
        cases = [
            ([], "must be an object"),
            ({**good, "v": 2}, "unsupported version 2"),
            ({**good, "standby": "yes"}, "'standby' must be true or false"),
            ({**good, "failed": "A"}, "'failed' must be a list"),
            ({**good, "failed": [1]}, "'failed' must be a list"),
            ({**good, "registrations": []}, "'registrations' must be an object"),
            ({**good, "registrations": {"A": "high"}}, "'registrations' must map names"),
            ({**good, "holding": {"A": True}}, "'holding' must map names"),
            ({**good, "holding": {"A": 2**63}}, "out of range for a 64-bit integer"),
            ({**good, "registrations": {"A": -(2**63) - 1}}, "out of range"),
        ]
        for data, words in cases:
            with self.assertRaises(WireError) as e:
                state_from_wire("beta", data)
            self.assertIn(words, str(e.exception))
            self.assertIn("beta", str(e.exception))
