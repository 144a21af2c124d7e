"""Membership and ownership messages on the wire: parsed by their layer, refused as the peer's fault."""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.layers import (
    MEMBERSHIP_TYPES, OWNERSHIP_TYPES, membership_message, node_registry, ownership_message,
)
from clsd.membership.core import messages as mm
from clsd.membership.core.members import Member, State
from clsd.ownership.core import messages as om
from clsd.ownership.core.ballot import Ballot
from clsd.wire.core.codec import Codec
from clsd.wire.core.errors import LocalProtocolError, RemoteProtocolError
from clsd.wire.core.messages import LayerMessageType
from clsd.wire.core.session import State as ConnState
from clsd.wire.core.stats import PeerStats
from clsd.wire.protocol import PeerProtocol
from tests.wire.test_protocol import (
    TIMEOUTS, AbortRecordingTransport, RecordingHandler, hello, hello_line,
)

ALPHA = Member("alpha", "127.0.0.11:7400", 5, 2, State.ALIVE)


def line(type_name, **fields):
    return json.dumps({"v": 1, "type": type_name, **fields}).encode() + b"\n"


class RegistryTests(unittest.TestCase):
    def test_every_layer_type_is_registered(self):
        registry = node_registry()
        for name in list(mm.MESSAGE_TYPES) + list(om.MESSAGE_TYPES):
            self.assertIn(name, registry)
        self.assertEqual(len(MEMBERSHIP_TYPES), len(mm.MESSAGE_TYPES))
        self.assertEqual(len(OWNERSHIP_TYPES), len(om.MESSAGE_TYPES))

    def test_round_trip_keeps_the_parsed_object(self):
        codec = Codec(node_registry())
        heartbeat = mm.Heartbeat(5, 2, (mm.MemberUpdate(ALPHA),))
        prepare = om.Prepare("web", Ballot(3, "alpha", 7))
        data = codec.send(membership_message(heartbeat)) + codec.send(
            ownership_message(prepare.to_wire()))
        codec.receive_data(data)
        first, second = codec.next_event(), codec.next_event()
        self.assertEqual((first.type, first.parsed), ("m.heartbeat", heartbeat))
        self.assertEqual((second.type, second.parsed), ("lease.prepare", prepare))

    def test_parser_refusal_is_a_remote_error_naming_the_field(self):
        codec = Codec(node_registry())
        codec.receive_data(line("m.heartbeat", g="x", i=1, updates=[]))
        with self.assertRaises(RemoteProtocolError) as caught:
            codec.next_event()
        self.assertEqual(caught.exception.reason, "bad-field")
        self.assertIn("m.heartbeat.g", str(caught.exception))

    def test_envelope_keys_refused_as_fields(self):
        kind = LayerMessageType("m.watch", mm.from_wire)
        with self.assertRaises(LocalProtocolError):
            kind.build(type="m.watch")

    def test_unexpected_parser_exception_is_refused_not_raised(self):
        def parse(data):
            return data["missing"]
        kind = LayerMessageType("x", parse)
        codec = Codec(node_registry().extended(kind))
        codec.receive_data(line("x"))
        self.assertRaises(RemoteProtocolError, codec.next_event)


class ConnectionTests(unittest.TestCase):
    """A malformed layer message from an established peer closes that connection, counted."""

    def setUp(self):
        self.clock = Clock()
        self.handler = RecordingHandler()
        self.stats = PeerStats()
        self.protocol = PeerProtocol(
            hello=hello("alpha"), registry=node_registry(), handler=self.handler,
            clock=self.clock, monotonic=self.clock.seconds, initiator=False,
            stats=self.stats, timeouts=TIMEOUTS, peer_name=lambda transport: "beta")
        self.transport = AbortRecordingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000))
        self.protocol.makeConnection(self.transport)
        self.protocol.handshakeCompleted()
        self.protocol.dataReceived(hello_line("beta"))
        self.assertIs(self.protocol.state, ConnState.ESTABLISHED)

    def assertDropped(self, data):
        self.protocol.dataReceived(data + line("m.watch"))
        self.assertTrue(self.transport.disconnecting)
        self.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.handler.events, [
            ("connected", "beta"), ("disconnected", "beta", "bad-field")])
        self.assertEqual(self.stats.dropped["bad-field"], 1)

    def test_malformed_membership_message_drops_the_connection(self):
        self.assertDropped(line("m.join", member={"n": "beta", "a": "x", "g": -1,
                                                  "i": 0, "s": "alive"}))

    def test_malformed_ownership_message_drops_the_connection(self):
        self.assertDropped(line("lease.prepare", resource=5))

    def test_good_messages_arrive_parsed(self):
        join = mm.Join(ALPHA.evolve(name="beta"))
        release = om.Release("web", Ballot(3, "beta", 7))
        self.protocol.dataReceived(json.dumps({"v": 1, **join.to_wire()}).encode() + b"\n"
                                   + json.dumps({"v": 1, **release.to_wire()}).encode() + b"\n")
        self.assertFalse(self.transport.disconnecting)
        got = [event[2].parsed for event in self.handler.events if event[0] == "message"]
        self.assertEqual(got, [join, release])
