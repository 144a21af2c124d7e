from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.wire.interfaces import IPeerHandler
from clsd.wire.messages import Message
from clsd.wire.router import Router
from clsd.wire.session import LOCAL, CloseReason


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
