"""Many real nodes in one process: real TLS on 127.0.x.y, join, and a crash seen by all."""

import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clsd.polling import poll as wait_for
from rig.multinode import MultiNodeHost, loopback_addresses

#: Generous bounds for a busy shared machine; the benchmark measures the real figures.
JOIN_BOUND = 30.0
DEATH_BOUND = 20.0


class AddressTests(unittest.TestCase):
    def test_addresses_stay_in_loopback_and_roll_over_blocks(self):
        addresses = loopback_addresses(252)
        self.assertEqual(addresses[:2], ["127.0.1.1", "127.0.1.2"])
        self.assertEqual(addresses[249:], ["127.0.1.250", "127.0.2.1", "127.0.2.2"])
        self.assertEqual(len(set(addresses)), 252)

    def test_refuses_anything_outside_loopback(self):
        self.assertRaises(ValueError, loopback_addresses, 2, "10.0.0.1")
        self.assertRaises(ValueError, loopback_addresses, 300 * 250 * 256, "127.0.1.1")


class StartPace(unittest.TestCase):
    def test_a_late_batch_does_not_delay_the_next(self):
        """Batch k is due k pauses after the first, however late the one before ran."""
        clock = task.Clock()
        host = MultiNodeHost(clock, 6, monotonic=clock.seconds)
        started = []
        for node in host.nodes:
            node.start = lambda node=node: started.append((node.name, clock.seconds()))
        done = host.start(batch=2, pause=1.0)
        clock.advance(1.5)  # the second batch runs half a second late (a busy reactor)
        clock.advance(0.5)  # the third is still due at 2.0, not 2.5
        self.assertEqual([t for _, t in started], [0.0, 0.0, 1.5, 1.5, 2.0, 2.0])
        self.assertEqual([name for name, _ in started], [n.name for n in host.nodes])
        self.assertIsNone(self.successResultOf(done))
        host.lag.stop()


class EightNodes(unittest.TestCase):
    @defer.inlineCallbacks
    def test_join_then_a_crash_is_declared_by_every_other_node(self):
        host = MultiNodeHost(reactor, 8)
        self.addCleanup(host.shutdown)
        addresses = {n.network.listen_address[0] for n in host.nodes}
        self.assertEqual(len(addresses), 8)
        yield host.start()
        yield wait_for(reactor, host.all_joined, timeout=JOIN_BOUND, interval=0.05,
                       what="8 nodes to see each other alive")
        for node in host.nodes:
            self.assertEqual(node.network.tls.identity.name, node.name)
        victim = host.nodes[3]
        others = [n for n in host.nodes if n is not victim]
        yield wait_for(reactor, lambda: all(victim.name in n.network.peers()
                                            for n in others
                                            if n.name in n.core.watchers
                                            or victim.name in n.core.subjects),
                       timeout=JOIN_BOUND, interval=0.05, what="the overlay links")
        killed = time.monotonic()
        victim.crash()
        yield wait_for(reactor, lambda: host.declared_dead_by_all(victim.name),
                       timeout=DEATH_BOUND, interval=0.05, what="all to declare the crash")
        self.assertLess(time.monotonic() - killed, DEATH_BOUND)
        for node in others:
            self.assertEqual(node.core.member(victim.name).state.value, "dead")
            # a crash, not a leave: its peers saw the sockets close, never a bye
            self.assertNotIn("left", host.tracker.state(node.name, victim.name))
            self.assertEqual(node.core.member(node.name).state.value, "alive")
