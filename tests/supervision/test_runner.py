"""Unit tests for L{clsd.supervision.runner.ServiceRunner}: a Clock and fake processes."""

import signal

import attrs
from twisted.internet import defer, error
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.config import Backoff, CrashLoop, HealthCheck, LogFiles, ServiceConfig
from clsd.events import EventLog
from clsd.supervision.core.policy import KILL_WAIT
from clsd.supervision.runner import OUTPUT_DRAIN_GRACE, ServiceRunner


class FakeTransport:
    def __init__(self, world, pid):
        self.world = world
        self.pid = pid
        self.stdin_closed = False
        self.lost = False
        self.protocol = None

    def closeStdin(self):
        self.stdin_closed = True

    def loseConnection(self):
        self.lost = True
        self.world.end(self.pid)


class FakeOS:
    """Processes and process groups for a runner: spawn, signal, alive."""

    def __init__(self):
        self.next_pid = 500
        self.transports = {}
        self.leaders = set()         # leaders not yet reaped
        self.members = {}            # pgid -> count of other live members
        self.signals = []
        self.spawn_error = None
        self.obey = True             # a leader dies of the signals it receives
        self.spawned = []

    def spawn(self, protocol):
        if self.spawn_error is not None:
            raise self.spawn_error
        self.next_pid += 1
        pid = self.next_pid
        transport = FakeTransport(self, pid)
        transport.protocol = protocol
        self.transports[pid] = transport
        self.leaders.add(pid)
        self.spawned.append(pid)
        protocol.makeConnection(transport)
        return transport

    def exit(self, pid, code=None, signum=None, ended=True):
        """The leader C{pid} dies; its pipes close too unless C{ended} is false."""
        self.leaders.discard(pid)
        if signum is not None:
            reason = error.ProcessTerminated(None, signum, None)
        elif code:
            reason = error.ProcessTerminated(code, None, None)
        else:
            reason = error.ProcessDone(0)
        self.transports[pid].protocol.processExited(Failure(reason))
        if ended:
            self.end(pid)

    def end(self, pid):
        protocol = self.transports[pid].protocol
        if not protocol.ended.called:
            protocol.processEnded(Failure(error.ProcessDone(0)))

    def signal(self, pgid, signum):
        self.signals.append((pgid, signum))
        if signum == signal.SIGKILL:
            self.members.pop(pgid, None)
        if self.obey and pgid in self.leaders:
            self.exit(pgid, signum=signum)
        return True

    def alive(self, pgid):
        return pgid in self.leaders or self.members.get(pgid, 0) > 0

    @property
    def live(self):
        return len(self.leaders) + sum(1 for n in self.members.values() if n)


class FakeRegistry:
    def __init__(self):
        self.records = {}

    def add(self, service, pgid, stop_signal, stop_timeout):
        self.records[pgid] = (service, stop_signal, stop_timeout)

    def remove(self, pgid):
        self.records.pop(pgid, None)


@attrs.frozen
class Result:
    ok: bool
    detail: str
    latency: float = 0.0


class FakeChecker:
    def __init__(self, check, reactor):
        self.check_config = check
        self.pending = []

    def check(self):
        d = defer.Deferred()
        self.pending.append(d)
        return d

    def answer(self, ok, detail="probe"):
        self.pending.pop(0).callback(Result(ok, detail))


class FakeOutput:
    def __init__(self, logs):
        self.logs = logs
        self.out_data = b""
        self.err_data = b""
        self.closed = False

    def out(self, data):
        self.out_data += data

    def err(self, data):
        self.err_data += data

    def close(self):
        self.closed = True


def make_config(**overrides):
    values = dict(
        name="web", command=("server",),
        backoff=Backoff(initial=1.0, max=8.0, factor=2.0, jitter=0.0),
        crash_loop=CrashLoop(max_failures=4, window=60.0),
        stop_timeout=3.0,
        logs=LogFiles(stdout="/x/web.log", stderr="/x/web.log"),
    )
    values.update(overrides)
    return ServiceConfig(**values)


class RunnerTestCase(unittest.TestCase):
    def make_runner(self, **config):
        self.clock = Clock()
        self.os = FakeOS()
        self.registry = FakeRegistry()
        self.events = EventLog(wall=lambda: 0.0, monotonic=self.clock.seconds)
        self.checkers = []
        self.outputs = []

        def checker_factory(check, reactor):
            self.assertIs(reactor, self.clock)
            checker = FakeChecker(check, reactor)
            self.checkers.append(checker)
            return checker

        def output_factory(logs):
            output = FakeOutput(logs)
            self.outputs.append(output)
            return output

        self.runner = ServiceRunner(
            make_config(**config), self.clock, spawn=self.os.spawn, groups=self.os,
            events=self.events, registry=self.registry, checker_factory=checker_factory,
            monotonic=self.clock.seconds, random=lambda: 0.5, output_factory=output_factory,
        )
        return self.runner

    def reasons(self, kind=None):
        return [e["reason"] for e in self.events.recent() if kind is None or e["kind"] == kind]

    @property
    def pid(self):
        return self.runner.status()["pid"]


class StartStopTests(RunnerTestCase):
    def test_start(self):
        runner = self.make_runner()
        runner.startService()
        status = runner.status()
        self.assertEqual(status["state"], "running")
        self.assertEqual(status["pid"], 501)
        self.assertEqual(status["name"], "web")
        self.assertEqual(status["restarts"], 0)
        self.assertEqual(status["last_reason"], "spawned pid=501")
        self.assertEqual(self.registry.records, {501: ("web", "TERM", 3.0)})
        self.assertTrue(self.os.transports[501].stdin_closed)
        self.assertIn("spawned pid=501", self.reasons("spawned"))
        self.assertEqual(self.events.recent(1)[0]["subject"], "web")

    def test_stop_waits_for_exit(self):
        runner = self.make_runner()
        runner.startService()
        self.os.obey = False
        stopped = runner.stopService()
        self.assertEqual(self.os.signals, [(501, signal.SIGTERM)])
        self.assertNoResult(stopped)
        self.os.exit(501, signum=signal.SIGTERM)
        self.successResultOf(stopped)
        self.assertEqual(runner.status()["state"], "stopped")
        self.assertEqual(self.registry.records, {})
        self.assertTrue(self.outputs[0].closed)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_kills_after_timeout(self):
        runner = self.make_runner(stop_timeout=3.0)
        runner.startService()
        self.os.obey = False
        stopped = runner.stop()
        self.clock.advance(2.9)
        self.assertEqual(self.os.signals, [(501, signal.SIGTERM)])
        self.clock.advance(0.1)
        self.assertEqual(self.os.signals[-1], (501, signal.SIGKILL))
        self.assertNoResult(stopped)
        self.os.exit(501, signum=signal.SIGKILL)
        self.successResultOf(stopped)
        self.assertIn("still running 3s after SIGTERM: SIGKILL to process group 501",
                      self.reasons("kill"))

    def test_stop_with_a_deadline(self):
        runner = self.make_runner(stop_timeout=3.0)
        runner.startService()
        self.os.obey = False
        stopped = runner.stop(kill_after=0.5)
        self.clock.advance(0.5)
        self.assertEqual(self.os.signals, [(501, signal.SIGTERM), (501, signal.SIGKILL)])
        self.os.exit(501, signum=signal.SIGKILL)
        self.successResultOf(stopped)

    def test_observers_see_every_batch_and_may_act(self):
        runner = self.make_runner()
        seen = []

        def observer(r):
            seen.append((r.state.value, r.process_alive, r.pid))
            if r.state.value == "running" and len(seen) == 1:
                r.stop()  # allowed: called outside the runner's own handling
        runner.add_observer(observer)
        runner.start()
        self.assertEqual(seen[0], ("running", True, 501))
        self.assertEqual(seen[-1], ("stopped", False, 501))
        self.assertEqual(runner.state.value, "stopped")

    def test_stop_waits_for_the_whole_group(self):
        runner = self.make_runner()
        runner.startService()
        self.os.members[501] = 1  # a grandchild that ignores SIGTERM
        stopped = runner.stop()
        self.assertEqual(runner.status()["state"], "stopping")
        self.assertNoResult(stopped)
        self.clock.advance(1.0)  # polling, the grandchild lives on
        self.assertNoResult(stopped)
        self.os.members[501] = 0
        self.clock.advance(0.2)
        self.successResultOf(stopped)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_stop_sigkills_a_lingering_grandchild(self):
        runner = self.make_runner(stop_timeout=2.0)
        runner.startService()
        self.os.members[501] = 1
        stopped = runner.stop()
        self.clock.pump([0.1] * 25)
        self.assertIn((501, signal.SIGKILL), self.os.signals)
        self.successResultOf(stopped)

    def test_stop_gives_up_on_an_unkillable_group(self):
        runner = self.make_runner(stop_timeout=1.0)
        runner.startService()
        self.os.obey = False
        stopped = runner.stop()
        self.clock.advance(1.0)
        self.clock.advance(KILL_WAIT)
        self.successResultOf(stopped)
        self.assertTrue(self.reasons("abandoned"))
        # When the abandoned leader finally goes, nothing happens.
        self.os.exit(501, signum=signal.SIGKILL)
        self.assertEqual(runner.status()["state"], "stopped")

    def test_stop_when_stopped(self):
        runner = self.make_runner()
        self.successResultOf(runner.stop())

    def test_stop_collects_output_before_firing(self):
        runner = self.make_runner()
        runner.startService()
        self.os.obey = False
        stopped = runner.stop()
        self.os.exit(501, signum=signal.SIGTERM, ended=False)
        self.assertNoResult(stopped)
        self.os.end(501)
        self.successResultOf(stopped)

    def test_stuck_pipes_are_closed_after_grace(self):
        runner = self.make_runner()
        runner.startService()
        self.os.obey = False
        stopped = runner.stop()
        self.os.exit(501, signum=signal.SIGTERM, ended=False)
        self.clock.advance(OUTPUT_DRAIN_GRACE)
        self.assertTrue(self.os.transports[501].lost)
        self.successResultOf(stopped)

    def test_output_goes_to_the_output_files(self):
        runner = self.make_runner()
        runner.startService()
        protocol = self.os.transports[501].protocol
        protocol.outReceived(b"hello\n")
        protocol.errReceived(b"oops\n")
        self.assertEqual(self.outputs[0].out_data, b"hello\n")
        self.assertEqual(self.outputs[0].err_data, b"oops\n")
        self.assertEqual(self.outputs[0].logs.stdout, "/x/web.log")

    def test_unopenable_output_is_discarded_with_a_warning(self):
        runner = self.make_runner()

        def broken(logs):
            raise PermissionError(13, "Permission denied")

        runner._output_factory = broken
        runner.startService()
        self.os.transports[501].protocol.outReceived(b"lost")
        self.assertEqual(runner.status()["state"], "running")
        self.assertTrue(any("output is discarded" in r for r in self.reasons("warning")))


class RestartTests(RunnerTestCase):
    def test_crash_restarts_in_the_same_call(self):
        runner = self.make_runner()
        runner.startService()
        self.os.exit(501, code=1)
        # No clock advance: the restart happened inside processExited.
        self.assertEqual(self.os.spawned, [501, 502])
        status = runner.status()
        self.assertEqual((status["state"], status["pid"], status["restarts"]),
                         ("running", 502, 1))
        self.assertEqual(status["last_reason"], "spawned pid=502")
        self.assertIn("exited code=1", self.reasons("exited"))
        self.assertEqual(set(self.registry.records), {502})

    def test_backoff_then_restart(self):
        runner = self.make_runner()
        runner.startService()
        self.os.exit(501, code=1)
        self.os.exit(502, signum=signal.SIGSEGV)
        self.assertEqual(runner.status()["state"], "backoff")
        self.assertEqual(runner.status()["last_reason"], "killed by SIGSEGV")
        self.clock.advance(0.99)
        self.assertEqual(self.os.spawned, [501, 502])
        self.clock.advance(0.01)
        self.assertEqual(self.os.spawned, [501, 502, 503])

    def test_crash_loop_then_reset(self):
        runner = self.make_runner(crash_loop=CrashLoop(max_failures=3, window=60.0))
        runner.startService()
        self.os.exit(501, code=1)
        self.os.exit(502, code=1)
        self.clock.advance(1.0)
        self.os.exit(503, code=1)
        self.assertEqual(runner.status()["state"], "failed")
        self.assertEqual(runner.status()["last_reason"], "crash-loop 3 in 60s")
        self.clock.advance(100)
        self.assertEqual(len(self.os.spawned), 3)
        runner.start()
        self.assertEqual(len(self.os.spawned), 3, "failed is sticky")
        runner.reset()
        self.assertEqual(runner.status()["state"], "running")
        self.assertEqual(len(self.os.spawned), 4)

    def test_crash_with_leftover_members(self):
        runner = self.make_runner()
        runner.startService()
        self.os.members[501] = 1
        self.os.obey = False
        self.os.exit(501, code=1)
        self.assertEqual(runner.status()["state"], "stopping")
        self.assertEqual(self.os.signals, [(501, signal.SIGTERM)])
        self.assertEqual(self.os.spawned, [501])
        self.os.members[501] = 0
        self.clock.advance(0.005)
        self.assertEqual(self.os.spawned, [501, 502])
        self.assertEqual(self.os.live, 1)

    def test_spawn_failure(self):
        runner = self.make_runner(crash_loop=CrashLoop(max_failures=2, window=60.0))
        self.os.spawn_error = FileNotFoundError(2, "No such file or directory")
        runner.startService()
        self.assertEqual(runner.status()["state"], "failed")
        self.assertIn("spawn failed: FileNotFoundError: [Errno 2] No such file or directory",
                      self.reasons("spawn-failed"))
        self.os.spawn_error = None
        runner.reset()
        self.assertEqual(runner.status()["state"], "running")

    def test_clean_exit_under_on_failure(self):
        runner = self.make_runner(restart="on-failure")
        runner.startService()
        self.os.exit(501, code=0)
        self.assertEqual(runner.status()["state"], "exited")
        self.assertIsNone(runner.status()["pid"])
        self.assertEqual(self.os.spawned, [501])
        self.successResultOf(runner.stop())


class HealthTests(RunnerTestCase):
    def make(self, **check):
        values = dict(type="tcp", target=("127.0.0.1", 1), interval=1.0, timeout=0.5,
                      rise=1, fall=2)
        values.update(check)
        runner = self.make_runner(check=HealthCheck(**values))
        runner.startService()
        return runner, self.checkers[0]

    def test_checks_every_interval(self):
        runner, checker = self.make()
        self.assertEqual(runner.status()["state"], "starting")
        self.assertIs(runner.status()["healthy"], False)
        self.clock.advance(1.0)
        self.assertEqual(len(checker.pending), 1)
        checker.answer(True)
        self.assertEqual(runner.status()["state"], "running")
        self.assertTrue(runner.status()["healthy"])
        self.clock.advance(1.0)
        self.assertEqual(len(checker.pending), 1)

    def test_startup_interval_finds_a_ready_service_soon(self):
        runner, checker = self.make(interval=1.0, timeout=0.05, startup_interval=0.05,
                                    grace=1.0)
        self.clock.advance(0.05)
        checker.answer(False, "connection refused")
        self.clock.advance(0.05)
        checker.answer(True)
        self.assertEqual(runner.status()["state"], "running")
        self.assertAlmostEqual(runner.status()["since"], 0.1)  # not at 1.0, a full interval
        self.clock.advance(0.95)
        self.assertEqual(checker.pending, [], "still probing at the start-up pace")
        self.clock.advance(0.05)
        self.assertEqual(len(checker.pending), 1)

    def test_tick_during_a_slow_probe_probes_when_it_ends(self):
        runner, checker = self.make(interval=1.0, timeout=1.0, fall=3)
        self.clock.advance(1.0)
        self.clock.advance(1.0)
        self.assertEqual(len(checker.pending), 1, "probes overlap")
        checker.answer(False, "timed out")
        self.assertEqual(len(checker.pending), 1, "the due probe waits for the next tick")
        checker.answer(True)
        self.assertEqual(runner.status()["state"], "running")

    def test_fall_restarts(self):
        runner, checker = self.make(fall=2)
        self.clock.advance(1.0)
        checker.answer(True)
        for _ in range(2):
            self.clock.advance(1.0)
            checker.answer(False, "refused")
        self.assertIn((501, signal.SIGTERM), self.os.signals)
        self.assertEqual(self.os.spawned, [501, 502])
        self.assertIn("health fall 2/2", self.reasons("health"))

    def test_late_result_for_dead_instance_is_ignored(self):
        runner, checker = self.make()
        self.clock.advance(1.0)
        self.os.exit(501, code=1)
        checker.answer(False)
        self.assertEqual(runner.status()["pid"], 502)
        self.assertEqual(runner.status()["recent_failures"], 1)

    def test_checker_error_is_a_failed_check(self):
        runner, checker = self.make(fall=1)
        self.clock.advance(1.0)
        checker.pending.pop(0).errback(RuntimeError("bug"))
        self.assertIn("health fall 1/1", self.reasons("health"))

    def test_check_without_factory_is_refused(self):
        config = make_config(check=HealthCheck(type="tcp", target=("127.0.0.1", 1)))
        self.assertRaises(ValueError, ServiceRunner, config, Clock(), spawn=None,
                          groups=None, events=None)
