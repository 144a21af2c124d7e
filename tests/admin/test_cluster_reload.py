"""``reload`` of cluster registrations on a real three-node in-process cluster.

The rig of L{tests.admin.test_cluster_admin} (alpha prefers A, beta stands by,
witness votes).  alpha's config file is rewritten and ``reload`` run over
SSH; the lifeline records and the checker prove A never ran twice.
"""

import time

from twisted.internet import defer, reactor

from tests.admin import test_cluster_admin as base
from tests.support.cluster_rig import poll, protected_service

LEASE, NAMES = base.LEASE, base.NAMES


class ClusterReloadTests(base.BorrowedRig):
    """On the rig of ClusterAdminTests."""

    def write_alpha(self, cluster):
        """Rewrite alpha's file as in setUp, with or without A (and its service)."""
        daemon = self.rig.daemons["alpha"]
        extra = {"quorum": {"voters": list(NAMES), "lease": LEASE, "drift_margin": 0.1},
                 "admin": {"ssh": "127.0.0.1:0",
                           "authorized_keys": daemon.config.admin.authorized_keys}}
        if cluster is not None:
            extra["service"] = [protected_service("system-a", self.records)]
            extra["cluster"] = [{"id": "A", "service": "system-a", **cluster}]
        path = self.rig.write_config("alpha", extra)
        self.assertEqual(path, daemon.config.source)

    @defer.inlineCallbacks
    def test_withdraw_the_owner_then_register_it_again(self):
        first, _ = yield self.wait_owner("alpha", "A on alpha")
        self.write_alpha(None)
        started = time.monotonic()
        result = yield self.admin("alpha", "reload")
        self.assertIn(b"-cluster A", result.stdout)
        # reload returns once alpha's copy is gone and its lease released.
        self.assertIsNone(self.running("alpha"))
        data = yield self.json("alpha", "clusters")
        # Withdrawn here: alpha shows A only as beta publishes it, not registered here.
        self.assertEqual([(c["id"], c["role"]) for c in data["clusters"]],
                         [("A", "not-registered")])
        yield poll(reactor, lambda: self.running("beta"), 3 * LEASE,
                   "A on beta after alpha withdrew")
        self.assertLess(time.monotonic() - started, 2 * LEASE,
                        "a graceful handover, not a lease expiry")
        cluster = yield self.cluster_a("beta")
        self.assertEqual(cluster["state"], "running")
        self.assert_no_overlap()

        # Back in the file: alpha is a candidate again, but (no preempt) beta keeps A.
        self.write_alpha({"priority": 100})
        result = yield self.admin("alpha", "reload")
        self.assertIn(b"+cluster A", result.stdout)
        yield poll(reactor, lambda: self.rig.daemons["beta"].ownership.node.manager
                   ._members.get("alpha") is not None
                   and "A" in self.rig.daemons["beta"].ownership.node.manager
                   ._members["alpha"].registrations, 3 * LEASE,
                   "beta to see alpha registered for A again")
        yield poll(reactor, lambda: True, 0.1, "a moment")
        self.assertIsNone(self.running("alpha"), "sticky: no preempt")
        # Candidate again: a move to alpha is accepted and carried out.
        yield self.admin("beta", "move A alpha")
        yield self.wait_owner("alpha", "A back on alpha")
        self.assert_no_overlap()

    @defer.inlineCallbacks
    def test_priority_change_moves_only_with_preempt(self):
        yield self.wait_owner("alpha", "A on alpha")
        self.write_alpha({"priority": 10})
        yield self.admin("alpha", "reload")
        yield poll(reactor, lambda: self.rig.daemons["beta"].ownership.node.manager
                   ._members["alpha"].registrations.get("A") == 10, 3 * LEASE,
                   "beta to see alpha's new priority")
        self.assertIsNotNone(self.running("alpha"), "sticky without preempt")
        self.write_alpha({"priority": 10, "preempt": True, "preempt_delay": 0.5})
        yield self.admin("alpha", "reload")
        # alpha now prefers beta (50 > 10) and preempt lets it give way.
        yield self.wait_owner("beta", "A moved to beta by preempt")
        self.assert_no_overlap()
