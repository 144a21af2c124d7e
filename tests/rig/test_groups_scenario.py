"""The fault rig's ``groups`` scenario: its layout, its configs (parsed by clsd), what it judges."""

import shutil
import tempfile

from twisted.trial import unittest

from clsd.config import parse_config
from rig.faults import groups
from rig.faults.report import build, to_text
from rig.faults.runner import SCENARIOS, RunLog
from rig.faults.schedule import Schedule
from rig.launcher import ConfigTemplate
from tests.support.fake_launcher import FakeLauncher


class LayoutTests(unittest.TestCase):
    def test_three_nodes(self):
        layout = groups.groups_layout(["n1", "n2", "n3"], spares=("j1",))
        self.assertEqual(layout.voters, ("n1", "n2", "n3"))
        self.assertEqual(layout.witnesses, ("n3",))
        # A prefers n1; B's own preference is the reverse (only `with` puts it beside A);
        # C prefers the second worker, so it usually follows A from another node.
        self.assertEqual(layout.preferred("A"), "n1")
        self.assertEqual(layout.preferred("B"), "n2")
        self.assertEqual(layout.preferred("C"), "n2")
        for cluster in ("A", "B", "C"):
            self.assertEqual(set(layout.clusters[cluster]), {"n1", "n2", "j1"})
            self.assertEqual(layout.clusters[cluster]["j1"], 10)
        self.assertEqual(layout.cluster_settings, {"B": {"with": ["A"]}, "C": {"after": ["A"]}})

    def test_five_nodes_give_every_worker_every_cluster(self):
        layout = groups.groups_layout([f"n{i}" for i in range(1, 6)])
        self.assertEqual(layout.candidates("A"), ["n1", "n2", "n3", "n4"])
        self.assertEqual(layout.candidates("B"), ["n4", "n3", "n2", "n1"])
        self.assertEqual(layout.candidates("C"), ["n2", "n3", "n4", "n1"])

    def test_too_few_nodes(self):
        self.assertRaises(ValueError, groups.groups_layout, ["n1", "n2"])

    def test_the_judged_layout_has_the_members_in_place_of_the_group(self):
        layout = groups.groups_layout(["n1", "n2", "n3"])
        judged = groups.judged_layout(layout)
        self.assertEqual(sorted(judged.clusters), ["A.db", "A.exp", "A.vol", "B", "C"])
        self.assertEqual(judged.clusters["A.db"], layout.clusters["A"])
        self.assertEqual(judged.voters, layout.voters)
        self.assertEqual(groups.member_resources(), ("A.vol", "A.db", "A.exp"))


class ScenarioTests(unittest.TestCase):
    def setUp(self):
        directory = tempfile.mkdtemp(prefix="clsd-groups-scenario-")
        self.addCleanup(shutil.rmtree, directory, True)
        self.launcher = FakeLauncher(["n1", "n2", "n3"], directory=directory, spares=("j1",))

    def configs(self, scenario, names=("n1", "n2", "n3", "j1")):
        template = ConfigTemplate()
        for part in scenario.template_parts():
            template = template.with_part(part)
        return {n: parse_config(template.render(self.launcher.node(n).spec, self.launcher), n)
                for n in names}

    def test_configs_parse_with_the_group_and_its_dependents(self):
        scenario = SCENARIOS["groups"](escaping=True)
        configs = self.configs(scenario)
        n1 = {c.id: c for c in configs["n1"].clusters}
        self.assertEqual(n1["A"].members, ("system-a-vol", "system-a-db", "system-a-exp"))
        self.assertEqual((n1["B"].with_, n1["C"].after), (("A",), ("A",)))
        self.assertEqual([(c.id, c.priority) for c in configs["j1"].clusters],
                         [("A", 10), ("B", 10), ("C", 10)])
        self.assertEqual(configs["n3"].clusters, ())
        # Each member records under a name of its own and has its own health check.
        vol, db = configs["n1"].service("system-a-vol"), configs["n1"].service("system-a-db")
        self.assertIn("A.vol", vol.command)
        self.assertIn("A.db", db.command)
        self.assertNotEqual(vol.check.target, db.check.target)
        self.assertNotIn("--cluster", configs["n1"].service("system-b").command)
        self.assertTrue(all("--escape" in s.command for s in configs["n1"].services))
        self.assertIn("groups (A: ordered group vol, db, exp; B with A; C after A",
                      scenario.description)

    def test_what_is_judged(self):
        scenario = SCENARIOS["groups"]()
        self.assertEqual(sorted(scenario.expected_clusters(self.launcher)),
                         ["A.db", "A.exp", "A.vol", "B", "C"])
        self.assertEqual(scenario.capacity(self.launcher), {})
        self.assertEqual(scenario.groups(self.launcher), {"A": ("A.vol", "A.db", "A.exp")})

    def test_a_reshape_makes_c_n_active_on_that_node_only(self):
        scenario = SCENARIOS["groups"]()
        self.configs(scenario, ("n1",))   # the rig exists
        cluster, settings, undo = scenario.reshape(self.launcher, "n1", "count")
        self.assertEqual((cluster, settings),
                         ("C", {"after": ["A"], "mode": "n-active", "count": 1}))
        configs = self.configs(scenario, ("n1", "n2"))
        [c1] = [c for c in configs["n1"].clusters if c.id == "C"]
        [c2] = [c for c in configs["n2"].clusters if c.id == "C"]
        self.assertEqual((c1.mode, c1.count, c1.after), ("n-active", 1, ("A",)))
        self.assertEqual(c2.mode, "active-standby")
        undo()
        [c1] = [c for c in self.configs(scenario, ("n1",))["n1"].clusters if c.id == "C"]
        self.assertEqual(c1.mode, "active-standby")
        self.assertRaises(ValueError, scenario.reshape, self.launcher, "n3", "mode")


class ServiceToHitTests(unittest.TestCase):
    def test_kills_and_pauses_hit_members_too_by_the_events_time(self):
        from rig.checker import Interval
        from rig.faults.runner import ScheduleRunner
        from rig.faults.schedule import FaultEvent

        running = [Interval(instance=f"i-{c}", node="n1", cluster=c, epoch=1, pid=10 + k,
                            start=float(k), end=None, end_kind="unknown", last_seen=9.0)
                   for k, c in enumerate(("A.vol", "A.db", "A.exp", "B", "C"))]
        runner = ScheduleRunner(None, FakeLauncher(running=running), SCENARIOS["groups"]())
        hit = {runner.service_hit(FaultEvent(at=at, kind="kill_service", targets=("n1",))).cluster
               for at in (10.0, 10.01, 10.02, 10.03, 10.04)}
        self.assertEqual(hit, {"A.vol", "A.db", "A.exp", "B", "C"})
        event = FaultEvent(at=12.34, kind="pause_service", targets=("n1",))
        self.assertEqual(runner.service_hit(event), runner.service_hit(event))
        # The other scenarios keep hitting the newest.
        runner = ScheduleRunner(None, FakeLauncher(running=running), SCENARIOS["clusters"]())
        self.assertEqual(runner.service_hit(event).cluster, "C")


class ReportTests(unittest.TestCase):
    def test_an_out_of_order_start_fails_the_run_and_the_text_names_the_groups(self):
        from rig import checker
        from tests.rig.test_checker import History

        h = History()
        h.instance("n1", "A.vol", 1.0, epoch=1, beats_until=5.0, stop=5.3)
        h.instance("n1", "A.exp", 1.2, epoch=1, beats_until=5.0, stop=5.1)
        h.instance("n1", "A.db", 1.5, epoch=1, beats_until=5.0, stop=5.2)
        bad = checker.check(h.records, horizon=6.0, groups={"A": groups.member_resources()})
        good = checker.check([r for r in h.records if r.cluster != "A.exp"], horizon=6.0,
                             groups={"A": groups.member_resources()})
        schedule = Schedule(seed=1, nodes=("n1", "n2", "n3"), duration=10.0, lease=2.0, kinds=(),
                            events=())
        run = RunLog(started_at=0.0, steps=[], ended_at=10.0, healed_at=10.0,
                     recovered_at=10.0)

        def report(final):
            return build(schedule=schedule, run=run, scenario=SCENARIOS["groups"](),
                         final=final, during=final, log_problems=[], replay="",
                         groups=("A",))
        failed = report(bad)
        self.assertEqual(failed["verdict"], "FAIL")
        self.assertIn("OUT OF ORDER group A: A.exp started on n1", failed["violations"][0])
        passed = report(good)
        self.assertEqual(passed["verdict"], "PASS")
        self.assertIn("group A's members started in order", to_text(passed))
