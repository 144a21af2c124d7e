"""Real nodes in several worker processes: one cluster, measured across the processes."""

from twisted.internet import defer, reactor
from twisted.trial import unittest

from rig.multinode import address_of, node_name
from rig.multiproc import MultiProcessHost, partition

#: Generous bounds for a busy shared machine; the benchmark measures the real figures.
JOIN_BOUND = 20.0
DEATH_BOUND = 15.0


class PartitionTests(unittest.TestCase):
    def test_contiguous_runs_cover_every_node_once(self):
        self.assertEqual(partition(8, 2), [(0, 4), (4, 4)])
        self.assertEqual(partition(10, 3), [(0, 4), (4, 3), (7, 3)])
        self.assertEqual(partition(2, 5), [(0, 1), (1, 1)])

    def test_refuses_nothing_to_host(self):
        self.assertRaises(ValueError, partition, 0, 2)
        self.assertRaises(ValueError, partition, 4, 0)

    def test_node_addresses_and_names_continue_across_processes(self):
        self.assertEqual(address_of(0), "127.0.1.1")
        self.assertEqual(address_of(250), "127.0.2.1")
        self.assertEqual(node_name(4, 8), "n0004")
        self.assertEqual(node_name(12345, 20000), "n12345")


class EightNodesInTwoProcesses(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def test_all_join_and_a_crash_is_declared_dead_in_every_process(self):
        host = MultiProcessHost(reactor, 8, 2, declarations=True)
        self.addCleanup(host.shutdown)
        yield host.spawn()
        self.assertEqual(len(set(host.addresses.values())), 8)
        self.assertEqual({w.index for w in host.owner.values()}, {0, 1})
        t0 = yield host.start()
        joined = yield host.joined(JOIN_BOUND)
        self.assertIsNotNone(joined, "not every node in both processes saw all 8 alive")
        self.assertGreater(joined, t0)
        status = yield host.status()
        self.assertEqual((status["live"], status["min_alive"]), (8, 8))

        # a node in the second process; its death must be seen in both
        victim = "n0005"
        self.assertIs(host.owner[victim], host.workers[1])
        result = yield host.kill(victim, DEATH_BOUND)
        self.assertTrue(result.all_declared, f"not declared dead everywhere: {result}")
        self.assertEqual(set(result.per_worker), {0, 1})
        self.assertLess(result.last_s, DEATH_BOUND)
        self.assertEqual(host.dead_at_all[victim][0]["observers"], 4)
        self.assertEqual(host.dead_at_all[victim][1]["observers"], 3)
        dead = {(d["observer"], d["subject"]) for d in host.declarations if d["state"] == "dead"}
        self.assertEqual({o for o, s in dead if s == victim},
                         {node_name(i, 8) for i in range(8)} - {victim})
        self.assertEqual({s for o, s in dead}, {victim}, "a live node was declared dead")
        counters = yield host.counters()
        self.assertEqual(counters["live"], 7)
        self.assertGreater(counters["totals"]["messages_in"], 0)
        self.assertEqual(counters["declared"]["dead"][victim], 7)

        yield host.shutdown()
        self.assertTrue(all(w.exited is not None for w in host.workers))
