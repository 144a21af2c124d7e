"""Property test: random event sequences never break the policy's invariants.

A small model of the world answers the policy's actions the way the real
runner does (a Spawn is answered at once by Spawned or SpawnFailed, timers
fire only when scheduled and not cancelled, a leader exits at most once,
its group disappears after it) and mixes in operator requests, stale
timers and stale health results at random.
"""

import signal

from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.config import Backoff, CrashLoop, HealthCheck, ServiceConfig
from clsd.supervision.core.policy import (
    LIVE_STATES, RESTING_STATES, TIMER_ABANDON, TIMER_CHECK, TIMER_KILL,
    TIMER_RESTART, CancelTimer, Exited, GroupGone, HealthResult, Record,
    ResetRequested, RunCheck, ScheduleTimer, ServicePolicy, SignalGroup, Spawn,
    Spawned, SpawnFailed, StartRequested, State, StopRequested, TimerFired,
)

TIMERS = (TIMER_RESTART, TIMER_KILL, TIMER_ABANDON, TIMER_CHECK)

configs = st.builds(
    ServiceConfig,
    name=st.just("svc"),
    command=st.just(("x",)),
    restart=st.sampled_from(["always", "on-failure", "never"]),
    backoff=st.builds(Backoff, initial=st.sampled_from([0.0, 0.1, 1.0]),
                      max=st.just(5.0), factor=st.sampled_from([1.0, 2.0]),
                      jitter=st.sampled_from([0.0, 0.5])),
    stable_after=st.sampled_from([0.0, 2.0, 10.0]),
    crash_loop=st.builds(CrashLoop, max_failures=st.integers(1, 4),
                         window=st.sampled_from([1.0, 30.0])),
    stop_timeout=st.sampled_from([0.5, 3.0]),
    check=st.one_of(st.none(), st.builds(
        HealthCheck, type=st.just("tcp"), target=st.just(("127.0.0.1", 9)),
        interval=st.just(1.0), timeout=st.just(0.5), rise=st.integers(1, 3),
        fall=st.integers(1, 3), grace=st.sampled_from([0.0, 2.0]),
    )),
)


class World:
    """The model of processes and timers that answers the policy."""

    def __init__(self, test, data, config):
        self.test = test
        self.data = data
        self.now = 0.0
        self.policy = ServicePolicy(config, random=lambda: data.draw(
            st.floats(0.0, 0.999), label="random"), now=self.now)
        self.timers = {}
        self.leader = None         # live leader pid
        self.group = None          # pgid with live members
        self.checks = set()        # pids with a check in flight
        self.next_pid = 100
        self.pids = []
        self.stop_in_force = False
        self.failed = False
        self.max_restarts = 0
        self.queue = []
        self.busy = False

    def feed(self, event):
        """Queue C{event}; process the queue unless already doing so (as the runner does)."""
        self.queue.append(event)
        if self.busy:
            return
        self.busy = True
        try:
            while self.queue:
                event = self.queue.pop(0)
                before = self.policy.state
                actions = self.policy.handle(event, self.now)
                self.check_invariants(event, before, actions)
                for action in actions:
                    self.execute(action)
                if not self.queue:
                    self.check_state()
        finally:
            self.busy = False

    def execute(self, action):
        if isinstance(action, Spawn):
            self.test.assertIsNone(self.leader, "spawn while a leader lives")
            self.test.assertIsNone(self.group, "spawn while the old group lives")
            self.test.assertFalse(self.stop_in_force, "spawn after a stop request")
            if self.data.draw(st.booleans(), label="spawn ok"):
                self.next_pid += 1
                self.leader = self.group = self.next_pid
                self.pids.append(self.next_pid)
                self.feed(Spawned(self.next_pid))
            else:
                self.feed(SpawnFailed("boom"))
        elif isinstance(action, SignalGroup):
            self.test.assertIsNotNone(self.group, "signal to a group that is gone")
            self.test.assertEqual(action.pgid, self.group)
            if action.signum == signal.SIGKILL and self.leader is not None:
                self.leader = None
                survives = self.data.draw(st.booleans(), label="group survives SIGKILL")
                if not survives:
                    self.group = None
                self.feed(Exited(None, signal.SIGKILL, group_alive=survives))
        elif isinstance(action, ScheduleTimer):
            self.test.assertGreaterEqual(action.delay, 0.0)
            self.timers[action.name] = self.now + action.delay
        elif isinstance(action, CancelTimer):
            self.timers.pop(action.name, None)
        elif isinstance(action, RunCheck):
            self.test.assertEqual(action.pid, self.leader)
            self.checks.add(action.pid)
        else:
            self.test.assertIsInstance(action, Record)
            self.test.assertTrue(action.reason)

    def check_invariants(self, event, before, actions):
        state = self.policy.state
        if self.failed and not isinstance(event, ResetRequested):
            self.test.assertIs(state, State.FAILED, "FAILED is sticky until reset")
        self.failed = state is State.FAILED
        if state is not before:
            self.test.assertTrue(
                [a for a in actions if isinstance(a, Record) and a.kind == "state"],
                "every transition is recorded with a reason")
        self.test.assertGreaterEqual(self.policy.restarts, self.max_restarts)
        self.max_restarts = self.policy.restarts

    def check_state(self):
        state = self.policy.state
        alive = self.leader is not None or self.group is not None
        if state in LIVE_STATES:
            self.test.assertIsNotNone(self.leader)
            self.test.assertEqual(self.policy.pid, self.leader)
        if state in RESTING_STATES or state is State.BACKOFF:
            self.test.assertFalse(alive, f"{state} with a live process")
            self.test.assertNotIn(TIMER_KILL, self.timers)
            self.test.assertNotIn(TIMER_CHECK, self.timers)
        if state is State.BACKOFF:
            self.test.assertIn(TIMER_RESTART, self.timers)
        else:
            self.test.assertNotIn(TIMER_RESTART, self.timers)
        if state is State.STOPPING:
            self.test.assertTrue(alive)
            self.test.assertTrue(TIMER_KILL in self.timers or TIMER_ABANDON in self.timers)

    def step(self):
        choices = ["start", "stop", "reset", "advance", "stale timer", "stale health"]
        if self.leader is not None:
            choices.append("exit")
        if self.leader is None and self.group is not None:
            choices.append("group gone")
        if self.timers:
            choices.append("timer")
        if self.checks:
            choices.append("health")
        choice = self.data.draw(st.sampled_from(choices), label="event")
        if choice == "start":
            self.stop_in_force = False
            self.feed(StartRequested())
        elif choice == "stop":
            self.stop_in_force = True
            self.feed(StopRequested())
        elif choice == "reset":
            self.stop_in_force = False
            self.feed(ResetRequested())
        elif choice == "advance":
            self.now += self.data.draw(st.sampled_from([0.1, 1.0, 5.0, 40.0]))
        elif choice == "exit":
            code = self.data.draw(st.sampled_from([0, 1, None]), label="code")
            self.leader = None
            group_alive = self.data.draw(st.booleans(), label="group alive")
            if not group_alive:
                self.group = None
            self.feed(Exited(code, None if code is not None else signal.SIGSEGV,
                             group_alive=group_alive))
        elif choice == "group gone":
            self.group = None
            self.feed(GroupGone())
        elif choice == "timer":
            name = self.data.draw(st.sampled_from(sorted(self.timers)), label="timer")
            self.now = max(self.now, self.timers.pop(name))
            if name == TIMER_ABANDON:
                self.leader = self.group = None  # the policy stops tracking it
            self.feed(TimerFired(name))
        elif choice == "stale timer":
            name = self.data.draw(st.sampled_from(TIMERS))
            if name not in self.timers:
                self.feed(TimerFired(name))
        elif choice == "stale health":
            if self.pids:
                old = self.data.draw(st.sampled_from(self.pids))
                if old != self.leader:
                    self.feed(HealthResult(True, "late", old))
        elif choice == "health":
            pid = self.data.draw(st.sampled_from(sorted(self.checks)))
            self.checks.discard(pid)
            self.feed(HealthResult(self.data.draw(st.booleans()), "probe", pid))


class PolicyPropertyTests(unittest.TestCase):
    @settings(max_examples=300, deadline=None,
              suppress_health_check=[HypothesisHealthCheck.too_slow])
    @given(config=configs, data=st.data())
    def test_invariants_hold_for_random_events(self, config, data):
        world = World(self, data, config)
        steps = data.draw(st.integers(1, 60), label="steps")
        for _ in range(steps):
            world.step()
        # Whatever happened, a stop request ends with nothing running once
        # the processes and timers have played out.
        world.stop_in_force = True
        world.feed(StopRequested())
        for _ in range(20):
            if world.leader is not None:
                world.leader = None
                world.feed(Exited(None, signal.SIGTERM, group_alive=world.group is not None))
            elif world.group is not None:
                world.group = None
                world.feed(GroupGone())
            else:
                break
        self.assertIn(world.policy.state, (State.STOPPED, State.FAILED))
        self.assertFalse(world.policy.process_alive)
        self.assertEqual(world.timers.keys() - {TIMER_CHECK}, set())
