"""Cold start with real daemons: two nodes started together, the preferred one gets the cluster.

beta (priority 50) is started a moment before alpha (priority 100), as a
simultaneous power-on or a rolling restart of everything would: before
membership has settled, beta sees nobody better than itself.  With etcd there
is no quiet period after a start, so beta used to take the free key at once and
keep it (no preempt).  Rounds are repeated; the figures are printed.
"""

import os
import time

from twisted.trial import unittest

from rig.cluster import DEFAULT_TIMING, ClusterRig, Timing, active_standby
from rig.etcd import RIG_PREFIX, EtcdCluster, etcd_cluster_rig, etcd_layout
from rig.failover import FailoverRig
from rig.faults.cleanup import Cleanups
from rig.launcher import Launcher
from tests.support.rig_support import require_tool

#: Rounds per arbiter: each starts both daemons together and stops them again.
ROUNDS = int(os.environ.get("CLSD_COLD_START_ROUNDS", "4"))
#: How long after the later start the lower-priority node is given to start it
#: (it would start within about a second if it raced).
FIRST_OWNER_TIMEOUT = 60.0
#: The gap between the two starts (beta first).
GAP = 0.2


class ColdStartTests(unittest.TestCase):
    timeout = 120 + ROUNDS * 60

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def rounds(self, layout, cluster_rig, directory):
        launcher = Launcher(directory, list(layout.nodes), template=cluster_rig.template(),
                            cleanups=self.cleanups)
        self.addCleanup(launcher.teardown)
        rig = FailoverRig(launcher, cluster_rig, None)
        owners, delays = [], []
        others = [n for n in layout.nodes if n not in ("alpha", "beta")]
        for name in others:
            launcher.start(name)
        for _ in range(ROUNDS):
            launcher.start("beta", wait=False)
            time.sleep(GAP)
            started = time.monotonic()
            launcher.start("alpha", wait=False)
            launcher.wait_started("beta")
            launcher.wait_started("alpha")
            owners.append(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT))
            delays.append(time.monotonic() - started)
            for name in ("alpha", "beta"):
                launcher.stop(name)
        return owners, delays

    def report(self, arbiter, owners, delays):
        print(f"\n  {arbiter}: {len(owners)} cold starts, preferred node won "
              f"{owners.count('alpha')}; start to answering: "
              f"{', '.join(f'{d:.1f}' for d in delays)} s")
        self.assertEqual(owners, ["alpha"] * len(owners))

    def test_etcd(self):
        require_tool("etcd", "etcd-server")
        directory = os.path.abspath(self.mktemp())
        etcd = EtcdCluster(os.path.join(directory, "etcd"), 1,
                           ca_dir=os.path.join(directory, "rig", "ca"), cleanups=self.cleanups)
        self.addCleanup(etcd.teardown)
        etcd.start()
        layout = etcd_layout()
        owners, delays = self.rounds(layout, etcd_cluster_rig(layout, Timing("etcd", lease=2), etcd),
                                     os.path.join(directory, "rig"))
        self.assertIsNone(etcd.get(RIG_PREFIX + "A"), "released at every stop")
        self.report("etcd", owners, delays)

    def test_voters(self):
        layout = active_standby()
        owners, delays = self.rounds(layout, ClusterRig(layout, DEFAULT_TIMING),
                                     os.path.abspath(self.mktemp()))
        self.report("voters", owners, delays)
