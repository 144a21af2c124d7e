"""Real processes, the real reactor: the daemon supervising actual services.

Every wait is bounded; services are small Python scripts written into the
test's temporary directory; nothing listens on the network.
"""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.supervision.pgroups import group_alive
from clsd.polling import poll

#: A service that appends "start PID" to a journal, "stop PID" when it gets
#: SIGTERM, and otherwise does what its mode says.
SERVICE = textwrap.dedent("""\
    import os, signal, subprocess, sys, time
    journal, mode = sys.argv[1], sys.argv[2]
    def note(what):
        with open(journal, "a") as f:
            f.write(f"{what} {os.getpid()}\\n")
    def on_term(signum, frame):
        note("stop")
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    note("start")
    if mode == "crash":
        time.sleep(float(sys.argv[3]))
        sys.exit(1)
    if mode == "clean":
        sys.exit(0)
    if mode == "crash-unless":
        if os.path.exists(sys.argv[3]):
            while True:
                time.sleep(1)
        sys.exit(1)
    if mode == "grandchild":
        # A member of the group that takes its time over SIGTERM (or ignores it).
        subprocess.Popen([sys.executable, "-c", sys.argv[3], sys.argv[4]])
    while True:
        time.sleep(1)
""")

#: A grandchild that needs 0.5 s after SIGTERM before it exits.
SLOW_GRANDCHILD = textwrap.dedent("""\
    import signal, sys, time
    marker = sys.argv[1]
    def on_term(signum, frame):
        time.sleep(0.5)
        open(marker, "w").close()
        sys.exit(0)
    signal.signal(signal.SIGTERM, on_term)
    open(marker + ".ready", "w").close()
    while True:
        time.sleep(1)
""")

#: A grandchild that ignores SIGTERM entirely.
DEAF_GRANDCHILD = textwrap.dedent("""\
    import signal, sys, time
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    open(sys.argv[1] + ".ready", "w").close()
    while True:
        time.sleep(1)
""")


def toml_list(items):
    return "[" + ", ".join(json.dumps(str(i)) for i in items) + "]"


def wait_for(predicate, timeout=15.0, interval=0.02, what="condition"):
    """Poll C{predicate} on the reactor until true; fail after C{timeout} seconds."""
    return poll(reactor, predicate, timeout, what, interval)


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class Workspace:
    """A temporary data_dir, the service script and the journal."""

    def __init__(self, test):
        self.base = os.path.abspath(test.mktemp())
        os.makedirs(self.base)
        self.data_dir = os.path.join(self.base, "data")
        self.script = os.path.join(self.base, "service.py")
        with open(self.script, "w") as f:
            f.write(SERVICE)
        self.journal = os.path.join(self.base, "journal")

    def path(self, name):
        return os.path.join(self.base, name)

    def command(self, mode, *args):
        return toml_list([sys.executable, self.script, self.journal, mode, *args])

    def config_text(self, services):
        return f'[node]\nname = "alpha"\ndata_dir = {json.dumps(self.data_dir)}\n' + services

    def entries(self):
        try:
            with open(self.journal) as f:
                return [tuple(line.split()) for line in f]
        except FileNotFoundError:
            return []

    def starts(self):
        return [int(pid) for what, pid in self.entries() if what == "start"]

    def events(self):
        try:
            with open(os.path.join(self.data_dir, "events.jsonl")) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []


class DaemonTests(unittest.TestCase):
    """The Daemon in this process, on trial's real reactor."""

    timeout = 60

    def setUp(self):
        self.ws = Workspace(self)
        self.daemon = None

    @defer.inlineCallbacks
    def start(self, services):
        config = parse_config(self.ws.config_text(services), "<test>")
        self.daemon = Daemon(config, reactor)
        self.daemon.startService()
        self.addCleanup(self.stop_daemon)
        yield self.daemon.ready
        return self.daemon

    def stop_daemon(self):
        if self.daemon is not None and self.daemon.running:
            return self.daemon.stopService()

    def status(self, name="svc"):
        return self.daemon.supervisor(name).status()

    def reasons(self, kind, subject="svc"):
        return [e["reason"] for e in self.daemon.events.recent()
                if e["kind"] == kind and e["subject"] == subject]

    @defer.inlineCallbacks
    def test_crashing_service_is_restarted(self):
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("crash", "0.3")}
""")
        yield wait_for(lambda: len(self.ws.starts()) >= 2, what="a restart")
        first, second = self.ws.starts()[:2]
        self.assertNotEqual(first, second)
        self.assertFalse(group_alive(first))
        self.assertIn("exited code=1", self.reasons("exited"))
        self.assertGreaterEqual(self.status()["restarts"], 1)
        yield self.daemon.stopService()
        self.assertEqual(self.status()["state"], "stopped")
        for pid in self.ws.starts():
            self.assertFalse(group_alive(pid), f"group {pid} survived the stop")
        # The output went to the default log file in data_dir.
        self.assertTrue(os.path.exists(os.path.join(self.ws.data_dir, "logs", "svc.log")))

    @defer.inlineCallbacks
    def test_backoff_grows(self):
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("crash", "0")}
backoff = {{ initial = 0.2, max = 5.0, factor = 2.0, jitter = 0.0 }}
crash_loop = {{ max_failures = 20, window = 60.0 }}
""")
        yield wait_for(lambda: len(self.reasons("spawned")) >= 5, what="five spawns")
        spawned = [e["mono"] for e in self.daemon.events.recent()
                   if e["kind"] == "spawned" and e["subject"] == "svc"][:5]
        exited = [e["mono"] for e in self.daemon.events.recent()
                  if e["kind"] == "exited" and e["subject"] == "svc"][:4]
        waits = [s - e for e, s in zip(exited, spawned[1:])]
        # Restart 1 is immediate; then 0.2, 0.4, 0.8 s (generous slack for a
        # loaded machine: the lower bounds are what prove the backoff).
        self.assertLess(waits[0], 0.15, waits)
        for wait, expected in zip(waits[1:], (0.2, 0.4, 0.8)):
            self.assertGreaterEqual(wait, expected - 0.01, waits)
            self.assertLess(wait, expected + 0.5, waits)

    @defer.inlineCallbacks
    def test_crash_loop_fails_and_reset_revives(self):
        healthy = self.ws.path("healthy")
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("crash-unless", healthy)}
backoff = {{ initial = 0.05, max = 0.1, jitter = 0.0 }}
crash_loop = {{ max_failures = 3, window = 60.0 }}
""")
        yield wait_for(lambda: self.status()["state"] == "failed", what="FAILED")
        self.assertEqual(self.status()["last_reason"], "crash-loop 3 in 60s")
        self.assertEqual(len(self.ws.starts()), 3)
        yield sleep(0.3)
        self.assertEqual(len(self.ws.starts()), 3, "FAILED means no more restarts")
        open(healthy, "w").close()
        self.daemon.supervisor("svc").reset()
        yield wait_for(lambda: len(self.ws.starts()) == 4, what="the revival")
        yield sleep(0.3)
        self.assertEqual(self.status()["state"], "running")
        self.assertTrue(group_alive(self.ws.starts()[-1]))

    @defer.inlineCallbacks
    def test_stop_waits_for_grandchildren(self):
        marker = self.ws.path("grandchild-exited")
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("grandchild", SLOW_GRANDCHILD, marker)}
stop_timeout = 5.0
""")
        yield wait_for(lambda: os.path.exists(marker + ".ready"), what="the grandchild")
        (leader,) = self.ws.starts()
        started = time.monotonic()
        yield self.daemon.supervisor("svc").stop()
        self.assertTrue(os.path.exists(marker), "stop fired before the grandchild exited")
        self.assertGreaterEqual(time.monotonic() - started, 0.45)
        self.assertFalse(group_alive(leader))
        self.assertEqual(self.status()["state"], "stopped")

    @defer.inlineCallbacks
    def test_stop_kills_a_grandchild_that_ignores_term(self):
        marker = self.ws.path("deaf")
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("grandchild", DEAF_GRANDCHILD, marker)}
stop_timeout = 1.0
""")
        yield wait_for(lambda: os.path.exists(marker + ".ready"), what="the grandchild")
        (leader,) = self.ws.starts()
        started = time.monotonic()
        yield self.daemon.supervisor("svc").stop()
        elapsed = time.monotonic() - started
        self.assertFalse(group_alive(leader))
        self.assertGreaterEqual(elapsed, 0.95)
        self.assertLess(elapsed, 4.0)
        self.assertTrue(any("SIGKILL to process group" in r for r in self.reasons("kill")))

    @defer.inlineCallbacks
    def test_clean_exit_under_on_failure_is_not_restarted(self):
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("clean")}
restart = "on-failure"
""")
        yield wait_for(lambda: self.status()["state"] == "exited", what="EXITED")
        yield sleep(0.5)
        self.assertEqual(len(self.ws.starts()), 1)
        self.assertEqual(self.status()["last_reason"], "exited code=0")

    @defer.inlineCallbacks
    def test_every_transition_is_in_events_jsonl(self):
        yield self.start(f"""
[[service]]
name = "svc"
command = {self.ws.command("crash", "0.2")}
""")
        yield wait_for(lambda: len(self.ws.starts()) >= 2, what="a restart")
        yield self.daemon.stopService()
        lines = self.ws.events()
        kinds = [(e["kind"], e["subject"]) for e in lines]
        self.assertEqual(kinds[0], ("daemon", "alpha"))
        self.assertIn(("exited", "svc"), kinds)
        self.assertEqual(lines[-1]["reason"], "stopped")
        monos = [e["mono"] for e in lines]
        self.assertEqual(monos, sorted(monos))
        self.assertEqual(os.listdir(os.path.join(self.ws.data_dir, "pgroups")), [],
                         "every group record is removed when the group is gone")


class TwistdTests(unittest.TestCase):
    """``twistd -n clsd`` as a real subprocess."""

    timeout = 90

    def setUp(self):
        self.ws = Workspace(self)
        self.config = self.ws.path("clsd.toml")
        self.write_config()
        self.daemons = []
        self.addCleanup(self.cleanup)

    def write_config(self, containment="auto"):
        with open(self.config, "w") as f:
            f.write(self.ws.config_text(f"""
[[service]]
name = "svc"
command = {self.ws.command("grandchild", DEAF_GRANDCHILD, self.ws.path("gc"))}
stop_timeout = 2.0
containment = "{containment}"
"""))

    def twistd(self):
        log = open(self.ws.path(f"twistd-{len(self.daemons)}.log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "clsd", "--config", self.config],
            cwd=self.ws.base, stdout=log, stderr=subprocess.STDOUT,
        )
        self.daemons.append(process)
        return process

    def cleanup(self):
        for process in self.daemons:
            if process.poll() is None:
                process.kill()
                process.wait()
        for pid in self.ws.starts():
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    @defer.inlineCallbacks
    def wait_exit(self, process, timeout=20.0):
        yield wait_for(lambda: process.poll() is not None, timeout, what="twistd to exit")
        return process.returncode

    @defer.inlineCallbacks
    def test_sigterm_stops_every_service(self):
        daemon = self.twistd()
        yield wait_for(lambda: os.path.exists(self.ws.path("gc.ready")), 30,
                       what="the service and its grandchild")
        (leader,) = self.ws.starts()
        daemon.send_signal(signal.SIGTERM)
        code = yield self.wait_exit(daemon)
        # twistd re-raises the signal it stopped on, so the exit status says SIGTERM.
        self.assertIn(code, (0, -signal.SIGTERM))
        self.assertFalse(group_alive(leader), "the grandchild outlived twistd")
        self.assertEqual(self.ws.entries(), [("start", str(leader)), ("stop", str(leader))])
        self.assertEqual(self.ws.events()[-1]["reason"], "stopped")

    @defer.inlineCallbacks
    def test_leftover_group_of_a_killed_daemon_is_terminated_first(self):
        # The process-group path (the cgroup one: tests/integration/test_containment_real.py).
        self.write_config(containment="process-group")
        first = self.twistd()
        yield wait_for(lambda: os.path.exists(self.ws.path("gc.ready")), 30,
                       what="the first instance")
        (old,) = self.ws.starts()
        first.kill()  # SIGKILL: no chance to stop anything
        yield self.wait_exit(first)
        self.assertTrue(group_alive(old), "the service outlives a killed daemon")

        second = self.twistd()
        yield wait_for(lambda: len(self.ws.starts()) == 2, 30, what="the new instance")
        new = self.ws.starts()[1]
        # Never twice: the old instance stopped before the new one started...
        self.assertEqual(self.ws.entries(),
                         [("start", str(old)), ("stop", str(old)), ("start", str(new))])
        # ...and its whole group (the TERM-deaf grandchild too) is gone.
        self.assertFalse(group_alive(old))
        reasons = [e["reason"] for e in self.ws.events()]
        self.assertIn(f"terminating leftover process group {old} of a previous run (SIGTERM)",
                      reasons)
        self.assertIn(f"leftover process group {old} is gone", reasons)
        second.send_signal(signal.SIGTERM)
        self.assertIn((yield self.wait_exit(second)), (0, -signal.SIGTERM))
        self.assertFalse(group_alive(new))
