"""The escape test on real daemons: kill -9 the owner's daemon while its service escaped.

Three ``twistd clsd`` daemons (alpha, beta, a witness) as in
tests/integration/test_failover_real.py, but the protected service runs in "daemon
mode" (tests/support/escaping_service.py): the process the daemon started stays in
the foreground while the protected service itself runs in a double-forked,
``setsid``'d grandchild, outside the process group. Then alpha's daemon is
killed with SIGKILL while it owns cluster A.

- With cgroup containment the lease guard empties the service's cgroup when
  the daemon's pipe closes: the escaped copy is gone before beta starts
  (the dual-active checker finds no overlap).
- With process-group containment the guard's ``killpg`` never reaches the
  escaped copy: it keeps serving while beta starts a second one. The test
  asserts that overlap: it is why a service type that escapes by design
  may only run in a ``[[cluster]]`` without cgroups when the operator sets
  ``containment = "process-group"`` explicitly (doc/supervision.md).
"""

import os
import sys

from twisted.trial import unittest

from clsd.supervision import cgroupfs
from clsd.supervision.containment import CgroupTree
from rig.checker import Overlap
from rig.cluster import ClusterRig, active_standby
from rig.failover import FailoverRig
from rig.faults.cleanup import Cleanups
from rig.launcher import Launcher
from tests.support import escaping_service
from tests.support.rig_support import FailoverAssertions
from tests.integration.test_containment_real import require_cgroups

FIRST_OWNER_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0
#: The escaped copy must be gone within the lease after the kill, plus this
#: much for the guard's kill and the recorder noticing the exit.
KILL_SLACK = 0.5


class EscapingClusterRig(ClusterRig):
    """The cluster rig's protected service, started in daemon mode, with a containment."""

    def __init__(self, layout, containment, **kwargs):
        super().__init__(layout, **kwargs)
        self.containment = containment

    def clusters_part(self, node, launcher):
        tables = super().clusters_part(node, launcher)
        for service in tables.get("service", ()):
            script = os.path.abspath(escaping_service.__file__)
            service["command"] = [sys.executable, script, "escape", *service["command"]]
            service["containment"] = self.containment
        return tables


class EscapedServiceFailoverTests(FailoverAssertions, unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def start(self, containment):
        layout = active_standby()
        cluster_rig = EscapingClusterRig(layout, containment)
        launcher = Launcher(self.mktemp(), list(layout.nodes), template=cluster_rig.template(),
                            cleanups=self.cleanups)
        if containment == "cgroup":
            for name in layout.nodes:
                require_cgroups(self, name, launcher.node(name).spec.data_dir)
        self.addCleanup(launcher.teardown)
        self.rig = FailoverRig(launcher, cluster_rig)
        self.launcher = launcher
        self.lease = cluster_rig.timing.lease_seconds
        launcher.start_all()
        self.assertEqual(self.rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        return self.current("A")

    def assertEscaped(self, instance):
        """The protected service runs in a session of its own, not the daemon's."""
        self.assertNotEqual(os.getsid(instance.pid),
                            os.getsid(self.launcher.node("alpha").pid))

    def kill_owner_and_wait_for_beta(self, old):
        t0 = self.rig.kill_daemon("alpha")
        _, node, identity = self.rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                                 timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        return t0, identity

    def test_cgroup_containment_kills_the_escaped_copy_before_the_standby_starts(self):
        old = self.start("cgroup")
        self.assertEscaped(old)
        t0, identity = self.kill_owner_and_wait_for_beta(old)
        old, new = self.assertHandedOver(old, identity["instance"])
        self.assertLessEqual(old.end - t0, self.lease + KILL_SLACK)
        self.assertNoViolations()
        # alpha's killed daemon left its cgroup, emptied by the guard
        alpha = CgroupTree(self.v2_root(), "alpha", self.launcher.node("alpha").spec.data_dir)
        self.assertEqual(alpha.services(), ["system-a"])
        self.assertFalse(cgroupfs.populated(alpha.path("system-a")))
        # and the rig removes it; beta's and the witness's go when they stop.
        self.launcher.teardown()
        for name in ("alpha", "beta", "witness"):
            tree = CgroupTree(alpha.root, name, self.launcher.node(name).spec.data_dir)
            self.assertFalse(os.path.exists(tree.directory), f"{name} left {tree.directory}")

    def v2_root(self):
        with open("/proc/self/mountinfo") as f:
            return cgroupfs.find_v2_mount(f.read())[0]

    def test_process_group_containment_lets_the_escaped_copy_overlap(self):
        old = self.start("process-group")
        self.assertEscaped(old)
        self.kill_owner_and_wait_for_beta(old)
        overlaps = [v for v in self.launcher.check().violations if isinstance(v, Overlap)]
        self.assertTrue(overlaps, "the escaped copy was stopped: no overlap to show")
        self.assertEqual({v.cluster for v in overlaps}, {"A"})
        self.assertIn(old.instance, {i.instance for v in overlaps for i in v.instances})
