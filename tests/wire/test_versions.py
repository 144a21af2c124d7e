"""Versioned peer protocol: range negotiation, message and field gating, ignorable fields,
and the hello refusals that name what differs (pure: sessions and codecs, no reactor)."""

import json

from twisted.trial import unittest

from clsd.wire.core.codec import NEED_DATA, Codec
from clsd.wire.core.errors import LocalProtocolError, RemoteProtocolError
from clsd.wire.core.messages import (
    HELLO, LayerMessageType, MessageType, peer_registry, settings_differences, settings_digests, settings_hash,
)
from clsd.wire.core.schema import Optional, Since
from clsd.wire.core.session import Established, Session, State
from clsd.wire.core.versions import (
    ClusterProtocol, ProtocolRange, cluster_protocol, enabled, negotiate, publication, published,
)

SETTINGS = {"quorum": {"arbiter": "voters", "lease": 2.0},
            "membership": {"observers": 8, "quorum": 3}}


def hello(name, low=2, high=2, settings=SETTINGS, software="0.1.0"):
    return HELLO.build(protocol=high, protocol_min=low, software=software, name=name,
                       generation=1, advertise="127.0.0.1:7400",
                       settings=settings_hash(settings),
                       settings_digests=settings_digests(settings))


def handshake(ours, theirs, peer="beta"):
    session = Session(hello=ours, now=0.0)
    session.tls_ready(peer, 0.0)
    return session, session.message_received(theirs, 0.1)


class NegotiationTests(unittest.TestCase):
    def test_overlapping_ranges_use_the_highest_common_version(self):
        self.assertEqual(negotiate(ProtocolRange(2, 4), ProtocolRange(3, 5)), 4)
        self.assertEqual(negotiate(ProtocolRange(3, 5), ProtocolRange(2, 4)), 4)
        self.assertEqual(negotiate(ProtocolRange(2, 3), ProtocolRange(3, 3)), 3)

    def test_disjoint_ranges_have_none(self):
        self.assertIsNone(negotiate(ProtocolRange(2, 2), ProtocolRange(3, 3)))
        self.assertIsNone(negotiate(ProtocolRange(4, 6), ProtocolRange(1, 3)))

    def test_equal_ranges_use_their_top(self):
        self.assertEqual(negotiate(ProtocolRange(2, 3), ProtocolRange(2, 3)), 3)
        self.assertEqual(negotiate(ProtocolRange(2, 2), ProtocolRange(2, 2)), 2)

    def test_range_reads_and_refuses_empty(self):
        self.assertEqual(str(ProtocolRange(2, 2)), "2")
        self.assertEqual(str(ProtocolRange(2, 3)), "2 to 3")
        self.assertIn(3, ProtocolRange(2, 3))
        self.assertNotIn(4, ProtocolRange(2, 3))
        self.assertRaises(ValueError, ProtocolRange, 3, 2)


class HelloNegotiationTests(unittest.TestCase):
    def test_overlap_establishes_with_the_negotiated_version(self):
        session, actions = handshake(hello("alpha", 2, 2), hello("beta", 2, 3))
        self.assertEqual(actions, [Established(hello("beta", 2, 3))])
        self.assertEqual(session.protocol, 2)
        session, _ = handshake(hello("alpha", 2, 3), hello("beta", 3, 4))
        self.assertEqual(session.protocol, 3)

    def test_disjoint_ranges_are_refused_naming_both(self):
        session, actions = handshake(hello("alpha", 2, 2),
                                     hello("beta", 3, 3, software="0.2.0"))
        self.assertIs(session.state, State.CLOSING)
        self.assertIsNone(session.protocol)
        reason = session.close_reason
        self.assertEqual(reason.key, "incompatible")
        self.assertEqual(
            reason.detail,
            "peer 'beta' (clsd 0.2.0) speaks protocol 3, this node (clsd 0.1.0) speaks 2: "
            "no common protocol version; upgrade one release at a time "
            "(doc/operations.md, \"Upgrade one node at a time\")")
        self.assertNotIn("\n", reason.detail)
        [bye] = [a.message for a in actions if getattr(a, "message", None) is not None]
        self.assertEqual((bye.type, bye["reason"]), ("bye", "incompatible"))

    def test_a_protocol_1_hello_is_refused_as_incompatible(self):
        """The unversioned hello of older releases is read far enough to say why."""
        old = HELLO.build(protocol=1, name="beta", generation=1, advertise="127.0.0.1:7400",
                          settings=settings_hash(SETTINGS))
        session, _ = handshake(hello("alpha"), old)
        self.assertEqual(session.close_reason.key, "incompatible")
        self.assertIn("(clsd a release before versioned protocols) speaks protocol 1, "
                      "this node (clsd 0.1.0) speaks 2", session.close_reason.detail)

    def test_the_name_is_checked_before_the_version(self):
        """Authentication first: a hello that lies about its name is refused for that,
        whatever protocol it speaks."""
        session, _ = handshake(hello("alpha"), hello("mallory", 7, 7), peer="beta")
        self.assertEqual(session.close_reason.key, "name-mismatch")

    def test_protocol_2_hello_must_carry_its_fields(self):
        fields = dict(hello("beta").fields)
        del fields["software"]
        session, _ = handshake(hello("alpha"), HELLO.build(**fields))
        self.assertEqual(session.close_reason.key, "bad-field")
        self.assertEqual(session.close_reason.detail,
                         "hello.software: is required by protocol 2")

    def test_inverted_range_is_refused(self):
        fields = dict(hello("beta").fields, protocol_min=3)
        session, _ = handshake(hello("alpha"), HELLO.build(**fields))
        self.assertEqual(session.close_reason.key, "bad-field")
        self.assertIn("hello.protocol_min", session.close_reason.detail)


class SettingsMismatchTests(unittest.TestCase):
    def test_the_refusal_names_each_differing_setting(self):
        theirs = {"quorum": {"arbiter": "voters", "lease": 4.0},
                  "membership": {"observers": 8, "quorum": 3}, "etcd": {"prefix": "/x"}}
        session, _ = handshake(hello("alpha"), hello("beta", settings=theirs))
        self.assertEqual(session.close_reason.key, "settings-mismatch")
        self.assertEqual(
            session.close_reason.detail,
            "peer 'beta' has other cluster-wide settings than this node: "
            "etcd.prefix (set only on the peer), quorum.lease; these must be the same in "
            "every node's configuration")

    def test_digests_name_settings_added_later(self):
        """A setting added to the cluster-wide dict later is named with no extra code."""
        ours = settings_digests({"quorum": {"lease": 2.0}})
        later = settings_digests({"quorum": {"lease": 2.0, "new_rule": {"x": [1, 2]}}})
        self.assertEqual(sorted(later), ["quorum.lease", "quorum.new_rule.x"])
        self.assertEqual(settings_differences(ours, later),
                         ["quorum.new_rule.x (set only on the peer)"])
        self.assertEqual(settings_differences(later, ours),
                         ["quorum.new_rule.x (set only on this node)"])
        self.assertEqual(settings_differences(ours, dict(ours)), [])

    def test_digests_do_not_depend_on_order(self):
        a = settings_digests({"m": {"a": 1, "b": [1, 2]}, "z": None})
        b = settings_digests({"z": None, "m": {"b": [1, 2], "a": 1}})
        self.assertEqual(a, b)
        self.assertNotEqual(a["m.b"], settings_digests({"m": {"b": [2, 1]}})["m.b"])


#: Protocol 2's "note" and protocol 3's: a strict field, an ignorable one, a new message.
NOTE_2 = MessageType("note", {"text": str})
NOTE_3 = MessageType("note", {
    "text": str,
    "priority": Since(3, Optional(int)),
    "hint": Since(3, Optional(str), ignorable=True),
})
POKE_3 = MessageType("poke", {}, since=3)


def codec(types, protocol):
    c = Codec(peer_registry(*types))
    c.negotiated(protocol)
    return c


def receive(c, data):
    c.receive_data(data)
    return c.next_event()


def wire(data):
    obj = json.loads(data)
    obj.pop("v")
    return obj


class GatingTests(unittest.TestCase):
    def test_a_later_field_is_left_out_for_an_older_peer(self):
        message = NOTE_3.build(text="hi", priority=5)
        self.assertEqual(wire(codec([NOTE_3, POKE_3], 2).send(message)),
                         {"type": "note", "text": "hi"})
        self.assertEqual(wire(codec([NOTE_3, POKE_3], 3).send(message)),
                         {"type": "note", "text": "hi", "priority": 5})

    def test_a_later_field_from_a_peer_that_negotiated_less_is_refused(self):
        line = b'{"v":1,"type":"note","text":"hi","priority":5}\n'
        e = self.assertRaises(RemoteProtocolError, receive, codec([NOTE_3], 2), line)
        self.assertEqual((e.reason, e.detail), ("bad-field", "note.priority: unknown field"))
        self.assertEqual(receive(codec([NOTE_3], 3), line)["priority"], 5)

    def test_a_later_message_is_neither_sent_nor_accepted(self):
        e = self.assertRaises(LocalProtocolError, codec([NOTE_3, POKE_3], 2).send,
                              POKE_3.build())
        self.assertEqual(e.reason, "not-negotiated")
        line = b'{"v":1,"type":"poke"}\n'
        e = self.assertRaises(RemoteProtocolError, receive, codec([NOTE_3, POKE_3], 2), line)
        self.assertEqual(e.reason, "unknown-type")
        self.assertIn("protocol 3", e.detail)
        self.assertEqual(receive(codec([NOTE_3, POKE_3], 3), line).type, "poke")

    def test_an_ignorable_field_reaches_an_older_peer_which_drops_it(self):
        data = codec([NOTE_3], 2).send(NOTE_3.build(text="hi", hint="soon"))
        self.assertEqual(wire(data), {"type": "note", "text": "hi", "hint": "soon",
                                      "ignorable": ["hint"]})
        old = codec([NOTE_2], 2)  # a release that never heard of "hint"
        message = receive(old, data)
        self.assertEqual(message.fields, {"text": "hi"})
        self.assertIs(old.next_event(), NEED_DATA)
        # A peer on protocol 3 knows it: no marking, and it is kept.
        data = codec([NOTE_3], 3).send(NOTE_3.build(text="hi", hint="soon"))
        self.assertNotIn("ignorable", wire(data))
        self.assertEqual(receive(codec([NOTE_3], 3), data)["hint"], "soon")

    def test_everything_else_stays_strict(self):
        """An unknown field not declared ignorable closes the connection, as before."""
        line = b'{"v":1,"type":"note","text":"hi","hint":"soon"}\n'
        e = self.assertRaises(RemoteProtocolError, receive, codec([NOTE_2], 2), line)
        self.assertEqual((e.reason, e.detail), ("bad-field", "note.hint: unknown field"))

    def test_a_known_field_declared_ignorable_is_still_checked(self):
        line = b'{"v":1,"type":"note","text":7,"ignorable":["text"]}\n'
        e = self.assertRaises(RemoteProtocolError, receive, codec([NOTE_2], 2), line)
        self.assertEqual(e.reason, "bad-field")
        line = b'{"v":1,"type":"note","text":"hi","hint":5,"ignorable":["hint"]}\n'
        e = self.assertRaises(RemoteProtocolError, receive, codec([NOTE_3], 3), line)
        self.assertEqual(e.detail, "note.hint: must be a string, got an integer")

    def test_a_bad_ignorable_list_is_refused(self):
        for value in ('"hint"', "[1]", json.dumps(["f"] * 33)):
            line = b'{"v":1,"type":"note","text":"hi","ignorable":' + value.encode() + b"}\n"
            e = self.assertRaises(RemoteProtocolError, receive, codec([NOTE_2], 2), line)
            self.assertEqual(e.reason, "bad-envelope")

    def test_layer_messages_are_gated_the_same_way(self):
        """Membership and ownership parse their own messages; their added fields are
        declared by name and left out or dropped by the codec like a schema's."""
        def parse(data):
            return dict(data)

        layer_3 = LayerMessageType("m.note", parse, added={
            "weight": Since(3, int), "hint": Since(3, str, ignorable=True)})
        layer_2 = LayerMessageType("m.note", parse)
        message = layer_3.build(text="hi", weight=2, hint="soon")
        data = codec([layer_3], 2).send(message)
        self.assertEqual(wire(data), {"type": "m.note", "text": "hi", "hint": "soon",
                                      "ignorable": ["hint"]})
        self.assertEqual(receive(codec([layer_2], 2), data).parsed,
                         {"type": "m.note", "text": "hi"})
        self.assertEqual(wire(codec([layer_3], 3).send(message)),
                         {"type": "m.note", "text": "hi", "weight": 2, "hint": "soon"})
        line = b'{"v":1,"type":"m.note","text":"hi","weight":2}\n'
        e = self.assertRaises(RemoteProtocolError, receive, codec([layer_3], 2), line)
        self.assertEqual((e.reason, e.detail), ("bad-field", "m.note.weight: unknown field"))
        self.assertEqual(receive(codec([layer_3], 3), line).parsed["weight"], 2)
        late = LayerMessageType("m.poke", parse, since=3)
        e = self.assertRaises(LocalProtocolError, codec([late], 2).send, late.build())
        self.assertEqual(e.reason, "not-negotiated")

    def test_a_field_added_later_must_say_so(self):
        self.assertRaises(TypeError, MessageType, "x", {"a": Since(1, int)})
        self.assertRaises(TypeError, MessageType, "x", {"a": Since(3, int)}, since=3)
        self.assertRaises(TypeError, MessageType, "x", {"ignorable": int})

    def test_hello_fields_after_protocol_2_are_ignorable(self):
        """The hello is read before a version is agreed: what a later protocol adds to it
        must be droppable by every release that speaks 2."""
        for name, field in HELLO.added.items():
            self.assertTrue(field.version == 2 or field.ignorable, name)


class ClusterProtocolTests(unittest.TestCase):
    def test_the_cluster_speaks_what_every_member_speaks(self):
        mixed = {"alpha": ProtocolRange(2, 3), "beta": ProtocolRange(2, 2),
                 "gamma": ProtocolRange(3, 3)}
        self.assertEqual(cluster_protocol(mixed), ClusterProtocol(None, ("beta",)))
        upgrading = {"alpha": ProtocolRange(2, 3), "beta": ProtocolRange(2, 2),
                     "gamma": ProtocolRange(2, 3)}
        cluster = cluster_protocol(upgrading)
        self.assertEqual(cluster, ClusterProtocol(2, ("beta",)))
        self.assertTrue(enabled(2, cluster))
        self.assertFalse(enabled(3, cluster))
        done = dict(upgrading, beta=ProtocolRange(2, 3))
        self.assertEqual(cluster_protocol(done), ClusterProtocol(3, ()))
        self.assertTrue(enabled(3, cluster_protocol(done)))
        self.assertFalse(enabled(2, cluster_protocol({})))

    def test_a_member_that_publishes_no_range_holds_everything_back(self):
        cluster = cluster_protocol({"alpha": ProtocolRange(2, 3), "beta": None})
        self.assertEqual(cluster, ClusterProtocol(None, ("beta",)))
        self.assertFalse(enabled(2, cluster))

    def test_published_versions_are_read_defensively(self):
        meta = dict(publication("0.1.0", ProtocolRange(2, 3)), registrations={})
        self.assertEqual(published(meta), ("0.1.0", ProtocolRange(2, 3)))
        for bad in ([3, 2], [2], ["2", "3"], [True, 2], 7, None):
            self.assertEqual(published({"software": "x", "protocols": bad}), ("x", None))
        self.assertEqual(published({"software": 5}), (None, None))
        self.assertEqual(published(None), (None, None))
