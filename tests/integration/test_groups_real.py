"""Ordered groups with real daemons on 127.0.0.x: order on both nodes, no member twice.

Three ``twistd clsd`` daemons (alpha, beta and a witness voter); cluster A is
a group of three protected services (``vol``, ``db``, ``exp``) that record
every start and stop as ``A.vol``, ``A.db``, ``A.exp``, so the checker holds
each member to one copy at a time across the nodes.  Then the same with
resource-agents' ``ocf:heartbeat:Dummy`` members.
"""

import os
import time

from twisted.trial import unittest

from clsd.polling import wait_for
from rig import checker
from rig.cluster import GroupClusterRig, active_standby, member_resource
from rig.failover import FailoverRig
from rig.faults.cleanup import Cleanups
from rig.launcher import Launcher
from tests.support.rig_support import FailoverAssertions

MEMBERS = ("vol", "db", "exp")
FIRST_OWNER_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0


class GroupFailoverTests(FailoverAssertions, unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        layout = active_standby()
        self.cluster_rig = GroupClusterRig(layout, MEMBERS)
        self.launcher = Launcher(self.mktemp(), list(layout.nodes),
                                 template=self.cluster_rig.template(), cleanups=self.cleanups)
        self.addCleanup(self.launcher.teardown)
        self.rig = FailoverRig(self.launcher, self.cluster_rig)
        self.launcher.start_all()

    def members_on(self, node, epoch=None):
        """The intervals of A's members on C{node} (one tenure when C{epoch} is given)."""
        result = {}
        for interval in checker.intervals(self.launcher.records().records):
            for member in MEMBERS:
                if interval.cluster == member_resource("A", member) and interval.node == node \
                        and (epoch is None or interval.epoch == epoch):
                    result.setdefault(member, []).append(interval)
        return result

    def assertStartedInOrder(self, node, epoch):
        runs = self.members_on(node, epoch)
        self.assertEqual(sorted(runs), sorted(MEMBERS), f"members that ran on {node}: {runs}")
        firsts = [min(i.start for i in runs[m]) for m in MEMBERS]
        self.assertEqual(firsts, sorted(firsts),
                         f"{node} started its members out of order: "
                         f"{dict(zip(MEMBERS, firsts))}")
        return runs

    def test_kill_9_of_the_owners_daemon_moves_the_group_in_order(self):
        top = member_resource("A", MEMBERS[-1])
        self.assertEqual(self.rig.wait_owner(top, timeout=FIRST_OWNER_TIMEOUT), "alpha")
        for member in MEMBERS:
            self.assertEqual(self.rig.owner(member_resource("A", member)), "alpha")
        [first] = {i.epoch for i in self.rig.running(top)}
        old = {m: self.current(member_resource("A", m)) for m in MEMBERS}
        self.assertStartedInOrder("alpha", first)

        self.rig.kill_daemon("alpha")      # its members are left to the lease guard
        _, node, identity = self.rig.wait_answer(top, ["beta"],
                                                 not_instance=old[MEMBERS[-1]].instance,
                                                 timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        runs = self.assertStartedInOrder("beta", identity["epoch"])
        self.assertGreater(identity["epoch"], first)
        for member in MEMBERS:
            # Every member of alpha's tenure ended before beta's copy of it started.
            self.assertHandedOver(old[member], runs[member][0].instance)
            # One tenure, one epoch: every member of beta's copy carries it.
            self.assertEqual({i.epoch for i in runs[member]}, {identity["epoch"]})
        self.assertNoViolations()

        # A graceful stop of beta stops its members top down.
        self.launcher.stop("beta")
        runs = self.members_on("beta", identity["epoch"])
        ends = [max(i.end for i in runs[m]) for m in MEMBERS]
        self.assertEqual(ends, sorted(ends, reverse=True),
                         f"beta stopped its members out of order: {dict(zip(MEMBERS, ends))}")
        self.assertTrue(all(i.end_kind == "stop" for m in MEMBERS for i in runs[m]))
        self.assertNoViolations()


DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"


class DummyGroupTests(unittest.TestCase):
    """``ocf:heartbeat:Dummy`` members in a group, one made to fail its monitor."""

    timeout = 240

    def setUp(self):
        if not os.access(DUMMY, os.X_OK):
            if os.environ.get("CI") == "true":
                self.fail(f"{DUMMY} is missing: install resource-agents")
            raise unittest.SkipTest(f"{DUMMY} is missing (resource-agents)")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.state_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.state_dir)
        layout = active_standby()
        self.launcher = Launcher(self.mktemp(), list(layout.nodes),
                                 template=_DummyRig(layout, self.state_dir).template(),
                                 cleanups=self.cleanups)
        self.addCleanup(self.launcher.teardown)
        self.launcher.start_all()

    def state_file(self, node, member):
        return os.path.join(self.state_dir, f"{node}-{member}.state")

    def test_a_member_failing_its_monitor_restarts_with_the_members_above_it(self):
        # Dummy is "running" while its state file exists.
        wait_for(lambda: all(os.path.exists(self.state_file("alpha", m)) for m in MEMBERS),
                 FIRST_OWNER_TIMEOUT, what="alpha to start every member")
        starts = {m: os.stat(self.state_file("alpha", m)).st_mtime_ns for m in MEMBERS}
        self.assertEqual(list(starts.values()), sorted(starts.values()),
                         f"members started out of order: {starts}")
        # db's monitor fails: its state file vanishes under it.
        os.unlink(self.state_file("alpha", "db"))
        wait_for(lambda: os.path.exists(self.state_file("alpha", "db"))
                 and os.path.exists(self.state_file("alpha", "exp"))
                 and os.stat(self.state_file("alpha", "exp")).st_mtime_ns
                 > os.stat(self.state_file("alpha", "db")).st_mtime_ns > starts["exp"],
                 30.0, what="db restarted, then exp after it")
        # vol, below it, was not touched; nothing of A ever ran on beta.
        self.assertEqual(os.stat(self.state_file("alpha", "vol")).st_mtime_ns, starts["vol"])
        self.assertFalse(any(os.path.exists(self.state_file("beta", m)) for m in MEMBERS))
        history = self.launcher.log_text("alpha")
        self.assertIn("stopping member system-a-exp (3 of 3): system-a-db below it is not "
                      "running", history)
        time.sleep(0.5)
        self.assertEqual(self.launcher.log_problems(), [])


class _DummyRig(GroupClusterRig):
    """Each member is ``ocf:heartbeat:Dummy`` with a state file per node and member."""

    def __init__(self, layout, state_dir):
        super().__init__(layout, MEMBERS, health_check=False)
        self.state_dir = state_dir

    def clusters_part(self, node, launcher):
        services, clusters = [], []
        for cluster in self.layout.clusters_of(node.name):
            names = []
            for member in MEMBERS:
                name = f"system-{cluster.lower()}-{member}"
                names.append(name)
                services.append({
                    "name": name, "type": "ocf", "agent": "heartbeat:Dummy",
                    "params": {"state": os.path.join(self.state_dir,
                                                     f"{node.name}-{member}.state")},
                    "monitor_interval": 0.5, "restart": "always"})
            clusters.append({"id": cluster, "services": names,
                             "priority": self.layout.clusters[cluster][node.name]})
        tables = {}
        if services:
            tables["service"] = services
            tables["cluster"] = clusters
        return tables
