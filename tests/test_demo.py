"""Runs ``python -m clsd.demo`` (what ``make demo`` runs) end to end."""

import os
import re
import subprocess
import sys
import time

from twisted.internet import reactor, task
from twisted.trial import unittest

from clsd.supervision.pgroups import group_alive


class DemoTests(unittest.TestCase):
    timeout = 60

    def test_demo(self):
        env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
        started = time.monotonic()
        process = subprocess.Popen([sys.executable, "-m", "clsd.demo"], env=env,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = started + 50

        def finished():
            if process.poll() is not None:
                return process.communicate()[0].decode()
            if time.monotonic() > deadline:
                process.kill()
                raise AssertionError("the demo hung")
            return task.deferLater(reactor, 0.1, finished)

        d = task.deferLater(reactor, 0.1, finished)

        def check(output):
            elapsed = time.monotonic() - started
            self.assertEqual(process.returncode, 0, output)
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
