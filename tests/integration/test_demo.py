"""Runs ``python -m clsd.demo`` (what ``make demo`` runs) end to end, both modes.

The three-node demo runs with the fast lease profile on a block of loopback
addresses reserved from the rig's pool (so that it never collides with a
person's ``make demo`` on 127.0.0.11-13 or with other tests); otherwise it is
exactly what ``make demo`` runs.
"""

import os
import re
import subprocess
import sys
import time

from twisted.internet import reactor, task
from twisted.trial import unittest

from clsd.supervision.pgroups import group_alive
from rig.addresses import reserve


def reserved_first_address(test):
    """The first of three loopback addresses held for C{test} (released at its end)."""
    reservation = reserve(3)
    test.addCleanup(reservation.release)
    return reservation.addresses[0]


def run_demo(args, bound):
    """A Deferred firing with (status, output, seconds) of ``python -m clsd.demo ARGS``."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    started = time.monotonic()
    process = subprocess.Popen([sys.executable, "-m", "clsd.demo", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = started + bound

    def finished():
        if process.poll() is not None:
            output = process.communicate()[0].decode()
            return process.returncode, output, time.monotonic() - started
        if time.monotonic() > deadline:
            process.kill()
            process.communicate()
            raise AssertionError(f"the demo {args} hung (over {bound} s)")
        return task.deferLater(reactor, 0.1, finished)

    return task.deferLater(reactor, 0.1, finished)


def processes_mentioning(text):
    """Pids of live processes whose command line contains C{text} (Linux /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                if text.encode() in f.read():
                    found.append(int(entry))
        except OSError:
            pass
    return found


class ClusterDemoTests(unittest.TestCase):
    timeout = 120

    def test_failover(self):
        d = run_demo(["--fast", "--first-address", reserved_first_address(self)], bound=110)

        def check(result):
            status, output, elapsed = result
            self.assertEqual(status, 0, output)
            self.assertLess(elapsed, 60.0, "the demo must finish in under a minute")
            # Before the kill, A is served by alpha (its preferred home), B by beta.
            self.assertRegex(output, r"cluster A: GET http://127\.0\.0\.\d+:8081/ -> node alpha")
            self.assertRegex(output, r"cluster B: GET http://127\.0\.0\.\d+:8082/ -> node beta")
            self.assertRegex(output, r"\n\s+alpha\s+http://127\.0\.0\.\d+:9400/\n")
            self.assertRegex(output, r"kill -9 alpha's daemon \(pid \d+\), the owner of A")
            # After it, A answers from beta, with a greater epoch, within seconds.
            moved = re.search(r"-> node beta, epoch (\d+) \(was (\d+) on alpha\)", output)
            self.assertIsNotNone(moved, output)
            self.assertGreater(int(moved.group(1)), int(moved.group(2)))
            failover = re.search(r"FAILOVER: A served by beta ([\d.]+) s after the kill", output)
            self.assertIsNotNone(failover, output)
            self.assertLess(float(failover.group(1)), 20.0)
            # status came from the real admin SSH shell, before and after.
            self.assertEqual(output.count("quorum:  yes (voters: alpha, beta, witness)"), 2,
                             output)
            after = output[output.index("status, over the admin SSH shell of beta"):]
            self.assertRegex(after, r"\n\s+A\s+running on beta\s+beta\s+\d+\s+owner")
            self.assertRegex(after, r"\n\s+B\s+running on beta\s+beta\s+\d+\s+owner")
            self.assertRegex(after, r"\n\s+alpha\s+alive")
            # The old copy ended (seen from outside, by its pid) before the new one started.
            ended = re.search(r"alpha's copy of A ended ([\d.]+) s after the kill; "
                              r"beta's started ([\d.]+) s after the kill", output)
            self.assertIsNotNone(ended, output)
            self.assertLess(float(ended.group(1)), float(ended.group(2)))
            self.assertIn("Stopped cleanly; nothing left running.", output)
            workdir = re.search(r"demo in (\S+)", output).group(1)
            self.assertFalse(os.path.exists(workdir), "the temporary directory is removed")
            self.assertEqual(processes_mentioning(workdir), [])

        return d.addCallback(check)


class KeptClusterTests(unittest.TestCase):
    timeout = 120

    def test_ctrl_c_stops_everything(self):
        """--keep prints the ssh commands, then Ctrl-C (SIGINT) leaves nothing running."""
        import signal

        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        process = subprocess.Popen(
            [sys.executable, "-m", "clsd.demo", "--keep", "--fast",
             "--first-address", reserved_first_address(self)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())
        os.set_blocking(process.stdout.fileno(), False)
        output = []
        deadline = time.monotonic() + 90

        def read():
            chunk = process.stdout.read()
            if chunk:
                output.append(chunk.decode())
            return "".join(output)

        def until_ready():
            text = read()
            if "Press Ctrl-C to stop all." in text:
                process.send_signal(signal.SIGINT)
                return until_exit()
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the kept cluster did not come up: {text}")
            return task.deferLater(reactor, 0.1, until_ready)

        def until_exit():
            if process.poll() is not None:
                return read()
            if time.monotonic() > deadline:
                raise AssertionError(f"the demo did not stop on SIGINT: {read()}")
            return task.deferLater(reactor, 0.1, until_exit)

        def check(text):
            self.assertRegex(text, r"ssh -i \S+admin_key -p 7422 .* admin@127\.0\.0\.\d+")
            # The status pages' addresses, printed while the cluster is up.
            self.assertRegex(text, r"Status pages: http://127\.0\.0\.\d+:9400/ ")
            self.assertIn("Stopped cleanly; nothing left running.", text)
            workdir = re.search(r"demo in (\S+)", text).group(1)
            self.assertEqual(processes_mentioning(workdir), [])
            self.assertFalse(os.path.exists(workdir))

        return task.deferLater(reactor, 0.1, until_ready).addCallback(check)


class SingleDemoTests(unittest.TestCase):
    timeout = 60

    def test_restart(self):
        d = run_demo(["--single"], bound=50)

        def check(result):
            status, output, elapsed = result
            self.assertEqual(status, 0, output)
            self.assertLess(elapsed, 20.0, "the demo must finish in under 20 s")
            first = int(re.search(r"service up: pid (\d+)", output).group(1))
            second = int(re.search(r"restarted as pid (\d+)", output).group(1))
            self.assertNotEqual(first, second)
            self.assertRegex(output, r"running -> starting +killed by SIGKILL")
            self.assertIn("stopped cleanly; nothing left running", output)
            self.assertFalse(group_alive(first) or group_alive(second))
            workdir = re.search(r"clsd demo in (\S+)", output).group(1)
            self.assertFalse(os.path.exists(workdir), "the temporary directory is removed")

        return d.addCallback(check)
