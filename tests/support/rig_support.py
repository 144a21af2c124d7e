"""Shared by the rig's tests: tools that must be present under CI, free loopback ports."""

import os
import shutil
import socket

from twisted.trial.unittest import SkipTest

from rig import checker


def require(available, what):
    """Skip when C{what} is missing, but fail under CI=true: CI installs every tool."""
    if available:
        return
    message = f"{what} is not available here (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        raise AssertionError(f"CI=true and {message}")
    raise SkipTest(message)


def require_tool(name, package):
    require(shutil.which(name) is not None, f"{name} (package {package})")


def require_root(what):
    require(os.geteuid() == 0, f"root, for {what}")


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class FailoverAssertions:
    """For tests with a C{self.launcher} and C{self.rig} (a L{FailoverRig}): who ran what, when."""

    def interval(self, instance):
        for interval in checker.intervals(self.launcher.records().records):
            if interval.instance == instance:
                return interval
        raise AssertionError(f"no records of instance {instance}")

    def current(self, cluster):
        [instance] = self.rig.running(cluster)
        return instance

    def assertNoViolations(self):
        report = self.launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertEqual(self.launcher.log_problems(), [])

    def assertHandedOver(self, old, new_instance):
        """The old instance ended before the new one started, and the epoch grew."""
        old = self.interval(old.instance)
        new = self.interval(new_instance)
        self.assertIsNotNone(old.end, f"{old.describe()} never ended")
        self.assertLessEqual(old.end, new.start,
                             f"{new.describe()} started {old.end - new.start:.3f}s before "
                             f"{old.describe()} ended")
        if old.epoch is not None and new.epoch is not None:
            self.assertGreater(new.epoch, old.epoch)
        return old, new
