"""Lease and cluster messages from a hostile insider, against 3 real daemons (issue 16).

Mallory holds a certificate from the cluster's CA but is in no
configuration (L{clsd.testing.hostile}). Alpha holds cluster A, beta stands
by, the witness votes. Each attack must change nothing the dual-active
checker or the owner's epoch can see: no overlap, A still on alpha under the
same epoch (or moved only as planned), and where mallory forged a claim its
connection is closed as ``forged`` and counted in
``clsd_peer_forged_total{peer="mallory"}`` (scraped from ``[metrics]``).
"""

import os
import time
import urllib.request

from twisted.trial import unittest

from clsd.testing.cluster import ClusterRig, active_standby
from clsd.testing.failover import last_states
from clsd.testing.faults.cleanup import Cleanups
from clsd.testing.hostile import HostilePeer
from clsd.testing.launcher import Launcher, free_port
from clsd.testing.polling import wait_for
from tests.metrics_scrape import parse_samples


class OwnershipAttackTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.layout = active_standby()
        self.rig = ClusterRig(self.layout)
        self.metrics_ports = {}

        def metrics_part(node, launcher):
            address = launcher.address(node.name)
            if node.name not in self.metrics_ports:
                self.metrics_ports[node.name] = free_port(address)
            return {"metrics": {"listen": f"{address}:{self.metrics_ports[node.name]}"}}

        template = self.rig.template().with_part(metrics_part)
        self.launcher = Launcher(self.mktemp(), list(self.layout.nodes), template=template,
                                 cleanups=self.cleanups)
        self.addCleanup(self.launcher.teardown)
        self.launcher.start_all()
        self.nodes = list(self.layout.nodes)
        self.launcher.wait_running(cluster="A", timeout=60)
        wait_for(self.converged, timeout=60, what="every node sees the others alive")
        self.mallory = HostilePeer.mallory(self.rig, self.launcher,
                                           os.path.abspath(self.mktemp()))
        self.addCleanup(self.mallory.stop)

    # -- reading the cluster from outside ---------------------------------------------

    def converged(self):
        for observer in self.nodes:
            states = last_states(self.launcher, observer, 0)
            if any(states.get(other) != "alive" for other in self.nodes if other != observer):
                return False
        return True

    def scrape(self, node):
        url = f"http://{self.launcher.address(node)}:{self.metrics_ports[node]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            samples, _ = parse_samples(response.read().decode())
        return samples

    def forged(self, node, peer="mallory"):
        return self.scrape(node).get(("clsd_peer_forged_total", (("peer", peer),)), 0)

    def owners(self):
        """(node, epoch) of every running instance of A."""
        return sorted((i.node, i.epoch) for i in self.launcher.running_instances(cluster="A"))

    def peer(self, node):
        return self.rig.peer_address(self.launcher, node)

    def assert_safe(self):
        report = self.launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertEqual(self.launcher.log_problems(), [])

    # -- the fixture itself -------------------------------------------------------------

    def test_mallory_speaks_the_protocol(self):
        """The fixture gets through TLS and the hello, and the daemon answers its lines."""
        connection = self.mallory.connect(self.peer("witness"))
        self.assertEqual(connection.peer_hello["name"], "witness")
        connection.send("lease.prepare", resource="Z", ballot=[1, "mallory", 1])
        promise = connection.wait_for("lease.promise")
        self.assertEqual(promise["resource"], "Z")
        self.assertIsNone(connection.ended)
