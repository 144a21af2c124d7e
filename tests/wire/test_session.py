"""The pure connection state machine: handshake, hello checks, timeouts, closing."""

from twisted.trial import unittest

from clsd.wire.core.errors import LocalProtocolError, RemoteProtocolError
from clsd.wire.core.messages import (
    BYE, HELLO, PING, MessageType, settings_digests, settings_hash,
)
from clsd.wire.core.session import (
    LOCAL,
    PEER,
    REMOTE,
    CloseReason,
    Deliver,
    Disconnect,
    Established,
    Send,
    Session,
    State,
    Timeouts,
)

NOTE = MessageType("note", {"text": str})
SETTINGS_DICT = {"voters": ["alpha", "beta", "gamma"]}
SETTINGS = settings_hash(SETTINGS_DICT)
T = Timeouts(handshake=10.0, idle=30.0, keepalive=10.0, write_stall=20.0, close=5.0,
             max_output_buffer=1000)


def hello(name, settings=SETTINGS_DICT, protocol=2, generation=1):
    return HELLO.build(protocol=protocol, protocol_min=protocol, software="0.1.0",
                       name=name, generation=generation, advertise="127.0.0.1:7400",
                       settings=settings_hash(settings),
                       settings_digests=settings_digests(settings))


def session(now=100.0):
    return Session(hello=hello("alpha"), now=now, timeouts=T)


def established(now=100.0):
    s = session(now)
    s.tls_ready("beta", now)
    s.message_received(hello("beta"), now)
    assert s.state is State.ESTABLISHED
    return s


def disconnects(actions):
    return [a for a in actions if isinstance(a, Disconnect)]


class HandshakeTests(unittest.TestCase):
    def test_starts_connecting_and_sends_hello_after_tls(self):
        s = session()
        self.assertIs(s.state, State.CONNECTING)
        actions = s.tls_ready("beta", 100.5)
        self.assertEqual(actions, [Send(hello("alpha"))])
        self.assertIs(s.state, State.HANDSHAKING)
        self.assertEqual(s.certificate_name, "beta")

    def test_valid_hello_establishes(self):
        s = session()
        s.tls_ready("beta", 100.0)
        actions = s.message_received(hello("beta"), 100.1)
        self.assertEqual(actions, [Established(hello("beta"))])
        self.assertIs(s.state, State.ESTABLISHED)
        self.assertEqual(s.peer_hello["name"], "beta")

    def assertRefused(self, s, actions, key, blame=PEER, bye=True):
        self.assertIs(s.state, State.CLOSING)
        self.assertEqual(s.close_reason.key, key)
        self.assertEqual(s.close_reason.blame, blame)
        [disconnect] = disconnects(actions)
        self.assertEqual(disconnect.reason.key, key)
        sent = [a.message for a in actions if isinstance(a, Send)]
        if bye:
            self.assertEqual([m.type for m in sent], ["bye"])
            self.assertEqual(sent[0]["reason"], key)
        else:
            self.assertEqual(sent, [])
        # Nothing is processed once closing, not even a good message.
        self.assertEqual(s.message_received(NOTE.build(text="x"), 101.0), [])

    def test_name_mismatch(self):
        s = session()
        s.tls_ready("beta", 100.0)
        actions = s.message_received(hello("gamma"), 100.1)
        self.assertRefused(s, actions, "name-mismatch")
        self.assertIn("'gamma'", s.close_reason.detail)
        self.assertIn("'beta'", s.close_reason.detail)

    def test_settings_mismatch(self):
        s = session()
        s.tls_ready("beta", 100.0)
        actions = s.message_received(hello("beta", settings={"voters": ["beta"]}), 100.1)
        self.assertRefused(s, actions, "settings-mismatch")
        self.assertIn("cluster-wide settings", s.close_reason.detail)

    def test_protocol_mismatch(self):
        s = session()
        s.tls_ready("beta", 100.0)
        actions = s.message_received(hello("beta", protocol=3), 100.1)
        self.assertRefused(s, actions, "incompatible")

    def test_self_connection(self):
        s = session()
        s.tls_ready("alpha", 100.0)
        actions = s.message_received(hello("alpha"), 100.1)
        self.assertRefused(s, actions, "self-connection", blame=LOCAL)

    def test_message_before_hello(self):
        s = session()
        s.tls_ready("beta", 100.0)
        actions = s.message_received(NOTE.build(text="hi"), 100.1)
        self.assertRefused(s, actions, "no-hello")

    def test_data_before_tls(self):
        s = session()
        actions = s.message_received(hello("beta"), 100.1)
        self.assertRefused(s, actions, "unexpected-data", bye=False)

    def test_bye_during_handshake_is_the_peers_refusal(self):
        s = session()
        s.tls_ready("beta", 100.0)
        actions = s.message_received(
            BYE.build(reason="settings-mismatch", detail="voters differ"), 100.1)
        self.assertRefused(s, actions, "peer-closed", blame=REMOTE, bye=False)
        self.assertIn("settings-mismatch: voters differ", s.close_reason.detail)

    def test_tls_ready_twice_is_our_bug(self):
        s = session()
        s.tls_ready("beta", 100.0)
        self.assertRaises(LocalProtocolError, s.tls_ready, "beta", 100.0)


class EstablishedTests(unittest.TestCase):
    def test_messages_are_delivered(self):
        s = established()
        note = NOTE.build(text="hi")
        self.assertEqual(s.message_received(note, 101.0), [Deliver(note)])

    def test_ping_is_not_delivered(self):
        s = established()
        self.assertEqual(s.message_received(PING.build(), 101.0), [])
        self.assertEqual(s.last_received, 101.0)

    def test_second_hello_closes(self):
        s = established()
        actions = s.message_received(hello("beta"), 101.0)
        self.assertEqual(disconnects(actions)[0].reason.key, "duplicate-hello")

    def test_bye_closes_without_answering(self):
        s = established()
        actions = s.message_received(BYE.build(reason="shutdown", detail="stopping"), 101.0)
        self.assertEqual(actions, [Disconnect(s.close_reason)])
        self.assertEqual(s.close_reason.key, "peer-closed")

    def test_protocol_error_closes_with_its_reason(self):
        s = established()
        actions = s.protocol_error(RemoteProtocolError("line-too-long", "too long"), 101.0)
        self.assertEqual(s.close_reason, CloseReason("line-too-long", "too long", PEER))
        self.assertEqual([type(a) for a in actions], [Send, Disconnect])

    def test_local_close_says_bye(self):
        s = established()
        actions = s.close("shutdown", "stopping", 101.0)
        self.assertEqual(actions[0], Send(BYE.build(reason="shutdown", detail="stopping")))
        self.assertEqual(actions[1], Disconnect(CloseReason("shutdown", "stopping", LOCAL)))
        self.assertEqual(s.close("shutdown", "again", 101.0), [], "closing is idempotent")


class TimeoutTests(unittest.TestCase):
    def test_handshake_timeout_while_connecting(self):
        s = session(100.0)
        self.assertEqual(s.deadline(), 110.0)
        self.assertEqual(s.tick(109.9), [])
        actions = s.tick(110.0)
        self.assertEqual(s.close_reason.key, "handshake-timeout")
        self.assertIn("TLS", s.close_reason.detail)
        self.assertTrue(disconnects(actions)[0].abort)

    def test_handshake_timeout_waiting_for_hello(self):
        s = session(100.0)
        s.tls_ready("beta", 101.0)
        self.assertEqual(s.deadline(), 110.0, "one budget for TLS and hello together")
        s.tick(110.0)
        self.assertEqual(s.close_reason.key, "handshake-timeout")
        self.assertIn("hello", s.close_reason.detail)

    def test_our_own_stalls_are_given_back_to_the_handshake(self):
        s = session(100.0)
        s.credit_stall(4.0)  # this process could not run for 4 s
        self.assertEqual(s.deadline(), 114.0)
        self.assertEqual(s.tick(113.9), [])
        s.tick(114.0)
        self.assertEqual(s.close_reason.key, "handshake-timeout")
        self.assertIn("4.0 s more allowed for our own stalls", s.close_reason.detail)

    def test_the_stall_credit_is_bounded(self):
        s = session(100.0)
        for _ in range(10):
            s.credit_stall(10.0)
        self.assertEqual(s.handshake_credit, 30.0)  # 3 handshake timeouts
        self.assertEqual(s.deadline(), 140.0)

    def test_stalls_after_the_handshake_do_not_extend_it(self):
        s = established(100.0)
        s.credit_stall(50.0)
        self.assertEqual(s.handshake_credit, 0.0)

    def test_our_own_stalls_are_given_back_to_an_idle_peer(self):
        s = established(100.0)
        s.message_received(NOTE.build(text="x"), 105.0)
        s.credit_stall(20.0)
        self.assertEqual(s.idle_credit, 20.0)
        self.assertIsNone(s.close_reason)
        self.assertEqual([a for a in s.tick(135.0) if isinstance(a, Disconnect)], [])
        s.tick(155.0)
        self.assertEqual(s.close_reason.key, "idle-timeout")
        self.assertIn("20.0 s more allowed for our own stalls", s.close_reason.detail)

    def test_a_message_ends_the_idle_credit(self):
        s = established(100.0)
        s.credit_stall(20.0)
        s.message_received(NOTE.build(text="x"), 101.0)
        self.assertEqual(s.idle_credit, 0.0)
        s.tick(131.0)
        self.assertEqual(s.close_reason.key, "idle-timeout")

    def test_the_idle_credit_is_bounded(self):
        s = established(100.0)
        for _ in range(10):
            s.credit_stall(30.0)
        self.assertEqual(s.idle_credit, 90.0)

    def test_keepalive_ping_when_we_are_quiet(self):
        s = established(100.0)
        s.message_received(NOTE.build(text="x"), 105.0)
        self.assertEqual(s.deadline(), 110.0)
        self.assertEqual(s.tick(110.0), [Send(PING.build())])
        self.assertEqual(s.deadline(), 120.0)
        s.message_sent(50, 115.0)
        self.assertEqual(s.deadline(), 125.0)

    def test_idle_peer_dropped(self):
        s = established(100.0)
        for now in (110.0, 120.0):
            self.assertEqual(s.tick(now), [Send(PING.build())])
        self.assertEqual(s.deadline(), 130.0)
        actions = s.tick(130.0)
        self.assertEqual(s.close_reason, CloseReason(
            "idle-timeout", "no message from the peer for 30 s", PEER))
        self.assertTrue(disconnects(actions))

    def test_any_message_resets_idle(self):
        s = established(100.0)
        s.message_received(PING.build(), 125.0)
        s.tick(130.0)
        self.assertIs(s.state, State.ESTABLISHED)

    def test_slow_reader_dropped_after_write_stall(self):
        s = established(100.0)
        s.write_paused(101.0)
        s.message_received(PING.build(), 115.0)
        s.message_sent(10, 115.0)
        self.assertEqual(s.deadline(), 121.0)
        actions = s.tick(121.0)
        self.assertEqual(s.close_reason.key, "slow-reader")
        self.assertEqual(actions, [Disconnect(s.close_reason, abort=True)])

    def test_resume_clears_the_stall(self):
        s = established(100.0)
        s.write_paused(101.0)
        s.write_resumed(105.0)
        s.message_received(PING.build(), 119.0)
        s.tick(121.0)
        self.assertIs(s.state, State.ESTABLISHED)

    def test_slow_reader_dropped_when_queue_too_big(self):
        s = established(100.0)
        s.write_paused(101.0)
        self.assertEqual(s.message_sent(600, 101.0), [])
        actions = s.message_sent(600, 101.5)
        self.assertEqual(s.close_reason.key, "slow-reader")
        self.assertTrue(disconnects(actions)[0].abort)

    def test_close_that_does_not_finish_is_aborted_once(self):
        s = established(100.0)
        s.close("shutdown", "stopping", 100.0)
        self.assertEqual(s.deadline(), 105.0)
        self.assertEqual(s.tick(104.0), [])
        self.assertEqual(s.tick(105.0), [Disconnect(s.close_reason, abort=True)])
        self.assertIsNone(s.deadline())
        self.assertEqual(s.tick(200.0), [])

    def test_lost_keeps_our_reason(self):
        s = established(100.0)
        s.close("duplicate", "other connection", 100.0)
        final = s.lost(CloseReason("connection-closed", "eof", "network"), 100.1)
        self.assertEqual(final.key, "duplicate")
        self.assertIs(s.state, State.CLOSED)
        self.assertIsNone(s.deadline())

    def test_lost_uses_the_transport_reason_otherwise(self):
        s = established(100.0)
        reason = CloseReason("connection-lost", "reset", "network")
        self.assertEqual(s.lost(reason, 100.1), reason)
