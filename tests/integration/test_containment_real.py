"""Containment on the real kernel: cgroups hold what escapes a process group.

Run as root on a host with a writable cgroup v2 hierarchy (skipped
elsewhere; under CI=true they must run). The service used throughout is
tests/support/escaping_service.py: its leader stays in the foreground while a
double-forked, ``setsid``'d grandchild holds a TCP port on 127.0.0.1, the
classic "daemon mode" that a process group loses.

Every test removes what it made under the cgroup tree and checks that
nothing of its daemon is left there.
"""

import json
import os
import signal
import subprocess
import sys
import time

from twisted.internet import defer, reactor
from twisted.internet.protocol import ProcessProtocol
from twisted.trial import unittest

from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.ownership.guard import GuardClient
from clsd.supervision import cgroupfs
from clsd.supervision.containment import find_tree
from clsd.supervision.context import ExecContext
from clsd.supervision.spawn import spawn_in_new_group
from rig.launcher import free_port
from clsd.polling import poll
from clsd.supervision.pgroups import pid_alive
from tests.support import escaping_service
from tests.support.rig_support import require, require_root

HOST = "127.0.0.1"
SCRIPT = os.path.abspath(escaping_service.__file__)


def require_cgroups(test, node="alpha", data_dir=None):
    """This daemon's L{CgroupTree} (cleaned up after the test), or skip (fail under CI)."""
    require_root("cgroups")
    tree, reason = find_tree(node, data_dir or test.mktemp())
    require(tree is not None, f"a writable cgroup v2 hierarchy ({reason})")
    test.addCleanup(empty_and_remove, tree)
    return tree


def empty_and_remove(tree):
    """Kill whatever a failed test left in C{tree} and remove its cgroups."""
    if not os.path.isdir(tree.directory):
        return
    for service in tree.services():
        path = tree.path(service)
        cgroupfs.kill_all(path)
        deadline = time.monotonic() + 5
        while cgroupfs.populated(path) and time.monotonic() < deadline:
            time.sleep(0.01)
        os.rmdir(path)
    os.rmdir(tree.directory)


def read_pid(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (FileNotFoundError, ValueError):
        return None


def port_free(port):
    import socket

    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
        return True


def kill_quietly(pid):
    if pid is not None:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Workspace:
    """A data_dir, a port and the pid file of the escaped holder."""

    def __init__(self, test):
        self.base = os.path.abspath(test.mktemp())
        os.makedirs(self.base)
        self.data_dir = os.path.join(self.base, "data")
        self.port = free_port(HOST)
        self.pidfile = os.path.join(self.base, "holder.pid")
        test.addCleanup(lambda: kill_quietly(read_pid(self.pidfile)))

    def config_text(self, containment, **extra):
        command = [sys.executable, SCRIPT, "escape",
                   sys.executable, SCRIPT, "hold", HOST, str(self.port), self.pidfile]
        lines = [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
        return "\n".join([
            "[node]", 'name = "alpha"', f"data_dir = {json.dumps(self.data_dir)}", "",
            "[[service]]", 'name = "esc"', f"command = {json.dumps(command)}",
            f'containment = "{containment}"', "stop_timeout = 2.0", *lines, ""])

    def holder(self):
        return read_pid(self.pidfile)


class CgroupFilesTests(unittest.TestCase):
    """L{cgroupfs} against the kernel: a forking tree of processes, killed whole."""

    timeout = 30

    def spawn_tree(self, cgroup):
        # A shell in the cgroup that forks a setsid'd sleeper and more sleepers.
        script = ("echo $$ > {procs}; setsid sleep 300 & sleep 300 & "
                  "(sleep 300 & sleep 300 & wait) & wait").format(
                      procs=os.path.join(cgroup, "cgroup.procs"))
        process = subprocess.Popen(["/bin/sh", "-c", script])
        self.addCleanup(process.wait)
        deadline = time.monotonic() + 5
        while len(cgroupfs.pids(cgroup)) < 6 and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertGreaterEqual(len(cgroupfs.pids(cgroup)), 6)
        return process

    def check_kill(self, use_kill_file):
        tree = require_cgroups(self)
        cgroup = tree.path("tree")
        os.makedirs(cgroup)
        self.spawn_tree(cgroup)
        self.assertTrue(cgroupfs.populated(cgroup))
        self.assertTrue(cgroupfs.kill_all(cgroup, use_kill_file=use_kill_file))
        deadline = time.monotonic() + 5
        while cgroupfs.populated(cgroup) and time.monotonic() < deadline:
            time.sleep(0.01)
        self.assertFalse(cgroupfs.populated(cgroup))
        self.assertEqual(cgroupfs.parse_events(
            open(os.path.join(cgroup, "cgroup.events")).read())["frozen"], 0)

    def test_cgroup_kill_ends_every_process(self):
        self.check_kill(use_kill_file=True)

    def test_freeze_kill_thaw_where_there_is_no_cgroup_kill(self):
        self.check_kill(use_kill_file=False)

    def test_a_missing_cgroup_is_nothing_to_kill(self):
        tree = require_cgroups(self)
        self.assertFalse(cgroupfs.kill_all(tree.path("never-made")))


class _Collect(ProcessProtocol):
    def __init__(self):
        self.out = b""
        self.ended = defer.Deferred()
        self.exited = defer.Deferred()

    def outReceived(self, data):
        self.out += data

    def processExited(self, reason):
        self.exited.callback(None)

    def processEnded(self, reason):
        self.ended.callback(self.out)


class PlacementTests(unittest.TestCase):
    """The child is in its cgroup before it executes the program's first instruction."""

    timeout = 30

    @defer.inlineCallbacks
    def check_first_read(self, cwd):
        tree = require_cgroups(self)
        cgroup = tree.path("placed")
        os.makedirs(cgroup)
        context = ExecContext(argv=("cat", "/proc/self/cgroup"),
                              env={"PATH": "/usr/bin:/bin"}, cwd=cwd, credentials=None)
        protocol = _Collect()
        spawn_in_new_group(reactor, protocol, context,
                           place=lambda pid: cgroupfs.place(cgroup, pid))
        out = yield protocol.ended
        membership = cgroupfs.v2_membership(out.decode())
        mount = cgroupfs.find_v2_mount(open("/proc/self/mountinfo").read())
        self.assertEqual(cgroupfs.absolute_path(mount[0], mount[1], membership), cgroup)

    def test_posix_spawn_path(self):
        return self.check_first_read(cwd=None)

    def test_fork_path(self):
        return self.check_first_read(cwd="/")


class DaemonEscapeTests(unittest.TestCase):
    """A Daemon in this process on trial's reactor, supervising the escaping service."""

    timeout = 60

    def setUp(self):
        self.ws = Workspace(self)
        self.daemon = None

    @defer.inlineCallbacks
    def start(self, containment):
        config = parse_config(self.ws.config_text(containment, restart="always"), "<test>")
        if containment == "cgroup":
            self.tree = require_cgroups(self, "alpha", self.ws.data_dir)
        self.daemon = Daemon(config, reactor)
        self.daemon.startService()
        self.addCleanup(self.stop_daemon)
        yield self.daemon.ready
        yield poll(reactor, self.ws.holder, 20, what="the escaped holder")
        return self.daemon.supervisor("esc")

    def stop_daemon(self):
        if self.daemon is not None and self.daemon.running:
            return self.daemon.stopService()

    def assertNothingLeft(self):
        self.assertFalse(os.path.exists(self.tree.directory),
                         f"{self.tree.directory} is left behind")

    @defer.inlineCallbacks
    def test_stop_kills_the_escaped_child(self):
        runner = yield self.start("cgroup")
        holder = self.ws.holder()
        self.assertEqual(runner.status()["processes"], 2)
        yield runner.stop()
        self.assertFalse(pid_alive(holder), "the escaped holder outlived the stop")
        self.assertTrue(port_free(self.ws.port))
        yield self.daemon.stopService()
        self.assertNothingLeft()

    @defer.inlineCallbacks
    def test_restart_kills_the_escaped_child_before_the_new_instance(self):
        runner = yield self.start("cgroup")
        holder, leader = self.ws.holder(), runner.pid
        reserve = runner.containment.reserve
        warm = yield poll(reactor, lambda: reserve._gate, 5, what="the next start gate")
        os.remove(self.ws.pidfile)
        os.kill(leader, signal.SIGKILL)       # the main process crashes
        new_holder = yield poll(reactor, self.ws.holder, 20, what="the new holder")
        self.assertNotEqual(new_holder, holder)
        self.assertFalse(pid_alive(holder), "two generations at once")
        self.assertEqual(runner.pid, warm.pid, "the restart used the warm start gate")
        reasons = [e["reason"] for e in self.daemon.events.recent()]
        self.assertIn("killed by SIGKILL; stopping the rest of its process group", reasons)
        yield self.daemon.stopService()
        self.assertNothingLeft()

    @defer.inlineCallbacks
    def test_process_group_containment_loses_the_escaped_child(self):
        """Why cgroups: under the old containment the crash leaves the holder running."""
        runner = yield self.start("process-group")
        holder, leader = self.ws.holder(), runner.pid
        os.kill(leader, signal.SIGKILL)
        yield poll(reactor, lambda: runner.pid != leader, 20, what="the restart")
        self.assertTrue(pid_alive(holder), "the escape is not reproduced")
        self.assertFalse(port_free(self.ws.port), "the old copy still holds the port")
        yield self.daemon.stopService()
        self.assertTrue(pid_alive(holder), "not even a stop reaches it")


class GuardTests(unittest.TestCase):
    """The real lease guard empties the cgroup: at a deadline, and when its pipe closes."""

    timeout = 30

    @defer.inlineCallbacks
    def start_escaped(self):
        self.tree = require_cgroups(self)
        self.ws = Workspace(self)
        cgroup = self.tree.path("esc")
        os.makedirs(cgroup)
        context = ExecContext(
            argv=(sys.executable, SCRIPT, "escape",
                  sys.executable, SCRIPT, "hold", HOST, str(self.ws.port), self.ws.pidfile),
            env={"PATH": "/usr/bin:/bin"}, cwd=None, credentials=None)
        protocol = _Collect()
        transport = spawn_in_new_group(reactor, protocol, context,
                                       place=lambda pid: cgroupfs.place(cgroup, pid))
        pgid = transport.pid
        # The holder's death closes the pipes (it holds them too).
        self.addCleanup(lambda: (kill_quietly(self.ws.holder()), protocol.ended)[1])
        holder = yield poll(reactor, self.ws.holder, 20, what="the escaped holder")
        os.kill(pgid, signal.SIGKILL)  # only the escaped holder is left
        yield protocol.exited
        self.assertTrue(pid_alive(holder))
        return pgid, cgroup, holder

    @defer.inlineCallbacks
    def test_the_deadline_kills_the_escaped_child(self):
        pgid, cgroup, holder = yield self.start_escaped()
        guard = GuardClient(reactor)
        yield guard.start()
        self.addCleanup(guard.stop)
        guard.arm(pgid, time.monotonic() + 0.2, label="A", cgroup=cgroup)
        yield poll(reactor, lambda: not pid_alive(holder), 5, what="the guard's kill")
        self.assertEqual([(p, label) for p, label, _ in guard.kills], [(pgid, "A")])
        self.assertEqual(guard.errors, [])

    @defer.inlineCallbacks
    def test_the_closed_pipe_kills_the_escaped_child(self):
        pgid, cgroup, holder = yield self.start_escaped()
        guard = GuardClient(reactor)
        yield guard.start()
        guard.arm(pgid, time.monotonic() + 300, cgroup=cgroup)
        yield guard.ping()
        yield guard.stop()      # the pipe closes as when the daemon dies
        yield poll(reactor, lambda: not pid_alive(holder), 5, what="the guard's kill")


class TwistdLeftoverTests(unittest.TestCase):
    """``twistd clsd`` killed with SIGKILL: the next one empties the cgroup it left."""

    timeout = 90

    def setUp(self):
        self.ws = Workspace(self)
        self.config = os.path.join(self.ws.base, "clsd.toml")
        with open(self.config, "w") as f:
            f.write(self.ws.config_text("cgroup"))
        self.processes = []
        self.addCleanup(self.kill_all)

    def kill_all(self):
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    def twistd(self):
        log = open(os.path.join(self.ws.base, f"twistd-{len(self.processes)}.log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "clsd", "--config", self.config],
            cwd=self.ws.base, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        return process

    def events(self):
        with open(os.path.join(self.ws.data_dir, "events.jsonl")) as f:
            return [json.loads(line) for line in f]

    @defer.inlineCallbacks
    def test_a_cgroup_left_by_a_killed_daemon_is_emptied_before_the_restart(self):
        tree = require_cgroups(self, "alpha", self.ws.data_dir)
        first = self.twistd()
        old = yield poll(reactor, self.ws.holder, 30, what="the first holder")
        first.kill()
        first.wait()
        self.assertTrue(pid_alive(old), "an unclustered service outlives its daemon")
        os.remove(self.ws.pidfile)
        second = self.twistd()
        new = yield poll(reactor, self.ws.holder, 30, what="the second holder")
        self.assertFalse(pid_alive(old), "the service ran twice")
        reasons = [e["reason"] for e in self.events()]
        cgroup = tree.path("esc")
        self.assertIn(f"terminating leftover cgroup {cgroup} of a previous run (SIGTERM)",
                      reasons)
        self.assertIn(f"leftover cgroup {cgroup} is gone", reasons)
        second.send_signal(signal.SIGTERM)
        yield poll(reactor, lambda: second.poll() is not None, 30, what="twistd to exit")
        self.assertFalse(pid_alive(new), "a service outlived a clean daemon stop")
        self.assertFalse(os.path.exists(tree.directory), "the daemon's cgroups are left")
