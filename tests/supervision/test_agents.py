"""LSB/OCF services in the pure policy, and what the agents' return codes mean."""

import signal

from twisted.trial import unittest

from clsd.supervision.core.agents import FATAL, HARD, NOT_RUNNING, OK, SOFT, classify
from clsd.supervision.core.policy import (
    TIMER_MONITOR, TIMER_ROGUE, TIMER_START, AgentResult, CancelTimer, Exited, GroupGone,
    RunAction, ScheduleTimer, SignalGroup, Spawn, Standby, StartRequested, State, StopRequested,
    TimerFired,
)
from tests.supervision.test_policy import Harness, kinds, records
from clsd.supervision.ocf import AgentError, parse_duration, parse_metadata


class ClassifyTests(unittest.TestCase):
    def test_ocf_codes(self):
        expected = {0: OK, 1: SOFT, 2: HARD, 3: HARD, 4: HARD, 5: HARD, 6: FATAL,
                    7: NOT_RUNNING, 8: SOFT, 42: SOFT}
        for code, result in expected.items():
            self.assertEqual(classify("ocf", "monitor", code).result, result, code)

    def test_not_running_from_start_or_stop_is_a_failure(self):
        self.assertEqual(classify("ocf", "start", 7).result, SOFT)
        self.assertEqual(classify("lsb", "stop", 7).result, SOFT)

    def test_lsb_status_codes(self):
        expected = {0: OK, 1: NOT_RUNNING, 2: NOT_RUNNING, 3: NOT_RUNNING, 4: SOFT}
        for code, result in expected.items():
            self.assertEqual(classify("lsb", "status", code).result, result, code)
        self.assertEqual(classify("lsb", "start", 5).result, HARD)

    def test_timeouts_and_signals_are_soft_failures(self):
        self.assertEqual(classify("ocf", "monitor", None, timed_out=True).detail,
                         "monitor: timed out (killed)")
        self.assertEqual(classify("ocf", "stop", None, signum=9).result, SOFT)

    def test_giving_up(self):
        self.assertTrue(classify("ocf", "start", 5).gives_up)
        self.assertTrue(classify("ocf", "start", 6).gives_up)
        self.assertFalse(classify("ocf", "start", 1).gives_up)


class MetaDataTests(unittest.TestCase):
    def test_durations(self):
        self.assertEqual([parse_duration(t) for t in ("20s", "20", "500ms", "2m", "x")],
                         [20.0, 20.0, 0.5, 120.0, None])

    def test_parameters_and_timeouts(self):
        metadata = parse_metadata(b"""<resource-agent name="X"><parameters>
            <parameter name="ip" required="1"><content default="1"/></parameter>
            <parameter name="nic"/></parameters>
            <actions><action name="start" timeout="30s"/><action name="monitor"
            timeout="bogus"/></actions></resource-agent>""")
        self.assertEqual(metadata.names, ["ip", "nic"])
        self.assertTrue(metadata.parameters[0].required)
        self.assertEqual(metadata.timeouts, {"start": 30.0})

    def test_not_xml(self):
        self.assertRaises(AgentError, parse_metadata, b"usage: foo")
        e = self.assertRaises(AgentError, parse_metadata, b"<html/>")
        self.assertIn("not <resource-agent>", str(e))


def agent(test, **config):
    values = dict(type="ocf", command=("/agent",), script="/agent", start_timeout=4.0,
                  monitor_interval=10.0)
    values.update(config)
    return Harness(test, **values)


def result(action, code, group_alive=False, kind="ocf"):
    return AgentResult(action, classify(kind, action, code), group_alive)


def start(h, kind="ocf"):
    """Start request, the probe finds it stopped, the start action is spawned."""
    actions = h.feed(StartRequested())
    probe = "status" if kind == "lsb" else "monitor"
    h.test.assertEqual(kinds(actions, RunAction), [RunAction(probe)])
    h.test.assertEqual(kinds(actions, Spawn), [])
    code = 3 if kind == "lsb" else 7
    h.feed(result(probe, code, kind=kind))
    return h.spawned()


class AgentPolicyTests(unittest.TestCase):
    def running(self, **config):
        h = agent(self, **config)
        actions = start(h, config.get("type", "ocf"))
        self.assertIn(ScheduleTimer(TIMER_START, 4.0), actions)
        actions = h.crash(code=0, group_alive=True)
        self.assertIs(h.state, State.RUNNING)
        self.assertIn(ScheduleTimer(TIMER_MONITOR, 10.0), actions)
        return h

    def test_monitor_on_its_interval(self):
        h = self.running()
        actions = h.feed(TimerFired(TIMER_MONITOR))
        self.assertEqual(kinds(actions, RunAction), [RunAction("monitor")])
        self.assertIs(h.state, State.RUNNING)
        h.feed(result("monitor", 0))
        self.assertIs(h.state, State.RUNNING)

    def test_lsb_uses_status(self):
        h = self.running(type="lsb")
        self.assertEqual(kinds(h.feed(TimerFired(TIMER_MONITOR)), RunAction),
                         [RunAction("status")])

    def test_monitor_not_running_stops_then_restarts(self):
        h = self.running()
        h.feed(TimerFired(TIMER_MONITOR))
        actions = h.feed(result("monitor", 7))
        self.assertIs(h.state, State.STOPPING)
        self.assertEqual(kinds(actions, RunAction), [RunAction("stop")])
        actions = h.feed(result("stop", 0))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.restarts, 1)

    def test_start_not_installed_gives_up_this_node(self):
        h = agent(self)
        start(h)
        h.crash(code=5)
        self.assertIs(h.state, State.STOPPING)
        h.feed(result("stop", 0))
        self.assertIs(h.state, State.FAILED)
        self.assertIn("giving up this node", h.policy.last_reason)

    def test_start_generic_error_restarts(self):
        h = agent(self)
        start(h)
        h.crash(code=1)
        actions = h.feed(result("stop", 0))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_a_start_that_overruns_is_killed(self):
        h = agent(self)
        start(h)
        actions = h.feed(TimerFired(TIMER_START))
        self.assertIn(SignalGroup(h.policy.pid, signal.SIGKILL), actions)
        h.crash(code=None, sig=signal.SIGKILL)
        self.assertIn("start: timed out (killed)", [r.reason for r in records(h.actions)])

    def test_a_failed_stop_kills_the_cgroup_and_fails(self):
        h = self.running()
        h.feed(StopRequested())
        actions = h.feed(result("stop", 1, group_alive=True))
        self.assertIn(SignalGroup(h.policy.pid, signal.SIGKILL), actions)
        h.feed(GroupGone())
        self.assertIs(h.state, State.FAILED)

    def test_stop_success_with_leftovers_kills_them(self):
        h = self.running()
        h.feed(StopRequested())
        actions = h.feed(result("stop", 0, group_alive=True))
        self.assertIn(SignalGroup(h.policy.pid, signal.SIGKILL), actions)
        h.feed(GroupGone())
        self.assertIs(h.state, State.STOPPED)

    def test_a_late_monitor_result_is_ignored(self):
        h = self.running()
        h.feed(TimerFired(TIMER_MONITOR))
        h.feed(StopRequested())
        h.feed(result("monitor", 7))
        self.assertIs(h.state, State.STOPPING)
        h.feed(result("stop", 0))
        self.assertIs(h.state, State.STOPPED)

    def test_a_stop_during_the_start_runs_the_stop_action_after_it(self):
        h = agent(self)
        start(h)
        h.feed(StopRequested())
        actions = h.feed(Exited(0, None))
        self.assertEqual(kinds(actions, RunAction), [RunAction("stop")])
        h.feed(result("stop", 0))
        self.assertIs(h.state, State.STOPPED)


class ProbeTests(unittest.TestCase):
    def test_a_running_system_is_adopted_not_started(self):
        h = agent(self)
        h.feed(StartRequested())
        self.assertIs(h.state, State.STARTING)
        self.assertTrue(h.policy.process_alive, "nothing may be spawned while probing")
        actions = h.feed(result("monitor", 0))
        self.assertEqual(kinds(actions, Spawn), [])
        self.assertIs(h.state, State.RUNNING)
        self.assertTrue(records(actions, "adopted"))
        self.assertIn(ScheduleTimer(TIMER_MONITOR, 10.0), actions)

    def test_a_stopped_system_is_started(self):
        h = agent(self, type="lsb")
        h.feed(StartRequested())
        actions = h.feed(result("status", 3, kind="lsb"))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_a_failed_probe_stops_before_starting(self):
        h = agent(self)
        h.feed(StartRequested())
        actions = h.feed(result("monitor", 1))
        self.assertIs(h.state, State.STOPPING)
        self.assertEqual(kinds(actions, RunAction), [RunAction("stop")])
        actions = h.feed(result("stop", 0))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.restarts, 0)

    def test_leftover_processes_while_not_running_are_stopped_first(self):
        h = agent(self)
        h.feed(StartRequested())
        actions = h.feed(result("monitor", 7, group_alive=True))
        self.assertEqual(kinds(actions, RunAction), [RunAction("stop")])

    def test_a_stop_while_probing(self):
        h = agent(self)
        h.feed(StartRequested())
        h.feed(StopRequested())
        self.assertEqual(h.feed(result("monitor", 0)), [records(h.actions)[0]])
        h.feed(result("stop", 0))
        self.assertIs(h.state, State.STOPPED)


class LeaseGuardedProbeTests(unittest.TestCase):
    """Under a lease, a copy found running is outside the containment the guard kills."""

    def test_a_running_copy_is_stopped_and_started_contained(self):
        h = agent(self)
        h.policy.adopt_running = False
        h.feed(StartRequested())
        actions = h.feed(result("monitor", 0))
        self.assertEqual(records(actions, "adopted"), [])
        self.assertIs(h.state, State.STOPPING)
        self.assertIn("outside CLSD's containment", h.policy.last_reason)
        self.assertEqual(kinds(actions, RunAction), [RunAction("stop")])
        actions = h.feed(result("stop", 0))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])
        self.assertEqual(h.policy.restarts, 0, "not a failure of the service")

    def test_a_copy_that_will_not_stop_is_not_started_beside(self):
        h = agent(self)
        h.policy.adopt_running = False
        h.feed(StartRequested())
        h.feed(result("monitor", 0))
        actions = h.feed(result("stop", 1))
        self.assertEqual(kinds(actions, Spawn), [])
        self.assertIs(h.state, State.FAILED)


def standby(test, **config):
    h = agent(test, **config)
    actions = h.feed(Standby(True))
    test.assertEqual(actions, [ScheduleTimer(TIMER_ROGUE, 10.0)],
                     "the first look waits an interval")
    return h


class RogueTests(unittest.TestCase):
    """A copy running on a node without the lease is stopped and reported."""

    def test_a_rogue_copy_is_stopped_and_reported(self):
        h = standby(self)
        actions = h.feed(TimerFired(TIMER_ROGUE))
        self.assertEqual(kinds(actions, RunAction), [RunAction("monitor")])
        self.assertIn(ScheduleTimer(TIMER_ROGUE, 10.0), actions)
        actions = h.feed(result("monitor", 0))
        self.assertEqual(kinds(actions, RunAction), [RunAction("stop")])
        [found] = records(actions, "rogue")
        self.assertIn("without the lease", found.reason)
        actions = h.feed(result("stop", 0))
        [stopped] = records(actions, "rogue")
        self.assertEqual(stopped.fields, {"stopped": True})
        self.assertIs(h.state, State.STOPPED, "the service itself was never started")

    def test_a_stop_that_fails_is_reported(self):
        h = standby(self, type="lsb")
        h.feed(TimerFired(TIMER_ROGUE))
        h.feed(result("status", 0, kind="lsb"))
        [failed] = records(h.feed(result("stop", 1, kind="lsb")), "rogue")
        self.assertEqual(failed.fields, {"stopped": False})
        self.assertIn("could not be stopped", failed.reason)

    def test_nothing_running_is_quiet(self):
        h = standby(self)
        h.feed(TimerFired(TIMER_ROGUE))
        actions = h.feed(result("monitor", 7))
        self.assertEqual(records(actions, "rogue"), [])
        self.assertEqual(kinds(actions, RunAction), [])

    def test_one_look_at_a_time(self):
        h = standby(self)
        h.feed(TimerFired(TIMER_ROGUE))
        actions = h.feed(TimerFired(TIMER_ROGUE))
        self.assertEqual(kinds(actions, RunAction), [], "the first monitor has not answered")

    def test_leaving_standby_stops_looking(self):
        h = standby(self)
        self.assertEqual(h.feed(Standby(False)), [CancelTimer(TIMER_ROGUE)])
        self.assertEqual(h.feed(TimerFired(TIMER_ROGUE)), [])

    def test_not_looked_for_while_it_runs_here(self):
        h = standby(self)
        start(h)
        h.crash(code=0, group_alive=True)
        self.assertIs(h.state, State.RUNNING)
        self.assertEqual(h.feed(TimerFired(TIMER_ROGUE)), [], "the probe cancelled the look")

    def test_a_start_during_the_look_takes_its_answer_as_the_probe(self):
        h = standby(self)
        h.policy.adopt_running = False
        h.feed(TimerFired(TIMER_ROGUE))
        actions = h.feed(StartRequested())
        self.assertEqual(kinds(actions, RunAction), [], "the monitor in flight answers")
        actions = h.feed(result("monitor", 7))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_a_start_during_the_rogue_stop_probes_after_it(self):
        h = standby(self)
        h.feed(TimerFired(TIMER_ROGUE))
        h.feed(result("monitor", 0))
        actions = h.feed(StartRequested())
        self.assertEqual(kinds(actions, RunAction), [])
        self.assertTrue(h.policy.process_alive, "nothing spawns while the copy is stopped")
        actions = h.feed(result("stop", 0))
        self.assertEqual(kinds(actions, RunAction), [RunAction("monitor")])
        actions = h.feed(result("monitor", 7))
        self.assertEqual(kinds(actions, Spawn), [Spawn()])

    def test_simple_services_have_no_agent_to_ask(self):
        h = Harness(self, command=("/bin/true",))
        self.assertEqual(h.feed(Standby(True)), [])
