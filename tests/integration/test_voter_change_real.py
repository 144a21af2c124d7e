"""Changing the voters from [a, b, c] to [a, b, c, d, e] one node at a time, on real daemons.

Five Daemons in this process on trial's reactor, each on its own 127.0.0.x
with mutual TLS; cluster A (a protected test service recording into a
lifeline directory) is registered on every node.  The procedure of
doc/operations.md: d and e start in the joint step, a, b, c are restarted
into it one at a time, then every node is restarted onto the new set one at
a time.  After every step A runs on exactly one node, the nodes see each
other (the hello no longer compares voters), and at the end the lifeline
checker proves A never ran twice and its epochs only grew.
"""

import os
import time

from twisted.internet import defer, reactor
from twisted.trial import unittest

from rig import checker
from rig.recorder import LifelineCollector, read_records
from tests.support.cluster_rig import ClusterRig, poll, protected_service
from clsd.admin.ownership_status import ownership_status

LEASE = 2.0
OLD = ["a", "b", "c"]
NEW = ["a", "b", "c", "d", "e"]
PRIORITY = {"a": 100, "b": 90, "c": 80, "d": 70, "e": 60}
BOUND = 30.0


class VoterChangeTests(unittest.TestCase):
    timeout = 300

    def setUp(self):
        self.rig = ClusterRig(self, NEW, reactor=reactor)
        self.records = os.path.join(self.rig.base, "records")
        os.makedirs(self.records)
        self.collector = LifelineCollector(self.records).start()
        self.addCleanup(self.collector.stop)

    def extra(self, name, voters, previous=None):
        quorum = {"voters": voters, "lease": LEASE, "drift_margin": 0.1}
        if previous is not None:
            quorum["previous_voters"] = previous
        return {"quorum": quorum,
                "service": [protected_service("system-a", self.records)],
                "cluster": [{"id": "A", "service": "system-a", "priority": PRIORITY[name]}]}

    @defer.inlineCallbacks
    def start(self, name, voters, previous=None):
        old = self.rig.daemons.get(name)
        if old is not None and old.running:
            yield old.stopService()
        daemon = self.rig.daemon(name, self.extra(name, voters, previous))
        daemon.startService()
        self.addCleanup(lambda: daemon.stopService() if daemon.running else None)
        yield daemon.ready

    def running(self):
        watched = self.collector.watched()
        return sorted(i.node for i in checker.intervals(read_records(self.records).records)
                      if i.cluster == "A" and i.end is None and i.instance in watched)

    @defer.inlineCallbacks
    def settled(self, step):
        live = [n for n, d in self.rig.daemons.items() if d.running]
        yield poll(reactor, lambda: self.rig.all_see(live, dict.fromkeys(live, "alive")),
                   BOUND, f"{step}: every node to see the others")
        yield poll(reactor, lambda: len(self.running()) == 1, BOUND,
                   f"{step}: A running on one node")
        for name in live:
            quorum = ownership_status(self.rig.daemons[name].ownership)["quorum"]
            self.assertEqual(quorum["voters_apart"], [], f"{step}: {name}")
        self.assertEqual(len(self.running()), 1, step)

    @defer.inlineCallbacks
    def test_three_to_five_voters_one_node_at_a_time(self):
        for name in OLD:
            yield self.start(name, OLD)
        yield self.settled("old set")
        for name in ("d", "e"):
            yield self.start(name, NEW, OLD)
        yield self.settled("new machines in the joint step")
        for name in OLD:
            yield self.start(name, NEW, OLD)
            yield self.settled(f"{name} in the joint step")
        for name in NEW:
            yield self.start(name, NEW)
            yield self.settled(f"{name} on the new set")
        report = checker.check(read_records(self.records), horizon=time.monotonic())
        self.assertEqual(report.overlaps, ())
        self.assertEqual(report.epoch_reuses, ())
        self.assertEqual(report.stale_actions, ())
        epochs = [i.epoch for i in sorted(checker.intervals(read_records(self.records).records),
                                          key=lambda i: i.start) if i.cluster == "A"]
        self.assertEqual(epochs, sorted(epochs))
        self.assertGreater(len(set(epochs)), 1, "A moved at least once during the change")
