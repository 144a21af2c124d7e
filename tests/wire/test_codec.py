"""The line codec: framing, envelope and schema checks, bounds, and fuzzing."""

import json
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.wire.core.codec import MAX_LINE, NEED_DATA, Codec
from clsd.wire.core.errors import LocalProtocolError, RemoteProtocolError
from clsd.wire.core.messages import (
    HELLO,
    PING,
    Message,
    MessageType,
    peer_registry,
)
from clsd.wire.core.schema import MapOf, Optional

GOSSIP = MessageType("gossip", {
    "from": str,
    "incarnation": int,
    "load": float,
    "alive": bool,
    "members": [{"name": str, "address": str, "tags": Optional(MapOf(str))}],
    "extra": Optional(dict),
})
REGISTRY = peer_registry(GOSSIP)


def hello():
    return HELLO.build(protocol=1, name="alpha", generation=7,
                       advertise="127.0.0.11:7400", settings="sha256:00")


def line(obj):
    return json.dumps(obj).encode() + b"\n"


def drain(codec):
    """Every event the codec can produce now (until NEED_DATA)."""
    events = []
    while True:
        event = codec.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)


class RoundTripTests(unittest.TestCase):
    def test_one_line_per_message(self):
        codec = Codec(REGISTRY)
        data = codec.send(hello())
        self.assertTrue(data.endswith(b"\n"))
        self.assertEqual(data.count(b"\n"), 1)
        obj = json.loads(data)
        self.assertEqual(obj["v"], 1)
        self.assertEqual(obj["type"], "hello")
        self.assertEqual(obj["name"], "alpha")

    def test_round_trip_nested(self):
        message = GOSSIP.build(
            **{"from": "b\u00e9ta\n", "incarnation": 3, "load": 0.5, "alive": True,
               "members": [{"name": "a", "address": "x:1", "tags": {"dc": "1"}},
                           {"name": "b", "address": "y:2"}]})
        codec = Codec(REGISTRY)
        data = codec.send(message)
        self.assertEqual(data.count(b"\n"), 1, "a newline in a string is escaped")
        codec.receive_data(data)
        self.assertEqual(drain(codec), [message])

    def test_many_lines_in_one_chunk_and_split_anywhere(self):
        codec = Codec(REGISTRY)
        messages = [hello(), PING.build(), hello()]
        data = b"".join(codec.send(m) for m in messages)
        for cut in range(len(data) + 1):
            receiver = Codec(REGISTRY)
            receiver.receive_data(data[:cut])
            events = drain(receiver)
            receiver.receive_data(data[cut:])
            events += drain(receiver)
            self.assertEqual(events, messages, f"cut at {cut}")

    def test_need_data_for_partial_line(self):
        codec = Codec(REGISTRY)
        codec.receive_data(b'{"v":1,"type":"pi')
        self.assertIs(codec.next_event(), NEED_DATA)
        codec.receive_data(b'ng"}\n')
        self.assertEqual(codec.next_event(), PING.build())

    def test_float_field_accepts_integers(self):
        codec = Codec(REGISTRY)
        codec.receive_data(line({"v": 1, "type": "gossip", "from": "a", "incarnation": 1,
                                 "load": 2, "alive": False, "members": []}))
        self.assertEqual(drain(codec)[0]["load"], 2)


class RemoteErrorTests(unittest.TestCase):
    """Every way a peer can get a line wrong is its fault, with a reason."""

    def assertRemote(self, data, reason, codec=None):
        codec = codec or Codec(REGISTRY)
        codec.receive_data(data)
        with self.assertRaises(RemoteProtocolError) as caught:
            drain(codec)
        self.assertEqual(caught.exception.reason, reason, caught.exception.detail)
        # The codec stays broken: the same error again, no more events.
        codec.receive_data(line({"v": 1, "type": "ping"}))
        self.assertRaises(RemoteProtocolError, codec.next_event)
        return caught.exception

    def test_malformed_json(self):
        self.assertRemote(b'{"v":1,"type":\n', "malformed-json")

    def test_empty_line(self):
        self.assertRemote(b"\n", "malformed-json")

    def test_not_utf8(self):
        self.assertRemote(b'{"v":1,"type":"ping","x":"\xff"}\n', "not-utf8")

    def test_lone_surrogate_escape(self):
        self.assertRemote(b'{"v":1,"type":"ping","\\ud800":1}\n', "not-utf8")

    def test_nan_and_infinity_are_not_json(self):
        self.assertRemote(b'{"v":1,"type":"ping","x":NaN}\n', "malformed-json")
        self.assertRemote(b'{"v":1,"type":"ping","x":-Infinity}\n', "malformed-json")

    def test_deep_nesting(self):
        self.assertRemote(b"[" * 100000 + b"\n", "malformed-json",
                          codec=Codec(REGISTRY, max_line=200000))

    def test_not_an_object(self):
        self.assertRemote(b"[1,2]\n", "bad-envelope")

    def test_missing_or_bad_version(self):
        self.assertRemote(line({"type": "ping"}), "bad-envelope")
        self.assertRemote(line({"v": "1", "type": "ping"}), "bad-envelope")
        self.assertRemote(line({"v": True, "type": "ping"}), "bad-envelope")

    def test_other_version(self):
        error = self.assertRemote(line({"v": 2, "type": "ping"}), "unsupported-version")
        self.assertIn("line format version 2", error.detail)

    def test_missing_type(self):
        self.assertRemote(line({"v": 1}), "bad-envelope")
        self.assertRemote(line({"v": 1, "type": 5}), "bad-envelope")

    def test_unknown_type(self):
        error = self.assertRemote(line({"v": 1, "type": "launch"}), "unknown-type")
        self.assertIn("launch", error.detail)

    def test_missing_field(self):
        error = self.assertRemote(line({"v": 1, "type": "hello", "protocol": 1}), "bad-field")
        self.assertIn("hello.name: is required", error.detail)

    def test_wrong_field_type(self):
        fields = dict(hello().fields, generation="7")
        error = self.assertRemote(line({"v": 1, "type": "hello", **fields}), "bad-field")
        self.assertIn("hello.generation: must be an integer, got a string", error.detail)

    def test_bool_is_not_an_integer(self):
        fields = dict(hello().fields, generation=True)
        self.assertRemote(line({"v": 1, "type": "hello", **fields}), "bad-field")

    def test_integer_out_of_64_bit_range(self):
        fields = dict(hello().fields, generation=2 ** 64)
        self.assertRemote(line({"v": 1, "type": "hello", **fields}), "bad-field")

    def test_unknown_field(self):
        error = self.assertRemote(line({"v": 1, "type": "ping", "x": 1}), "bad-field")
        self.assertIn("ping.x: unknown field", error.detail)

    def test_nested_field_error_names_the_path(self):
        bad = {"v": 1, "type": "gossip", "from": "a", "incarnation": 1, "load": 1.0,
               "alive": True,
               "members": [{"name": "a", "address": "x"}, {"name": "b", "address": 5}]}
        error = self.assertRemote(line(bad), "bad-field")
        self.assertIn("gossip.members[1].address: must be a string", error.detail)

    def test_map_values_checked(self):
        bad = {"v": 1, "type": "gossip", "from": "a", "incarnation": 1, "load": 1.0,
               "alive": True, "members": [{"name": "a", "address": "x", "tags": {"k": 1}}]}
        error = self.assertRemote(line(bad), "bad-field")
        self.assertIn("members[0].tags.k", error.detail)

    def test_truncated_at_eof(self):
        codec = Codec(REGISTRY)
        codec.receive_data(b'{"v":1')
        with self.assertRaises(RemoteProtocolError) as caught:
            codec.receive_eof()
        self.assertEqual(caught.exception.reason, "truncated")


class BoundTests(unittest.TestCase):
    """A line longer than the bound is refused, and never buffered whole."""

    def test_default_bound(self):
        self.assertEqual(Codec(REGISTRY).max_line, MAX_LINE)

    def test_long_line_without_newline_is_refused_early(self):
        codec = Codec(REGISTRY, max_line=100)
        for _ in range(10):
            codec.receive_data(b"x" * 30)
            self.assertLessEqual(codec.buffered, 100)
        with self.assertRaises(RemoteProtocolError) as caught:
            drain(codec)
        self.assertEqual(caught.exception.reason, "line-too-long")
        # Nothing more is kept once the line is refused.
        codec.receive_data(b"y" * 1000)
        self.assertEqual(codec.buffered, 0)

    def test_trickled_line_costs_linear_time(self):
        """A peer sending one byte at a time cannot make us copy quadratically."""
        codec = Codec(REGISTRY)
        started = time.process_time()
        for _ in range(MAX_LINE):
            codec.receive_data(b" ")
        # Linear: about 0.1 s here.  Quadratic copying of a 256 KiB buffer
        # would move ~34 GB and take far longer than this bound.
        self.assertLess(time.process_time() - started, 5.0)
        self.assertEqual(codec.buffered, MAX_LINE)

    def test_long_complete_line_is_refused(self):
        codec = Codec(REGISTRY, max_line=100)
        codec.receive_data(b'{"v":1,"type":"ping","p":"' + b"x" * 200 + b'"}\n')
        with self.assertRaises(RemoteProtocolError) as caught:
            drain(codec)
        self.assertEqual(caught.exception.reason, "line-too-long")

    def test_line_of_exactly_the_bound_is_accepted(self):
        codec = Codec(REGISTRY, max_line=100)
        data = b'{"v":1,"type":"ping"}'
        data += b" " * (100 - len(data))
        codec.receive_data(data + b"\n")
        self.assertEqual(drain(codec), [PING.build()])

    def test_good_lines_before_an_overflow_are_delivered_first(self):
        codec = Codec(REGISTRY, max_line=100)
        codec.receive_data(line({"v": 1, "type": "ping"}) + b"z" * 150)
        self.assertEqual(codec.next_event(), PING.build())
        self.assertRaises(RemoteProtocolError, codec.next_event)

    def test_data_after_an_overflow_is_dropped(self):
        codec = Codec(REGISTRY, max_line=100)
        codec.receive_data(b"z" * 150)
        codec.receive_data(b"\n" + line({"v": 1, "type": "ping"}))
        self.assertRaises(RemoteProtocolError, codec.next_event)


class LocalErrorTests(unittest.TestCase):
    """Sending something invalid is our bug, reported as LocalProtocolError."""

    def test_build_checks_fields(self):
        with self.assertRaises(LocalProtocolError) as caught:
            HELLO.build(protocol=1, name=5, generation=1, advertise="a:1", settings="s")
        self.assertIn("hello.name", caught.exception.detail)

    def test_unregistered_type(self):
        other = MessageType("other", {})
        with self.assertRaises(LocalProtocolError) as caught:
            Codec(REGISTRY).send(other.build())
        self.assertEqual(caught.exception.reason, "unknown-type")

    def test_hand_made_message_is_checked(self):
        with self.assertRaises(LocalProtocolError):
            Codec(REGISTRY).send(Message("ping", {"x": 1}))

    def test_too_long_to_send(self):
        big = MessageType("big", {"data": str})
        codec = Codec(peer_registry(big), max_line=100)
        with self.assertRaises(LocalProtocolError) as caught:
            codec.send(big.build(data="x" * 200))
        self.assertEqual(caught.exception.reason, "line-too-long")

    def test_unencodable_string(self):
        big = MessageType("text", {"data": str})
        with self.assertRaises(LocalProtocolError) as caught:
            Codec(peer_registry(big)).send(big.build(data="\ud800"))
        self.assertEqual(caught.exception.reason, "unencodable")


class FuzzTests(unittest.TestCase):
    """Arbitrary bytes never crash the codec: only RemoteProtocolError comes out."""

    def feed(self, codec, chunks):
        events = []
        try:
            for chunk in chunks:
                codec.receive_data(chunk)
                while (event := codec.next_event()) is not NEED_DATA:
                    events.append(event)
            codec.receive_eof()
        except RemoteProtocolError as e:
            self.assertIsInstance(e.reason, str)
            self.assertTrue(e.reason)
            return events, e
        return events, None

    def check(self, data):
        whole, whole_error = self.feed(Codec(REGISTRY, max_line=512), [data])
        split, split_error = self.feed(
            Codec(REGISTRY, max_line=512), [data[i:i + 1] for i in range(len(data))])
        for event in whole + split:
            self.assertIsInstance(event, Message)
            self.assertIn(event.type, REGISTRY)
        # The same stream gives the same result however it is chunked.
        self.assertEqual(whole, split)
        self.assertEqual(type(whole_error), type(split_error))
        if whole_error is not None:
            self.assertEqual(whole_error.reason, split_error.reason)

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.binary(max_size=2048))
    def test_arbitrary_bytes(self, data):
        self.check(data)

    _json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
        | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    )

    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"v": st.sampled_from([1, 1, 1, 2, "1"]),
                 "type": st.sampled_from(["hello", "ping", "bye", "gossip", "nope"])},
                optional={"name": _json_values, "generation": _json_values,
                          "protocol": _json_values, "members": _json_values,
                          "reason": _json_values, "detail": _json_values},
            ).map(lambda d: json.dumps(d).encode() + b"\n"),
            st.binary(max_size=40),
        ),
        max_size=6,
    ).map(b"".join))
    def test_almost_valid_lines(self, data):
        self.check(data)


class RepeatTests(unittest.TestCase):
    """Heartbeats repeat: a repeated line or message object is not parsed or encoded again."""

    def test_a_repeated_short_line_gives_the_same_message_without_parsing(self):
        codec = Codec(REGISTRY)
        ping = Codec(REGISTRY).send(PING.build())
        codec.receive_data(ping + ping)
        first, second = drain(codec)
        self.assertIs(second, first)
        self.assertEqual(first.type, "ping")

    def test_a_different_line_in_between_is_parsed_afresh(self):
        codec = Codec(REGISTRY)
        sender = Codec(REGISTRY)
        codec.receive_data(sender.send(PING.build()) + sender.send(hello())
                           + sender.send(PING.build()))
        messages = drain(codec)
        self.assertEqual([m.type for m in messages], ["ping", "hello", "ping"])
        self.assertEqual(messages[1]["name"], "alpha")

    def test_a_bad_line_is_refused_every_time_it_comes(self):
        bad = line({"v": 1, "type": "ping", "surprise": 1})
        for _ in range(2):
            codec = Codec(REGISTRY)
            codec.receive_data(bad)
            self.assertRaises(RemoteProtocolError, codec.next_event)

    def test_the_same_message_object_is_encoded_once(self):
        codec = Codec(REGISTRY)
        ping = PING.build()
        data = codec.send(ping)
        ping.fields["sneaky"] = 1  # were it encoded again, this would show (or fail)
        self.assertIs(codec.send(ping), data)

    def test_an_equal_but_new_message_is_encoded_again(self):
        codec = Codec(REGISTRY)
        first = codec.send(PING.build())
        second = codec.send(PING.build())
        self.assertEqual(first, second)
        self.assertIsNot(first, second)
