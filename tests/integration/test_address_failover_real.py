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
has the address: two in one round is two holders, unless the kernels show
that round to be a clean handover) and an HTTP GET of
http://192.0.2.10:8080/. rig.address_holder_watch reads alpha's and beta's
own address lists from their kernels about every millisecond. After each
fault the standby must answer, no round of either watch may see two
holders, and the client's neighbour entry must carry beta's MAC at once
(the gratuitous ARP), not after the entry aged out.

Needs root, ``ip`` and ``nft``: skipped elsewhere, must run under CI=true.
"""

import os
import signal
import time

from twisted.trial import unittest

from rig.address_cluster import (
    FLOATING, FLOATING_V6, AddressCluster, ClientWatch, HolderWatch,
)
from rig.address_client_watch import ARP_WAIT
from rig.netns import Netns
from clsd.polling import wait_for
from tests.integration.test_address_netns_real import require_network_rig

START_TIMEOUT = 60.0
#: Lease 1 s: the standby answers within about 2 s of the fault (detection,
#: lease expiry, start); the margin is for a loaded 2-core machine.
FAILOVER_TIMEOUT = 15.0
LEASE = 1.0
#: How far apart the two watches' clocks of one event may read on a loaded
#: machine (each samples on its own schedule): see assertOneHolderAtATime.
HANDOVER_MARGIN = 0.05


class AddressClusterTest(unittest.TestCase):
    """Three daemons in a fresh network, the client's watch and the holder watch."""

    timeout = 180

    def setUp(self):
        require_network_rig()
        self.rig = Netns.create(self)

    def cluster(self, **kwargs):
        return AddressCluster(os.path.abspath(self.mktemp()), self.rig, self.addCleanup,
                              lease=LEASE, **kwargs)

    def start_cluster(self, **kwargs):
        cluster = self.cluster(**kwargs)
        self.holders = HolderWatch(os.path.abspath(self.mktemp()) + "-holders.jsonl", self.rig,
                                   self.addCleanup)
        cluster.start_all()
        wait_for(lambda: cluster.has("alpha"), START_TIMEOUT,
                 what="alpha to add the floating address")
        self.watch = ClientWatch(os.path.abspath(self.mktemp()) + "-watch.jsonl", self.rig,
                                 cluster, self.addCleanup)
        wait_for(lambda: self.watch.answered_by("alpha"), 20, what="the client to reach alpha")
        return cluster

    def assertArrived(self, node, since, timeout=FAILOVER_TIMEOUT):
        """The client is answered by C{node} at the address, its entry carries C{node}'s MAC."""
        wait_for(lambda: self.watch.answered_by(node, since=since), timeout,
                 what=f"the client to be answered by {node} at the floating address")
        mac = self.rig.node(node).mac
        # The gratuitous ARP, not ageing (minutes on Linux), moved the client's entry.
        wait_for(lambda: self.rig.neigh("client", FLOATING) == mac, 2,
                 what=f"the client's neighbour entry to carry {node}'s MAC")

    def assertOneHolderAtATime(self, path):
        """Stop the watches; the address went along C{path} (node names), never on two at once.

        The holder watch (each node's addresses read from its kernel within
        about a millisecond): no round with two holders, and the holders
        followed C{path} exactly (an old owner that held the address again
        after the new one had it would show as a step back). The client's
        ARP watch: no round answered by two MACs, except where the kernels
        show that round to be a clean handover. A handover takes a few
        milliseconds, less than a round's 12 ms of listening, so the old
        owner can answer a request just before it removes the address and
        the new owner the same request just after it adds it: that round is
        excused only if the holder watch saw neither node hold the address
        between the two, within the round (and a margin for a loaded
        machine's scheduling of the watches).
        """
        time.sleep(0.5)  # a few more rounds after the switch
        self.watch.stop()
        self.holders.stop()
        self.assertEqual(self.holders.path(), [[n] for n in path],
                         "the nodes' own address lists show two holders or a step back")
        self.assertGreater(self.holders.rounds(), 1000)
        rounds = self.watch.rounds()
        macs = {self.rig.node(n).mac: n for n in path}
        switches = self.holders.clean_switches()

        def clean_handover(round):
            nodes = {macs.get(mac) for mac in round["macs"]}
            return len(round["macs"]) == 2 and any(
                {old, new} == nodes
                and round["t"] - HANDOVER_MARGIN <= gap <= round["t"] + ARP_WAIT + HANDOVER_MARGIN
                for old, new, gap in switches)

        both = [r for r in rounds if len(r["macs"]) > 1 and not clean_handover(r)]
        self.assertEqual(both, [], "two machines answered ARP for the address at once")
        seen = {m for r in rounds for m in r["macs"]}
        self.assertEqual(seen, set(macs), "the watch did not see every owner (it could not have failed)")
        self.assertGreater(len(rounds), 20)
        return rounds


class AddressFailoverTests(AddressClusterTest):
    def assertFailedOverToBeta(self, cluster, fault_at):
        self.assertArrived("beta", fault_at)
        return self.assertOneHolderAtATime(["alpha", "beta"])

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
