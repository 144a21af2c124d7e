"""L{GuardClient}: the daemon's side of the lease guard.

Unit tests drive it on a C{Clock} with a fake spawner that hands back the
real pipe (so we can see what reached the kernel, and when); integration
tests run the real guard program on trial's reactor.
"""

import os
import signal
import subprocess

from twisted.internet import defer, error, reactor
from twisted.internet import task
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.clock import lease_clock
from clsd.events import EventLog
from clsd.ownership.guard import BACKLOG_RETRY, DEFAULT_RESTART_DELAY, GuardClient
from clsd.ownership.guard_process import GUARD_NICE
from clsd.polling import poll as wait_until
from clsd.supervision.pgroups import pid_alive


class FakeTransport:
    def __init__(self, pid):
        self.pid = pid
        self.signals = []

    def signalProcess(self, name):
        self.signals.append(name)


class FakeSpawner:
    """Keeps a duplicate of the guard's stdin read end: what the client wrote is readable."""

    def __init__(self):
        self.launches = []  # (protocol, read_fd, transport)
        self.fail_with = None

    def __call__(self, reactor, protocol, argv, stdin_fd):
        if self.fail_with is not None:
            raise self.fail_with
        fd = os.dup(stdin_fd)
        os.set_blocking(fd, False)
        transport = FakeTransport(1000 + len(self.launches))
        protocol.transport = transport
        self.launches.append((protocol, fd, transport))
        return transport

    def read(self, index=-1):
        try:
            return os.read(self.launches[index][1], 1 << 20).decode()
        except BlockingIOError:
            return ""

    def close(self):
        for _, fd, _ in self.launches:
            try:
                os.close(fd)
            except OSError:
                pass


class GuardClientUnitTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.spawner = FakeSpawner()
        self.addCleanup(self.spawner.close)
        self.events = EventLog(monotonic=self.clock.seconds)
        self.client = GuardClient(self.clock, events=self.events, monotonic=self.clock.seconds,
                                  spawn_process=self.spawner)
        self.addCleanup(self.client._close_pipe)

    def protocol(self, index=-1):
        return self.spawner.launches[index][0]

    def test_arm_is_in_the_pipe_when_it_returns(self):
        self.client.start()
        self.client.arm(4242, 12.5, label="A")
        # No reactor turn, no clock advance: the kernel already has the line.
        self.assertEqual(self.spawner.read(), "arm 4242 12.5\n")
        self.client.arm(4242, 13.25)
        self.client.disarm(4242)
        self.client.disarm(4242)  # not armed any more: nothing written
        self.assertEqual(self.spawner.read(), "arm 4242 13.25\ndisarm 4242\n")

    def test_ready_fires_start_and_records_the_startup_time(self):
        d = self.client.start()
        self.assertNoResult(d)
        self.clock.advance(0.015)
        self.protocol().outReceived(b"ready 1000 1000\n")
        self.assertIs(self.successResultOf(d), self.client)
        self.assertEqual(self.client.start_times, [0.015])
        self.assertTrue(self.client.running)

    def test_a_kill_report_is_recorded_with_its_label(self):
        self.client.start()
        self.client.arm(4242, 12.5, label="A")
        self.protocol().outReceived(b"killed 4242 0.0021\ngo")
        self.protocol().outReceived(b"ne 77\n")
        self.assertEqual(self.client.kills, [(4242, "A", 0.0021)])
        self.assertEqual(self.client.armed, {})
        [event] = [e for e in self.events.recent() if "killed" in e["reason"]]
        self.assertEqual(event["subject"], "A")
        self.assertIn("2.1 ms after its deadline", event["reason"])

    def test_a_kill_reported_after_the_disarm_keeps_its_label(self):
        # The supervisor may see the death (and disarm) before the report arrives.
        self.client.start()
        self.client.arm(4242, 12.5, label="A")
        self.client.disarm(4242)
        self.protocol().outReceived(b"killed 4242 0.0021\n")
        self.assertEqual(self.client.kills, [(4242, "A", 0.0021)])

    def test_ping_fires_on_pong(self):
        self.client.start()
        d = self.client.ping()
        self.assertIn("ping 1\n", self.spawner.read())
        self.assertNoResult(d)
        self.protocol().outReceived(b"pong 1\n")
        self.successResultOf(d)

    def test_error_reports_are_kept_and_recorded(self):
        self.client.start()
        self.protocol().outReceived(b"error not understood: 'x'\n")
        self.assertEqual(self.client.errors, ["error not understood: 'x'"])

    def test_a_dead_guard_is_restarted_and_told_everything_again(self):
        self.client.start()
        self.client.arm(11, 5.0, label="A")
        self.client.arm(12, 6.0, label="B")
        self.spawner.read()
        self.protocol().processEnded(Failure(error.ProcessTerminated(None, 9, None)))
        self.assertFalse(self.client.running)
        self.client.arm(11, 7.0, label="A")  # a renewal while it is down: kept
        self.clock.advance(DEFAULT_RESTART_DELAY)
        self.assertEqual(len(self.spawner.launches), 2)
        self.assertEqual(self.spawner.read(), "arm 11 7.0\narm 12 6.0\n")
        self.assertEqual(self.client.restarts, 1)
        self.assertTrue(any("exited unexpectedly" in e["reason"] for e in self.events.recent()))

    def test_floating_addresses_are_armed_renewed_and_disarmed(self):
        self.client.start()
        self.assertTrue(self.client.arm_address("eth0", "192.0.2.10/24", 12.5, label="A"))
        self.client.arm_address("eth0", "192.0.2.10/24", 13.0, label="A")
        self.client.disarm_address("eth0", "192.0.2.10/24")
        self.client.disarm_address("eth0", "192.0.2.10/24")  # nothing armed: nothing written
        self.assertEqual(self.spawner.read(), "address 12.5 eth0 192.0.2.10/24\n"
                                              "address 13.0 eth0 192.0.2.10/24\n"
                                              "unaddress eth0 192.0.2.10/24\n")

    def test_an_address_removal_is_recorded_and_a_restart_resends_addresses(self):
        self.client.start()
        self.client.arm_address("eth0", "192.0.2.10/24", 5.0, label="A")
        self.client.arm_address("eth0", "2001:db8::10/64", 5.0, label="A")
        self.protocol().outReceived(b"removed eth0 192.0.2.10/24 0.0031\n")
        self.assertEqual(self.client.address_removals,
                         [(("eth0", "192.0.2.10/24"), "A", "removed")])
        [event] = [e for e in self.events.recent() if "removed" in e["reason"]]
        self.assertEqual(event["subject"], "A")
        self.assertIn("3.1 ms after its deadline", event["reason"])
        self.spawner.read()
        self.protocol().processEnded(Failure(error.ProcessTerminated(None, 9, None)))
        self.clock.advance(DEFAULT_RESTART_DELAY)
        self.assertEqual(self.spawner.read(), "address 5.0 eth0 2001:db8::10/64\n")

    def test_a_failed_removal_is_recorded(self):
        self.client.start()
        self.client.arm_address("eth0", "192.0.2.10/24", 5.0, label="A")
        self.protocol().outReceived(b"remove-failed eth0 192.0.2.10/24 RTNETLINK answers\n")
        self.assertTrue(any("could not remove 192.0.2.10/24 from eth0: RTNETLINK answers"
                            in e["reason"] for e in self.events.recent()))

    def test_a_guard_that_cannot_start_is_retried(self):
        self.spawner.fail_with = OSError(2, "No such file")
        self.client.start()
        self.assertFalse(self.client.running)
        self.spawner.fail_with = None
        self.clock.advance(DEFAULT_RESTART_DELAY)
        self.assertTrue(self.client.running)

    def test_full_pipe_queues_in_order_and_flushes_later(self):
        self.client.start()
        count = 0
        while not self.client._backlog:
            self.client.arm(10000 + count % 1000, float(count))
            count += 1
            self.assertLess(count, 100000)
        self.client.disarm(10000 + (count - 1) % 1000)
        written = self.spawner.read()  # the guard reads again
        self.clock.advance(BACKLOG_RETRY)
        written += self.spawner.read()
        lines = written.splitlines()
        self.assertEqual(len(lines), count + 1)
        self.assertEqual(lines[-1], f"disarm {10000 + (count - 1) % 1000}")
        self.assertEqual(lines[-2], f"arm {10000 + (count - 1) % 1000} {float(count - 1)!r}")
        self.assertEqual(self.client._backlog, [])

    def test_a_closed_pipe_marks_the_guard_not_running(self):
        self.client.start()
        for _, fd, _ in self.spawner.launches:
            os.close(fd)
        self.spawner.launches.clear()
        self.client.arm(11, 1.0)  # EPIPE
        self.assertFalse(self.client.running)
        self.assertEqual(self.client.armed, {11: (1.0, None)})  # resent after the restart

    def test_stop_closes_the_pipe_and_waits_for_the_exit(self):
        self.client.start()
        protocol = self.protocol()
        d = self.client.stop()
        self.assertFalse(self.client.running)
        self.assertEqual(self.spawner.read(), "")  # end of file for the guard
        self.assertNoResult(d)
        protocol.processEnded(Failure(error.ProcessDone(0)))
        self.successResultOf(d)
        self.clock.advance(60)
        self.assertEqual(len(self.spawner.launches), 1, "not restarted after a stop")


class GuardClientIntegrationTests(unittest.TestCase):
    """The real guard program on trial's reactor."""

    timeout = 30

    def setUp(self):
        self.client = GuardClient(reactor, events=EventLog())
        self.addCleanup(self.client.stop)

    def sleeper(self):
        proc = subprocess.Popen(["sleep", "300"], process_group=0)

        def cleanup():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
        self.addCleanup(cleanup)
        return proc

    @defer.inlineCallbacks
    def test_starts_in_its_own_process_group(self):
        yield self.client.start()
        self.assertEqual(os.getpgid(self.client.pid), self.client.pid)
        self.assertNotEqual(os.getpgid(self.client.pid), os.getpgrp())
        self.assertLess(self.client.start_times[0], 2.0)

    @defer.inlineCallbacks
    def test_runs_ahead_of_ordinary_work_when_root(self):
        yield self.client.start()
        priority = os.getpriority(os.PRIO_PROCESS, self.client.pid)
        if os.geteuid() == 0:
            self.assertEqual(priority, GUARD_NICE)
        else:
            self.assertEqual(priority, os.getpriority(os.PRIO_PROCESS, 0))

    @defer.inlineCallbacks
    def test_kills_an_armed_group_at_its_deadline(self):
        yield self.client.start()
        proc = self.sleeper()
        deadline = lease_clock() + 0.2
        self.client.arm(proc.pid, deadline, label="A")
        yield defer.ensureDeferred(wait_until(reactor, lambda: self.client.kills, timeout=5))
        self.assertEqual(proc.wait(5), -signal.SIGKILL)
        [(pgid, label, late)] = self.client.kills
        self.assertEqual((pgid, label), (proc.pid, "A"))
        self.assertLess(late, 0.1)

    @defer.inlineCallbacks
    def test_disarmed_group_survives(self):
        yield self.client.start()
        proc = self.sleeper()
        self.client.arm(proc.pid, lease_clock() + 0.2)
        self.client.disarm(proc.pid)
        yield self.client.ping()
        yield task.deferLater(reactor, 0.4, lambda: None)  # past the deadline
        self.assertIsNone(proc.poll())

    @defer.inlineCallbacks
    def test_a_killed_guard_is_restarted_and_still_enforces(self):
        yield self.client.start()
        proc = self.sleeper()
        self.client.arm(proc.pid, lease_clock() + 1.0, label="A")
        first = self.client.pid
        os.kill(first, signal.SIGKILL)
        yield defer.ensureDeferred(wait_until(
            reactor, lambda: self.client.pid not in (None, first), timeout=5))
        yield defer.ensureDeferred(wait_until(reactor, lambda: proc.poll() is not None,
                                              timeout=5))
        self.assertEqual(proc.returncode, -signal.SIGKILL)
        self.assertEqual(self.client.restarts, 1)

    @defer.inlineCallbacks
    def test_stop_kills_what_is_still_armed(self):
        yield self.client.start()
        proc = self.sleeper()
        self.client.arm(proc.pid, lease_clock() + 300)
        pid = self.client.pid
        yield self.client.stop()
        self.assertFalse(pid_alive(pid))
        self.assertEqual(proc.wait(5), -signal.SIGKILL)
