"""The namespace rig (L{rig.netns}): what it builds, partitions, that it leaves nothing.

Needs root, ``ip`` and ``nft``: skipped elsewhere, must run under CI=true.
"""

import json
import os
import subprocess
import time

from twisted.trial import unittest

from rig import netns
from rig.netns import Netns, NetnsError
from tests.integration.test_address_netns_real import require_network_rig


def root_links():
    """(name, kind) of every link in the root namespace."""
    links = json.loads(netns.run(["ip", "-j", "-d", "link", "show"]).stdout)
    return {(link["ifname"], link.get("linkinfo", {}).get("info_kind")) for link in links}


def ours(prefix):
    return [name for name in netns.namespaces() if name.startswith(prefix + "-")]


class RecordingTest:
    """Stands for a TestCase: keeps what is registered with addCleanup."""

    def __init__(self):
        self.cleanups = []

    def addCleanup(self, function, *args):
        self.cleanups.append((function, args))


class NetnsRigTests(unittest.TestCase):
    def setUp(self):
        require_network_rig()

    def make(self, **kwargs):
        test = RecordingTest()
        rig = Netns.create(test, **kwargs)
        self.addCleanup(rig.destroy)
        return rig, test

    def resolves(self, rig, node, other, family="ipv4", seconds=2.0):
        """Whether C{node} learns C{other}'s MAC for its address (after one datagram to it)."""
        address = getattr(rig.node(other), family)
        rig.flush_neigh(node)
        rig.poke(node, address)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if rig.neigh(node, address) == rig.node(other).mac:
                return True
            time.sleep(0.02)
        return False

    def test_nodes_addresses_and_names(self):
        rig, _ = self.make()
        self.assertEqual(list(rig.nodes), ["alpha", "beta", "witness", "client"])
        alpha = rig.node("alpha")
        self.assertEqual((str(alpha.ipv4), str(alpha.ipv6), alpha.mac),
                         ("192.0.2.1/24", "2001:db8::1/64", "02:00:5e:10:00:01"))
        self.assertEqual(str(rig.node("client").ipv4), "192.0.2.4/24")
        self.assertTrue(alpha.namespace.startswith(f"clsd-{os.getpid()}-"))
        self.assertEqual(sorted(ours(rig.prefix)),
                         sorted([n.namespace for n in rig.nodes.values()] + [rig.switch]))
        for node in rig.nodes.values():
            self.assertTrue({node.ipv4, node.ipv6} <= rig.addresses(node.name))
            for address in rig.addresses(node.name):
                self.assertTrue(address in netns.IPV4_NETWORK or address in netns.IPV6_NETWORK
                                or address.is_link_local, f"{address} on {node.name}")

    def test_nodes_reach_each_other_on_both_families(self):
        rig, _ = self.make(nodes=["alpha", "client"])
        self.assertTrue(self.resolves(rig, "client", "alpha"))
        self.assertTrue(self.resolves(rig, "alpha", "client", "ipv6"))

    def test_run_in_runs_inside_the_namespace(self):
        rig, _ = self.make(nodes=["alpha"])
        out = rig.run_in("alpha", ["ip", "-o", "-4", "addr", "show", "dev", "eth0"]).stdout
        self.assertIn("192.0.2.1/24", out)
        self.assertEqual(rig.exec_argv("alpha", ["true"]),
                         ["ip", "netns", "exec", rig.node("alpha").namespace, "true"])
        with self.assertRaises(NetnsError) as caught:
            rig.run_in("alpha", ["false"])
        self.assertIn("failed (1)", str(caught.exception))

    def test_partition_and_heal(self):
        rig, _ = self.make()
        rig.partition("client", "alpha")
        self.assertFalse(self.resolves(rig, "client", "alpha", seconds=0.5))
        self.assertFalse(self.resolves(rig, "alpha", "client", "ipv6", seconds=0.5))
        self.assertTrue(self.resolves(rig, "client", "beta"))
        self.assertTrue(self.resolves(rig, "alpha", "beta"))
        rig.partition(rig.node("client").namespace, rig.node("beta"))  # a namespace, a Node
        rig.heal("client", "alpha")
        self.assertTrue(self.resolves(rig, "client", "alpha"))
        self.assertFalse(self.resolves(rig, "client", "beta", seconds=0.5))
        rig.heal()
        self.assertTrue(self.resolves(rig, "client", "beta"))
        self.assertNotIn("clsd_partition", rig.run_in("client", ["nft", "list", "tables"]).stdout)

    def test_partition_rules(self):
        rig, _ = self.make(nodes=["alpha", "beta", "client"])
        rig.partition("alpha", "client")
        rig.partition("alpha", "beta")
        rules = rig.partition_rules("alpha")
        self.assertIn("ether saddr { 02:00:5e:10:00:02, 02:00:5e:10:00:03 } drop", rules)
        with self.assertRaises(KeyError):
            rig.partition("alpha", "nobody")
        with self.assertRaises(KeyError):
            rig.partition("alpha", rig.switch)
        with self.assertRaises(ValueError):
            rig.partition("alpha", "alpha")

    def test_destroy_leaves_nothing(self):
        before = root_links()
        rig, test = self.make()
        sleeper = subprocess.Popen(rig.exec_argv("beta", ["sleep", "600"]))
        self.addCleanup(lambda: sleeper.poll() is None and sleeper.kill())
        deadline = time.monotonic() + 5
        while not netns.run(["ip", "netns", "pids", rig.node("beta").namespace]).stdout.strip():
            self.assertLess(time.monotonic(), deadline, "sleep never ran in beta's namespace")
            time.sleep(0.01)
        self.assertEqual(root_links(), before)  # the network lives in the namespaces only

        [(destroy, args)] = test.cleanups
        destroy(*args)
        self.assertEqual(ours(rig.prefix), [])
        self.assertEqual(root_links(), before)
        self.assertEqual(sleeper.wait(timeout=5), -9)
        destroy(*args)  # twice is harmless

    def test_a_failed_build_leaves_nothing(self):
        built = []

        class Broken(Netns):
            def _build(self):
                built.append(self)
                self._add_namespace(self.switch)
                self._add_namespace(f"{self.prefix}-alpha")
                netns.run(["ip", "-n", self.switch, "link", "add", "x", "type", "nosuchkind"])

        with self.assertRaises(NetnsError):
            Broken.create(RecordingTest())
        [rig] = built
        self.assertEqual(ours(rig.prefix), [])

    def test_orphans_of_a_killed_test_process_are_swept(self):
        dead = subprocess.Popen(["true"])
        dead.wait()
        orphan = f"clsd-{dead.pid}-1-alpha"
        netns.run(["ip", "netns", "add", orphan])
        self.addCleanup(netns.delete_namespace, orphan)
        rig, _ = self.make(nodes=["alpha"])
        self.assertNotIn(orphan, netns.namespaces())
        self.assertIn(rig.node("alpha").namespace, netns.namespaces())

    def test_bad_node_names(self):
        for nodes in ([], ["alpha", "alpha"], ["Alpha"], ["switch"], ["a-b"], ["x" * 17]):
            with self.assertRaises(ValueError, msg=repr(nodes)):
                Netns.create(None, nodes=nodes)
