"""The pure policy of ``type = "forking"`` services: start command, main pid, stop command."""

import signal

from twisted.trial import unittest

from clsd.supervision.core.policy import (
    TIMER_KILL, TIMER_START, AwaitMainPid, CancelTimer, Exited, GroupGone, MainPid,
    RunStopCommand, ScheduleTimer, SignalGroup, SignalMain, Spawn, State, StopCommandDone,
    StopRequested, TimerFired, WatchMain,
)
from tests.supervision.test_policy import Harness, kinds, records


def forking(test, **config):
    values = dict(type="forking", pidfile="/run/web.pid", start_timeout=5.0)
    values.update(config)
    return Harness(test, **values)


class ForkingStartTests(unittest.TestCase):
    def test_the_start_command_running_is_not_yet_running(self):
        h = forking(self)
        actions = h.start()
        self.assertIs(h.state, State.STARTING)
        self.assertIn(ScheduleTimer(TIMER_START, 5.0), actions)

    def test_success_then_pidfile_is_awaited_then_running(self):
        h = forking(self)
        h.start()
        actions = h.crash(code=0, group_alive=True)
        self.assertEqual(kinds(actions, AwaitMainPid), [AwaitMainPid()])
        self.assertIs(h.state, State.STARTING)
        self.assertTrue(h.policy.process_alive)
        actions = h.feed(MainPid(4242))
        self.assertIs(h.state, State.RUNNING)
        self.assertEqual(h.policy.pid, 4242)
        self.assertEqual(h.policy.main_pid, 4242)
        self.assertIn(WatchMain(4242), actions)
        self.assertIn(CancelTimer(TIMER_START), actions)

    def test_without_pidfile_the_cgroup_is_the_service(self):
        h = forking(self, pidfile=None)
        h.start()
        actions = h.crash(code=0, group_alive=True)
        self.assertIs(h.state, State.RUNNING)
        self.assertIn(WatchMain(None), actions)
        self.assertIsNone(h.policy.main_pid)

    def test_start_command_failure_is_a_failure_and_restarts(self):
        h = forking(self)
        h.start()
        actions = h.crash(code=1)
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.restarts, 1)
        self.assertIn("start command exited code=1", h.policy.last_reason)

    def test_success_that_leaves_nothing_without_pidfile_is_a_failure(self):
        h = forking(self, pidfile=None, restart="never")
        h.start()
        h.crash(code=0, group_alive=False)
        self.assertIs(h.state, State.EXITED)
        self.assertIn("no process of the service is left", h.policy.last_reason)

    def test_no_main_pid_within_start_timeout_stops_and_restarts(self):
        h = forking(self)
        h.start()
        h.crash(code=0, group_alive=True)
        h.advance(5.0)
        actions = h.feed(TimerFired(TIMER_START))
        self.assertIs(h.state, State.STOPPING)
        self.assertTrue(records(actions, "start-timeout"))
        self.assertEqual(kinds(actions, SignalGroup)[0].signum, signal.SIGTERM)
        # A pidfile appearing now is too late.
        self.assertEqual(h.feed(MainPid(77)), [])
        actions = h.feed(GroupGone())
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_a_start_command_that_hangs_is_stopped(self):
        h = forking(self)
        start_pid = h.start() and h.policy.pid
        h.advance(5.0)
        actions = h.feed(TimerFired(TIMER_START))
        self.assertIs(h.state, State.STOPPING)
        self.assertIn(SignalGroup(start_pid, signal.SIGTERM), actions)


class ForkingRunningTests(unittest.TestCase):
    def running(self, **config):
        h = forking(self, **config)
        h.start()
        h.crash(code=0, group_alive=True)
        h.feed(MainPid(4242))
        self.assertIs(h.state, State.RUNNING)
        return h

    def test_main_process_exit_is_a_crash_and_restarts(self):
        h = self.running()
        actions = h.feed(Exited(None, None, group_alive=False,
                                what="main process pid=4242 exited"))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.restarts, 1)
        self.assertEqual(h.policy.last_reason, "main process pid=4242 exited")

    def test_main_exit_with_leftovers_stops_them_first(self):
        h = self.running()
        actions = h.feed(Exited(None, None, group_alive=True, what="main process gone"))
        self.assertIs(h.state, State.STOPPING)
        self.assertEqual(kinds(actions, SignalGroup), [SignalGroup(4242, signal.SIGTERM)])
        actions = h.feed(GroupGone())
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_stop_signals_the_main_process(self):
        h = self.running()
        actions = h.feed(StopRequested())
        self.assertEqual(kinds(actions, SignalMain), [SignalMain(4242, signal.SIGTERM)])
        self.assertFalse(kinds(actions, SignalGroup))
        h.advance(3.0)
        actions = h.feed(TimerFired(TIMER_KILL))
        self.assertIn(SignalMain(4242, signal.SIGKILL), actions)
        self.assertIn(SignalGroup(4242, signal.SIGKILL), actions)
        h.feed(Exited(None, None, group_alive=False, what="main gone"))
        self.assertIs(h.state, State.STOPPED)

    def test_stop_runs_the_stop_command(self):
        h = self.running(stop_command=("ctl", "stop"))
        actions = h.feed(StopRequested())
        self.assertEqual(kinds(actions, RunStopCommand), [RunStopCommand()])
        self.assertFalse(kinds(actions, SignalMain) + kinds(actions, SignalGroup))
        actions = h.feed(StopCommandDone(True, "exited code=0"))
        self.assertFalse(kinds(actions, SignalGroup))
        h.feed(Exited(None, None, group_alive=False, what="main gone"))
        self.assertIs(h.state, State.STOPPED)

    def test_a_failed_stop_command_kills_at_once(self):
        h = self.running(stop_command=("ctl", "stop"))
        h.feed(StopRequested())
        actions = h.feed(StopCommandDone(False, "exited code=1"))
        self.assertIn(SignalGroup(4242, signal.SIGKILL), actions)
        self.assertIn(CancelTimer(TIMER_KILL), actions)
        self.assertIs(h.state, State.STOPPING)

    def test_the_cgroup_emptying_ends_a_pidfileless_service(self):
        h = forking(self, pidfile=None)
        h.start()
        h.crash(code=0, group_alive=True)
        actions = h.feed(Exited(None, None, group_alive=False, what="its cgroup is empty"))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.last_reason, "its cgroup is empty")

    def test_a_stop_while_the_pidfile_is_awaited_reaches_the_main_process(self):
        h = forking(self)
        h.start()
        h.crash(code=0, group_alive=True)
        h.feed(StopRequested())
        self.assertIs(h.state, State.STOPPING)
        actions = h.feed(MainPid(4242))
        self.assertIn(SignalMain(4242, signal.SIGTERM), actions)
        h.feed(Exited(None, None, group_alive=False, what="main gone"))
        self.assertIs(h.state, State.STOPPED)
