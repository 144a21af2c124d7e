"""The lease guard kills by cgroup too: its rules on plain values, and the client's lines."""

import os
import signal
import sys

from twisted.internet import error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.ownership import guard_process
from clsd.ownership.guard import GuardClient
from clsd.ownership.guard_process import Guard, protected_cgroups
from tests.ownership.test_guard import FakeSpawner
from tests.ownership.test_guard_process import FakeClock

MOUNT = "/sys/fs/cgroup"
DAEMON_CGROUP = "/sys/fs/cgroup/system.slice/clsd.service"
SERVICE = "/sys/fs/cgroup/clsd/alpha-0123abcd/web"


class GuardCgroupRuleTests(unittest.TestCase):
    def setUp(self):
        self.rfd, self.wfd = os.pipe()
        os.set_blocking(self.rfd, False)
        self.addCleanup(os.close, self.rfd)
        self.addCleanup(os.close, self.wfd)
        self.clock = FakeClock()
        self.killed = []
        self.cgroups_killed = []
        self.gone = set()
        self.populated = {SERVICE}
        self.guard = Guard(infd=-1, outfd=self.wfd, clock=self.clock, kill=self.kill,
                           kill_cgroup=self.kill_cgroup,
                           protected=(MOUNT, [DAEMON_CGROUP, MOUNT + "/guard"]))

    def kill(self, pgid, signum):
        if pgid in self.gone:
            raise ProcessLookupError(pgid)
        self.killed.append((pgid, signum))

    def kill_cgroup(self, path):
        self.cgroups_killed.append(path)
        had = path in self.populated
        self.populated.discard(path)
        return had

    def reports(self):
        try:
            return os.read(self.rfd, 65536).decode().splitlines()
        except BlockingIOError:
            return []

    def test_the_deadline_kills_the_group_and_the_cgroup(self):
        self.guard.feed(f"arm 4242 100.5 {SERVICE}\n".encode())
        self.clock.now = 100.6
        self.guard.kill_due()
        self.assertEqual(self.killed, [(4242, signal.SIGKILL)])
        self.assertEqual(self.cgroups_killed, [SERVICE])
        self.assertEqual(self.reports(), ["killed 4242 0.100000"])
        self.assertEqual((self.guard.armed, self.guard.cgroups), ({}, {}))

    def test_an_escaped_process_is_killed_when_the_group_is_gone(self):
        self.gone.add(4242)  # the leader's group died; a setsid'd child lives on
        self.guard.feed(f"arm 4242 99.0 {SERVICE}\n".encode())
        self.guard.kill_due()
        self.assertEqual(self.cgroups_killed, [SERVICE])
        self.assertEqual(self.reports(), ["killed 4242 1.000000"])

    def test_nothing_left_is_gone(self):
        self.gone.add(4242)
        self.populated.clear()
        self.guard.feed(f"arm 4242 99.0 {SERVICE}\n".encode())
        self.guard.kill_due()
        self.assertEqual(self.reports(), ["gone 4242"])

    def test_end_of_input_kills_the_cgroups(self):
        self.guard.feed(f"arm 4242 200.0 {SERVICE}\narm 4343 200.0\n".encode())
        self.guard.kill_all()
        self.assertEqual(self.cgroups_killed, [SERVICE])
        self.assertEqual(sorted(self.killed), [(4242, signal.SIGKILL), (4343, signal.SIGKILL)])

    def test_disarm_and_rearm_without_a_cgroup_forget_it(self):
        self.guard.feed(f"arm 4242 200.0 {SERVICE}\ndisarm 4242\n".encode())
        self.assertEqual(self.guard.cgroups, {})
        self.guard.feed(f"arm 4242 200.0 {SERVICE}\narm 4242 99.0\n".encode())
        self.guard.kill_due()
        self.assertEqual(self.cgroups_killed, [])

    def test_refuses_cgroups_that_hold_the_daemon_or_are_not_below_the_mount(self):
        bad = [
            ("clsd/alpha/web", "not a cgroup below"),
            ("/sys/fs/cgroup/clsd/../system.slice", "not a cgroup below"),
            ("/tmp/web", "not a cgroup below"),
            ("/sys/fs/cgroupx/web", "not a cgroup below"),
            (MOUNT, "not a cgroup below"),
            ("/sys/fs/cgroup/system.slice", "holds the guard or the daemon"),
            (DAEMON_CGROUP, "holds the guard or the daemon"),
            ("/sys/fs/cgroup/guard", "holds the guard or the daemon"),
        ]
        for path, why in bad:
            self.guard.feed(f"arm 4242 99.0 {path}\n".encode())
            reports = self.reports()
            self.assertEqual(len(reports), 1, path)
            self.assertTrue(reports[0].startswith("error refusing cgroup"), reports)
            self.assertIn(why, reports[0])
        self.assertEqual(self.guard.armed, {}, "a refused line arms nothing")

    def test_no_cgroup_hierarchy_no_cgroup_arms(self):
        self.guard.protected = (None, [])
        self.guard.feed(f"arm 4242 99.0 {SERVICE}\n".encode())
        self.assertIn("no cgroup v2 hierarchy here", self.reports()[0])

    def test_protected_cgroups_are_read_from_proc(self):
        files = {
            "/proc/self/mountinfo":
                "28 24 0:25 / /sys/fs/cgroup rw shared:4 - cgroup2 cgroup2 rw\n",
            "/proc/self/cgroup": "0::/guard\n",
            "/proc/77/cgroup": "0::/system.slice/clsd.service\n",
        }
        self.assertEqual(protected_cgroups(read=files.get, pids=("self", 77)),
                         (MOUNT, [MOUNT + "/guard", DAEMON_CGROUP]))
        self.assertEqual(protected_cgroups(read=lambda path: None), (None, []))

    def test_the_cgroup_code_uses_only_the_standard_library(self):
        path = os.path.join(guard_process.CGROUPFS_DIRECTORY, "cgroupfs.py")
        with open(path) as f:
            source = f.read()
        imports = {line.split()[1].split(".")[0] for line in source.splitlines()
                   if line.lstrip().startswith(("import ", "from "))}
        self.assertTrue(imports <= set(sys.stdlib_module_names), imports)


class GuardClientCgroupTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.spawner = FakeSpawner()
        self.addCleanup(self.spawner.close)
        self.client = GuardClient(self.clock, monotonic=self.clock.seconds,
                                  spawn_process=self.spawner)
        self.addCleanup(self.client._close_pipe)

    def test_the_cgroup_travels_with_the_arm_and_after_a_restart(self):
        self.client.start()
        self.client.arm(4242, 12.5, label="A", cgroup=SERVICE)
        self.client.arm(4343, 13.0, label="B")
        self.assertEqual(self.spawner.read(),
                         f"arm 4242 12.5 {SERVICE}\narm 4343 13.0\n")
        self.spawner.launches[-1][0].processEnded(
            Failure(error.ProcessTerminated(None, 9, None)))
        self.clock.advance(1.0)
        self.assertEqual(self.spawner.read(), f"arm 4242 12.5 {SERVICE}\narm 4343 13.0\n")
        self.client.disarm(4242)
        self.assertEqual(self.client.cgroups, {})

    def test_a_path_the_protocol_cannot_carry_is_refused(self):
        self.client.start()
        for path in ("/sys/fs/cgroup/my web", "/sys/fs/cgroup/" + "x" * 1000, "/cg/wéb"):
            self.assertRaises(ValueError, self.client.arm, 4242, 12.5, cgroup=path)
        self.assertEqual(self.client.armed, {})
