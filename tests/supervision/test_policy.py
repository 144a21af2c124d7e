"""Unit tests for the pure lifecycle policy L{clsd.supervision.core.policy}."""

import signal

from twisted.trial import unittest

from clsd.config import Backoff, CrashLoop, HealthCheck, ServiceConfig
from clsd.supervision.core.policy import (
    KILL_WAIT, TIMER_ABANDON, TIMER_CHECK, TIMER_KILL, TIMER_RESTART,
    CancelTimer, Exited, GroupGone, HealthResult, Record, ResetRequested, RunCheck,
    ScheduleTimer, ServicePolicy, SignalGroup, Spawn, Spawned, SpawnFailed,
    StartRequested, State, StopRequested, TimerFired, describe_exit,
)

NO_JITTER = 0.5


def make_config(**overrides):
    values = dict(
        name="web", command=("server",),
        backoff=Backoff(initial=1.0, max=8.0, factor=2.0, jitter=0.0),
        crash_loop=CrashLoop(max_failures=5, window=60.0),
        stable_after=10.0, stop_timeout=3.0,
    )
    values.update(overrides)
    return ServiceConfig(**values)


def kinds(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


def records(actions, kind=None):
    return [a for a in actions if isinstance(a, Record) and (kind is None or a.kind == kind)]


class Harness:
    """Drive one policy, remembering the last actions and the current time."""

    def __init__(self, test, **config):
        self.test = test
        self.now = 100.0
        self.policy = ServicePolicy(make_config(**config), random=lambda: NO_JITTER,
                                    now=self.now)
        self.next_pid = 1000
        self.actions = []

    def feed(self, event, at=None):
        if at is not None:
            self.now = at
        self.actions = self.policy.handle(event, self.now)
        return self.actions

    def advance(self, seconds):
        self.now += seconds

    def spawned(self):
        """Answer the pending Spawn with a fresh pid."""
        self.test.assertEqual(kinds(self.actions, Spawn), [Spawn()])
        self.next_pid += 1
        return self.feed(Spawned(self.next_pid))

    def start(self):
        self.feed(StartRequested())
        return self.spawned()

    def crash(self, code=1, sig=None, group_alive=False):
        return self.feed(Exited(code, sig, group_alive))

    @property
    def state(self):
        return self.policy.state


class StartStopTests(unittest.TestCase):
    def test_initially_stopped(self):
        h = Harness(self)
        self.assertIs(h.state, State.STOPPED)
        self.assertIsNone(h.policy.pid)

    def test_start_spawns_then_running(self):
        h = Harness(self)
        actions = h.feed(StartRequested())
        self.assertIs(h.state, State.STARTING)
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        actions = h.spawned()
        self.assertIs(h.state, State.RUNNING)
        self.assertEqual(h.policy.pid, 1001)
        self.assertEqual(h.policy.last_reason, "spawned pid=1001")
        self.assertEqual(h.policy.restarts, 0)
        self.assertEqual([r.reason for r in records(actions)],
                         ["spawned pid=1001", "spawned pid=1001"])

    def test_stop_with_a_deadline_kills_no_later_than_it(self):
        h = Harness(self, stop_timeout=3.0)
        h.start()
        actions = h.feed(StopRequested(kill_after=1.25))
        self.assertIn(ScheduleTimer(TIMER_KILL, 1.25), actions)
        actions = h.feed(TimerFired(TIMER_KILL), at=h.now + 1.25)
        self.assertIn(SignalGroup(1001, signal.SIGKILL), actions)
        self.assertEqual(records(actions, "kill")[0].reason,
                         "still running 1.25s after SIGTERM: SIGKILL to process group 1001")

    def test_a_deadline_later_than_stop_timeout_changes_nothing(self):
        h = Harness(self, stop_timeout=3.0)
        h.start()
        self.assertIn(ScheduleTimer(TIMER_KILL, 3.0), h.feed(StopRequested(kill_after=9.0)))

    def test_a_past_deadline_means_kill_at_once(self):
        h = Harness(self, stop_timeout=3.0)
        h.start()
        self.assertIn(ScheduleTimer(TIMER_KILL, 0.0), h.feed(StopRequested(kill_after=-0.5)))

    def test_a_deadline_while_stopping_brings_the_kill_forward(self):
        h = Harness(self, stop_timeout=3.0)
        h.start()
        h.feed(StopRequested())
        h.advance(1.0)
        self.assertEqual(kinds(h.feed(StopRequested(kill_after=5.0)), ScheduleTimer), [])
        self.assertEqual(h.feed(StopRequested(kill_after=0.5)),
                         [ScheduleTimer(TIMER_KILL, 0.5)])
        self.assertIn(SignalGroup(1001, signal.SIGKILL),
                      h.feed(TimerFired(TIMER_KILL), at=h.now + 0.5))
        # After the SIGKILL, another deadline has nothing to bring forward.
        self.assertEqual(h.feed(StopRequested(kill_after=0.0)), [])

    def test_start_while_running_does_nothing(self):
        h = Harness(self)
        h.start()
        self.assertEqual(h.feed(StartRequested()), [])

    def test_stop_signals_group_then_sigkill_after_timeout(self):
        h = Harness(self, stop_signal="INT", stop_timeout=3.0)
        h.start()
        actions = h.feed(StopRequested())
        self.assertIs(h.state, State.STOPPING)
        self.assertIn(SignalGroup(1001, signal.SIGINT), actions)
        self.assertIn(ScheduleTimer(TIMER_KILL, 3.0), actions)
        actions = h.feed(TimerFired(TIMER_KILL), at=h.now + 3.0)
        self.assertIn(SignalGroup(1001, signal.SIGKILL), actions)
        self.assertEqual(records(actions, "kill")[0].reason,
                         "still running 3s after SIGINT: SIGKILL to process group 1001")
        self.assertIs(h.state, State.STOPPING)

    def test_stop_completes_only_when_group_gone(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        h.feed(Exited(None, signal.SIGTERM, group_alive=True))
        self.assertIs(h.state, State.STOPPING, "a grandchild still runs")
        self.assertTrue(h.policy.process_alive)
        actions = h.feed(GroupGone())
        self.assertIs(h.state, State.STOPPED)
        self.assertFalse(h.policy.process_alive)
        self.assertIn(CancelTimer(TIMER_KILL), actions)
        self.assertEqual(kinds(actions, Spawn), [])

    def test_stop_exit_is_not_a_failure(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        h.feed(Exited(None, signal.SIGTERM))
        self.assertIs(h.state, State.STOPPED)
        self.assertEqual(h.policy.recent_failures(h.now), 0)

    def test_group_gone_before_leader_exit_is_ignored(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        self.assertEqual(h.feed(GroupGone()), [])
        self.assertIs(h.state, State.STOPPING)

    def test_abandon_after_sigkill_wait(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        actions = h.feed(TimerFired(TIMER_KILL))
        self.assertIn(ScheduleTimer(TIMER_ABANDON, KILL_WAIT), actions)
        actions = h.feed(TimerFired(TIMER_ABANDON))
        self.assertIs(h.state, State.STOPPED)
        self.assertEqual(len(records(actions, "abandoned")), 1)

    def test_stop_in_backoff_cancels_restart(self):
        h = Harness(self)
        h.start()
        h.crash()
        h.spawned()
        h.crash()
        self.assertIs(h.state, State.BACKOFF)
        actions = h.feed(StopRequested())
        self.assertIs(h.state, State.STOPPED)
        self.assertIn(CancelTimer(TIMER_RESTART), actions)
        self.assertEqual(h.feed(TimerFired(TIMER_RESTART)), [], "stale timer ignored")

    def test_start_during_stop_restarts_after_group_gone(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        self.assertEqual(kinds(h.feed(StartRequested()), Spawn), [])
        actions = h.feed(Exited(0, None))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.restarts, 0, "an operator start is not a restart")

    def test_stop_during_crash_cleanup_wins(self):
        h = Harness(self)
        h.start()
        h.crash(group_alive=True)
        self.assertIs(h.state, State.STOPPING)
        h.feed(StopRequested())
        actions = h.feed(GroupGone())
        self.assertIs(h.state, State.STOPPED)
        self.assertEqual(kinds(actions, Spawn), [])

    def test_stop_from_exited(self):
        h = Harness(self, restart="never")
        h.start()
        h.crash()
        self.assertIs(h.state, State.EXITED)
        h.feed(StopRequested())
        self.assertIs(h.state, State.STOPPED)


class RestartTests(unittest.TestCase):
    def test_first_crash_restarts_immediately(self):
        h = Harness(self)
        h.start()
        actions = h.crash(code=1)
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(kinds(actions, ScheduleTimer), [])
        self.assertIs(h.state, State.STARTING)
        self.assertEqual(h.policy.last_reason, "exited code=1")
        self.assertEqual(h.policy.restarts, 1)
        self.assertEqual(records(actions, "exited")[0].fields["code"], 1)

    def test_backoff_grows_and_is_capped(self):
        h = Harness(self)  # initial 1, factor 2, max 8, no jitter
        h.start()
        delays = []
        for _ in range(4):
            actions = h.crash()
            if h.state is State.BACKOFF:
                (timer,) = kinds(actions, ScheduleTimer)
                self.assertEqual(timer.name, TIMER_RESTART)
                delays.append(timer.delay)
                h.advance(timer.delay)
                actions = h.feed(TimerFired(TIMER_RESTART))
                self.assertEqual(h.policy.last_reason, "backoff elapsed")
            h.spawned()
            h.advance(1.0)
        self.assertEqual(delays, [1.0, 2.0, 4.0])
        h.policy.config = make_config(crash_loop=CrashLoop(max_failures=100, window=60))
        for _ in range(3):
            (timer,) = kinds(h.crash(), ScheduleTimer)
            h.feed(TimerFired(TIMER_RESTART))
            h.spawned()
        self.assertEqual(timer.delay, 8.0)

    def test_jitter_uses_injected_random(self):
        h = Harness(self, backoff=Backoff(initial=1.0, max=8.0, factor=2.0, jitter=0.5))
        h.policy._random = lambda: 0.0
        h.start()
        h.crash()
        h.spawned()
        (timer,) = kinds(h.crash(), ScheduleTimer)
        self.assertEqual(timer.delay, 0.5)

    def test_stable_after_resets_backoff(self):
        h = Harness(self, stable_after=10.0)
        h.start()
        h.crash()
        h.spawned()
        h.crash()
        self.assertIs(h.state, State.BACKOFF)
        h.feed(TimerFired(TIMER_RESTART))
        h.spawned()
        h.advance(10.0)
        actions = h.crash()
        self.assertEqual(kinds(actions, Spawn), [Spawn()], "ran 10 s: immediate again")

    def test_killed_by_signal_reason(self):
        h = Harness(self)
        h.start()
        h.crash(code=None, sig=signal.SIGKILL)
        self.assertEqual(h.policy.last_reason, "killed by SIGKILL")

    def test_on_failure_clean_exit_is_not_restarted(self):
        h = Harness(self, restart="on-failure")
        h.start()
        actions = h.crash(code=0)
        self.assertIs(h.state, State.EXITED)
        self.assertEqual(kinds(actions, Spawn), [])
        self.assertEqual(h.policy.last_reason, "exited code=0")

    def test_always_restarts_clean_exit(self):
        h = Harness(self, restart="always")
        h.start()
        self.assertEqual(kinds(h.crash(code=0), Spawn), [Spawn()])
        self.assertEqual(h.policy.recent_failures(h.now), 0, "a clean exit is no failure")

    def test_never_does_not_restart_a_crash(self):
        h = Harness(self, restart="never")
        h.start()
        h.crash(code=3)
        self.assertIs(h.state, State.EXITED)
        self.assertEqual(h.policy.last_reason, "exited code=3")
        h.feed(StartRequested())
        self.assertIs(h.state, State.STARTING, "an exited service can be started again")

    def test_crash_with_leftover_group_stops_them_before_restart(self):
        h = Harness(self, stop_timeout=2.0)
        h.start()
        actions = h.crash(code=1, group_alive=True)
        self.assertIs(h.state, State.STOPPING)
        self.assertEqual(h.policy.last_reason,
                         "exited code=1; stopping the rest of its process group")
        self.assertIn(SignalGroup(1001, signal.SIGTERM), actions)
        self.assertIn(ScheduleTimer(TIMER_KILL, 2.0), actions)
        self.assertEqual(kinds(actions, Spawn), [])
        actions = h.feed(GroupGone())
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.last_reason, "exited code=1")

    def test_spawn_failure_counts_and_backs_off(self):
        h = Harness(self)
        h.feed(StartRequested())
        actions = h.feed(SpawnFailed("No such file or directory: 'server'"))
        self.assertEqual(records(actions, "spawn-failed")[0].reason,
                         "spawn failed: No such file or directory: 'server'")
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        actions = h.feed(SpawnFailed("again"))
        self.assertIs(h.state, State.BACKOFF)
        self.assertEqual(h.policy.recent_failures(h.now), 2)

    def test_exit_after_exit_is_ignored(self):
        h = Harness(self, restart="never")
        h.start()
        h.crash()
        self.assertEqual(h.crash(), [])


class CrashLoopTests(unittest.TestCase):
    def crash_times(self, h, count, spacing):
        for _ in range(count):
            h.advance(spacing)
            h.crash()
            if h.state is State.BACKOFF:
                h.feed(TimerFired(TIMER_RESTART))
            if h.state is State.STARTING:
                h.spawned()

    def test_max_failures_within_window_is_failed(self):
        h = Harness(self, crash_loop=CrashLoop(max_failures=5, window=60.0))
        h.start()
        self.crash_times(h, 4, 1.0)
        self.assertIsNot(h.state, State.FAILED)
        h.advance(1.0)
        actions = h.crash()
        self.assertIs(h.state, State.FAILED)
        self.assertEqual(h.policy.last_reason, "crash-loop 5 in 60s")
        (state,) = records(actions, "state")
        self.assertEqual(state.fields["last"], "exited code=1")
        self.assertEqual(kinds(actions, Spawn), [])

    def test_failures_outside_window_do_not_count(self):
        h = Harness(self, crash_loop=CrashLoop(max_failures=3, window=10.0),
                    stable_after=1000.0)
        h.start()
        self.crash_times(h, 10, 6.0)
        self.assertIsNot(h.state, State.FAILED)

    def test_failed_is_sticky_until_reset(self):
        h = Harness(self, crash_loop=CrashLoop(max_failures=2, window=60.0))
        h.start()
        self.crash_times(h, 2, 1.0)
        self.assertIs(h.state, State.FAILED)
        actions = h.feed(StartRequested())
        self.assertIs(h.state, State.FAILED)
        self.assertEqual(records(actions, "refused")[0].reason,
                         "start refused: service is failed (reset it first)")
        h.feed(StopRequested())
        self.assertIs(h.state, State.FAILED)
        h.feed(TimerFired(TIMER_RESTART))
        self.assertIs(h.state, State.FAILED)
        actions = h.feed(ResetRequested())
        self.assertIs(h.state, State.STARTING)
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.recent_failures(h.now), 0)
        h.spawned()
        self.assertEqual(kinds(h.crash(), Spawn), [Spawn()], "reset cleared the backoff too")

    def test_crash_loop_with_leftovers_decided_at_exit(self):
        h = Harness(self, crash_loop=CrashLoop(max_failures=1, window=60.0))
        h.start()
        h.crash(group_alive=True)
        self.assertIs(h.state, State.STOPPING)
        h.feed(StartRequested())  # cannot override the pending failure
        h.feed(GroupGone())
        self.assertIs(h.state, State.FAILED)

    def test_reset_while_stopping_towards_failed(self):
        h = Harness(self, crash_loop=CrashLoop(max_failures=1, window=60.0))
        h.start()
        h.crash(group_alive=True)
        h.feed(ResetRequested())
        actions = h.feed(GroupGone())
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_reset_in_backoff_restarts_now(self):
        h = Harness(self)
        h.start()
        h.crash()
        h.spawned()
        h.crash()
        actions = h.feed(ResetRequested())
        self.assertIn(CancelTimer(TIMER_RESTART), actions)
        self.assertEqual(kinds(actions, Spawn), [Spawn()])


class HealthTests(unittest.TestCase):
    def harness(self, **check):
        values = dict(type="tcp", target=("127.0.0.1", 1), interval=1.0, timeout=0.5,
                      rise=2, fall=3, grace=0.0)
        values.update(check)
        h = Harness(self, check=HealthCheck(**values))
        return h

    def check(self, h, ok, detail="x"):
        h.advance(1.0)
        actions = h.feed(TimerFired(TIMER_CHECK))
        self.assertIn(RunCheck(h.policy.pid), actions)
        self.assertIn(ScheduleTimer(TIMER_CHECK, 1.0), actions)
        return h.feed(HealthResult(ok, detail, h.policy.pid))

    def test_starting_until_rise(self):
        h = self.harness(rise=2)
        actions = h.start()
        self.assertIs(h.state, State.STARTING)
        self.assertIs(h.policy.healthy, False)
        self.assertIn(ScheduleTimer(TIMER_CHECK, 1.0), actions)
        self.check(h, True)
        self.assertIs(h.state, State.STARTING)
        actions = self.check(h, True)
        self.assertIs(h.state, State.RUNNING)
        self.assertTrue(h.policy.healthy)
        self.assertEqual(h.policy.last_reason, "health rise 2/2")

    def test_fall_restarts_and_counts_as_failure(self):
        h = self.harness(rise=1, fall=3)
        h.start()
        self.check(h, True)
        self.check(h, False)
        self.check(h, False)
        self.assertIs(h.state, State.RUNNING)
        actions = self.check(h, False, "connection refused")
        self.assertIs(h.state, State.STOPPING)
        self.assertEqual(h.policy.last_reason, "health fall 3/3")
        self.assertIn(SignalGroup(1001, signal.SIGTERM), actions)
        self.assertIn(CancelTimer(TIMER_CHECK), actions)
        self.assertEqual(h.policy.recent_failures(h.now), 1)
        fall = [r for r in records(actions, "health") if r.reason == "health fall 3/3"]
        self.assertEqual(fall[0].fields["detail"], "connection refused")
        actions = h.feed(Exited(None, signal.SIGTERM))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.last_reason, "health fall 3/3")

    def test_success_resets_fall_count(self):
        h = self.harness(rise=1, fall=2)
        h.start()
        for ok in (True, False, True, False, True, False):
            self.check(h, ok)
        self.assertIs(h.state, State.RUNNING)

    def test_failures_within_grace_do_not_count(self):
        h = self.harness(rise=1, fall=1, grace=5.0)
        h.start()
        for _ in range(4):
            self.check(h, False)
        self.assertIs(h.state, State.STARTING)
        self.check(h, False)  # 5 s after start
        self.assertIs(h.state, State.STOPPING)

    def test_never_healthy_is_restarted(self):
        h = self.harness(rise=2, fall=2)
        h.start()
        self.check(h, False)
        self.check(h, False)
        self.assertIs(h.state, State.STOPPING)

    def test_stale_result_ignored(self):
        h = self.harness(rise=1)
        h.start()
        self.assertEqual(h.feed(HealthResult(True, "", pid=4242)), [])
        self.assertIs(h.state, State.STARTING)

    def test_no_overlapping_checks(self):
        h = self.harness()
        h.start()
        actions = h.feed(TimerFired(TIMER_CHECK))
        self.assertEqual(len(kinds(actions, RunCheck)), 1)
        actions = h.feed(TimerFired(TIMER_CHECK))
        self.assertEqual(kinds(actions, RunCheck), [], "previous check still running")
        self.assertIn(ScheduleTimer(TIMER_CHECK, 1.0), actions)

    def test_probe_due_while_one_is_out_runs_when_it_ends(self):
        # Not an interval later: a slow probe must not slow the pace down.
        h = self.harness(rise=1, fall=3)
        h.start()
        h.feed(TimerFired(TIMER_CHECK))
        actions = h.feed(TimerFired(TIMER_CHECK))
        self.assertEqual(kinds(actions, RunCheck), [])
        actions = h.feed(HealthResult(False, "timed out", h.policy.pid))
        self.assertEqual(kinds(actions, RunCheck), [RunCheck(h.policy.pid)])
        actions = h.feed(HealthResult(True, "ok", h.policy.pid))
        self.assertIs(h.state, State.RUNNING)
        self.assertEqual(kinds(actions, RunCheck), [], "no probe was due")

    def test_probe_due_is_dropped_when_the_check_falls(self):
        h = self.harness(rise=1, fall=1)
        h.start()
        h.feed(TimerFired(TIMER_CHECK))
        h.feed(TimerFired(TIMER_CHECK))
        actions = h.feed(HealthResult(False, "refused", h.policy.pid))
        self.assertIs(h.state, State.STOPPING)
        self.assertEqual(kinds(actions, RunCheck), [])

    def test_startup_interval_until_the_first_rise(self):
        h = self.harness(rise=2, startup_interval=0.05)
        actions = h.start()
        self.assertIn(ScheduleTimer(TIMER_CHECK, 0.05), actions)
        for ok in (False, True):
            actions = h.feed(TimerFired(TIMER_CHECK))
            self.assertIn(ScheduleTimer(TIMER_CHECK, 0.05), actions)
            h.feed(HealthResult(ok, "x", h.policy.pid))
        h.feed(TimerFired(TIMER_CHECK))
        actions = h.feed(HealthResult(True, "x", h.policy.pid))
        self.assertIs(h.state, State.RUNNING)
        self.assertIn(ScheduleTimer(TIMER_CHECK, 1.0), actions)
        actions = h.feed(TimerFired(TIMER_CHECK))
        self.assertIn(ScheduleTimer(TIMER_CHECK, 1.0), actions)
        # A restart starts at the start-up pace again.
        actions = h.crash()
        self.assertIn(ScheduleTimer(TIMER_CHECK, 0.05), h.spawned())

    def test_crash_cancels_checks(self):
        h = self.harness()
        h.start()
        actions = h.crash()
        self.assertIn(CancelTimer(TIMER_CHECK), actions)

    def test_never_policy_health_fall_stops_without_restart(self):
        h = self.harness(rise=1, fall=1)
        h.policy.config = make_config(restart="never", check=h.policy.config.check)
        h.start()
        self.check(h, False)
        h.feed(Exited(None, signal.SIGTERM))
        self.assertIs(h.state, State.EXITED)


class DescribeExitTests(unittest.TestCase):
    def test_reasons(self):
        self.assertEqual(describe_exit(1, None), "exited code=1")
        self.assertEqual(describe_exit(0, None), "exited code=0")
        self.assertEqual(describe_exit(None, signal.SIGKILL), "killed by SIGKILL")
        self.assertEqual(describe_exit(None, 200), "killed by signal 200")

    def test_unknown_event(self):
        self.assertRaises(TypeError, ServicePolicy(make_config(), lambda: 0.5).handle,
                          object(), 0.0)


class StaleTimerTests(unittest.TestCase):
    def test_unscheduled_timers_are_ignored(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        for name in (TIMER_ABANDON, TIMER_CHECK, TIMER_RESTART):
            self.assertEqual(h.feed(TimerFired(name)), [], name)
        self.assertIs(h.state, State.STOPPING)

    def test_cancelled_timer_is_ignored(self):
        h = Harness(self)
        h.start()
        h.feed(StopRequested())
        h.feed(Exited(0, None))  # cancels the kill timer
        self.assertEqual(h.feed(TimerFired(TIMER_KILL)), [])


class RefusedSpawnTests(unittest.TestCase):
    """A start refused for a transient reason is retried, not counted as a failure."""

    def test_retried_every_half_second_without_counting(self):
        from clsd.supervision.core.policy import REFUSED_RETRY, TIMER_RESTART, SpawnFailed

        h = Harness(self)
        h.feed(StartRequested())
        for _ in range(10):
            actions = h.feed(SpawnFailed("LeaseDeadlinePassed: late", transient=True))
            self.assertIs(h.state, State.BACKOFF)
            self.assertIn(ScheduleTimer(TIMER_RESTART, REFUSED_RETRY), actions)
            h.feed(TimerFired(TIMER_RESTART))
        self.assertEqual(h.policy.recent_failures(h.now), 0)
        self.assertEqual(h.policy.restarts, 0)
        h.spawned()
        self.assertIs(h.state, State.RUNNING)

    def test_a_stop_ends_the_retries(self):
        from clsd.supervision.core.policy import SpawnFailed

        h = Harness(self)
        h.feed(StartRequested())
        h.feed(SpawnFailed("late", transient=True))
        h.feed(StopRequested())
        self.assertIs(h.state, State.STOPPED)

    def test_a_released_refusal_is_tried_at_once(self):
        from clsd.supervision.core.policy import (
            TIMER_RESTART, CancelTimer, RetryRefused, Spawn, SpawnFailed,
        )

        h = Harness(self)
        h.feed(StartRequested())
        h.feed(SpawnFailed("waiting for exp to stop", transient=True))
        actions = h.feed(RetryRefused())
        self.assertIn(CancelTimer(TIMER_RESTART), actions)
        self.assertTrue(any(isinstance(a, Spawn) for a in actions), actions)
        self.assertIs(h.state, State.STARTING)
        self.assertEqual(h.policy.restarts, 0)

    def test_a_release_does_not_cut_a_real_backoff_short(self):
        from clsd.supervision.core.policy import RetryRefused

        h = Harness(self)
        h.start()
        h.feed(Exited(1, None))      # the first restart is immediate
        h.spawned()
        h.feed(Exited(1, None))      # the second waits its backoff
        self.assertIs(h.state, State.BACKOFF)
        self.assertEqual(h.feed(RetryRefused()), [])
        self.assertIs(h.state, State.BACKOFF)
