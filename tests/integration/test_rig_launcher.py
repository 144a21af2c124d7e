"""The launcher: real twistd daemons on 127.0.0.x, their configs, logs, faults and teardown."""

import os
import signal
import subprocess
import sys
import tomllib

from twisted.trial import unittest

from clsd.config import parse_config
from rig import tomlgen
from rig.faults.cleanup import Cleanups
from rig.faults.process import Pause, process_state
from rig.launcher import (
    health_checks_available,
    RIG_ENV, ConfigTemplate, Launcher, NodeSpec, merge, protected_service_part,
)
from clsd.polling import wait_for
from tests.support.fake_launcher import FakeLauncher
from tests.support.rig_support import require_tool


class TomlTests(unittest.TestCase):
    def test_round_trip(self):
        data = {
            "title": "x",
            "node": {"name": "a", "data_dir": "/tmp/d \"quoted\"", "n": 3, "f": 0.5},
            "service": [
                {"name": "s", "command": ["python3", "-c", "print('\\u00e9')"],
                 "env": {"A": "1", "WITH SPACE": "2"}, "shell": False,
                 "backoff": {"initial": 0.1}},
                {"name": "t", "command": ["true"]},
            ],
        }
        self.assertEqual(tomllib.loads(tomlgen.dumps(data)), data)

    def test_unsupported_values_are_refused(self):
        self.assertRaises(TypeError, tomlgen.dumps, {"a": object()})
        self.assertRaises(ValueError, tomlgen.dumps, {"a": float("nan")})


class TemplateTests(unittest.TestCase):
    def test_parts_merge_tables_and_concatenate_arrays(self):
        merged = merge([
            {"node": {"name": "a"}, "service": [{"name": "one"}]},
            {"node": {"data_dir": "/d"}, "service": [{"name": "two"}]},
        ])
        self.assertEqual(merged, {"node": {"name": "a", "data_dir": "/d"},
                                  "service": [{"name": "one"}, {"name": "two"}]})

    def test_default_template_is_a_valid_clsd_config(self):
        launcher = FakeLauncher()
        spec = NodeSpec(name="n1", address="127.0.0.101", directory="/rig/nodes/n1")
        template = ConfigTemplate().with_part(protected_service_part(http_port=8080))
        config = parse_config(template.render(spec, launcher), "generated")
        self.assertEqual((config.node.name, config.node.data_dir), ("n1", "/rig/nodes/n1/data"))
        service = config.service("protected")
        self.assertEqual(service.command[-2:], ("--http", "127.0.0.101:8080"))
        self.assertEqual(service.env["CLSD_CLUSTER"], "n1-solo")
        self.assertEqual(service.env[RIG_ENV], "rig")

    def test_a_later_part_extends_the_template(self):
        def quorum(node, launcher):
            return {"quorum": {"voters": ["n1"], "lease": 2.0}}

        text = ConfigTemplate().with_part(quorum).render(
            NodeSpec(name="n1", address="127.0.0.101", directory="/rig/n1"), FakeLauncher())
        self.assertEqual(tomllib.loads(text)["quorum"], {"voters": ["n1"], "lease": 2.0})


class LauncherTests(unittest.TestCase):
    """Today's daemon (no services wired yet) is enough to test the process handling."""

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def launcher(self, nodes=2, **kwargs):
        launcher = Launcher(self.mktemp(), nodes, cleanups=self.cleanups, **kwargs)
        self.addCleanup(launcher.teardown)
        return launcher

    def test_start_gives_each_node_its_address_files_and_log(self):
        launcher = self.launcher(["alpha", "beta"])
        launcher.start_all()
        first, second = (launcher.address(n) for n in ("alpha", "beta"))
        self.assertTrue(first.startswith("127.0.0."))
        self.assertEqual(int(second.rsplit(".", 1)[1]), int(first.rsplit(".", 1)[1]) + 1)
        for name in ("alpha", "beta"):
            node = launcher.node(name)
            self.assertTrue(node.running)
            with open(node.spec.config_path, "rb") as f:
                self.assertEqual(tomllib.load(f)["node"]["name"], name)
            wait_for(lambda: "twistd" in launcher.log_text(name), 10, what="the twistd banner")
            with open(f"/proc/{node.pid}/environ", "rb") as f:
                self.assertIn(f"{RIG_ENV}={launcher.rig_id}".encode(), f.read().split(b"\0"))
        self.assertEqual(launcher.log_problems(), [])

    def test_kill_pause_resume_restart(self):
        launcher = self.launcher(1)
        launcher.start("n1")
        first = launcher.node("n1").pid
        launcher.pause("n1")
        wait_for(lambda: process_state(first) == "T", 5, what="n1 stopped")
        launcher.resume("n1")
        wait_for(lambda: process_state(first) in ("S", "R"), 5, what="n1 running")
        self.assertEqual(launcher.kill("n1"), -signal.SIGKILL)
        self.assertFalse(launcher.node("n1").running)
        launcher.start("n1")
        self.assertNotEqual(launcher.node("n1").pid, first)
        launcher.restart("n1")
        self.assertEqual(launcher.node("n1").starts, 3)
        log = launcher.log_text("n1")
        self.assertEqual(log.count("==== clsd-rig: start #"), 3)
        self.assertIn("exited with -9", log)

    def test_stop_is_graceful(self):
        launcher = self.launcher(1)
        launcher.start("n1")
        status = launcher.stop("n1")
        self.assertIn(status, (0, -signal.SIGTERM))
        self.assertIn("Server Shut Down", launcher.log_text("n1"))

    def test_a_daemon_that_cannot_start_is_reported_with_its_log(self):
        def broken(node, launcher):
            return {"node": {"colour": "blue"}}

        launcher = self.launcher(1, template=ConfigTemplate().with_part(broken))
        e = self.assertRaises(RuntimeError, launcher.start, "n1")
        self.assertIn("node.colour: unknown key", str(e))

    def test_teardown_kills_paused_daemons_and_orphaned_services(self):
        launcher = self.launcher(2)
        launcher.start_all()
        launcher.pause("n2")
        # A service whose daemon died: it carries the rig's marker, nobody's child.
        orphan = subprocess.Popen(
            [sys.executable, "-m", "rig.protected_service",
             "--record", launcher.records_dir, "--node", "n1", "--cluster", "A"],
            env={**os.environ, RIG_ENV: launcher.rig_id, "CLSD_FAULTS_OWNER": str(os.getpid())},
        )
        self.addCleanup(orphan.wait)
        launcher.wait_running("n1")
        pids = [launcher.node(n).pid for n in ("n1", "n2")]
        launcher.teardown()
        self.assertIsNotNone(orphan.wait(10))
        for pid in pids:
            self.assertIsNone(process_state(pid))
        self.assertEqual(launcher.marked_processes(), [])
        # The orphan's death was observed and recorded before the collector stopped.
        [interval] = launcher.check().intervals
        self.assertEqual(interval.end_kind, "exit")
        self.assertEqual(self.cleanups.pending(), [])

    def test_faketime_node_runs_under_libfaketime(self):
        require_tool("faketime", "faketime")
        launcher = self.launcher(["plain", "faked"], faketime=["faked"])
        launcher.start_all()
        with open(f"/proc/{launcher.node('faked').pid}/environ", "rb") as f:
            environ = f.read().split(b"\0")
        self.assertIn(b"FAKETIME_DONT_FAKE_MONOTONIC=1", environ)
        self.assertTrue(any(e.startswith(b"LD_PRELOAD=") and b"faketime" in e for e in environ))
        launcher.clock_of("faked").set_offset(300)
        self.assertRaises(ValueError, launcher.clock_of, "plain")
        self.assertTrue(launcher.node("faked").running)

    def test_rigs_at_the_same_time_get_different_addresses(self):
        one = self.launcher(3)
        two = self.launcher(12)
        mine = {one.address(n) for n in one.nodes}
        theirs = {two.address(n) for n in two.nodes}
        self.assertEqual(mine & theirs, set())
        one.teardown()
        three = self.launcher(3)
        self.assertEqual({three.address(n) for n in three.nodes} & theirs, set())

    def test_spares_have_addresses_but_start_only_when_asked(self):
        launcher = self.launcher(["alpha"], spares=["j1"])
        self.assertEqual(launcher.spares, ("j1",))
        self.assertEqual(list(launcher.nodes), ["alpha", "j1"])
        self.assertNotEqual(launcher.address("j1"), launcher.address("alpha"))
        launcher.start_all()
        self.assertTrue(launcher.node("alpha").running)
        self.assertIsNone(launcher.node("j1").process)
        launcher.start("j1")
        self.assertTrue(launcher.node("j1").running)

    def test_addresses_stay_in_loopback(self):
        self.assertRaises(ValueError, Launcher, self.mktemp(), 10, first_address="127.0.0.250",
                          cleanups=self.cleanups)


class SupervisedServiceTests(unittest.TestCase):
    """Today's single-node supervision with the protected service: kill -9 it, see it return."""

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def test_killed_service_is_restarted_and_the_records_show_it(self):
        launcher = Launcher(
            self.mktemp(), ["alpha"], cleanups=self.cleanups,
            template=ConfigTemplate().with_part(protected_service_part()),
        )
        self.addCleanup(launcher.teardown)
        launcher.start("alpha")
        first = launcher.wait_running("alpha", "alpha-solo")
        os.kill(first.pid, signal.SIGKILL)
        second = launcher.wait_running("alpha", "alpha-solo", exclude={first.instance})
        self.assertNotEqual(second.pid, first.pid)
        launcher.stop("alpha")
        report = launcher.check()
        self.assertTrue(report.ok, [v.describe() for v in report.violations])
        ended = {i.instance: i for i in report.intervals}
        self.assertEqual(ended[first.instance].end_kind, "exit")
        self.assertLess(ended[first.instance].end, ended[second.instance].start)
        # The daemon stopped its service gracefully when it was stopped.
        self.assertEqual(ended[second.instance].end_kind, "stop")
        self.assertEqual(launcher.log_problems(), [])

    def test_hung_service_is_caught_by_its_health_check(self):
        if not health_checks_available():
            raise unittest.SkipTest("health checks are not merged yet (branch health)")
        launcher = Launcher(
            self.mktemp(), ["alpha"], cleanups=self.cleanups,
            template=ConfigTemplate().with_part(protected_service_part(http_port="auto")),
        )
        self.addCleanup(launcher.teardown)
        launcher.start("alpha")
        first = launcher.wait_running("alpha", "alpha-solo")
        Pause(first.pid, cleanups=self.cleanups)
        second = launcher.wait_running("alpha", "alpha-solo", exclude={first.instance},
                                       timeout=30)
        report = launcher.check()
        self.assertTrue(report.ok, [v.describe() for v in report.violations])
        ended = {i.instance: i for i in report.intervals}
        # Frozen, it could not write a stop record: its end is its observed death.
        self.assertEqual(ended[first.instance].end_kind, "exit")
        self.assertLess(ended[first.instance].end, second.start)
