"""The membership shell with a Clock and a fake peer network: actions carried out, events fed."""

import random

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.events import EventLog
from clsd.layers import membership_message
from clsd.membership.core import node as mcore
from clsd.membership.core.members import IN_RING, Member, State, decode_meta
from clsd.membership.core.messages import Gossip, Heartbeat, Watch
from clsd.membership.core.notary import FakeNotary
from clsd.membership.service import MembershipService, split_address
from clsd.wire.core.session import LOCAL, CloseReason
from clsd.wire.router import Router
from tests.support.membership_signing import join_ack, signed_update


class FakeNetwork:
    advertise = ("127.0.0.11", 7400)
    listen_address = ("127.0.0.11", 7400)
    generation = 1000

    def __init__(self):
        self.connected = []
        self.disconnected = []
        self.sent = []

    def connect(self, address):
        self.connected.append(address)

    def disconnect(self, address):
        self.disconnected.append(address)
        return defer.succeed(None)

    def send_to(self, name, message):
        self.sent.append((name, message))
        return True


class Peer:
    def __init__(self, name, address=None, initiator=False):
        self.name = name
        self.address = address
        self.initiator = initiator


def deliver(router, sender, message):
    """What the codec would hand up: a wire Message with the parsed object."""
    wire = membership_message(message)
    router.message_received(Peer(sender), type(wire)(wire.type, wire.fields, parsed=message))


class ServiceTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.network = FakeNetwork()
        self.router = Router()
        self.events = EventLog(monotonic=self.clock.seconds)
        self.seen = []
        self.config = MembershipConfig()

    def service(self, seeds=(("127.0.0.12", 7400),)):
        service = MembershipService(
            name="alpha", config=self.config, network=self.network, router=self.router,
            reactor=self.clock, events=self.events, seeds=seeds,
            monotonic=self.clock.seconds, rng=random.Random(3))
        service.add_listener(self.seen.append)
        service.startService()
        return service

    def test_a_plain_heartbeat_object_becomes_one_wire_message(self):
        service = self.service(seeds=())
        core = service.core
        beat = Heartbeat(core.me.generation, core.me.incarnation)
        for watcher in ("beta", "gamma"):
            service._execute([mcore.Send(watcher, beat)])
        service._execute([mcore.Send("beta", beat)])  # the next tick: same object
        wires = [m for _, m in self.network.sent]
        self.assertIs(wires[1], wires[0])
        self.assertIs(wires[2], wires[0])
        self.assertEqual(wires[0], membership_message(beat))
        # another heartbeat (a refutation raised the incarnation): a new one
        service._execute([mcore.Send("beta", Heartbeat(core.me.generation, 9))])
        self.assertIsNot(self.network.sent[-1][1], wires[0])
        self.assertEqual(self.network.sent[-1][1]["i"], 9)
        # heartbeats carrying news are built afresh each time
        update = signed_update(core.me)
        busy = Heartbeat(core.me.generation, 9, (update,))
        service._execute([mcore.Send("beta", busy), mcore.Send("gamma", busy)])
        self.assertIsNot(self.network.sent[-1][1], self.network.sent[-2][1])

    def test_join_dials_the_seed_and_joins_on_ack(self):
        service = self.service()
        self.assertEqual(service.core.me.generation, 1000)
        self.assertEqual(self.network.connected, [("127.0.0.12", 7400)])
        self.router.peer_connected(Peer("beta", ("127.0.0.12", 7400), initiator=True))
        self.assertEqual([(n, m.type) for n, m in self.network.sent], [("beta", "m.join")])
        beta = Member("beta", "127.0.0.12:7400", 7, 0, State.ALIVE, meta='{"x":1}')
        deliver(self.router, "beta", join_ack(beta))
        self.assertTrue(service.core.joined)
        self.assertEqual(self.seen[-1], {"beta": {"x": 1}})
        reasons = [e["reason"] for e in self.events.recent(10)]
        self.assertIn("joined the cluster", reasons)
        self.assertIn("joined", reasons)  # beta's MemberChanged, with the core's reason

    def test_timers_one_per_name_and_fired_on_the_clock(self):
        service = self.service(seeds=())
        self.assertTrue(service.core.joined)
        self.assertEqual(set(service._timers), {mcore.TICK})
        first = service._timers[mcore.TICK]
        self.clock.advance(self.config.heartbeat_interval * 1.01)
        self.assertFalse(first.active())
        self.assertTrue(service._timers[mcore.TICK].active())
        self.assertEqual(len([c for c in self.clock.getDelayedCalls()]), 1)

    def test_set_meta_is_gossiped_to_linked_peers(self):
        service = self.service(seeds=())
        self.router.peer_connected(Peer("beta"))
        service.set_meta({"holding": {"web": 4}})
        self.clock.advance(1.0)
        gossip = [m for n, m in self.network.sent if m.type == "m.gossip"]
        self.assertTrue(gossip)
        self.assertEqual(gossip[0].fields["updates"][0]["d"], {"holding": {"web": 4}})

    def test_death_is_recorded_and_listeners_told(self):
        self.service(seeds=())
        beta = Member("beta", "127.0.0.12:7400", 7, 0, State.ALIVE)
        deliver(self.router, "beta", Gossip((signed_update(beta),)))
        self.assertEqual(self.seen[-1], {"beta": None})
        left = signed_update(beta.evolve(state=State.LEFT)).signed(FakeNotary("beta"))
        deliver(self.router, "beta", Gossip((left,)))
        self.assertEqual(self.seen[-1], {})
        last = self.events.recent(1)[0]
        self.assertEqual((last["subject"], last["reason"]), ("beta", "left gracefully"))

    def test_link_down_feeds_the_core(self):
        service = self.service(seeds=())
        self.router.peer_connected(Peer("beta"))
        self.assertIn("beta", service.core._links)
        self.router.peer_disconnected(Peer("beta"), CloseReason("shutdown", "", LOCAL))
        self.assertNotIn("beta", service.core._links)

    def test_stop_leaves_gracefully_within_the_bound(self):
        service = self.service(seeds=())
        self.router.peer_connected(Peer("beta"))
        d = service.stopService()
        self.assertNoResult(d)
        self.assertIn("m.gossip", [m.type for n, m in self.network.sent])
        self.clock.advance(self.config.leave_timeout + 0.01)
        self.successResultOf(d)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertIn("left the cluster", [e["reason"] for e in self.events.recent(5)])

    def test_heartbeats_from_a_peer_reach_the_core(self):
        service = self.service(seeds=())
        before = service.core.received
        deliver(self.router, "beta", Watch())
        deliver(self.router, "beta", Heartbeat(7, 0))
        self.assertEqual(service.core.received, before + 2)
        self.assertEqual([m.type for n, m in self.network.sent], ["m.heartbeat"])

    def test_live_view_follows_the_core_and_listeners_hear_only_changes(self):
        service = self.service(seeds=())

        def recomputed():
            return {i.member.name: (decode_meta(i.member.meta) if i.member.meta else None)
                    for i in service.core.members()
                    if i.member.name != "alpha" and i.member.state in IN_RING}

        told = len(self.seen)
        beta = Member("beta", "127.0.0.12:7400", 7, 0, State.ALIVE)
        gamma = Member("gamma", "127.0.0.13:7400", 7, 0, State.ALIVE, meta='{"a":1}')
        steps = [
            signed_update(beta), signed_update(gamma),
            signed_update(gamma.evolve(incarnation=1, meta='{"a":2}')),   # meta only
            signed_update(beta.evolve(incarnation=1)),                    # no visible change
            signed_update(beta.evolve(incarnation=1, state=State.SUSPECT)),
            signed_update(gamma.evolve(incarnation=2, meta='{"a":2}', state=State.LEFT)).signed(
                FakeNotary("gamma")),
            signed_update(gamma.evolve(generation=8, incarnation=0)),    # restarted
        ]
        expected_calls = [1, 1, 1, 0, 0, 1, 1]
        for update, calls in zip(steps, expected_calls):
            deliver(self.router, "beta", Gossip((update,)))
            self.assertEqual(service.live_members(), recomputed())
            self.assertEqual(len(self.seen) - told, calls, update)
            told = len(self.seen)
            self.assertEqual(self.seen[-1], recomputed())
        self.assertEqual(service.live_members(), {"beta": None, "gamma": {"a": 1}})
        # A listener added later is told the current view at once.
        late = []
        service.add_listener(late.append)
        self.assertEqual(late, [{"beta": None, "gamma": {"a": 1}}])

    def test_force_remove_errors_reach_the_caller(self):
        service = self.service(seeds=())
        self.assertRaises(mcore.MembershipError, service.force_remove, "nobody")


class AddressTests(unittest.TestCase):
    def test_split(self):
        self.assertEqual(split_address("127.0.0.2:7400"), ("127.0.0.2", 7400))
        self.assertEqual(split_address("[::1]:7400"), ("::1", 7400))
        for bad in ("nope", "h:0", "h:x", ":1"):
            self.assertRaises(ValueError, split_address, bad)
