"""A rolling ``reload`` that changes a cluster's mode, on a real three-node in-process cluster.

The rig of L{tests.admin.test_cluster_admin} (alpha runs A, beta stands by, witness
votes).  The node that runs A may change A's mode only after every other
registered node has; a node that changed first shows ``shape-mismatch`` and
acquires nothing; the lifeline checker proves A never ran twice.
"""

from twisted.internet import defer, reactor

from tests.admin import test_cluster_admin as base
from tests.support.cluster_rig import poll, protected_service
from clsd.admin.ownership_status import ownership_status

LEASE, NAMES = base.LEASE, base.NAMES
N_ACTIVE = {"mode": "n-active", "count": 1}


class ShapeReloadTests(base.BorrowedRig):
    """On the rig of ClusterAdminTests."""

    def write(self, name, **cluster):
        daemon = self.rig.daemons[name]
        priority = 100 if name == "alpha" else 50
        extra = {"quorum": {"voters": list(NAMES), "lease": LEASE, "drift_margin": 0.1},
                 "admin": {"ssh": "127.0.0.1:0",
                           "authorized_keys": daemon.config.admin.authorized_keys},
                 "service": [protected_service("system-a", self.records)],
                 "cluster": [{"id": "A", "service": "system-a", "priority": priority,
                              **cluster}]}
        self.assertEqual(self.rig.write_config(name, extra), daemon.config.source)

    @defer.inlineCallbacks
    def test_the_node_running_it_changes_mode_last(self):
        first, _ = yield self.wait_owner("alpha", "A on alpha")
        # The owner first: refused, nothing changes.
        self.write("alpha", **N_ACTIVE)
        result = yield self.admin("alpha", "reload", ok=False)
        self.assertNotEqual(result.status, 0)
        self.assertIn(b"beta still has its old mode/count", result.stdout + result.stderr)
        self.assertEqual(self.rig.daemons["alpha"].config.clusters[0].mode, "active-standby")
        self.assertIsNotNone(self.running("alpha"))

        # beta first: accepted; it disagrees with alpha, so it would not take A over.
        self.write("beta", **N_ACTIVE)
        yield self.admin("beta", "reload")
        cluster = yield self.cluster_a("beta")
        self.assertEqual(cluster["state"], "shape-mismatch")
        self.assertEqual(self.status_a("beta")["shape_mismatch"], ["alpha"])
        self.assertIsNotNone(self.running("alpha"))

        alpha = self.rig.daemons["alpha"].ownership.node.manager
        yield poll(reactor, lambda: alpha.shape_mismatch("A") == ["beta"], 3 * LEASE,
                   "alpha to see beta's new settings")
        # Each side then names the settings that differ (per-setting digests).
        yield poll(reactor, lambda: self.status_a("beta")["settings_differ"]
                   == {"alpha": ["mode"]}, 3 * LEASE, "beta to name the setting that differs")
        # Then the owner: it stops A and registers the new shape; now all agree.
        yield self.admin("alpha", "reload")
        owner = yield poll(reactor, lambda: self.running("alpha") or self.running("beta"),
                           4 * LEASE, "A running again as A/0")
        self.assertGreater(owner.epoch, first.epoch)
        status = self.status_a(owner.node)
        self.assertEqual((status["shape_mismatch"], list(status["resources"])), ([], ["A/0"]))
        self.assert_no_overlap()

    def status_a(self, node):
        (cluster,) = ownership_status(self.rig.daemons[node].ownership)["clusters"]
        return cluster
