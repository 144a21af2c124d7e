"""Operations move the floating address with the service, never onto two nodes at once.

The network, daemons and watches of test_address_failover_real (real
``twistd clsd`` in namespaces made by the test; the client's ARP and HTTP
watch every 20 ms; rig.address_holder_watch reading alpha's and beta's own
address lists about every millisecond), with each daemon's SSH admin
listener on its node's address, driven by OpenSSH's ``ssh``:

- ``move A beta`` typed on beta, the node that does not hold A (the request
  travels to alpha, which hands over), and typed on alpha with an IPv6
  address beside the IPv4 one and ``address_order = "after"``;
- ``standby`` typed on alpha, the owner;
- preempt: alpha stops (a planned handover to beta), comes back, and after
  ``preempt_delay`` takes A back from beta;
- a move back while the new owner still announces the address: the
  announcements it has left are cancelled with the removal.

Each time the old owner removes the address before the new owner adds it:
no round of either watch sees two holders, the holders follow the expected
path with no step back, and the client's neighbour entry carries the new
owner's MAC (its announcement) once the new owner answers.

Needs root, ``ip``, ``nft`` and ``ssh``: skipped elsewhere, must run under CI=true.
"""

import os
import time

from clsd.polling import wait_for
from rig.address_cluster import FLOATING, FLOATING_V6, HolderWatch
from tests.admin.test_openssh import require_tool
from tests.integration.test_address_failover_real import FAILOVER_TIMEOUT, AddressClusterTest

#: A returning alpha takes A back this long after it is eligible again.
PREEMPT_DELAY = 1.0


class AddressOperationsTests(AddressClusterTest):
    def setUp(self):
        super().setUp()
        require_tool(self, "ssh")

    def mark(self, cluster):
        """Where the logs stand before an operation, and when: for L{assertHandedOver}."""
        return (time.monotonic(), {n: (cluster.log(n).count("address.announced"),
                                       cluster.log(n).count("address.removed"))
                                   for n in ("alpha", "beta")})

    def assertHandedOver(self, cluster, old, new, mark, delay=0.0):
        """C{new} answers at the address (its announcement moved the client); C{old} removed it."""
        since, counts = mark
        announced, removed = counts[new][0], counts[old][1]
        self.assertArrived(new, since + delay)
        self.assertFalse(cluster.has(old), f"{old} kept the address")
        self.assertTrue(cluster.has(new))
        wait_for(lambda: cluster.log(new).count("address.announced") > announced, 5,
                 what=f"{new}'s announcements (5 rounds, 0.2 s apart) to be sent")
        self.assertGreater(cluster.log(old).count("address.removed"), removed)

    def test_move_asked_on_the_node_that_does_not_hold_it(self):
        cluster = self.start_cluster(admin=True)
        mark = self.mark(cluster)
        out = cluster.admin("beta", "move", "A", "beta")
        self.assertIn("moving to beta", out)
        self.assertHandedOver(cluster, "alpha", "beta", mark)
        self.assertOneHolderAtATime(["alpha", "beta"])

    def test_move_on_the_owner_ipv6_and_order_after(self):
        """Typed on the holder; the address goes first, then the service; IPv6 along."""
        cluster = self.start_cluster(admin=True, order="after",
                                     addresses=(FLOATING, FLOATING_V6))
        wait_for(lambda: cluster.has("alpha", FLOATING_V6), 10, what="the IPv6 address on alpha")
        v6 = HolderWatch(os.path.abspath(self.mktemp()) + "-holders-v6.jsonl", self.rig,
                         self.addCleanup, address=FLOATING_V6)
        self.rig.poke("client", FLOATING_V6)  # the client's IPv6 entry: alpha's MAC
        wait_for(lambda: self.rig.neigh("client", FLOATING_V6) == self.rig.node("alpha").mac,
                 5, what="the client to resolve the IPv6 address to alpha")
        mark = self.mark(cluster)
        cluster.admin("alpha", "move", "A", "beta")
        self.assertHandedOver(cluster, "alpha", "beta", mark)
        self.assertFalse(cluster.has("alpha", FLOATING_V6))
        wait_for(lambda: self.rig.neigh("client", FLOATING_V6) == self.rig.node("beta").mac,
                 2, what="the client's IPv6 entry to follow the unsolicited NA")
        v6.stop()
        self.assertEqual(v6.path(), [["alpha"], ["beta"]])
        self.assertOneHolderAtATime(["alpha", "beta"])

    def test_standby_of_the_owner(self):
        cluster = self.start_cluster(admin=True)
        mark = self.mark(cluster)
        self.assertIn("standing by", cluster.admin("alpha", "standby"))
        self.assertHandedOver(cluster, "alpha", "beta", mark)
        self.assertOneHolderAtATime(["alpha", "beta"])

    def test_preempt_takes_the_address_back(self):
        cluster = self.start_cluster(preempt_delay=PREEMPT_DELAY)
        mark = self.mark(cluster)
        cluster.stop("alpha")  # SIGTERM: a planned handover to beta
        self.assertHandedOver(cluster, "alpha", "beta", mark)
        mark = self.mark(cluster)
        cluster.start("alpha")
        self.assertHandedOver(cluster, "beta", "alpha", mark, delay=PREEMPT_DELAY)
        self.assertOneHolderAtATime(["alpha", "beta", "alpha"])

    def test_a_move_back_while_the_new_owner_announces(self):
        """beta announces for 9 s; moved back meanwhile, it stops announcing an address it left."""
        cluster = self.start_cluster(admin=True, announce={"count": 46, "interval": 0.2})
        cluster.admin("alpha", "move", "A", "beta")
        wait_for(lambda: self.watch.answered_by("beta"), FAILOVER_TIMEOUT,
                 what="the client to be answered by beta")
        beta_at = time.monotonic()
        cluster.admin("beta", "move", "A", "alpha")
        self.assertArrived("alpha", beta_at)
        self.assertFalse(cluster.has("beta"))
        # An announcement from beta after its removal would point the client
        # back at beta, where nothing answers: the entry must stay alpha's.
        time.sleep(2.0)
        self.assertEqual(self.rig.neigh("client", FLOATING), self.rig.node("alpha").mac)
        self.assertLess(time.monotonic() - beta_at, 6.0,
                        "too slow: beta's announcements might have ended anyway")
        self.assertNotIn("address.announced", cluster.log("beta"),
                         "beta's announcements ran to the end")
        self.assertOneHolderAtATime(["alpha", "beta", "alpha"])
