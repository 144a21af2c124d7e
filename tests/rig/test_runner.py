"""The schedule runner: faults applied and healed on time, skips, recovery, the report."""

import json
import os
import subprocess
import sys

import attrs

from twisted.trial import unittest

from rig import checker
from rig.faults import report as reporting
from rig.faults.cleanup import Cleanups
from rig.faults.runner import (
    ClustersScenario, DaemonsScenario, ScheduleRunner, Step, SupervisedScenario, checker_faults,
    execute,
)
from rig.faults.schedule import FaultEvent, Schedule, generate
from rig.recorder import Record
from tests.support.fake_launcher import FakeLauncher


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class FakeFirewall:
    def __init__(self, log):
        self.log = log
        self.tokens = 0

    def block(self, pairs):
        self.tokens += 1
        self.log("block", len(pairs))
        return self.tokens

    def loss(self, address, fraction):
        self.tokens += 1
        self.log("loss", address, fraction)
        return self.tokens

    def lift(self, token):
        self.log("lift", token)


def schedule_of(*events, duration=30.0, nodes=("n1", "n2", "n3")):
    return Schedule(seed=0, nodes=nodes, duration=duration, lease=2.0,
                    kinds=tuple({e.kind for e in events}), events=tuple(events))


class RunnerTests(unittest.TestCase):
    def setUp(self):
        self.clock = FakeClock()
        self.launcher = FakeLauncher(clock=self.clock)
        self.firewall = FakeFirewall(self.launcher._log)
        self.lines = []

    def run_schedule(self, schedule, scenario=None):
        runner = ScheduleRunner(
            schedule, self.launcher, scenario or SupervisedScenario(), firewall=self.firewall,
            cleanups=Cleanups(), clock=self.clock, sleep=self.clock.sleep, log=self.lines.append,
        )
        return runner.run()

    def test_faults_apply_and_heal_on_time_in_order(self):
        run = self.run_schedule(schedule_of(
            FaultEvent(at=5.0, kind="kill_daemon", targets=("n1",), lasts=3.0),
            FaultEvent(at=6.0, kind="isolate", targets=("n2",), lasts=4.0),
            FaultEvent(at=8.0, kind="pause_daemon", targets=("n3",), lasts=1.0,
                       params={"long": False}),
            FaultEvent(at=10.0, kind="loss", targets=("n1",), lasts=2.0,
                       params={"fraction": 0.2}),
        ))
        self.assertEqual(self.launcher.calls, [
            (5.0, "kill", "n1"),
            (6.0, "block", 4),  # n2 isolated from n1 and n3, both ways
            (8.0, "start", "n1"),  # the heal of the kill: heals go first
            (8.0, "pause", "n3"),
            (9.0, "resume", "n3"),
            (10.0, "lift", 1),
            (10.0, "loss", "127.0.0.101", 0.2),
            (12.0, "lift", 2),
        ])
        self.assertEqual([s.outcome for s in run.steps], ["applied"] * 4)
        self.assertEqual(run.ended_at - run.started_at, 30.0)
        self.assertIsNone(run.recovery_error)

    def test_everything_still_active_is_healed_at_the_end(self):
        self.run_schedule(schedule_of(
            FaultEvent(at=5.0, kind="split", targets=("n1",), lasts=None,
                       params={"groups": [["n1"], ["n2", "n3"]]}),
            FaultEvent(at=6.0, kind="pause_daemon", targets=("n2",), lasts=None,
                       params={"long": True}),
            duration=10.0,
        ))
        # Instantaneous in the schedule, but both registered an undo: both
        # are undone at the end, newest first.
        self.assertEqual(self.launcher.calls[-2:], [(10.0, "resume", "n2"), (10.0, "lift", 1)])

    def test_fault_on_a_down_node_is_skipped_not_an_error(self):
        self.launcher.nodes["n1"].running = False
        run = self.run_schedule(schedule_of(
            FaultEvent(at=1.0, kind="pause_daemon", targets=("n1",), lasts=1.0,
                       params={"long": False}),
            FaultEvent(at=2.0, kind="kill_service", targets=("n2",)),
            FaultEvent(at=3.0, kind="clock_jump", targets=("n3",), lasts=1.0,
                       params={"seconds": 300}),
        ))
        self.assertEqual([s.outcome for s in run.steps], [
            "skipped: daemon n1 is not running",
            "skipped: no service runs on n2",
            "skipped: node 'n3' was not started under faketime",
        ])
        # ...and the node that was down is started for the recovery check.
        self.assertIn((30.0, "start", "n1"), self.launcher.calls)

    def test_no_firewall_skips_network_faults(self):
        self.firewall = None
        run = self.run_schedule(schedule_of(
            FaultEvent(at=1.0, kind="isolate", targets=("n1",), lasts=1.0)))
        self.assertEqual(run.steps[0].outcome,
                         "skipped: no firewall (run as root with nft or iptables)")

    def test_recovery_failure_is_reported(self):
        self.launcher.recover = False
        run = self.run_schedule(schedule_of())
        self.assertIn("timed out waiting for cluster n1-solo", run.recovery_error)

    def test_join_and_leave(self):
        clock = FakeClock()
        launcher = FakeLauncher(clock=clock, spares=("j1", "j2"))
        schedule = attrs.evolve(schedule_of(
            FaultEvent(at=1.0, kind="join", targets=("j1",), lasts=5.0, params={"stays": False}),
            FaultEvent(at=2.0, kind="leave", targets=("n2",), lasts=2.0),
            FaultEvent(at=8.0, kind="join", targets=("j2",), params={"stays": True}),
            duration=10.0), spares=("j1", "j2"))
        runner = ScheduleRunner(schedule, launcher, DaemonsScenario(), clock=clock,
                                sleep=clock.sleep)
        run = runner.run()
        self.assertEqual(launcher.calls, [
            (1.0, "start", "j1"), (2.0, "stop", "n2"), (4.0, "start", "n2"),
            (6.0, "stop", "j1"), (8.0, "start", "j2"),
        ])
        self.assertEqual([s.outcome for s in run.steps], ["applied"] * 3)
        # j1 left for good; j2 stays: the final views must show j2, and nobody j1 alive.
        self.assertEqual(runner.members, {"n1", "n2", "n3", "j2"})
        self.assertEqual(runner.started - runner.members, {"j1"})

    def test_reshape_restarts_with_another_shape_and_back(self):
        scenario = ClustersScenario()
        seen = []
        self.launcher.restart = lambda name: (
            self.launcher._log("restart", name),
            seen.append(dict(scenario.cluster_rig(self.launcher).reshaped)))
        run = self.run_schedule(schedule_of(
            FaultEvent(at=2.0, kind="reshape", targets=("n1",), lasts=5.0,
                       params={"change": "mode"}),
            FaultEvent(at=10.0, kind="reshape", targets=("n2",), lasts=5.0,
                       params={"change": "count"}),
            FaultEvent(at=20.0, kind="reshape", targets=("n3",), lasts=5.0,
                       params={"change": "mode"})), scenario)
        self.assertEqual([c for c in self.launcher.calls if c[1] == "restart"],
                         [(2.0, "restart", "n1"), (7.0, "restart", "n1"),
                          (10.0, "restart", "n2"), (15.0, "restart", "n2")])
        # n1 runs c1 as n-active with count 1; n2 runs nx with count 3; each
        # comes back with the layout's settings.
        self.assertEqual(seen, [
            {("n1", "c1"): {"mode": "n-active", "count": 1}}, {},
            {("n2", "nx"): {"mode": "n-active", "count": 3}}, {}])
        # n3 is the witness: nothing to reshape.
        self.assertIn("skipped: n3 runs no cluster", run.steps[2].outcome)

    def test_clock_rate_moves_the_nodes_offset_file_until_healed(self):
        directory = self.mktemp()
        os.makedirs(directory)
        self.launcher.lease_clock_offset_path = lambda name: os.path.join(directory, name)
        run = self.run_schedule(schedule_of(
            FaultEvent(at=1.0, kind="clock_rate", targets=("n2",), lasts=2.0,
                       params={"rate": 0.02})))
        self.assertEqual(run.steps[0].outcome, "applied")
        with open(os.path.join(directory, "n2")) as f:
            self.assertLess(float(f.read()), 0.0)  # gained: raw - offset runs ahead

    def test_leave_of_a_node_that_is_down_is_skipped(self):
        run = self.run_schedule(schedule_of(
            FaultEvent(at=1.0, kind="kill_daemon", targets=("n1",), lasts=5.0),
            FaultEvent(at=2.0, kind="leave", targets=("n1",), lasts=2.0),
        ))
        self.assertEqual(run.steps[1].outcome, "skipped: daemon n1 is not running")

    def test_report_from_a_run(self):
        run = self.run_schedule(schedule_of(
            FaultEvent(at=5.0, kind="kill_daemon", targets=("n1",), lasts=3.0)))
        t0 = run.started_at

        def lived(instance, pid, start, last, end_kind, end):
            beats = [start + 0.25 * i for i in range(1, int((last - start) / 0.25) + 1)]
            return [
                Record(kind=kind, t=t0 + t, instance=instance, node="n1", cluster="n1-solo",
                       epoch=None, pid=pid)
                for kind, t in [("start", start), *(("heartbeat", b) for b in beats),
                                (end_kind, end)]
            ]

        records = lived("a", 1, 1.0, 5.0, "exit", 5.01) + lived("b", 2, 8.5, 30.0, "stop", 30.0)
        during = checker.check(records, horizon=t0 + 30, faults=checker_faults(run))
        report = reporting.build(schedule=schedule_of(), run=run, scenario=SupervisedScenario(),
                                 final=checker.check(records), during=during, log_problems=[],
                                 replay="replay-me")
        self.assertEqual(report["verdict"], "PASS")
        [failover] = report["failovers"]
        self.assertEqual((failover["fault"], failover["fault_at"], failover["seconds"]),
                         ("kill_daemon", 5.0, 3.5))
        self.assertEqual(report["unavailability"]["n1-solo"]["worst"], 3.5)
        self.assertEqual(report["faults_by_kind"], {"kill_daemon": 1})
        text = reporting.to_text(report)
        self.assertIn("CLSD fault run: PASS", text)
        self.assertIn("replay: replay-me", text)
        self.assertIn("n1-solo: 1 window(s), total 3.5s, worst 3.5s", text)
        json.loads(reporting.to_json(report))

    def test_report_fails_on_violation_and_log_problems(self):
        run = self.run_schedule(schedule_of())
        records = [
            Record(kind="start", t=1.0, instance="a", node="n1", cluster="X", epoch=None, pid=1),
            Record(kind="stop", t=5.0, instance="a", node="n1", cluster="X", epoch=None, pid=1),
            Record(kind="start", t=2.0, instance="b", node="n2", cluster="X", epoch=None, pid=2),
            Record(kind="stop", t=3.0, instance="b", node="n2", cluster="X", epoch=None, pid=2),
        ]
        final = checker.check(records)
        report = reporting.build(schedule=schedule_of(), run=run, scenario=SupervisedScenario(),
                                 final=final, during=final, log_problems=["n1:3: Traceback"],
                                 replay="")
        self.assertEqual(report["verdict"], "FAIL")
        self.assertEqual(report["reasons"], ["1 safety violation(s)",
                                             "1 crash line(s) in daemon logs"])
        self.assertIn("OVERLAP cluster X", reporting.to_text(report))


class ExecuteTests(unittest.TestCase):
    """A whole run against real daemons, with the faults that need no services."""

    def test_daemon_faults_end_to_end(self):
        cleanups = Cleanups()
        self.addCleanup(cleanups.run_all)
        schedule = schedule_of(
            FaultEvent(at=0.5, kind="pause_daemon", targets=("n1",), lasts=0.5,
                       params={"long": False}),
            FaultEvent(at=1.0, kind="kill_daemon", targets=("n2",), lasts=1.0),
            FaultEvent(at=1.5, kind="restart_daemon", targets=("n1",)),
            duration=4.0, nodes=("n1", "n2"),
        )
        lines = []
        report = execute(schedule, self.mktemp(), DaemonsScenario(), cleanups=cleanups,
                         say=lines.append)
        self.assertEqual(report["verdict"], "PASS", report["reasons"])
        self.assertEqual([s["outcome"] for s in report["timeline"]], ["applied"] * 3)
        self.assertEqual(report["faults_by_kind"],
                         {"pause_daemon": 1, "kill_daemon": 1, "restart_daemon": 1})
        self.assertEqual(cleanups.pending(), [])

    def test_clusters_scenario_fails_over_on_real_daemons(self):
        """The 'clusters' scenario: c1 (on n1) moves to n2 when n1's daemon is killed."""
        cleanups = Cleanups()
        self.addCleanup(cleanups.run_all)
        schedule = schedule_of(
            FaultEvent(at=1.0, kind="kill_daemon", targets=("n1",), lasts=6.0),
            duration=10.0, nodes=("n1", "n2", "n3"),
        )
        report = execute(schedule, self.mktemp(), ClustersScenario(), cleanups=cleanups)
        self.assertEqual(report["verdict"], "PASS", report["reasons"])
        self.assertEqual([s["outcome"] for s in report["timeline"]], ["applied"])
        moved = [(f["cluster"], f["from"], f["to"]) for f in report["failovers"]]
        self.assertIn(("c1", "n1", "n2"), moved)
        self.assertEqual(cleanups.pending(), [])

    def test_replay_file_runs_the_same_schedule(self):
        directory = self.mktemp()
        os.makedirs(directory)
        path = os.path.join(directory, "schedule.json")
        schedule = generate(4, ("n1", "n2"), 3.0, kinds=("restart_daemon",), settle=0.5,
                            min_gap=1, max_gap=1.5)
        self.assertEqual(len(schedule.events), 2)
        with open(path, "w") as f:
            f.write(schedule.to_json())
        out = os.path.join(directory, "run")
        result = subprocess.run(
            [sys.executable, "-m", "rig.faults", "--replay", path, "--scenario",
             "daemons", "--out", out, "--quiet"],
            capture_output=True, text=True, timeout=180,
        )
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with open(os.path.join(out, "schedule.json")) as f:
            self.assertEqual(f.read(), schedule.to_json())
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        self.assertEqual(report["verdict"], "PASS")
        self.assertEqual(len(report["timeline"]), len(schedule.events))
        self.assertIn("--replay", report["replay"])


class ViewTests(unittest.TestCase):
    """Converged views: every daemon's last word on every other node, since its last start."""

    def test_departed_node_must_not_be_seen_alive(self):
        from rig.faults.runner import view_disagreements

        logs = {
            "n1": "==== clsd-rig: start #1\nmember n2 is alive: x\nmember j1 is alive: joined\n"
                  "member j1 is left: left gracefully\n",
            "n2": "==== clsd-rig: start #1\nmember n1 is alive: x\nmember j1 is alive: joined\n",
        }
        self.assertEqual(view_disagreements(logs, departed=["j1"]),
                         ["n2 sees j1 alive after it left"])

    def test_everyone_alive_is_converged(self):
        from rig.faults.runner import view_disagreements

        logs = {"n1": "member n2 is alive: joined\nmember n3 is alive: joined\n",
                "n2": "member n1 is alive: x\nmember n3 is suspect: y\nmember n3 is alive: z\n",
                "n3": "member n1 is alive: x\nmember n2 is alive: x\n"}
        self.assertEqual(view_disagreements(logs), [])

    def test_last_state_and_last_start_count(self):
        from rig.faults.runner import view_disagreements

        logs = {
            # Alive before its restart, but nothing since: not converged.
            "n1": "member n2 is alive: a\n==== clsd-rig: start #2 of n1\nmember n3 is alive: a\n",
            "n2": "member n1 is alive: a\nmember n3 is alive: a\nmember n3 is dead: timeout\n",
            "n3": "member n1 is alive: a\nmember n2 is alive: a\n",
        }
        self.assertEqual(view_disagreements(logs),
                         ["n1 sees n2 (nothing)", "n2 sees n3 dead"])


class MachinePauseBoundTests(unittest.TestCase):
    """A pause judged against T/3 + T/8 + m, or the old deadline when cut off meanwhile."""

    def runner_with_freeze(self, name, frozen_at, thawed_at):
        runner = ScheduleRunner.__new__(ScheduleRunner)
        runner.freezes = [(name, attrs.make_class("Frozen", ["frozen_at", "thawed_at"])(
            frozen_at, thawed_at))]
        return runner

    def step(self, kind, targets, applied_at, healed_at, **params):
        return Step(0, FaultEvent(at=0.0, kind=kind, targets=targets, lasts=1.0,
                                  params=params), applied_at=applied_at, healed_at=healed_at)

    def test_a_pause_with_the_network_up_has_the_refusal_bound(self):
        runner = self.runner_with_freeze("n2", 57.0, 60.0)
        steps = [self.step("isolate", ("n3",), 57.5, 59.0)]
        [pause] = runner.machine_pauses(1.017, 1.9, steps)
        self.assertEqual(pause.bound, 1.017)

    def test_cut_off_during_the_pause_runs_to_the_old_deadline(self):
        runner = self.runner_with_freeze("n2", 57.0, 60.0)
        for step in (self.step("isolate", ("n2",), 57.67, 60.0),
                     self.step("split", (), 50.0, 57.2, groups=[["n2"], ["n1", "n3"]]),
                     self.step("bridge", ("n4",), 59.0, None, sides=[["n1", "n2"], ["n3"]])):
            [pause] = runner.machine_pauses(1.017, 1.9, [step])
            self.assertEqual(pause.bound, 1.9, step.event.kind)

    def test_a_pause_longer_than_the_lease_runs_to_the_old_deadline(self):
        runner = self.runner_with_freeze("n1", 36.76, 47.42)
        [pause] = runner.machine_pauses(1.017, 1.9, [], lease=2.0)
        self.assertEqual(pause.bound, 1.9)
        runner = self.runner_with_freeze("n1", 36.76, 38.0)
        [pause] = runner.machine_pauses(1.017, 1.9, [], lease=2.0)
        self.assertEqual(pause.bound, 1.017)

    def test_a_partition_healed_before_the_pause_does_not_count(self):
        runner = self.runner_with_freeze("n2", 57.0, 60.0)
        [pause] = runner.machine_pauses(1.017, 1.9, [self.step("isolate", ("n2",), 50.0, 56.0)])
        self.assertEqual(pause.bound, 1.017)
