"""Tests for L{clsd.daemon.Daemon} wiring and start-up order, on a Clock with fakes."""

import io
import os
import signal
import sys

from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd import tap
from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.supervision.containment import ProcessGroupContainment
from tests.supervision.test_runner import FakeOS

CONFIG = """
[node]
name = "alpha"
data_dir = "{data_dir}"

[[service]]
name = "web"
command = ["server"]

[[service]]
name = "db"
command = ["database"]
"""


class FakeGroups:
    """Leftover groups of a previous run: die on SIGKILL only (or never)."""

    def __init__(self, live, killable=True):
        self.live = set(live)
        self.killable = killable
        self.signals = []

    def alive(self, pgid):
        return pgid in self.live

    def signal(self, pgid, signum):
        self.signals.append((pgid, signum))
        if signum == signal.SIGKILL and self.killable:
            self.live.discard(pgid)
        return True


class DaemonTests(unittest.TestCase):
    def make(self, leftovers=(), killable=True):
        self.data_dir = os.path.abspath(self.mktemp())
        config = parse_config(CONFIG.format(data_dir=self.data_dir))
        self.clock = Clock()
        self.groups = FakeGroups(leftovers, killable)
        daemon = Daemon(config, self.clock, groups=self.groups, monotonic=self.clock.seconds)
        daemon.registry._identity = lambda pid: "same"
        daemon.registry._boot = lambda: "boot"
        for pgid in leftovers:
            daemon.registry.add("web", pgid, "TERM", 1.0)
        self.os = FakeOS()
        for runner in daemon.supervisors():
            runner._spawn = self.os.spawn
            runner.containment = ProcessGroupContainment(self.os)
            runner._output_factory = lambda logs: _NullOutput()
        self.daemon = daemon
        return daemon

    def test_supervisor_lookup(self):
        daemon = self.make()
        self.assertEqual(daemon.supervisor("web").service_name, "web")
        self.assertEqual([r.service_name for r in daemon.supervisors()], ["db", "web"])
        e = self.assertRaises(KeyError, daemon.supervisor, "nope")
        self.assertIn("no service named 'nope' (services: db, web)", str(e))

    def test_starts_every_service(self):
        daemon = self.make()
        daemon.startService()
        self.successResultOf(daemon.ready)
        self.assertEqual(len(self.os.spawned), 2)
        self.assertEqual({r.status()["state"] for r in daemon.supervisors()}, {"running"})
        self.assertTrue(os.path.exists(os.path.join(self.data_dir, "events.jsonl")))
        stopped = daemon.stopService()
        self.successResultOf(stopped)
        self.assertEqual(self.os.live, 0)
        self.assertEqual(daemon.events.recent(1)[0]["reason"], "stopped")

    def test_services_start_only_after_leftovers_are_gone(self):
        daemon = self.make(leftovers=[77])
        daemon.startService()
        self.assertEqual(self.groups.signals, [(77, signal.SIGTERM)])
        self.assertNoResult(daemon.ready)
        self.clock.pump([0.02] * 49)
        self.assertEqual(self.os.spawned, [], "nothing starts while 77 lives")
        self.clock.pump([0.02] * 2)
        self.assertIn((77, signal.SIGKILL), self.groups.signals)
        self.successResultOf(daemon.ready)
        self.assertEqual(len(self.os.spawned), 2)
        self.assertEqual(daemon.registry.records()[0].pgid, self.os.spawned[0])
        self.successResultOf(daemon.stopService())

    def test_unkillable_leftover_blocks_only_its_service(self):
        daemon = self.make(leftovers=[77], killable=False)
        daemon.startService()
        self.clock.pump([0.1] * 70)
        self.successResultOf(daemon.ready)
        self.assertEqual(daemon.supervisor("web").status()["state"], "stopped")
        self.assertEqual(daemon.supervisor("db").status()["state"], "running")
        self.assertIn("not starting web: a process group of its previous run is still present",
                      [e["reason"] for e in daemon.events.recent()])
        self.successResultOf(daemon.stopService())

    def test_stop_while_reaping_starts_nothing(self):
        daemon = self.make(leftovers=[77])
        daemon.startService()
        stopped = daemon.stopService()
        self.assertNoResult(stopped)
        self.clock.pump([0.1] * 20)
        self.successResultOf(stopped)
        self.assertEqual(self.os.spawned, [])


class _NullOutput:
    def out(self, data):
        pass

    err = out

    def close(self):
        pass


class TapTests(unittest.TestCase):
    def test_unusable_data_dir_is_a_clear_error(self):
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        blocker = os.path.join(base, "file")
        with open(blocker, "w"):
            pass
        config_path = os.path.join(base, "clsd.toml")
        with open(config_path, "w") as f:
            f.write(f'[node]\nname = "a"\ndata_dir = "{blocker}/data"\n')
        options = tap.Options()
        options.parseOptions(["--config", config_path])
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertEqual(e.code, 2)
        self.assertEqual(
            stderr.getvalue(),
            f"clsd: {config_path}: node.data_dir: cannot use '{blocker}/data': "
            "Not a directory\n")

    def test_make_service_builds_a_daemon(self):
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        config_path = os.path.join(base, "clsd.toml")
        with open(config_path, "w") as f:
            f.write(f'[node]\nname = "a"\ndata_dir = "{base}/data"\n'
                    '[[service]]\nname = "s"\ncommand = ["true"]\n')
        options = tap.Options()
        options.parseOptions(["--config", config_path])
        daemon = tap.makeService(options)
        self.assertEqual(daemon.supervisor("s").status()["state"], "stopped")
        self.assertTrue(os.path.isdir(os.path.join(base, "data")))


class ReloadInterfaceTests(unittest.TestCase):
    """A reload that gives a cluster a floating address on a missing interface is refused."""

    def test_a_missing_interface_refuses_the_reload(self):
        from clsd.daemon import ReloadError
        from tests.config.test_ownership import QUORUM3, parse

        config = parse(QUORUM3 + '[[cluster]]\nid = "A"\nservice = "web"\n'
                       'address = ["192.0.2.10/24"]\ninterface = "eth9"\n')
        e = self.assertRaises(ReloadError, Daemon._check_interfaces, None, config, ["lo"])
        self.assertIn("cluster[0].interface: there is no interface 'eth9'", str(e))
        Daemon._check_interfaces(None, config, ["lo", "eth9"])  # there: accepted
