"""The floating address fails over with the cluster: real daemons in namespaces made by the test.

Each test builds its own network (L{rig.netns}: alpha, beta, witness
and client on one bridge; 192.0.2.0/24 and 2001:db8::/64 only, all inside
namespaces) and runs three ``twistd clsd`` daemons there, each in its
node's namespace (``ip netns exec``), peers over mutual TLS on the nodes'
192.0.2.x addresses. Cluster A (alpha preferred, beta standby, the witness
votes) has the floating address 192.0.2.10/24 on ``eth0``; its service
answers HTTP with its node's name (rig.address_http_service).

In the client's namespace rig.address_client_watch asks every 20 ms:
an ARP who-has for 192.0.2.10 (every MAC that answers is a machine that
has the address: two in one round is two holders) and an HTTP GET of
http://192.0.2.10:8080/. After each fault the standby must answer, no round
may see two MACs, and the client's neighbour entry must carry beta's MAC
at once (the gratuitous ARP), not after the entry aged out.

Needs root, ``ip`` and ``nft``: skipped elsewhere, must run under CI=true.
"""

import os
import signal
import time

from twisted.trial import unittest

from rig.address_cluster import FLOATING, FLOATING_V6, AddressCluster, ClientWatch
from rig.netns import Netns
from clsd.polling import wait_for
from tests.integration.test_address_netns_real import require_network_rig

START_TIMEOUT = 60.0
#: Lease 1 s: the standby answers within about 2 s of the fault (detection,
#: lease expiry, start); the margin is for a loaded 2-core machine.
FAILOVER_TIMEOUT = 15.0
LEASE = 1.0


class AddressFailoverTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_network_rig()
        self.rig = Netns.create(self)

    def cluster(self, **kwargs):
        return AddressCluster(os.path.abspath(self.mktemp()), self.rig, self.addCleanup,
                              lease=LEASE, **kwargs)

    def start_cluster(self, **kwargs):
        cluster = self.cluster(**kwargs)
        cluster.start_all()
        wait_for(lambda: cluster.has("alpha"), START_TIMEOUT,
                 what="alpha to add the floating address")
        self.watch = ClientWatch(os.path.abspath(self.mktemp()) + "-watch.jsonl", self.rig,
                                 cluster, self.addCleanup)
        wait_for(lambda: self.watch.answered_by("alpha"), 20, what="the client to reach alpha")
        return cluster

    def assertFailedOverToBeta(self, cluster, fault_at):
        wait_for(lambda: self.watch.answered_by("beta", since=fault_at), FAILOVER_TIMEOUT,
                 what="the client to be answered by beta at the floating address")
        beta_mac = self.rig.node("beta").mac
        # The gratuitous ARP, not ageing (minutes on Linux), moved the client's entry.
        wait_for(lambda: self.rig.neigh("client", FLOATING) == beta_mac, 2,
                 what="the client's neighbour entry to carry beta's MAC")
        time.sleep(0.5)  # a few more rounds after the switch
        self.watch.stop()
        rounds = self.watch.rounds()
        both = [r for r in rounds if len(r["macs"]) > 1]
        self.assertEqual(both, [], "two machines answered ARP for the address at once")
        seen = {m for r in rounds for m in r["macs"]}
        self.assertEqual(seen, {self.rig.node("alpha").mac, beta_mac},
                         "the watch did not see both owners (it could not have failed)")
        self.assertGreater(len(rounds), 20)
        return rounds

    def test_kill_9_of_the_owners_daemon(self):
        cluster = self.start_cluster()
        fault_at = time.monotonic()
        os.kill(cluster.daemon_pid("alpha"), signal.SIGKILL)
        self.assertFailedOverToBeta(cluster, fault_at)
        self.assertFalse(cluster.has("alpha"), "the guard left the address on alpha")
        self.assertIn("address.added", cluster.log("beta"))
        wait_for(lambda: "address.announced" in cluster.log("beta"), 5,
                 what="beta's announcements (5 rounds, 0.2 s apart) to be sent")

    def test_a_frozen_daemon_loses_the_address_to_its_guard(self):
        cluster = self.start_cluster()
        fault_at = time.monotonic()
        os.kill(cluster.daemon_pid("alpha"), signal.SIGSTOP)
        # The guard removes it at the lease deadline, with the daemon still frozen.
        wait_for(lambda: not cluster.has("alpha"), LEASE + 2.0,
                 what="alpha's guard to remove the address")
        self.assertFailedOverToBeta(cluster, fault_at)

    def test_a_partition_moves_the_address_ipv6_and_order_after(self):
        cluster = self.start_cluster(order="after", addresses=(FLOATING, FLOATING_V6))
        wait_for(lambda: cluster.has("alpha", FLOATING_V6), 10, what="the IPv6 address on alpha")
        self.rig.poke("client", FLOATING_V6)  # the client's IPv6 entry: alpha's MAC
        wait_for(lambda: self.rig.neigh("client", FLOATING_V6) == self.rig.node("alpha").mac,
                 5, what="the client to resolve the IPv6 address to alpha")
        fault_at = time.monotonic()
        # alpha is cut from beta and the witness, not from the client: if it kept
        # the address, the client's ARP would find two owners.
        self.rig.partition("alpha", "beta")
        self.rig.partition("alpha", "witness")
        self.assertFailedOverToBeta(cluster, fault_at)
        self.assertFalse(cluster.has("alpha", FLOATING_V6))
        wait_for(lambda: self.rig.neigh("client", FLOATING_V6) == self.rig.node("beta").mac,
                 2, what="the client's IPv6 entry to follow the unsolicited NA")

    def test_a_planned_handover_never_has_two_owners(self):
        """A daemon stopped as by ``systemctl stop`` hands the cluster over: address last out."""
        cluster = self.start_cluster()
        fault_at = time.monotonic()
        os.kill(cluster.daemon_pid("alpha"), signal.SIGTERM)
        self.assertFailedOverToBeta(cluster, fault_at)
        self.assertFalse(cluster.has("alpha"))
        self.assertIn("address.removed", cluster.log("alpha"))

    def test_an_address_left_behind_is_removed_at_start(self):
        cluster = self.cluster()
        self.rig.ip("beta", "addr", "add", FLOATING, "dev", "eth0")
        cluster.start_all()
        wait_for(lambda: not cluster.has("beta"), START_TIMEOUT,
                 what="beta to remove the address it does not hold")
        wait_for(lambda: cluster.has("alpha"), START_TIMEOUT, what="alpha to add it")
        self.assertIn("left behind by an earlier run", cluster.log("beta"))
