"""Connections before authentication: the caps, the summary log, memory after a flood.

The pure parts (L{PendingGate}, L{RejectionLog}) first, then the peer
network's listener on a L{MemoryReactorClock}: the factory it listens with
refuses over-cap connections before TLS wraps them, accepted connections
free their slot when they authenticate or end, and refusals become one log
line per interval.
"""

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import Logger, LogLevel, formatEvent
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.wire.core.preauth import (
    PENDING_CAP,
    PENDING_CAP_ADDRESS,
    PendingGate,
    PreauthLimits,
    RejectionLog,
)
from clsd.wire.network import FLOOD, PeerNetwork
from clsd.wire.tls import PeerTLS

from tests.support.peer_fixtures import RecordingHandler, TestCA


class PendingGateTests(unittest.TestCase):
    def test_total_cap(self):
        gate = PendingGate(PreauthLimits(max_pending=3, max_pending_per_address=3))
        self.assertEqual([gate.admit(f"10.0.0.{i}") for i in range(4)],
                         [None, None, None, PENDING_CAP])
        self.assertEqual(gate.pending, 3)
        gate.release("10.0.0.1")
        self.assertIsNone(gate.admit("10.0.0.9"))

    def test_per_address_cap_leaves_room_for_others(self):
        gate = PendingGate(PreauthLimits(max_pending=10, max_pending_per_address=2))
        self.assertEqual([gate.admit("10.0.0.1") for _ in range(3)],
                         [None, None, PENDING_CAP_ADDRESS])
        self.assertIsNone(gate.admit("10.0.0.2"))
        self.assertEqual((gate.pending_from("10.0.0.1"), gate.pending), (2, 3))
        gate.release("10.0.0.1")
        gate.release("10.0.0.1")
        self.assertEqual(gate.pending_from("10.0.0.1"), 0)
        self.assertIsNone(gate.admit("10.0.0.1"))

    def test_peak(self):
        gate = PendingGate(PreauthLimits(max_pending=10, max_pending_per_address=10))
        for _ in range(4):
            gate.admit("a")
        for _ in range(3):
            gate.release("a")
        self.assertEqual(gate.take_peak(), 4)
        self.assertEqual(gate.take_peak(), 1)


class RejectionLogTests(unittest.TestCase):
    def test_first_refusal_is_reported_at_once_the_rest_once_per_interval(self):
        log = RejectionLog(10.0)
        first = log.record("tls-plaintext", "10.0.0.1", "10.0.0.1:5000", "not TLS", 100.0)
        self.assertEqual((first.count, first.seconds, first.reasons),
                         (1, 0.0, {"tls-plaintext": 1}))
        self.assertEqual(first.example, ("tls-plaintext", "10.0.0.1:5000", "not TLS"))
        held = [log.record(reason, host, f"{host}:1", "d", 101.0 + i * 0.001)
                for i, (reason, host) in enumerate(
                    [("pending-cap", "10.0.0.2")] * 5 + [("tls-incomplete", "10.0.0.3")] * 2)]
        self.assertEqual(held, [None] * 7)
        self.assertEqual(log.deadline(), 110.0)
        self.assertIsNone(log.flush(109.9))
        summary = log.flush(110.0)
        self.assertEqual(summary.count, 7)
        self.assertEqual(summary.seconds, 10.0)
        self.assertEqual(summary.reasons, {"pending-cap": 5, "tls-incomplete": 2})
        self.assertEqual(summary.sources, (("10.0.0.2", 5), ("10.0.0.3", 2)))
        self.assertEqual(summary.example, ("pending-cap", "10.0.0.2:1", "d"))
        self.assertIsNone(log.deadline())

    def test_after_a_quiet_interval_the_next_refusal_is_reported_at_once(self):
        log = RejectionLog(10.0)
        log.record("tls-plaintext", "a", "a:1", "d", 0.0)
        self.assertIsNone(log.flush(10.0))  # nothing held
        self.assertIsNotNone(log.record("tls-plaintext", "a", "a:1", "d", 25.0))

    def test_early_flush_reports_what_is_held(self):
        log = RejectionLog(10.0)
        log.record("tls-plaintext", "a", "a:1", "d", 0.0)
        self.assertIsNone(log.flush(1.0, early=True))  # nothing held
        log.record("tls-plaintext", "a", "a:2", "d", 2.0)
        self.assertEqual(log.flush(3.0, early=True).count, 1)

    def test_text_names_counts_reasons_and_busiest_sources(self):
        log = RejectionLog(10.0)
        log.record("tls-plaintext", "10.0.0.9", "10.0.0.9:1", "not TLS", 0.0)
        for i in range(6):
            log.record("pending-cap-address", f"10.0.0.{i % 5}", "x:1", "over", 1.0)
        text = log.flush(10.0).text()
        self.assertIn("6 peer connection(s) refused before authentication in 10 s", text)
        self.assertIn("(pending-cap-address 6)", text)
        self.assertIn("10.0.0.0 (2)", text)
        self.assertIn("and 2 more", text)


def addr(host, port=40000):
    return IPv4Address("TCP", host, port)


class ListenerTests(unittest.TestCase):
    """The listener's gate on a memory reactor: refused connections never get TLS."""

    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.now = [0.0]
        self.events = []
        self.trims = []
        self.ca = TestCA()
        self.network = PeerNetwork(
            reactor=self.reactor, tls=PeerTLS(self.ca.identity("alpha")), name="alpha",
            listen=("127.0.0.21", 7400), handler=RecordingHandler(),
            monotonic=lambda: self.now[0], lag=_NoLag(),
            limits=PreauthLimits(max_pending=4, max_pending_per_address=2, log_interval=10.0),
            trim=lambda: self.trims.append(self.now[0]), resident=lambda: 100_000_000)
        self.network.log = Logger(observer=self.events.append)
        self.network.startService()
        self.addCleanup(self.stop)
        [(port, self.factory, backlog, interface)] = self.reactor.tcpServers
        self.assertEqual((port, interface), (7400, "127.0.0.21"))

    def stop(self):
        # A StringTransport never reports the end of a connection: do it here,
        # or the network would wait for them forever.
        for protocol in self.network.connections():
            protocol.connectionLost(Failure(ConnectionDone()))
        return self.network.stopService()

    def advance(self, seconds):
        self.now[0] += seconds
        self.reactor.advance(seconds)

    def accept(self, host, port=40000):
        """What the listener does with a new connection: a TLS protocol or None."""
        protocol = self.factory.buildProtocol(addr(host, port))
        if protocol is None:
            return None
        self.assertIsInstance(protocol, TLSMemoryBIOProtocol)
        inner = protocol.wrappedProtocol
        inner.makeConnection(StringTransport(hostAddress=addr("127.0.0.21", 7400),
                                             peerAddress=addr(host, port)))
        return inner

    def texts(self):
        return [formatEvent(e) for e in self.events if e.get("event") == "peer.refused"]

    def test_caps_refuse_before_tls_and_slots_come_back(self):
        a1, a2 = self.accept("10.0.0.1", 1), self.accept("10.0.0.1", 2)
        self.assertIsNone(self.accept("10.0.0.1", 3))  # per address
        b1, b2 = self.accept("10.0.0.2", 1), self.accept("10.0.0.2", 2)
        self.assertIsNone(self.accept("10.0.0.3", 1))  # total
        stats = self.network.stats
        self.assertEqual(stats.pending, 4)
        self.assertEqual(stats.rejected["pending-cap-address"], 1)
        self.assertEqual(stats.rejected["pending-cap"], 1)
        self.assertEqual(stats.connections, 4)  # refused ones never got a protocol
        a1.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(self.network.gate.pending_from("10.0.0.1"), 1)
        self.assertIsNotNone(self.accept("10.0.0.3", 1))
        for protocol in (a2, b1, b2):
            protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(self.network.gate.pending, 1)
        self.assertEqual(stats.pending, 1)

    def test_an_authenticated_connection_frees_its_slot(self):
        protocol = self.accept("10.0.0.1")
        self.assertEqual(self.network.gate.pending, 1)
        # As after a checked hello.
        protocol.session.peer_hello = {"name": "beta", "generation": 1}
        self.network.peer_connected(protocol)
        self.assertEqual(self.network.peers(), ["beta"])
        self.assertEqual(self.network.gate.pending, 0)
        # Its end later does not free a second slot.
        self.network._forget(protocol, None)
        self.assertEqual(self.network.gate.pending, 0)

    def test_the_handshake_deadline_frees_slots_held_by_silent_connections(self):
        for port in (1, 2):
            self.accept("10.0.0.1", port)
        self.assertIsNone(self.accept("10.0.0.1", 3))
        self.advance(10.0)  # Timeouts().handshake
        for protocol in self.network.connections():
            self.assertEqual(protocol.close_reason.key, "handshake-timeout")
            protocol.connectionLost(Failure(ConnectionLost()))
        self.assertIsNotNone(self.accept("10.0.0.1", 3))

    def test_a_flood_is_a_few_summary_lines(self):
        self.accept("10.0.0.1", 1)
        self.accept("10.0.0.1", 2)
        for i in range(998):
            self.assertIsNone(self.accept("10.0.0.1", 100 + i))
            if i % 100 == 99:
                self.advance(0.5)
        self.advance(10.0)
        texts = self.texts()
        self.assertEqual(len(texts), 2, texts)
        self.assertIn("1 peer connection(s) refused before authentication (pending-cap-address 1)",
                      texts[0])
        self.assertIn("997 peer connection(s) refused", texts[1])
        self.assertIn("from 10.0.0.1 (997)", texts[1])
        self.assertEqual(self.network.stats.rejected["pending-cap-address"], 998)
        [event] = [e for e in self.events if e.get("event") == "peer.refused"][1:]
        self.assertEqual(event["log_level"], LogLevel.warn)
        self.assertEqual(event["reasons"], {"pending-cap-address": 997})

    def test_failed_handshakes_are_summed_up_not_logged_one_by_one(self):
        for port in range(1, 3):
            protocol = self.accept(f"10.0.1.{port}", port)
            protocol.connectionLost(Failure(ConnectionDone()))  # before TLS completed
        texts = self.texts()
        self.assertEqual(len(texts), 1)
        self.assertIn("tls-incomplete", texts[0])
        self.assertEqual([e for e in self.events if e.get("event") != "peer.refused"
                          and "tls-incomplete" in formatEvent(e)], [])
        self.advance(10.0)
        self.assertEqual(len(self.texts()), 2)
        self.assertIn("1 peer connection(s)", self.texts()[1])

    def test_memory_is_trimmed_once_after_a_flood(self):
        self.accept("10.0.0.1", 1)
        self.accept("10.0.0.1", 2)
        for i in range(FLOOD):
            self.accept("10.0.0.1", 100 + i)
        self.advance(10.0)  # the summary of the flood
        self.assertEqual(self.trims, [])
        self.advance(10.0)  # a quiet interval: the flood is over
        self.assertEqual(self.trims, [20.0])
        self.assertTrue(any("peer flood over" in formatEvent(e) for e in self.events))
        self.advance(60.0)
        self.assertEqual(self.trims, [20.0])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_stopping_logs_the_refusals_held(self):
        for port in (1, 2, 3, 4):
            self.accept("10.0.0.1", port)  # the last two are over the cap
        self.assertEqual(len(self.texts()), 1)
        self.stop()  # the two pending ones end too
        texts = self.texts()
        self.assertEqual(len(texts), 2)
        self.assertIn("3 peer connection(s) refused before authentication "
                      "(tls-incomplete 2, pending-cap-address 1)", texts[1])
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_few_refusals_do_not_trim(self):
        for i in range(3):
            self.accept("10.0.0.1", 100 + i)
        self.advance(100.0)
        self.assertEqual(self.trims, [])


class _NoLag:
    total = 0.0
