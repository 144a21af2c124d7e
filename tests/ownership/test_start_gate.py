"""The start gate of a leased service opens only on a written arm line and a live deadline.

Real processes behind the real gate (L{clsd.supervision.spawn}); the lease
guard is a L{GuardClient} whose pipe the test reads, fills or breaks
(L{tests.ownership.test_guard.FakeSpawner}).
"""

import os

from twisted.internet import defer, reactor
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.events import EventLog
from clsd.ownership.core.errors import GuardUnavailable
from clsd.ownership.core.managed import LeaseNotHeld, ManagedService
from clsd.ownership.guard import GuardClient
from clsd.supervision.context import ExecContext, minimal_environment
from clsd.supervision.spawn import GATE_CLOSED_STATUS, spawn_in_new_group
from tests.ownership.test_guard import FakeSpawner
from tests.supervision.test_spawn import Collector


class ArmAcknowledgementTests(unittest.TestCase):
    """C{GuardClient.arm} says whether its line is in the kernel's pipe buffer."""

    def setUp(self):
        self.clock = Clock()
        self.spawner = FakeSpawner()
        self.addCleanup(self.spawner.close)
        self.client = GuardClient(self.clock, events=EventLog(monotonic=self.clock.seconds),
                                  monotonic=self.clock.seconds, spawn_process=self.spawner)
        self.addCleanup(self.client._close_pipe)

    def test_written(self):
        self.client.start()
        self.assertIs(self.client.arm(4242, 12.5), True)
        self.assertEqual(self.spawner.read(), "arm 4242 12.5\n")

    def test_not_running(self):
        self.assertIs(self.client.arm(4242, 12.5), False)

    def test_full_pipe(self):
        fill_pipe(self.client)
        self.assertIs(self.client.arm(4242, 12.5), False)

    def test_broken_pipe(self):
        break_pipe(self.client, self.spawner)
        self.assertIs(self.client.arm(4242, 12.5), False)
        self.assertFalse(self.client.running)


def fill_pipe(client):
    client.start()
    count = 0
    while not client._backlog:
        client.arm(10000 + count % 1000, 1e9)
        count += 1


def break_pipe(client, spawner):
    client.start()
    for _, fd, _ in spawner.launches:
        os.close(fd)
    spawner.launches.clear()


class StartGateTests(unittest.TestCase):
    timeout = 20

    def setUp(self):
        self.spawner = FakeSpawner()
        self.addCleanup(self.spawner.close)
        self.now = [100.0]
        self.guard = GuardClient(Clock(), events=EventLog(), spawn_process=self.spawner,
                                 monotonic=lambda: self.now[0])
        self.addCleanup(self.guard._close_pipe)
        self.managed = ManagedService("A", "alpha", self.guard, monotonic=self.clock,
                                      report=lambda *a: None)
        self.managed.owned = True
        self.managed.deadline = 110.0
        self.managed.env = {}
        self.marker = os.path.abspath(self.mktemp())
        #: Values the clock returns next (then it stays at the last one).
        self.ticks = []

    def clock(self):
        if self.ticks:
            self.now[0] = self.ticks.pop(0)
        return self.now[0]

    def spawn(self):
        proto = Collector()
        context = ExecContext(argv=("touch", self.marker), env=minimal_environment())

        def base(protocol, extra_env=None, after_spawn=None):
            return spawn_in_new_group(reactor, protocol, context, after_spawn=after_spawn)
        self.managed.wrap(base)(proto)
        return proto.ended

    @defer.inlineCallbacks
    def assert_gate_shut(self, error):
        reason = yield self.spawn()
        self.assertEqual(reason.exitCode, GATE_CLOSED_STATUS)
        self.assertFalse(os.path.exists(self.marker), "the program ran")
        self.assertEqual(len(self.flushLoggedErrors(error)), 1)

    @defer.inlineCallbacks
    def test_opens_when_the_arm_line_is_written(self):
        self.guard.start()
        reason = yield self.spawn()
        self.assertEqual(reason.exitCode, 0)
        self.assertTrue(os.path.exists(self.marker))
        self.assertTrue(self.spawner.read().startswith(f"arm {self.managed.pgid} 110.0"))

    def test_stays_shut_when_the_arm_line_is_only_queued(self):
        fill_pipe(self.guard)
        return self.assert_gate_shut(GuardUnavailable)

    def test_stays_shut_when_the_guard_pipe_is_broken(self):
        self.guard.start()
        # The guard dies after wrap's check: the write gets EPIPE.
        real_arm = self.guard.arm

        def arm_after_the_guard_died(*args, **kwargs):
            # A pipe whose only read end is gone: the write gets EPIPE for sure. (Closing
            # the fake guard's read ends is not enough here: the gate child, forked just
            # before, may hold a copy of them until it execs.)
            dead_read, dead_write = os.pipe()
            os.close(dead_read)
            os.close(self.guard._wfd)
            self.guard._wfd = dead_write
            return real_arm(*args, **kwargs)
        self.guard.arm = arm_after_the_guard_died
        return self.assert_gate_shut(GuardUnavailable)

    def test_stays_shut_when_the_deadline_passed_during_the_spawn(self):
        self.guard.start()
        self.ticks = [109.9, 110.0]  # wrap's check, then the arm after the spawn
        return self.assert_gate_shut(LeaseNotHeld)
