"""Tests for L{clsd.supervision.orphans}: group records and reaping leftovers."""

import json
import os
import signal
import subprocess

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.events import EventLog
from clsd.supervision.orphans import GroupRegistry, reap_leftovers
from clsd.supervision.pgroups import OSProcessGroups, group_alive


class FakeGroups:
    def __init__(self, alive=(), obey=True):
        self.live = set(alive)
        self.obey = obey
        self.signals = []

    def alive(self, pgid):
        return pgid in self.live

    def signal(self, pgid, signum):
        self.signals.append((pgid, signum))
        if self.obey or signum == signal.SIGKILL:
            self.live.discard(pgid)
        return True


def make_registry(test, identities=None, boot="boot-1"):
    identities = identities if identities is not None else {}
    registry = GroupRegistry(test.mktemp(), identity=lambda pid: identities.get(pid),
                             boot=lambda: boot)
    return registry, identities


class RegistryTests(unittest.TestCase):
    def test_add_records_identity_and_remove(self):
        registry, identities = make_registry(self, {10: "start-A"})
        record = registry.add("web", 10, "INT", 4.0)
        self.assertEqual(record.leader_start, "start-A")
        self.assertEqual(record.boot, "boot-1")
        self.assertEqual(record.daemon_pid, os.getpid())
        with open(os.path.join(registry.directory, "10.json")) as f:
            self.assertEqual(json.load(f)["service"], "web")
        self.assertEqual(registry.records(), [record])
        registry.remove(10)
        registry.remove(10)  # twice is fine
        self.assertEqual(registry.records(), [])

    def test_no_directory_means_no_records(self):
        registry, _ = make_registry(self)
        self.assertEqual(registry.records(), [])

    def test_corrupt_and_partial_files_are_dropped(self):
        registry, _ = make_registry(self)
        os.makedirs(registry.directory)
        for name, text in (("1.json", "{not json"), ("2.json", '{"pgid": 2}'),
                           ("3.json.tmp", "{")):
            with open(os.path.join(registry.directory, name), "w") as f:
                f.write(text)
        self.assertEqual(registry.records(), [])
        self.assertEqual(os.listdir(registry.directory), [])
        self.flushLoggedErrors()

    def test_classify(self):
        registry, identities = make_registry(self, {10: "A", 11: "B", 12: "C", 13: "D"})
        for pgid in (10, 11, 12, 13):
            registry.add("web", pgid)
        identities[11] = "B-reused"
        del identities[13]
        groups = FakeGroups(alive={10, 11, 13})
        verdicts = {r.pgid: registry.classify(r, groups) for r in registry.records()}
        self.assertEqual(verdicts, {
            10: (True, "still running"),
            11: (False, "its pid now belongs to another process"),
            12: (False, "already gone"),
            13: (True, "still running"),  # leader gone, members alive
        })

    def test_classify_other_boot(self):
        registry, _ = make_registry(self, {10: "A"})
        record = registry.add("web", 10)
        registry._boot = lambda: "boot-2"
        self.assertEqual(registry.classify(record, FakeGroups(alive={10})),
                         (False, "recorded before the last reboot"))


class ReapTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.events = EventLog(monotonic=self.clock.seconds)

    def reap(self, registry, groups, **kwargs):
        return reap_leftovers(registry, self.clock, groups, self.events,
                              monotonic=self.clock.seconds, **kwargs)

    def reasons(self):
        return [(e["subject"], e["reason"]) for e in self.events.recent()]

    def test_nothing_to_reap(self):
        registry, _ = make_registry(self)
        self.assertEqual(self.successResultOf(self.reap(registry, FakeGroups())), [])

    def test_stop_signal_then_gone(self):
        registry, _ = make_registry(self, {10: "A"})
        registry.add("web", 10, "INT", 10.0)
        groups = FakeGroups(alive={10})
        d = self.reap(registry, groups)
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual(groups.signals, [(10, signal.SIGINT)])
        self.assertEqual(registry.records(), [])
        self.assertEqual(self.reasons(), [
            ("web", "terminating leftover process group 10 of a previous run (SIGINT)"),
            ("web", "leftover process group 10 is gone"),
        ])

    def test_sigkill_after_bounded_timeout(self):
        registry, _ = make_registry(self, {10: "A", 20: "B"})
        registry.add("web", 10, "TERM", 10.0)
        registry.add("db", 20, "TERM", 1.0)
        groups = FakeGroups(alive={10, 20}, obey=False)
        d = self.reap(registry, groups, stop_timeout=5.0)
        self.clock.advance(0.99)
        self.assertEqual(groups.signals, [(10, signal.SIGTERM), (20, signal.SIGTERM)])
        self.clock.pump([0.02] * 5)
        self.assertIn((20, signal.SIGKILL), groups.signals, "db's own stop_timeout")
        self.assertNotIn((10, signal.SIGKILL), groups.signals)
        self.clock.pump([0.02] * 250)
        self.assertIn((10, signal.SIGKILL), groups.signals, "capped at 5 s")
        self.clock.advance(0.02)
        self.assertEqual(self.successResultOf(d), [])

    def test_unkillable_group_is_reported(self):
        registry, _ = make_registry(self, {10: "A"})
        registry.add("web", 10, "TERM", 1.0)
        groups = FakeGroups(alive={10})
        groups.signal = lambda pgid, signum: True  # nothing dies
        d = self.reap(registry, groups, kill_wait=2.0)
        self.clock.pump([0.1] * 40)
        (stuck,) = self.successResultOf(d)
        self.assertEqual(stuck.pgid, 10)
        self.assertIn("still present 2s after SIGKILL", self.reasons()[-1][1])

    def test_dead_and_reused_records_are_dropped_untouched(self):
        registry, identities = make_registry(self, {10: "A", 11: "B"})
        registry.add("web", 10)
        registry.add("db", 11)
        identities[11] = "someone else"
        groups = FakeGroups(alive={11})
        self.assertEqual(self.successResultOf(self.reap(registry, groups)), [])
        self.assertEqual(groups.signals, [])
        self.assertEqual(registry.records(), [])


class RealReapTests(unittest.TestCase):
    """A real leftover group (leader and a child) terminated through the real OS."""

    timeout = 30

    @defer.inlineCallbacks
    def test_reaps_a_real_group(self):
        registry = GroupRegistry(self.mktemp())
        leader = subprocess.Popen(["sh", "-c", "sleep 60 & wait"], process_group=0)
        self.addCleanup(lambda: leader.poll() is None and leader.kill())
        registry.add("web", leader.pid)
        events = EventLog()
        stuck = yield reap_leftovers(registry, reactor, OSProcessGroups(), events)
        leader.wait()
        self.assertEqual(stuck, [])
        self.assertFalse(group_alive(leader.pid))
        self.assertEqual(registry.records(), [])
