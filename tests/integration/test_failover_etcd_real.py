"""Failover with real daemons whose leases come from a real etcd (TLS, client certificates).

Two ``twistd clsd`` daemons (alpha preferred for cluster A, beta its standby)
on their own 127.0.0.x, and one or three ``etcd`` members on others.  The
checker fails a test on any overlap of A on two nodes; each test is bounded
and tears down daemons, etcd members and firewall rules whatever happens.
Under CI=true a missing ``etcd`` binary fails the test (.ci/run installs
Debian's etcd-server).
"""

import os
import time

from twisted.trial import unittest

from rig.cluster import Timing
from rig.etcd import RIG_PREFIX, EtcdCluster, etcd_cluster_rig, etcd_layout
from rig.failover import FailoverRig
from rig.faults import network
from rig.faults.cleanup import Cleanups, owned_name
from rig.launcher import Launcher
from clsd.polling import wait_for
from tests.support.rig_support import FailoverAssertions, require_root, require_tool

#: A 2 s lease keeps the tests short: renewed every 0.67 s, the holder stops
#: 1.4 s after its last good keepalive was sent, etcd frees the key 2 s after.
LEASE = 2
ETCD_TIMING = Timing("etcd", lease=LEASE)
FIRST_OWNER_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0
#: The old owner's service must be gone within its lease after the fault,
#: plus this much for the guard's kill and the recorder noticing the exit.
KILL_SLACK = 0.5


class EtcdFailoverTests(FailoverAssertions, unittest.TestCase):
    timeout = 240

    def setUp(self):
        require_tool("etcd", "etcd-server")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def start(self, *, members=1, firewall=False, timing=ETCD_TIMING):
        fw = None
        if firewall:
            require_root("firewall rules")
            require_tool("nft", "nftables")
        directory = os.path.abspath(self.mktemp())
        layout = etcd_layout()
        self.etcd = EtcdCluster(os.path.join(directory, "etcd"), members,
                                ca_dir=os.path.join(directory, "rig", "ca"),
                                cleanups=self.cleanups)
        self.addCleanup(self.etcd.teardown)
        self.etcd.start()
        cluster_rig = etcd_cluster_rig(layout, timing, self.etcd)
        launcher = Launcher(os.path.join(directory, "rig"), list(layout.nodes),
                            template=cluster_rig.template(), cleanups=self.cleanups)
        self.addCleanup(launcher.teardown)
        if firewall:
            fw = network.Firewall(name=owned_name("etcd"), backend=network.NftBackend(),
                                  cleanups=self.cleanups)
            self.addCleanup(fw.close)
        self.lease = timing.lease_seconds
        self.firewall = fw
        self.rig = FailoverRig(launcher, cluster_rig, fw)
        self.launcher = launcher
        # alpha first: with etcd the first node up takes a free key at once
        # (the voters' quiet period after a start does not exist here).
        launcher.start("alpha")
        self.assertEqual(self.rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        launcher.start("beta")
        time.sleep(self.lease)  # beta joins and stands by (watching the key)
        return self.rig

    def held_epoch(self):
        """The create revision of A's key in etcd (what the holder got as its epoch)."""
        kv = self.etcd.get(RIG_PREFIX + "A")
        return kv["create_revision"] if kv else None

    def test_kill_9_of_the_owners_daemon(self):
        rig = self.start()
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        old = self.current("A")
        # The epoch the service got is the key's create revision in etcd.
        self.assertEqual(self.interval(old.instance).epoch, self.held_epoch())
        t0 = rig.kill_daemon("alpha")  # its service is left to the lease guard
        _, node, identity = rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                            timeout=FAILOVER_TIMEOUT)
        self.assertEqual((node, identity["node"]), ("beta", "beta"))
        old, new = self.assertHandedOver(old, identity["instance"])
        self.assertLessEqual(old.end - t0, self.lease + KILL_SLACK)
        self.assertEqual(new.epoch, self.held_epoch())
        self.assertNoViolations()

    def test_owner_cut_off_from_etcd_stops_before_the_standby_starts(self):
        rig = self.start(firewall=True)
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        old = self.current("A")
        alpha = self.launcher.address("alpha")
        pairs = {(alpha, e) for e in self.etcd.addresses} | {(e, alpha)
                                                           for e in self.etcd.addresses}
        t0 = time.monotonic()
        token = self.firewall.block(pairs)
        _, node, identity = rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                            timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        old, new = self.assertHandedOver(old, identity["instance"])
        # It stopped on its own, within its lease: its daemon is alive.
        self.assertTrue(self.launcher.node("alpha").running)
        self.assertLessEqual(old.end - t0, self.lease + KILL_SLACK)
        self.firewall.lift(token)
        # Healed: no preempt, beta keeps A, nothing runs twice.
        time.sleep(3 * self.lease)
        self.assertEqual(rig.owner("A"), "beta")
        self.assertEqual(self.current("A").instance, new.instance)
        self.assertNoViolations()

    def test_killing_the_etcd_leader_during_ownership(self):
        """Three etcd members; the leader dies; etcd elects another, A keeps running
        on exactly one node (the same one if the election beat the lease)."""
        rig = self.start(members=3, timing=Timing("etcd3", lease=3))
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        old = self.current("A")
        leader = wait_for(self.etcd.leader, 10, what="an etcd leader")
        self.etcd.kill(leader)
        wait_for(lambda: self.etcd.leader() not in (None, leader), 20,
                 what="a new etcd leader")
        # Over the next leases A must run, and always on one node at most.
        deadline = time.monotonic() + 4 * self.lease
        while time.monotonic() < deadline:
            rig.owner("A")  # raises DualActive on two owners
            time.sleep(0.1)
        owner = rig.wait_owner("A", timeout=FAILOVER_TIMEOUT)
        now = self.current("A")
        if now.instance != old.instance:
            self.assertHandedOver(old, now.instance)
        self.assertEqual(self.interval(now.instance).epoch, self.held_epoch())
        self.assertIn(owner, ("alpha", "beta"))
        self.assertNoViolations()
