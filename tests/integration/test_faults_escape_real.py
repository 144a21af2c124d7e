"""Services that escape their process group, on real daemons: only cgroup containment stops them.

One scripted fault: kill -9 of the daemon that owns c1, with every protected
service double-forking and ``setsid``-ing the copy that records. Under
cgroup containment the lease guard kills that copy at the deadline and the
checker sees no overlap; under process-group containment (the negative
control) it runs on beside the standby's copy, and the checker must say so.
"""

from twisted.trial import unittest

from rig.faults.cleanup import Cleanups
from rig.faults.freeze import cgroup2_root
from rig.faults.runner import ClustersScenario, execute
from rig.faults.schedule import FaultEvent, Schedule
from tests.support.rig_support import require, require_root

SCHEDULE = Schedule(seed=0, nodes=("n1", "n2", "n3"), duration=20.0, lease=2.0,
                    kinds=("kill_daemon",), escaping=True,
                    events=(FaultEvent(at=6.0, kind="kill_daemon", targets=("n1",), lasts=6.0),))


class ContainedScenario(ClustersScenario):
    """The clusters scenario with one ``containment`` for every service."""

    def __init__(self, containment, **kwargs):
        super().__init__(**kwargs)
        self.containment = containment

    def template_parts(self):
        parts = super().template_parts()
        clusters = parts[-1]

        def contained(node, launcher):
            tables = clusters(node, launcher)
            for service in tables.get("service", ()):
                service["containment"] = self.containment
            return tables
        return [*parts[:-1], contained]


class EscapingServiceTests(unittest.TestCase):
    def setUp(self):
        require_root("cgroups and the lease guard's kill of a service cgroup")
        require(cgroup2_root() is not None, "a cgroup v2 hierarchy")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def run_with(self, containment):
        report = execute(SCHEDULE, self.mktemp(), ContainedScenario(containment),
                         cleanups=self.cleanups)
        [step] = report["timeline"]
        self.assertEqual(step["outcome"], "applied")
        return report

    def test_cgroup_containment_stops_the_escaped_copy(self):
        report = self.run_with("cgroup")
        self.assertEqual(report["violations"], [], report["reasons"])
        self.assertEqual(report["verdict"], "PASS", report["reasons"])
        self.assertTrue(report["escaping"])
        # c1 really moved: the escaped copy on n1 ended, n2's started after it.
        self.assertIn("c1: n1 -> n2", " ".join(
            f"{f['cluster']}: {f['from']} -> {f['to']}" for f in report["failovers"]))

    def test_process_group_containment_lets_the_escaped_copy_overlap(self):
        report = self.run_with("process-group")
        overlaps = [v for v in report["violations"] if v.startswith("OVERLAP cluster c1:")]
        self.assertTrue(overlaps, report["violations"][:5])
        self.assertEqual(report["verdict"], "FAIL")
