"""Real-OS tests of L{clsd.supervision.pgroups}."""

import os
import signal
import subprocess
import sys
import time

from twisted.trial import unittest

from clsd.supervision import pgroups


def start_group(*argv):
    """A child in its own process group (pgid == pid)."""
    return subprocess.Popen(argv or ["sleep", "30"], process_group=0)


class GroupTests(unittest.TestCase):
    def test_alive_then_gone(self):
        child = start_group()
        self.addCleanup(child.kill)
        self.assertTrue(pgroups.group_alive(child.pid))
        self.assertTrue(pgroups.signal_group(child.pid, signal.SIGKILL))
        child.wait()
        self.assertFalse(pgroups.group_alive(child.pid))
        self.assertFalse(pgroups.signal_group(child.pid, signal.SIGTERM))

    def test_zombie_members_do_not_count_on_linux(self):
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("the zombie refinement reads /proc (Linux)")
        child = start_group("true")
        # Not reaped yet: the only member of its group is a zombie.
        deadline = time.monotonic() + 10
        while pgroups._read_stat(child.pid)[0] != b"Z":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        os.killpg(child.pid, 0)  # the portable probe still sees it...
        self.assertFalse(pgroups.group_alive(child.pid))  # ...we do not
        child.wait()

    def test_member_outliving_leader(self):
        child = start_group("sh", "-c", "sleep 30 & echo $!")
        self.addCleanup(lambda: pgroups.signal_group(child.pid, signal.SIGKILL))
        child.wait()  # the leader is gone, its background sleep is not
        self.assertTrue(pgroups.group_alive(child.pid))
        pgroups.signal_group(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pgroups.group_alive(child.pid):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)


class IdentityTests(unittest.TestCase):
    def test_stable_for_a_process(self):
        me = pgroups.process_start_identity(os.getpid())
        self.assertIsNotNone(me)
        self.assertEqual(pgroups.process_start_identity(os.getpid()), me)

    def test_differs_between_processes_and_none_when_gone(self):
        child = start_group()
        identity = pgroups.process_start_identity(child.pid)
        self.assertIsNotNone(identity)
        self.assertNotEqual(identity, pgroups.process_start_identity(os.getpid()))
        child.kill()
        child.wait()
        self.assertIsNone(pgroups.process_start_identity(child.pid))

    def test_ps_fallback(self):
        # The portable path, exercised on every OS (needs ps: procps).
        identity = pgroups._ps_start_identity(os.getpid())
        self.assertTrue(identity.startswith("ps-lstart:"), identity)
        self.assertIsNone(pgroups._ps_start_identity(2 ** 22 + 12345))

    def test_boot_identity(self):
        if not sys.platform.startswith("linux"):
            self.assertIsNone(pgroups.boot_identity())
        else:
            self.assertRegex(pgroups.boot_identity(), r"^[0-9a-f-]{36}$")


class CachedProbeTests(unittest.TestCase):
    def test_members_are_remembered_and_rescanned_when_they_die(self):
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("the member cache is part of the /proc refinement")
        child = start_group("sh", "-c", "sleep 30 & sleep 30 & wait")
        self.addCleanup(lambda: pgroups.signal_group(child.pid, signal.SIGKILL))
        groups = pgroups.OSProcessGroups()
        deadline = time.monotonic() + 10
        while len(pgroups._linux_live_members(child.pid)) < 3:
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        self.assertTrue(groups.alive(child.pid))
        members = set(groups._members[child.pid])
        self.assertEqual(len(members), 3)  # sh and two sleeps
        sleeps = sorted(members - {child.pid})
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        os.kill(sleeps[0], signal.SIGKILL)
        self.assertTrue(groups.alive(child.pid), "one sleep is left")
        os.kill(sleeps[1], signal.SIGKILL)
        while groups.alive(child.pid):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.01)
        self.assertNotIn(child.pid, groups._members)


class PidAliveTests(unittest.TestCase):
    """The one pid_alive of the package: a zombie is dead, a process we may not signal alive."""

    def test_a_zombie_counts_as_dead_and_a_reaped_pid_too(self):
        from clsd.supervision.pgroups import pid_alive

        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        self.assertFalse(pid_alive(pid), "an exited, unreaped child is not alive")
        os.waitpid(pid, 0)
        self.assertFalse(pid_alive(pid))
        self.assertTrue(pid_alive(os.getpid()))
