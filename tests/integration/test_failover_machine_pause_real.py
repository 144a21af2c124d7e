"""A whole machine paused with real daemons: on resume the old owner stops at its first refused renewal.

alpha runs A, then every process of alpha (daemon, lease guard, service) is
frozen with the cgroup v2 freezer for three leases, as a hypervisor pauses a
virtual machine; beta takes A over meanwhile. On the thaw alpha's lease clock
is wound back by the pause (rig.faults.freeze), so its deadline
still lies ahead. Without the "held" rule (clsd.ownership.core.proposer) alpha's
service ran on beside beta's until the TERM at alpha's old stop point (about
T - m - T/4 after the freeze, on alpha's clock); with it, alpha stops at its
next renewal, which is refused because beta holds the lease: within
C{pause_bound} (T/3 + T/8 + m) of the thaw.
"""

import time

from twisted.trial import unittest

from rig import checker
from rig.cluster import DEFAULT_TIMING, ClusterRig, active_standby
from rig.failover import FailoverRig
from rig.faults import freeze
from rig.faults.cleanup import Cleanups
from rig.faults.runner import pause_bound
from rig.launcher import Launcher
from clsd.polling import wait_for
from tests.support.rig_support import FailoverAssertions, require, require_root

FIRST_OWNER_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0


class MachinePauseTests(FailoverAssertions, unittest.TestCase):
    timeout = 240

    def setUp(self):
        require_root("the cgroup freezer")
        require(freeze.cgroup2_root() is not None, "a cgroup v2 hierarchy")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        cluster_rig = ClusterRig(active_standby(), DEFAULT_TIMING)
        self.launcher = Launcher(self.mktemp(), list(cluster_rig.layout.nodes),
                                 template=cluster_rig.template(), cleanups=self.cleanups)
        self.addCleanup(self.launcher.teardown)
        self.rig = FailoverRig(self.launcher, cluster_rig)
        self.lease = DEFAULT_TIMING.lease_seconds
        self.bound = pause_bound(DEFAULT_TIMING)

    def test_resumed_owner_stops_at_its_first_refused_renewal(self):
        self.launcher.start_all()
        # Freeze alpha right after its first tenure began: its next renewal is
        # then almost T/3 away on its (stopped) clock, its old stop point T - m - T/4.
        old = wait_for(lambda: next(iter(self.rig.running("A")), None), FIRST_OWNER_TIMEOUT,
                       what="A to start", interval=0.005)
        self.assertEqual(old.node, "alpha")
        frozen = freeze.NodeFreeze(self.launcher.node("alpha").pid,
                                   self.launcher.lease_clock_offset_path("alpha"),
                                   cleanups=self.cleanups)
        self.assertLess(frozen.frozen_at - old.start, 0.3, "frozen too late after the start")
        _, node, identity = self.rig.wait_answer("A", ["beta"], not_instance=old.instance,
                                                 timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "beta")
        time.sleep(max(0.0, frozen.frozen_at + 3 * self.lease - time.monotonic()))
        frozen.thaw()
        ended = wait_for(lambda: self.interval(old.instance).end, 3 * self.lease,
                         what="alpha's service to stop after the thaw")
        time.sleep(self.lease)  # beta goes on alone
        pause = checker.MachinePause("alpha", frozen.frozen_at, frozen.thawed_at, self.bound)
        report = checker.check(self.launcher.records(), pauses=[pause])
        [after] = report.after_pause
        print(f"\n  alpha frozen {frozen.paused:.2f}s, {frozen.frozen_at - old.start:.3f}s into "
              f"its tenure; after the thaw its service ran {after.ran:.3f}s, "
              f"{after.overlapped:.3f}s of it beside beta's (bound {self.bound:.3f}s)")
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertLessEqual(ended - frozen.thawed_at, self.bound)
        self.assertGreater(after.overlapped, 0.0, "beta did not run while alpha resumed")
        self.assertEqual(self.rig.owner("A"), "beta")
        self.assertEqual(self.launcher.log_problems(), [])
