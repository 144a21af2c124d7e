"""The address driver and the announcer on real interfaces, in network namespaces made by the test.

Each test builds its own small network (L{rig.netns}: alpha, beta,
witness and client on one bridge, 192.0.2.0/24 and 2001:db8::/64 only, all
inside namespaces). The driver and the announcer run in a whole process
inside a node's namespace (tests/support/address_netns_helper.py under
``ip netns exec``), as the daemon does in the failover tests; what they did
is checked from outside with ``ip -n``.

Needs root, ``ip`` and ``nft``: skipped elsewhere, must run under CI=true.
"""

import json
import os
import sys
import time

from twisted.trial import unittest

from rig.netns import Netns
from tests.support.rig_support import require_root, require_tool

HELPER = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "support",
                      "address_netns_helper.py")

FLOATING_V4 = "192.0.2.10/24"
FLOATING_V6 = "2001:db8::10/64"

#: How long a frame may take to reach the client's neighbour cache (it is
#: all in one kernel: a few milliseconds; the margin is for a loaded machine).
DELIVERY_WAIT = 3.0


def require_network_rig():
    require_root("network namespaces")
    require_tool("ip", "iproute2")
    require_tool("nft", "nftables")


class NamespaceTestCase(unittest.TestCase):
    def setUp(self):
        require_network_rig()
        self.rig = Netns.create(self)

    def inside(self, node, *operations):
        """Run C{operations} with the driver/announcer in C{node}'s namespace; their results."""
        result = self.rig.run_in(node, [sys.executable, HELPER, json.dumps(operations)],
                                 timeout=60)
        return json.loads(result.stdout)

    def ok(self, node, *operations):
        """L{inside}, asserting that every operation succeeded; their values."""
        results = self.inside(node, *operations)
        for operation, result in zip(operations, results):
            self.assertIn("ok", result, f"{operation} in {node}: {result}")
        return [result["ok"] for result in results]

    def addresses(self, node):
        return {str(a) for a in self.rig.addresses(node)}

    def wait_for_neigh(self, node, address, mac, seconds=DELIVERY_WAIT):
        deadline = time.monotonic() + seconds
        while True:
            found = self.rig.neigh(node, address)
            if found == mac or time.monotonic() > deadline:
                return found
            time.sleep(0.01)


class DriverTests(NamespaceTestCase):
    def test_add_list_remove_ipv4_and_ipv6(self):
        self.ok("alpha", ["add", "eth0", FLOATING_V4], ["add", "eth0", FLOATING_V6])
        self.assertTrue({FLOATING_V4, FLOATING_V6} <= self.addresses("alpha"))
        self.assertFalse({FLOATING_V4, FLOATING_V6} & self.addresses("beta"))

        [present] = self.ok("alpha", ["present", "eth0"])
        self.assertEqual(set(present), self.addresses("alpha"))
        self.assertIn("192.0.2.1/24", present)  # the node's own address is listed too

        self.ok("alpha", ["remove", "eth0", FLOATING_V4], ["remove", "eth0", FLOATING_V6])
        self.assertFalse({FLOATING_V4, FLOATING_V6} & self.addresses("alpha"))
        self.assertIn("192.0.2.1/24", self.addresses("alpha"))

    def test_add_and_remove_are_idempotent(self):
        self.ok("alpha", ["add", "eth0", FLOATING_V4], ["add", "eth0", FLOATING_V4],
                ["add", "eth0", FLOATING_V6], ["add", "eth0", FLOATING_V6])
        self.assertTrue({FLOATING_V4, FLOATING_V6} <= self.addresses("alpha"))
        self.ok("alpha", ["remove", "eth0", FLOATING_V4], ["remove", "eth0", FLOATING_V4],
                ["remove", "eth0", FLOATING_V6], ["remove", "eth0", FLOATING_V6])
        self.assertFalse({FLOATING_V4, FLOATING_V6} & self.addresses("alpha"))

    def test_removing_another_prefix_length_is_not_removing_the_address(self):
        self.ok("alpha", ["add", "eth0", FLOATING_V4])
        [result] = self.inside("alpha", ["remove", "eth0", "192.0.2.10/25"])
        self.assertEqual(result, {"ok": None})  # 192.0.2.10/25 was not there: nothing to do
        self.assertIn(FLOATING_V4, self.addresses("alpha"))

    def test_missing_interface(self):
        exists, add, remove, present = self.inside(
            "alpha", ["exists", "nosuch0"], ["add", "nosuch0", FLOATING_V4],
            ["remove", "nosuch0", FLOATING_V6], ["present", "nosuch0"])
        self.assertEqual(exists, {"ok": False})
        self.assertEqual(add["error"], "InterfaceMissing")
        self.assertIn("cannot add 192.0.2.10/24 on nosuch0: no interface named 'nosuch0'",
                      add["message"])
        self.assertEqual(remove["error"], "InterfaceMissing")
        self.assertIn("2001:db8::10/64", remove["message"])
        self.assertEqual(present["error"], "InterfaceMissing")
        self.assertEqual(self.inside("alpha", ["exists", "eth0"]), [{"ok": True}])

    def test_eth0_of_one_namespace_is_not_another_namespaces(self):
        self.ok("beta", ["add", "eth0", FLOATING_V4])
        self.assertIn(FLOATING_V4, self.addresses("beta"))
        self.assertNotIn(FLOATING_V4, self.addresses("alpha"))

    def test_guard_removal(self):
        """remove_now, the lease guard's blocking removal: removes, absence is fine, never raises."""
        self.ok("alpha", ["add", "eth0", FLOATING_V4], ["add", "eth0", FLOATING_V6])
        self.assertEqual(self.ok("alpha", ["remove_now", "eth0", FLOATING_V4],
                                 ["remove_now", "eth0", FLOATING_V6],
                                 ["remove_now", "eth0", FLOATING_V4],
                                 ["remove_now", "nosuch0", FLOATING_V4]),
                         [True, True, True, False])
        self.assertFalse({FLOATING_V4, FLOATING_V6} & self.addresses("alpha"))


class AnnounceTests(NamespaceTestCase):
    def move(self, address, old, new, announce):
        """Remove C{address} on C{old}, add it on C{new}, announce it from C{new} if told to."""
        self.ok(old, ["remove", "eth0", address])
        operations = [["add", "eth0", address]]
        if announce:
            operations.append(["announce", "eth0", [address], 1, 0.2])
        self.ok(new, *operations)

    def check_neighbours_follow(self, address):
        alpha, beta = self.rig.node("alpha").mac, self.rig.node("beta").mac
        self.ok("alpha", ["add", "eth0", address], ["announce", "eth0", [address], 1, 0.2])
        self.rig.poke("client", address)
        self.assertEqual(self.wait_for_neigh("client", address, alpha), alpha)

        # Moved without an announcement, the client keeps the old MAC: what follows is the
        # announcement's doing, not the kernel's.
        self.move(address, "alpha", "beta", announce=False)
        time.sleep(0.2)
        self.assertEqual(self.rig.neigh("client", address), alpha)
        self.ok("beta", ["announce", "eth0", [address], 1, 0.2])
        self.assertEqual(self.wait_for_neigh("client", address, beta), beta)

        self.move(address, "beta", "alpha", announce=True)
        self.assertEqual(self.wait_for_neigh("client", address, alpha), alpha)

    def test_gratuitous_arp_moves_the_clients_entry(self):
        self.check_neighbours_follow(FLOATING_V4)

    def test_unsolicited_neighbour_advertisement_moves_the_clients_entry(self):
        self.check_neighbours_follow(FLOATING_V6)

    def test_each_arp_form_alone_moves_the_clients_entry(self):
        """Linux learns from either form; other stacks need one or the other, so both are sent."""
        alpha, beta = self.rig.node("alpha").mac, self.rig.node("beta").mac
        self.ok("alpha", ["add", "eth0", FLOATING_V4])
        self.rig.poke("client", FLOATING_V4)
        self.assertEqual(self.wait_for_neigh("client", FLOATING_V4, alpha), alpha)
        self.move(FLOATING_V4, "alpha", "beta", announce=False)
        self.ok("beta", ["send_frame", "eth0", FLOATING_V4, "request"])
        self.assertEqual(self.wait_for_neigh("client", FLOATING_V4, beta), beta)
        self.move(FLOATING_V4, "beta", "alpha", announce=False)
        self.ok("alpha", ["send_frame", "eth0", FLOATING_V4, "reply"])
        self.assertEqual(self.wait_for_neigh("client", FLOATING_V4, alpha), alpha)

    def test_repeats_on_the_clock(self):
        started = time.monotonic()
        [sent] = self.ok("alpha", ["add", "eth0", FLOATING_V4], ["add", "eth0", FLOATING_V6],
                         ["announce", "eth0", [FLOATING_V4, FLOATING_V6], 3, 0.2])[2:]
        self.assertEqual(sent, 3)
        self.assertGreaterEqual(time.monotonic() - started, 0.4)

    def test_announcing_on_a_missing_interface_fails_clearly(self):
        [result] = self.inside("alpha", ["announce", "nosuch0", [FLOATING_V4], 2, 0.2])
        self.assertEqual(result["error"], "AnnounceError")
        self.assertIn("cannot announce 192.0.2.10/24 on nosuch0", result["message"])
