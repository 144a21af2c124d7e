"""Failover with real daemons on 127.0.0.x: the standby takes over, and never while the owner runs.

Three ``twistd clsd`` daemons (alpha, beta and a witness voter) with mutual
TLS, a quorum and protected test services that record every start and stop;
the checker fails a test on any overlap of one cluster ID on two nodes.
Each test is bounded (trial's C{timeout} and every wait has a deadline), and
the launcher, firewall rules and every process are cleaned up whatever
happens.
"""

import time

from twisted.trial import unittest

from rig.cluster import DEFAULT_TIMING, ClusterRig, active_standby, mutual_standby
from rig.failover import FailoverRig
from rig.faults import network
from rig.faults.cleanup import Cleanups, owned_name
from rig.faults.process import process_state
from rig.launcher import Launcher
from clsd.polling import wait_for
from tests.support.rig_support import FailoverAssertions, require_root, require_tool

#: The cluster must be running on its preferred node this soon after start:
#: TLS connections, membership and a first lease (about one lease on a
#: fresh voter, which grants nothing for one lease period after it starts).
FIRST_OWNER_TIMEOUT = 60.0
#: A failover is expected in about a lease plus failure detection (about 3 s
#: with the defaults); 30 s tells "slow on a busy machine" from "never".
FAILOVER_TIMEOUT = 30.0
#: The old owner's service must be gone within its lease after the fault,
#: plus this much for the guard's kill and the recorder noticing the exit.
KILL_SLACK = 0.5


class RealFailoverTests(FailoverAssertions, unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def start(self, layout, *, firewall=False, timing=DEFAULT_TIMING):
        fw = None
        if firewall:
            require_root("firewall rules")
            require_tool("nft", "nftables")
        cluster_rig = ClusterRig(layout, timing)
        launcher = Launcher(self.mktemp(), list(layout.nodes), template=cluster_rig.template(),
                            cleanups=self.cleanups)
        self.addCleanup(launcher.teardown)
        if firewall:
            fw = network.Firewall(name=owned_name("fo"), backend=network.NftBackend(),
                                  cleanups=self.cleanups)
            self.addCleanup(fw.close)
        self.lease = timing.lease_seconds
        self.rig = FailoverRig(launcher, cluster_rig, fw)
        self.launcher = launcher
        launcher.start_all()
        return self.rig

    def test_kill_9_of_the_owners_daemon(self):
        """The daemon dies, its service is killed (guard), the standby runs the system."""
        rig = self.start(active_standby())
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        old = self.current("A")
        t0 = rig.kill_daemon("alpha")  # services left behind, as after a daemon crash
        t1, node, identity = rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                             timeout=FAILOVER_TIMEOUT)
        self.assertEqual((node, identity["node"]), ("beta", "beta"))
        old, new = self.assertHandedOver(old, identity["instance"])
        self.assertLessEqual(old.end - t0, self.lease + KILL_SLACK)
        self.assertEqual(rig.owner("A"), "beta")
        self.assertNoViolations()

    def test_partitioned_owner_stops_before_the_majority_starts_it(self):
        rig = self.start(active_standby(), firewall=True)
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        old = self.current("A")
        t0, token = rig.isolate("alpha")
        t1, node, identity = rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                             timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        old, new = self.assertHandedOver(old, identity["instance"])
        # It stopped on its own, within its lease: its daemon is alive, in the minority.
        self.assertTrue(self.launcher.node("alpha").running)
        self.assertLessEqual(old.end - t0, self.lease + KILL_SLACK)
        rig.heal(token)
        # Healed, alpha rejoins; without preempt beta keeps A, and nothing runs twice.
        time.sleep(3 * self.lease)
        self.assertEqual(rig.owner("A"), "beta")
        self.assertEqual(self.current("A").instance, new.instance)
        self.assertNoViolations()

    def test_frozen_owner_daemon_has_its_service_killed_at_the_deadline(self):
        rig = self.start(active_standby())
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        old = self.current("A")
        pid = self.launcher.node("alpha").pid
        t0 = rig.pause_daemon("alpha")
        ended = wait_for(lambda: self.interval(old.instance).end, self.lease + 5,
                         what="the frozen owner's service to be killed")
        # Killed by the lease guard, outside the frozen event loop, by the deadline.
        self.assertEqual(process_state(pid), "T")
        self.assertLessEqual(ended - t0, self.lease + KILL_SLACK)
        t1, node, identity = rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                             timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        self.assertHandedOver(old, identity["instance"])
        # Thawed, alpha must not start A again (its lease is long gone).
        rig.resume_daemon("alpha")
        time.sleep(3 * self.lease)
        self.assertTrue(self.launcher.node("alpha").running)
        self.assertEqual(rig.owner("A"), "beta")
        self.assertNoViolations()

    def test_mutual_standby_end_to_end(self):
        """The seed's example: alpha runs A, beta runs B, each stands by for the other."""
        rig = self.start(mutual_standby())
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        self.assertEqual(rig.wait_owner("B", timeout=FIRST_OWNER_TIMEOUT), "beta")
        a, b = self.current("A"), self.current("B")
        # alpha's machine dies: A moves to beta, B is untouched.
        rig.kill_daemon("alpha", services=True)
        _, node, identity = rig.wait_answer("A", ["beta"], not_instance=a.instance,
                                            timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        self.assertHandedOver(a, identity["instance"])
        self.assertEqual(self.current("B").instance, b.instance)
        # alpha comes back: no preempt, so A stays on beta; alpha stands by for both.
        self.launcher.start("alpha")
        time.sleep(3 * self.lease)
        self.assertEqual((rig.owner("A"), rig.owner("B")), ("beta", "beta"))
        a = self.current("A")
        # Now beta dies: both systems move to alpha.
        rig.kill_daemon("beta", services=True)
        for cluster, old in (("A", a), ("B", b)):
            _, node, identity = rig.wait_answer(cluster, ["alpha"], not_instance=old.instance,
                                                timeout=FAILOVER_TIMEOUT)
            self.assertEqual(node, "alpha")
            self.assertHandedOver(old, identity["instance"])
        self.assertNoViolations()
