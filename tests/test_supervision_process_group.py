"""spawn_in_new_group and signal_group with real processes (trial's reactor)."""

import os
import signal
import sys

from twisted.internet import reactor as real_reactor
from twisted.trial import unittest

from clsd.supervision.process_group import GroupProcess, signal_group, spawn_in_new_group
from clsd.testing.processes import CollectingProtocol, pid_alive, wait_until

REPORT_GROUP = "import os; print(os.getpid(), os.getpgid(0), os.getcwd())"


class SpawnInNewGroupTests(unittest.TestCase):
    timeout = 20

    async def _spawn_and_report(self, path=None):
        protocol = CollectingProtocol()
        transport = spawn_in_new_group(
            real_reactor, protocol, [sys.executable, "-c", REPORT_GROUP],
            env=dict(os.environ), path=path)
        self.assertIsInstance(transport, GroupProcess)
        spawned = transport.pid
        await protocol.ended
        pid, pgid, cwd = protocol.output.decode().split()
        return spawned, int(pid), int(pgid), cwd

    async def test_child_leads_its_own_group(self):
        spawned, pid, pgid, _ = await self._spawn_and_report()
        self.assertEqual((spawned, pgid), (pid, pid))
        self.assertNotEqual(pgid, os.getpgid(0))

    async def test_fork_path_with_cwd(self):
        # A working directory rules posix_spawn out: the fork path must also
        # create the group.
        path = os.path.realpath(self.mktemp())
        os.mkdir(path)
        spawned, pid, pgid, cwd = await self._spawn_and_report(path=path)
        self.assertEqual((spawned, pgid, cwd), (pid, pid, path))

    def test_missing_program_raises(self):
        self.assertRaises(OSError, spawn_in_new_group, real_reactor, CollectingProtocol(),
                          ["/nonexistent/clsd-test-program"], env={})


class SignalGroupTests(unittest.TestCase):
    timeout = 20

    async def test_kills_the_whole_group(self):
        marker = os.path.abspath(self.mktemp())
        protocol = CollectingProtocol()
        script = f"sleep 30 & echo $! > {marker}; wait"
        transport = spawn_in_new_group(real_reactor, protocol, ["/bin/sh", "-c", script],
                                       env={"PATH": os.defpath})
        await wait_until(real_reactor, lambda: os.path.exists(marker)
                         and open(marker).read().strip() != "")
        background = int(open(marker).read())
        self.assertTrue(pid_alive(background))

        self.assertTrue(signal_group(transport.pid, signal.SIGKILL))
        reason = await protocol.ended
        self.assertEqual(reason.signal, signal.SIGKILL)
        await wait_until(real_reactor, lambda: not pid_alive(background))

    def test_missing_group(self):
        # Far above any default pid_max, so no such group can exist.
        self.assertFalse(signal_group(2**22 + 12345, signal.SIGTERM))
