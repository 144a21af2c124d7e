"""Three real daemons and mallory: the rig of the hostile-insider tests (issue 16).

Alpha holds cluster A, beta stands by, the witness votes; each serves
``[metrics]`` (L{rig.metered.MeteredCluster}). Mallory holds a
certificate from the cluster's CA but is in no configuration
(L{rig.hostile.HostilePeer}). Not a test module (no ``test_`` prefix).
"""

import os

from rig.faults.cleanup import Cleanups
from rig.hostile import HostilePeer
from rig.metered import MeteredCluster


class MalloryRig:
    """A mixin for a C{TestCase}: the cluster is up and mallory ready when a test starts."""

    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.cluster = MeteredCluster(self.mktemp(), cleanups=self.cleanups)
        self.rig, self.launcher = self.cluster.rig, self.cluster.launcher
        self.layout, self.nodes = self.cluster.layout, self.cluster.nodes
        self.addCleanup(self.launcher.teardown)
        self.cluster.start()
        self.mallory = HostilePeer.mallory(self.rig, self.launcher,
                                           os.path.abspath(self.mktemp()))
        self.addCleanup(self.mallory.stop)

    def converged(self):
        return self.cluster.converged()

    def scrape(self, node):
        return self.cluster.scrape(node)

    def counter(self, node, name, **labels):
        return self.cluster.counter(node, name, **labels)

    def forged(self, node, peer="mallory"):
        return self.counter(node, "clsd_peer_forged_total", peer=peer)

    def peer(self, node):
        return self.cluster.peer_address(node)
