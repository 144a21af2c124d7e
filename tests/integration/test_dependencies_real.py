"""Dependencies between clusters with real daemons on 127.0.0.x: after, with, not_with.

Real ``twistd clsd`` daemons with protected services recording every start
and stop; the checker fails a test on any overlap of one cluster ID on two
nodes.  (doc/groups.md, "Dependencies between clusters".)
"""

import time

from twisted.trial import unittest

from rig import checker
from rig.cluster import ClusterRig, Layout
from rig.failover import FailoverRig
from rig.faults.cleanup import Cleanups
from rig.launcher import Launcher
from tests.support.rig_support import FailoverAssertions

FIRST_OWNER_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0
#: Longer than the cold-start settle bound (6.1 s with the defaults): a node
#: alone has given up waiting for its peers by then.
SETTLED = 8.0


class DependencyTests(FailoverAssertions, unittest.TestCase):
    timeout = 240

    def start(self, layout, *, nodes=None):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.cluster_rig = ClusterRig(layout)
        self.launcher = Launcher(self.mktemp(), list(layout.nodes),
                                 template=self.cluster_rig.template(), cleanups=self.cleanups)
        self.addCleanup(self.launcher.teardown)
        self.rig = FailoverRig(self.launcher, self.cluster_rig)
        if nodes is None:
            self.launcher.start_all()
        else:
            for name in nodes:
                self.launcher.start(name)
        return self.rig

    def runs(self, cluster):
        return [i for i in checker.intervals(self.launcher.records().records)
                if i.cluster == cluster]

    def test_an_after_chain_cold_starts_in_order(self):
        layout = Layout(nodes=("alpha", "beta", "witness"), voters=("alpha", "beta", "witness"),
                        clusters={"DB": {"alpha": 100}, "WEB": {"beta": 100}},
                        cluster_settings={"WEB": {"after": ["DB"]}})
        rig = self.start(layout, nodes=("witness", "beta"))
        time.sleep(SETTLED)
        self.assertEqual(self.runs("WEB"), [], "WEB started with DB running nowhere")
        self.launcher.start("alpha")
        self.assertEqual(rig.wait_owner("WEB", timeout=FIRST_OWNER_TIMEOUT), "beta")
        [db], [web] = self.runs("DB"), self.runs("WEB")
        self.assertEqual(db.node, "alpha")
        self.assertGreater(web.start, db.start, "WEB started before DB")
        self.assertNoViolations()

    def test_with_follows_its_anchor_in_dependency_order(self):
        # B prefers beta, but runs with A, which prefers alpha.
        layout = Layout(nodes=("alpha", "beta", "witness"), voters=("alpha", "beta", "witness"),
                        clusters={"A": {"alpha": 100, "beta": 50},
                                  "B": {"alpha": 10, "beta": 90}},
                        cluster_settings={"B": {"with": ["A"]}})
        rig = self.start(layout)
        self.assertEqual(rig.wait_owner("A", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        self.assertEqual(rig.wait_owner("B", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        a_old, b_old = self.current("A"), self.current("B")
        # alpha goes away gracefully: A moves to beta, and B with it.
        self.launcher.stop("alpha")
        self.assertEqual(rig.wait_owner("B", exclude=("alpha",), timeout=FAILOVER_TIMEOUT),
                         "beta")
        a_old, a_new = self.assertHandedOver(a_old, self.current("A").instance)
        b_old, b_new = self.assertHandedOver(b_old, self.current("B").instance)
        self.assertLessEqual(b_old.end, a_old.end, "B stopped after A on alpha")
        self.assertLessEqual(a_new.start, b_new.start, "B started before A on beta")
        self.assertNoViolations()

    def test_not_with_keeps_two_clusters_apart_both_ways(self):
        """WEB (not_with BATCH) avoids BATCH's node; BATCH, failing over onto WEB's, waits there
        until WEB has left (never beside it)."""
        layout = Layout(nodes=("alpha", "beta", "gamma"), voters=("alpha", "beta", "gamma"),
                        clusters={"WEB": {"alpha": 100, "beta": 50, "gamma": 30},
                                  "BATCH": {"beta": 100, "gamma": 10}},
                        cluster_settings={"WEB": {"not_with": ["BATCH"]}})
        rig = self.start(layout)
        self.assertEqual(rig.wait_owner("WEB", timeout=FIRST_OWNER_TIMEOUT), "alpha")
        self.assertEqual(rig.wait_owner("BATCH", timeout=FIRST_OWNER_TIMEOUT), "beta")
        old = self.current("WEB")
        rig.kill_daemon("alpha", services=True)
        _, node, identity = rig.wait_answer("WEB", ["beta", "gamma"],
                                            not_instance=old.instance, timeout=FAILOVER_TIMEOUT)
        self.assertEqual(node, "gamma", "WEB went to the node that runs BATCH")
        self.assertHandedOver(old, identity["instance"])
        self.launcher.start("alpha")  # back, WEB stays on gamma (no preemption)
        time.sleep(SETTLED)
        self.assertEqual(rig.owner("WEB"), "gamma")
        # BATCH's only other node is gamma, where WEB runs: WEB leaves for alpha first.
        rig.kill_daemon("beta", services=True)
        self.assertEqual(rig.wait_owner("BATCH", exclude=("beta",), timeout=FAILOVER_TIMEOUT),
                         "gamma")
        self.assertEqual(rig.wait_owner("WEB", exclude=("gamma",), timeout=FAILOVER_TIMEOUT),
                         "alpha")
        on_gamma = [(i.start, i.end_or(float("inf"))) for i in self.runs("WEB") + self.runs("BATCH")
                    if i.node == "gamma"]
        on_gamma.sort()
        for (_, end), (start, _) in zip(on_gamma, on_gamma[1:]):
            self.assertLessEqual(end, start, f"WEB and BATCH ran side by side on gamma: {on_gamma}")
        self.assertEqual(len(on_gamma), 2)
        self.assertNoViolations()
