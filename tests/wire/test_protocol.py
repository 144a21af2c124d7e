"""The peer connection protocol over in-memory transports (StringTransport, iosim).

TLS is not in play here: the tests call C{handshakeCompleted} themselves and
substitute the function that reads the peer's certificate name.  Real TLS is
exercised in test_wire_tls.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.test import iosim
from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clsd.wire.core.interfaces import IPeer, IPeerHandler
from clsd.wire.core.lag import ReactorLag
from clsd.wire.core.messages import (
    HELLO, MessageType, peer_registry, settings_digests, settings_hash,
)
from clsd.wire.core.session import State, Timeouts
from clsd.wire.core.stats import PeerStats
from clsd.wire.protocol import PeerProtocol

NOTE = MessageType("note", {"text": str})
REGISTRY = peer_registry(NOTE)
SETTINGS = settings_hash({"voters": ["alpha", "beta"]})
TIMEOUTS = Timeouts(handshake=10.0, idle=30.0, keepalive=10.0, write_stall=20.0,
                    close=5.0, max_output_buffer=10_000)


def hello(name, **overrides):
    fields = dict(protocol=2, protocol_min=2, software="0.1.0", name=name, generation=42,
                  advertise="127.0.0.21:7400", settings=SETTINGS,
                  settings_digests=settings_digests({"voters": ["alpha", "beta"]}))
    fields.update(overrides)
    return HELLO.build(**fields)


def line(message_type, **fields):
    return json.dumps({"v": 1, "type": message_type, **fields}).encode() + b"\n"


def hello_line(name, **overrides):
    return line("hello", **hello(name, **overrides).fields)


@implementer(IPeerHandler)
class RecordingHandler:
    def __init__(self):
        self.events = []

    def peer_connected(self, peer):
        self.events.append(("connected", peer.name))

    def message_received(self, peer, message):
        self.events.append(("message", peer.name, message))

    def peer_disconnected(self, peer, reason):
        self.events.append(("disconnected", peer.name, reason.key))


class AbortRecordingTransport(StringTransport):
    """StringTransport that tells an abort from a graceful close."""

    aborted = False

    def abortConnection(self):
        self.aborted = True
        super().abortConnection()


def make_protocol(name="alpha", certificate_name="beta", clock=None, initiator=False,
                  handler=None, stats=None, lag=None):
    clock = clock or Clock()
    return PeerProtocol(
        hello=hello(name), registry=REGISTRY, handler=handler or RecordingHandler(),
        clock=clock, monotonic=clock.seconds, initiator=initiator,
        stats=stats or PeerStats(), timeouts=TIMEOUTS,
        peer_name=lambda transport: certificate_name, lag=lag,
    )


class StringTransportTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.handler = RecordingHandler()
        self.stats = PeerStats()
        self.protocol = make_protocol(clock=self.clock, handler=self.handler, stats=self.stats)
        self.transport = AbortRecordingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000))
        self.protocol.makeConnection(self.transport)

    def sent(self):
        """The messages written so far, decoded."""
        lines = self.transport.value().splitlines()
        return [json.loads(raw) for raw in lines]

    def establish(self):
        self.protocol.handshakeCompleted()
        self.protocol.dataReceived(hello_line("beta"))
        self.assertIs(self.protocol.state, State.ESTABLISHED)

    def lose(self):
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        self.protocol.connectionLost(Failure(ConnectionDone()))

    def test_provides_ipeer(self):
        self.establish()
        verifyObject(IPeer, self.protocol)
        self.assertEqual(self.protocol.name, "beta")
        self.assertEqual(self.protocol.generation, 42)
        self.assertEqual(self.protocol.advertise, "127.0.0.21:7400")
        self.assertEqual(self.protocol.address, ("127.0.0.22", 40000))

    def test_nothing_sent_before_tls(self):
        self.assertEqual(self.transport.value(), b"")
        self.assertIs(self.protocol.state, State.CONNECTING)

    def test_hello_after_tls(self):
        self.protocol.handshakeCompleted()
        [sent] = self.sent()
        self.assertEqual(sent["type"], "hello")
        self.assertEqual(sent["name"], "alpha")
        self.assertEqual(sent["settings"], SETTINGS)
        self.assertIs(self.protocol.state, State.HANDSHAKING)

    def test_established_then_messages_delivered(self):
        self.establish()
        self.protocol.dataReceived(line("note", text="one") + line("note", text="two"))
        self.assertEqual(self.handler.events, [
            ("connected", "beta"),
            ("message", "beta", NOTE.build(text="one")),
            ("message", "beta", NOTE.build(text="two")),
        ])
        self.assertEqual(self.stats.messages_in, 3)
        self.assertEqual(self.stats.established, 1)

    def test_send(self):
        self.assertFalse(self.protocol.send(NOTE.build(text="early")))
        self.establish()
        hello_bytes = len(self.transport.value())
        self.transport.clear()
        self.assertTrue(self.protocol.send(NOTE.build(text="hi")))
        self.assertEqual(self.sent(), [{"v": 1, "type": "note", "text": "hi"}])
        self.assertEqual(self.stats.messages_out, 2)
        self.assertEqual(self.stats.bytes_out, hello_bytes + len(self.transport.value()))

    def test_name_mismatch_rejected_before_any_message(self):
        self.protocol.handshakeCompleted()
        self.protocol.dataReceived(hello_line("mallory") + line("note", text="sneak"))
        self.assertTrue(self.transport.disconnecting)
        bye = self.sent()[-1]
        self.assertEqual((bye["type"], bye["reason"]), ("bye", "name-mismatch"))
        self.lose()
        self.assertEqual(self.handler.events, [], "never reported, nothing delivered")
        self.assertEqual(self.stats.rejected["name-mismatch"], 1)

    def test_settings_mismatch_rejected(self):
        self.protocol.handshakeCompleted()
        self.protocol.dataReceived(hello_line("beta", settings=settings_hash({"voters": []})))
        self.lose()
        self.assertEqual(self.handler.events, [])
        self.assertEqual(self.stats.rejected["settings-mismatch"], 1)

    def test_message_before_hello_rejected(self):
        self.protocol.handshakeCompleted()
        self.protocol.dataReceived(line("note", text="hi"))
        self.lose()
        self.assertEqual(self.stats.rejected["no-hello"], 1)
        self.assertEqual(self.handler.events, [])

    def assertDropped(self, data, reason):
        self.establish()
        self.protocol.dataReceived(data + line("note", text="after"))
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(self.handler.events, [
            ("connected", "beta"), ("disconnected", "beta", reason)])
        self.assertEqual(self.stats.dropped[reason], 1)
        self.assertEqual(self.stats.closed[reason], 1)

    def test_a_forged_message_closes_the_connection_as_the_peers_fault(self):
        from clsd.wire.core.errors import Forged
        from clsd.wire.router import Router

        router = Router(clock=self.clock)
        delivered = []

        def receive(peer, message):
            delivered.append(message["text"])
            if message["text"] == "forged":
                raise Forged("alpha", "speaks for alpha")
        router.route(["note"], receive)
        self.protocol = make_protocol(clock=self.clock, handler=router, stats=self.stats)
        self.transport = AbortRecordingTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000))
        self.protocol.makeConnection(self.transport)
        self.establish()
        self.protocol.dataReceived(line("note", text="forged") + line("note", text="after"))
        self.assertTrue(self.transport.disconnecting)
        bye = self.sent()[-1]
        self.assertEqual((bye["type"], bye["reason"]), ("bye", "forged"))
        self.lose()
        self.assertEqual(delivered, ["forged"], "nothing after the forgery is delivered")
        self.assertEqual(self.stats.dropped["forged"], 1)
        self.assertEqual(router.forged, {"beta": 1})

    def test_malformed_json_dropped(self):
        self.assertDropped(b"{not json}\n", "malformed-json")

    def test_unknown_type_dropped(self):
        self.assertDropped(line("launch", missiles=1), "unknown-type")

    def test_wrong_field_type_dropped(self):
        self.assertDropped(line("note", text=5), "bad-field")

    def test_line_too_long_dropped_without_buffering_it(self):
        self.establish()
        self.protocol.codec.max_line = 1000
        for _ in range(100):
            self.protocol.dataReceived(b"x" * 100)
            self.assertLessEqual(self.protocol.codec.buffered, 1000)
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(self.stats.dropped["line-too-long"], 1)

    def test_handshake_timeout(self):
        self.clock.advance(9.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(self.stats.rejected["handshake-timeout"], 1)

    def lagged_connection(self):
        """A new connection whose protocol is forgiven this clock's stalls (clsd.wire.core.lag)."""
        lag = ReactorLag(self.clock, self.clock.seconds)
        protocol = make_protocol(clock=self.clock, stats=PeerStats(), lag=lag)
        transport = AbortRecordingTransport()
        lag.start()
        self.addCleanup(lag.stop)
        protocol.makeConnection(transport)
        return lag, protocol, transport

    def test_a_handshake_slowed_by_our_own_stalls_is_not_abandoned(self):
        lag, protocol, transport = self.lagged_connection()
        self.clock.advance(0.25)
        self.clock.advance(8.0)  # one reactor iteration of 8 s: the probe ran 7.75 s late
        self.clock.pump([0.25] * 9)  # 10.5 s since the connection
        self.assertEqual(lag.total, 7.75)
        self.assertFalse(transport.disconnecting)
        protocol.handshakeCompleted()
        protocol.dataReceived(hello_line("beta"))
        self.assertIs(protocol.state, State.ESTABLISHED)

    def test_stalls_before_the_last_message_are_not_credited_to_the_next_silence(self):
        lag, protocol, transport = self.lagged_connection()
        protocol.handshakeCompleted()
        protocol.dataReceived(hello_line("beta"))
        self.clock.advance(0.25)
        self.clock.advance(20.0)  # a 20 s stall of ours while the peer said nothing
        protocol.dataReceived(line("ping"))  # ... then the peer's ping arrives
        self.assertEqual(protocol.session.idle_credit, 0.0)
        self.clock.pump([0.25] * 121)  # 30 s of silence with no stall of ours
        self.assertTrue(transport.disconnecting)
        self.assertEqual(protocol.session.close_reason.key, "idle-timeout")

    def test_without_stalls_of_our_own_the_handshake_times_out_as_before(self):
        lag, protocol, transport = self.lagged_connection()
        self.clock.pump([0.25] * 40)
        self.assertEqual(lag.total, 0.0)
        self.assertTrue(transport.disconnecting)

    def test_slow_hello_trickle_still_times_out(self):
        self.protocol.handshakeCompleted()
        data = hello_line("beta")
        for byte in data[:-1]:  # everything but the newline, slowly
            self.clock.advance(0.1)
            self.protocol.dataReceived(bytes([byte]))
        self.assertTrue(self.transport.disconnecting)
        self.lose()
        self.assertEqual(self.stats.rejected["handshake-timeout"], 1)

    def test_keepalive_and_idle(self):
        self.establish()
        self.transport.clear()
        self.clock.advance(10)
        self.assertEqual([m["type"] for m in self.sent()], ["ping"])
        self.clock.advance(10)
        self.clock.advance(9.9)
        self.assertFalse(self.transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.sent()[-1]["reason"], "idle-timeout")
        self.lose()
        self.assertEqual(self.stats.dropped["idle-timeout"], 1)

    def test_slowloris_partial_lines_do_not_count_as_activity(self):
        self.establish()
        for _ in range(30):
            self.clock.advance(1)
            self.protocol.dataReceived(b" ")
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol.close_reason.key, "idle-timeout")

    def test_pings_keep_the_connection(self):
        self.establish()
        for _ in range(10):
            self.clock.advance(9)
            self.protocol.dataReceived(line("ping"))
        self.assertFalse(self.transport.disconnecting)
        self.assertEqual([e[0] for e in self.handler.events], ["connected"])

    def test_peer_that_stops_reading_is_aborted(self):
        self.establish()
        self.transport.producer.pauseProducing()
        for _ in range(4):
            self.clock.advance(5)
            self.protocol.dataReceived(line("ping"))
        self.assertTrue(self.transport.disconnecting)
        self.assertEqual(self.protocol.close_reason.key, "slow-reader")
        self.assertTrue(self.transport.aborted)

    def test_output_queue_bound(self):
        self.establish()
        self.transport.producer.pauseProducing()
        for _ in range(1000):
            self.protocol.send(NOTE.build(text="x" * 100))
            if self.transport.disconnecting:
                break
        self.assertEqual(self.protocol.close_reason.key, "slow-reader")
        self.assertTrue(self.transport.aborted)
        self.assertLess(len(self.transport.value()), 2 * TIMEOUTS.max_output_buffer)

    def test_close_that_hangs_is_aborted(self):
        self.establish()
        self.protocol.close("shutdown", "stopping")
        self.assertEqual(self.sent()[-1], {"v": 1, "type": "bye", "reason": "shutdown",
                                           "detail": "stopping"})
        self.assertTrue(self.transport.disconnecting)
        self.assertFalse(self.transport.aborted)
        self.clock.advance(5)
        self.assertTrue(self.transport.aborted)

    def test_timer_cancelled_on_loss(self):
        self.establish()
        self.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.handler.events[-1], ("disconnected", "beta", "connection-closed"))

    def test_bad_certificate_name(self):
        from clsd.certs.authority import CertificateError

        def no_name(transport):
            raise CertificateError("the certificate has 0 subject common names")

        protocol = PeerProtocol(
            hello=hello("alpha"), registry=REGISTRY, handler=RecordingHandler(),
            clock=self.clock, monotonic=self.clock.seconds, initiator=True,
            stats=self.stats, timeouts=TIMEOUTS, peer_name=no_name)
        protocol.makeConnection(StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000)))
        protocol.handshakeCompleted()
        self.assertEqual(protocol.close_reason.key, "bad-certificate")


class IOSimTests(unittest.TestCase):
    """Two protocols talking to each other through iosim's in-memory pump."""

    def setUp(self):
        self.clock = Clock()
        self.alpha_events = RecordingHandler()
        self.beta_events = RecordingHandler()
        self.alpha = make_protocol("alpha", "beta", self.clock, True, self.alpha_events)
        self.beta = make_protocol("beta", "alpha", self.clock, False, self.beta_events)
        self.pump = iosim.connect(
            self.beta, iosim.FakeTransport(self.beta, True,
                                           IPv4Address("TCP", "127.0.0.22", 7400),
                                           IPv4Address("TCP", "127.0.0.21", 40000)),
            self.alpha, iosim.FakeTransport(self.alpha, False,
                                            IPv4Address("TCP", "127.0.0.21", 40000),
                                            IPv4Address("TCP", "127.0.0.22", 7400)),
            clock=self.clock)
        self.alpha.handshakeCompleted()
        self.beta.handshakeCompleted()
        self.pump.flush()

    def test_both_established(self):
        self.assertIs(self.alpha.state, State.ESTABLISHED)
        self.assertIs(self.beta.state, State.ESTABLISHED)
        self.assertEqual(self.alpha_events.events, [("connected", "beta")])
        self.assertEqual(self.beta_events.events, [("connected", "alpha")])

    def test_messages_both_ways(self):
        self.alpha.send(NOTE.build(text="ping from alpha"))
        self.beta.send(NOTE.build(text="pong from beta"))
        self.pump.flush()
        self.assertEqual(self.beta_events.events[-1],
                         ("message", "alpha", NOTE.build(text="ping from alpha")))
        self.assertEqual(self.alpha_events.events[-1],
                         ("message", "beta", NOTE.build(text="pong from beta")))

    def test_close_tells_the_other_side_why(self):
        self.alpha.close("shutdown", "alpha is stopping")
        self.pump.flush()
        self.assertEqual(self.beta.close_reason.key, "peer-closed")
        self.assertIn("shutdown: alpha is stopping", self.beta.close_reason.detail)
        self.assertEqual(self.beta_events.events[-1], ("disconnected", "alpha", "peer-closed"))
        self.assertEqual(self.alpha_events.events[-1], ("disconnected", "beta", "shutdown"))

    def test_keepalives_keep_a_quiet_connection_up(self):
        for _ in range(20):
            self.clock.advance(5)
            self.pump.flush(advanceClock=False)
        self.assertIs(self.alpha.state, State.ESTABLISHED)
        self.assertIs(self.beta.state, State.ESTABLISHED)


class LoggingTests(unittest.TestCase):
    """A rejected connection is logged with the remote address and the reason."""

    def test_rejection_logged(self):
        from twisted.internet.error import ConnectionDone
        from twisted.logger import Logger, LogLevel, formatEvent
        from twisted.python.failure import Failure

        events = []
        clock = Clock()
        protocol = make_protocol(clock=clock, certificate_name="beta")
        protocol.log = Logger(observer=events.append)
        protocol.makeConnection(StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000)))
        protocol.handshakeCompleted()
        protocol.dataReceived(hello_line("mallory"))
        protocol.connectionLost(Failure(ConnectionDone()))
        [event] = events
        self.assertEqual(event["log_level"], LogLevel.warn)
        text = formatEvent(event)
        self.assertIn("from 127.0.0.22:40000 rejected: name-mismatch", text)
        self.assertIn("'mallory'", text)


class HandlerErrorTests(unittest.TestCase):
    def test_upper_layer_exception_is_logged_and_contained(self):
        @implementer(IPeerHandler)
        class Broken(RecordingHandler):
            def message_received(self, peer, message):
                super().message_received(peer, message)
                raise ValueError("upper layer bug")

        handler = Broken()
        stats = PeerStats()
        protocol = make_protocol(handler=handler, stats=stats)
        protocol.makeConnection(StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000)))
        protocol.handshakeCompleted()
        protocol.dataReceived(hello_line("beta") + line("note", text="1") + line("note", text="2"))
        self.assertEqual([e[0] for e in handler.events], ["connected", "message", "message"])
        self.assertEqual(stats.handler_errors, 2)
        self.assertIs(protocol.state, State.ESTABLISHED)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 2)


class ClosingTests(unittest.TestCase):
    def test_data_after_close_is_not_buffered(self):
        protocol = make_protocol()
        protocol.makeConnection(StringTransport(
            hostAddress=IPv4Address("TCP", "127.0.0.21", 7400),
            peerAddress=IPv4Address("TCP", "127.0.0.22", 40000)))
        protocol.handshakeCompleted()
        protocol.dataReceived(hello_line("beta"))
        protocol.close("shutdown", "stopping")
        for _ in range(100):
            protocol.dataReceived(line("note", text="x" * 1000) * 10)
        self.assertEqual(protocol.codec.buffered, 0)
