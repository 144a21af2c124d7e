"""A group's floating address with real daemons in namespaces made by the test.

Three ``twistd clsd`` daemons (alpha, beta, a witness) in a network of
their own (L{rig.netns}; 192.0.2.0/24 only, inside the namespaces). Cluster
A is an ordered group of three protected services (``vol``, ``db``,
``exp``) that record every start and stop as ``A.vol``, ``A.db``, ``A.exp``
(each found running by an HTTP health check, so a member runs only after its
``start`` record), with the floating address 192.0.2.10/24 and
``address_order = "before"``: the address is added before the first member
starts and removed after the last one stopped (doc/groups.md).
rig.address_holder_watch reads alpha's and beta's addresses from their
kernels about every millisecond, on the same monotonic clock as the
records, so the order of address and members can be compared on each node.

Needs root, ``ip`` and ``nft``: skipped elsewhere, must run under CI=true.
"""

import os
import signal
import time

from twisted.trial import unittest

from clsd.polling import wait_for
from rig import checker
from rig.address_cluster import GroupAddressCluster, HolderWatch
from rig.netns import Netns
from rig.recorder import LifelineCollector, read_records
from tests.integration.test_address_netns_real import require_network_rig

MEMBERS = ("vol", "db", "exp")
GROUP = {"A": tuple(f"A.{m}" for m in MEMBERS)}
START_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 15.0
LEASE = 1.0


class GroupAddressFailoverTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_network_rig()
        self.rig = Netns.create(self)
        self.records_dir = os.path.abspath(self.mktemp())
        os.makedirs(self.records_dir)
        self.collector = LifelineCollector(self.records_dir).start()
        self.addCleanup(self.collector.stop)

    def intervals(self):
        return checker.intervals(read_records(self.records_dir).records)

    def tenure(self, node):
        """A's members on C{node}, bottom first: the interval of each (each ran once there)."""
        runs = {}
        for interval in self.intervals():
            if interval.node == node and interval.cluster in GROUP["A"]:
                runs.setdefault(interval.cluster, []).append(interval)
        self.assertEqual({m: len(runs.get(m, ())) for m in GROUP["A"]},
                         dict.fromkeys(GROUP["A"], 1), f"runs of A's members on {node}")
        return [runs[m][0] for m in GROUP["A"]]

    def held(self, node):
        """C{(added, removed)}: when the holder watch first and last saw C{node} hold it.

        C{added} is the first round with the address: it was added no later.
        C{removed} is the first round without it afterwards (None: still
        held): it was removed no later, and after the round before (about a
        millisecond earlier).
        """
        added = removed = None
        for change in self.holders.changes():
            if node in change["holders"] and added is None:
                added = change["t"]
            elif added is not None and removed is None and node not in change["holders"]:
                removed = change["t"]
        return added, removed

    def test_the_address_comes_before_the_members_and_fails_over_with_them(self):
        cluster = GroupAddressCluster(os.path.abspath(self.mktemp()), self.rig, self.addCleanup,
                                      lease=LEASE, members=MEMBERS, records=self.records_dir)
        self.holders = HolderWatch(os.path.abspath(self.mktemp()) + "-holders.jsonl",
                                   self.rig, self.addCleanup)
        cluster.start_all()
        wait_for(lambda: any(i.node == "alpha" and i.cluster == "A.exp"
                             for i in self.intervals()),
                 START_TIMEOUT, what="alpha to start the group's last member")
        wait_for(lambda: cluster.has("alpha"), 5, what="alpha to hold the address")

        os.kill(cluster.daemon_pid("alpha"), signal.SIGKILL)
        wait_for(lambda: any(i.node == "beta" and i.cluster == "A.exp"
                             for i in self.intervals()),
                 FAILOVER_TIMEOUT, what="beta to start the group's last member")
        wait_for(lambda: cluster.has("beta"), 5, what="beta to hold the address")
        self.assertFalse(cluster.has("alpha"), "alpha's guard left the address behind")
        # A graceful stop of beta: its members top down, then the address.
        cluster.stop("beta")
        time.sleep(0.2)   # a few more rounds of the holder watch
        self.holders.stop()

        self.assertEqual(self.holders.path(), [["alpha"], ["beta"]],
                         "the kernels show two holders at once, or a step back")
        self.assertGreater(self.holders.rounds(), 1000)
        for node in ("alpha", "beta"):
            vol, db, exp = self.tenure(node)
            added, _ = self.held(node)
            self.assertIsNotNone(added, f"{node} never held the address")
            self.assertLess(added, vol.start, f"{node} started {vol.cluster} before it "
                            "had the address")
            self.assertLess(vol.start, db.start)
            self.assertLess(db.start, exp.start)
        # alpha's members were killed with its daemon (the guard), beta's stopped
        # top down, and only then was the address removed: seen gone after vol's
        # last act (an address removed before the members stopped, as with
        # "after", is seen gone before exp's stop, let alone vol's).
        _, removed = self.held("beta")
        vol, db, exp = self.tenure("beta")
        self.assertEqual([i.end_kind for i in (vol, db, exp)], ["stop"] * 3)
        self.assertGreater(vol.end, db.end)
        self.assertGreater(db.end, exp.end)
        self.assertIsNotNone(removed, "beta kept the address after it stopped")
        self.assertGreater(removed, vol.end, "beta removed the address before its first "
                           "member stopped")
        epochs = {i.epoch for i in self.tenure("beta")}
        self.assertEqual(len(epochs), 1, f"beta's members ran under epochs {epochs}")
        report = checker.check(read_records(self.records_dir), groups=GROUP,
                               horizon=time.monotonic())
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertFalse(checker.log_problems("alpha", cluster.log("alpha"))
                         + checker.log_problems("beta", cluster.log("beta")))
