"""``type = "forking"`` on real processes: a double-forking daemon with a pidfile.

The daemon is tests/support/forking_daemon.py (start command returns at once; the
main process is a setsid'd grandchild with a worker). Run under cgroup
containment when this host has writable cgroups (root), else skipped (must
run under CI=true).
"""

import json
import os
import signal
import sys

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.supervision.forking import read_pidfile
from clsd.supervision.pgroups import pid_alive
from clsd.polling import poll
from tests.support import forking_daemon
from tests.integration.test_containment_real import require_cgroups

SCRIPT = os.path.abspath(forking_daemon.__file__)


class ForkingDaemonTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.data_dir = os.path.join(self.base, "data")
        self.pidfile = os.path.join(self.base, "main.pid")
        self.marker = os.path.join(self.base, "stopped")
        self.daemon = None

    def config_text(self, **extra):
        extra = {"stop_timeout": 3.0, "start_timeout": 10.0, **extra}
        lines = [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
        return "\n".join([
            "[node]", 'name = "alpha"', f"data_dir = {json.dumps(self.data_dir)}", "",
            "[[service]]", 'name = "fork"', 'type = "forking"',
            f"command = {json.dumps([sys.executable, SCRIPT, 'start', self.pidfile])}",
            f"pidfile = {json.dumps(self.pidfile)}", 'restart = "always"',
            *lines, ""])

    @defer.inlineCallbacks
    def start(self, **extra):
        self.tree = require_cgroups(self, "alpha", self.data_dir)
        config = parse_config(self.config_text(**extra), "<test>")
        self.daemon = Daemon(config, reactor)
        self.daemon.startService()
        self.addCleanup(self.stop_daemon)
        yield self.daemon.ready
        runner = self.daemon.supervisor("fork")
        yield poll(reactor, lambda: runner.state.value == "running", 20, what="running")
        return runner

    def stop_daemon(self):
        if self.daemon is not None and self.daemon.running:
            return self.daemon.stopService()

    def reasons(self):
        return [e["reason"] for e in self.daemon.events.recent()]

    @defer.inlineCallbacks
    def test_running_means_the_main_process_from_the_pidfile(self):
        runner = yield self.start()
        main = read_pidfile(self.pidfile)
        status = runner.status()
        self.assertEqual(status["type"], "forking")
        self.assertEqual(status["main_pid"], main)
        self.assertEqual(status["pid"], main)
        self.assertEqual(status["processes"], 2)  # the main process and its worker
        self.assertIn(f"main process pid={main}", self.reasons())
        from clsd.admin.daemon_backend import DaemonBackend

        (info,) = DaemonBackend(self.daemon).services()
        self.assertEqual((info.type, info.main_pid, info.processes), ("forking", main, 2))

    @defer.inlineCallbacks
    def test_a_crash_of_the_main_process_restarts_it(self):
        runner = yield self.start()
        main = read_pidfile(self.pidfile)
        os.remove(self.pidfile)
        os.kill(main, signal.SIGKILL)
        new = yield poll(reactor, lambda: runner.state.value == "running"
                         and runner.status()["main_pid"] not in (None, main)
                         and runner.status()["main_pid"], 20, what="the restarted main process")
        self.assertTrue(pid_alive(new))
        self.assertFalse(pid_alive(main))
        self.assertEqual(runner.status()["restarts"], 1)
        self.assertIn(f"main process pid={main} exited; stopping the rest of its process group",
                      self.reasons())
        self.assertEqual(runner.status()["processes"], 2, "the old worker was stopped")

    @defer.inlineCallbacks
    def test_stop_signals_the_main_process_and_empties_the_cgroup(self):
        runner = yield self.start()
        main = read_pidfile(self.pidfile)
        yield runner.stop()
        self.assertEqual(runner.state.value, "stopped")
        self.assertFalse(pid_alive(main))
        self.assertFalse(os.path.exists(self.pidfile), "it was not stopped by SIGTERM")
        self.assertEqual(runner.status()["processes"], 0)

    @defer.inlineCallbacks
    def test_the_stop_command_stops_it(self):
        runner = yield self.start(stop_command=[sys.executable, SCRIPT, "stop", self.pidfile,
                                                self.marker])
        main = read_pidfile(self.pidfile)
        yield runner.stop()
        self.assertFalse(pid_alive(main))
        self.assertTrue(os.path.exists(self.marker), "the stop command did not run")
        self.assertIn("stop command exited code=0", self.reasons())

    @defer.inlineCallbacks
    def test_a_failing_stop_command_escalates_to_kill(self):
        runner = yield self.start(stop_command=[sys.executable, SCRIPT, "fail"],
                                  stop_timeout=30.0)
        main = read_pidfile(self.pidfile)
        started = reactor.seconds()
        yield runner.stop()
        self.assertFalse(pid_alive(main))
        self.assertLess(reactor.seconds() - started, 10, "it waited for stop_timeout")
        self.assertTrue(os.path.exists(self.pidfile), "SIGKILL leaves the pidfile")
        self.assertIn("stop command exited code=1: SIGKILL to the service", self.reasons())

    @defer.inlineCallbacks
    def test_without_pidfile_the_cgroup_emptying_is_the_end(self):
        self.tree = require_cgroups(self, "alpha", self.data_dir)
        text = self.config_text().replace(f"pidfile = {json.dumps(self.pidfile)}\n", "")
        self.daemon = Daemon(parse_config(text, "<test>"), reactor)
        self.daemon.startService()
        self.addCleanup(self.stop_daemon)
        yield self.daemon.ready
        runner = self.daemon.supervisor("fork")
        yield poll(reactor, lambda: runner.state.value == "running", 20, what="running")
        self.assertIsNone(runner.status()["main_pid"])
        first = yield poll(reactor, lambda: read_pidfile(self.pidfile), 10, what="the daemon")
        os.remove(self.pidfile)
        os.kill(first, signal.SIGKILL)  # its worker goes on: the service is not over yet
        yield poll(reactor, lambda: not pid_alive(first), 5, what="the kill")
        self.assertEqual(runner.status()["restarts"], 0)
        for pid in list(runner.containment._fs.pids_below(runner.cgroup)):
            os.kill(pid, signal.SIGKILL)
        yield poll(reactor, lambda: runner.status()["restarts"] == 1
                   and read_pidfile(self.pidfile), 20, what="the restart")
        self.assertIn("its cgroup is empty", self.reasons())
