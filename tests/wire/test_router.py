from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.wire.core.errors import Forged
from clsd.wire.core.interfaces import IPeerHandler
from clsd.wire.core.messages import Message
from clsd.wire.core.session import LOCAL, PEER, CloseReason
from clsd.wire.router import FORGED_LOG_INTERVAL, Router


class Peer:
    name = "beta"


class RouterTests(unittest.TestCase):
    def setUp(self):
        self.router = Router()
        self.seen = []

    def test_provides_the_handler_interface(self):
        verifyObject(IPeerHandler, self.router)

    def test_messages_go_to_the_layer_of_their_type(self):
        self.router.route(["m.watch"], lambda p, m: self.seen.append(("m", m.type)))
        self.router.route(["lease.prepare"], lambda p, m: self.seen.append(("o", m.type)))
        self.router.message_received(Peer(), Message("lease.prepare", {}))
        self.router.message_received(Peer(), Message("m.watch", {}))
        self.router.message_received(Peer(), Message("other", {}))
        self.assertEqual(self.seen, [("o", "lease.prepare"), ("m", "m.watch")])
        self.assertEqual(self.router.counters["unrouted"], 1)

    def test_a_type_routes_to_one_layer_only(self):
        self.router.route(["x"], print)
        self.assertRaises(ValueError, self.router.route, ["x"], print)

    def test_links_fan_out_in_order_and_survive_a_failing_layer(self):
        def broken(peer):
            raise RuntimeError("bug")
        self.router.watch(broken, lambda p, r: self.seen.append(("down1", r.key)))
        self.router.watch(lambda p: self.seen.append(("up2", p.name)),
                          lambda p, r: self.seen.append(("down2", r.key)))
        self.router.peer_connected(Peer())
        self.router.peer_disconnected(Peer(), CloseReason("shutdown", "", LOCAL))
        self.assertEqual(self.seen, [("up2", "beta"), ("down1", "shutdown"),
                                     ("down2", "shutdown")])
        self.assertEqual(self.router.counters["handler_errors"], 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ClosablePeer:
    name = "mallory"

    def __init__(self):
        self.closed = []

    def close(self, key="local-close", detail="", *, blame=LOCAL):
        self.closed.append((key, blame))


class ForgedTests(unittest.TestCase):
    """A layer that finds a message speaking for another node blames the sender."""

    def setUp(self):
        from twisted.internet.task import Clock
        from twisted.logger import globalLogPublisher

        self.clock = Clock()
        self.router = Router(clock=self.clock)
        self.logged = []
        globalLogPublisher.addObserver(self.logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.logged.append)

        def forge(peer, message):
            raise Forged("alpha", "the ballot's proposer is alpha")
        self.router.route(["lease.release"], forge)

    def forgeries_logged(self):
        return [e for e in self.logged if e.get("event") == "peer.forged"]

    def test_a_forged_message_closes_the_connection_and_counts_the_sender(self):
        peer = ClosablePeer()
        self.router.message_received(peer, Message("lease.release", {}))
        self.assertEqual(peer.closed, [("forged", PEER)])
        self.assertEqual(self.router.forged, {"mallory": 1})
        self.assertEqual(self.router.counters["handler_errors"], 0)

    def test_forgeries_are_logged_once_per_sender_per_interval(self):
        for _ in range(5):
            self.router.message_received(ClosablePeer(), Message("lease.release", {}))
            self.clock.advance(1)
        self.assertEqual(len(self.forgeries_logged()), 1)
        self.clock.advance(FORGED_LOG_INTERVAL)
        self.router.message_received(ClosablePeer(), Message("lease.release", {}))
        lines = self.forgeries_logged()
        self.assertEqual(len(lines), 2)
        self.assertEqual(lines[1]["suppressed"], 4)
        self.assertIn("alpha", lines[1]["detail"])
        self.assertEqual(self.router.forged["mallory"], 6)
