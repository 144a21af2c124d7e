"""Three OwnershipServices in one process, real services, real lease guards, trial's reactor.

The nodes (alpha > beta > gamma for cluster A, all three voting) talk through
the in-memory network of L{tests.ownership.shell_support} (JSON round trip,
delivery on a later reactor turn; membership an oracle).  Each node runs the
protected test service (L{rig.protected_service}) under a real
L{ServiceRunner} and its own real lease guard.  The service writes a start,
heartbeats and a stop record with its CLSD_* identity; a lifeline collector
records every death; L{rig.checker} judges overlaps.

Bounded: every wait has a deadline; the test takes about 10 s.
"""

import os
import sys
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.clock import lease_clock
from clsd.events import EventLog
from clsd.ownership.service import OwnershipService
from clsd.supervision.pgroups import OSProcessGroups
from clsd.supervision.process import DiscardedOutput
from clsd.supervision.runner import ServiceRunner
from rig.checker import check
from rig.recorder import LifelineCollector, read_records
from clsd.polling import poll as wait_until
from tests.ownership.shell_support import MemoryNetwork, ownership_config

NODES = (("alpha", 300), ("beta", 200), ("gamma", 100))
LEASE = 2.0
MARGIN = 0.1

#: The guard's kill plus the lifeline's observation of the death, on a busy
#: shared machine.
KILL_BOUND = 0.1


class DeafGroups(OSProcessGroups):
    """A supervisor that cannot signal its service (stands in for a frozen daemon)."""

    def __init__(self):
        super().__init__()
        self.dropped = []

    def signal(self, pgid, signum):
        self.dropped.append((pgid, signum))
        return True


class ShellClusterTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.records = os.path.abspath(self.mktemp())
        os.makedirs(self.records)
        self.collector = LifelineCollector(self.records).start()
        self.net = MemoryNetwork(reactor, detection=0.3)
        self.nodes = {}
        self.addCleanup(self.teardown_cluster)

    def build(self, deaf=()):
        for name, priority in NODES:
            data_dir = os.path.abspath(self.mktemp())
            service = {
                "name": "svc",
                "command": [sys.executable, "-m", "rig.protected_service",
                            "--record", self.records, "--interval", "0.05"],
                "stop_timeout": 1.0,
            }
            cluster = {"id": "A", "service": "svc", "priority": priority}
            config = ownership_config(name, [n for n, _ in NODES], [cluster], data_dir,
                                      [service], lease=LEASE, drift_margin=MARGIN)
            events = EventLog()
            ownership = OwnershipService(config, reactor, events=events)
            groups = DeafGroups() if name in deaf else OSProcessGroups()
            svc = config.services[0]
            runner = ServiceRunner(svc, reactor, spawn=ownership.spawner(svc), groups=groups,
                                   events=events, output_factory=lambda logs: DiscardedOutput())
            ownership.attach(runner)
            runner.setServiceParent(ownership)
            arms = []
            guard_arm = ownership.guard.arm

            def logged_arm(pgid, deadline, label=None, arms=arms, guard_arm=guard_arm):
                # The deadline on the recorder's clock (time.monotonic), not the lease clock.
                arms.append((time.monotonic(), pgid, deadline + time.monotonic() - lease_clock()))
                return guard_arm(pgid, deadline, label)
            ownership.guard.arm = logged_arm
            self.net.add(name, ownership)
            self.nodes[name] = {"ownership": ownership, "runner": runner, "events": events,
                                "arms": arms, "groups": groups}
        for node in self.nodes.values():
            node["ownership"].startService()
            node["ownership"].activate()

    @defer.inlineCallbacks
    def teardown_cluster(self):
        self.net.close()
        yield defer.DeferredList([n["ownership"].stopService() for n in self.nodes.values()])
        yield task.deferLater(reactor, 0.05, lambda: None)
        self.collector.wait_idle(5)
        self.collector.stop()

    def starts(self):
        return [r for r in read_records(self.records).records if r.kind == "start"]

    async def wait_for_start(self, node, timeout=15):
        await wait_until(reactor, lambda: any(r.node == node for r in self.starts()),
                         timeout=timeout)
        return [r for r in self.starts() if r.node == node][0]

    async def finish(self):
        """Stop everything and judge the records."""
        self.net.close()
        await defer.DeferredList([n["ownership"].stopService() for n in self.nodes.values()])
        self.assertTrue(self.collector.wait_idle(5), "an instance outlived its daemon")
        records = read_records(self.records)
        self.assertEqual(records.problems, ())
        report = check(records)
        self.assertEqual(report.overlaps, (), [o.describe() for o in report.overlaps])
        self.assertTrue(report.ok, [v.describe() for v in report.violations])
        return report

    def test_owner_cut_off_stops_before_its_lease_ends_then_the_next_starts(self):
        return defer.ensureDeferred(self._cut_off())

    async def _cut_off(self):
        self.build()
        first = await self.wait_for_start("alpha")
        self.assertEqual(first.cluster, "A")
        self.assertIsInstance(first.epoch, int)
        await task.deferLater(reactor, 1.0, lambda: None)  # a few renewals
        states = {name: ownership_status(node["ownership"])["clusters"][0]["state"]
                  for name, node in self.nodes.items()}
        # The successor polls alpha's lease (its phase is "acquiring"): it stands by.
        self.assertEqual(states, {"alpha": "running", "beta": "standing-by",
                                  "gamma": "standing-by"})
        alpha = self.nodes["alpha"]
        pid = alpha["runner"].pid
        self.assertEqual(pid, first.pid)
        cut_at = time.monotonic()
        self.net.isolate("alpha")
        second = await self.wait_for_start("beta")
        await task.deferLater(reactor, 0.5, lambda: None)
        report = await self.finish()
        [a, b] = report.intervals[:2]
        self.assertEqual((a.node, b.node), ("alpha", "beta"))
        self.assertEqual(a.end_kind, "stop", "alpha's service stopped on SIGTERM")
        deadline = max(d for _, p, d in alpha["arms"] if p == pid)
        self.assertLess(a.end, deadline, "stopped before its own lease deadline")
        self.assertGreater(b.start, a.end)
        self.assertGreater(second.epoch, first.epoch)
        self.assertEqual(alpha["ownership"].guard.kills, [])
        self.assertNotIn("gamma", [i.node for i in report.intervals])
        print(f"\n  cut -> alpha stopped {a.end - cut_at:.3f}s (deadline "
              f"{deadline - cut_at:.3f}s), beta started {b.start - cut_at:.3f}s; "
              f"gap {b.start - a.end:.3f}s")

    def test_guard_kills_at_the_deadline_when_the_supervisor_cannot(self):
        return defer.ensureDeferred(self._deaf())

    async def _deaf(self):
        self.build(deaf=("alpha",))
        first = await self.wait_for_start("alpha")
        await task.deferLater(reactor, 0.5, lambda: None)
        alpha = self.nodes["alpha"]
        pid = alpha["runner"].pid
        self.net.isolate("alpha")
        await self.wait_for_start("beta")
        await task.deferLater(reactor, 0.3, lambda: None)
        report = await self.finish()
        [a, b] = report.intervals[:2]
        self.assertEqual((a.node, b.node), ("alpha", "beta"))
        self.assertEqual(a.pid, first.pid)
        self.assertEqual(a.end_kind, "exit", "no stop record: SIGTERM never reached it")
        self.assertIn(("A"), [label for _, label, _ in alpha["ownership"].guard.kills])
        [(pgid, _, late)] = alpha["ownership"].guard.kills
        self.assertEqual(pgid, pid)
        self.assertLess(late, KILL_BOUND)
        deadline = max(d for _, p, d in alpha["arms"] if p == pid)
        self.assertLess(a.end, deadline + KILL_BOUND)
        self.assertGreater(b.start, a.end)
        self.assertTrue(alpha["groups"].dropped, "the supervisor did try to signal")
        print(f"\n  guard killed alpha's service {late * 1000:.1f} ms after the deadline; "
              f"beta started {b.start - a.end:.3f}s after alpha's service died")
