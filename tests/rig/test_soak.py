"""The soak's figures come from the run reports, and its row lands in the results table."""

from twisted.trial import unittest

from rig.faults import soak


def report(verdict="PASS", kinds=None, violations=(), worst_failover=None, unavailability=None,
           bound=None):
    return {
        "failover_bound": bound,
        "verdict": verdict,
        "faults_by_kind": kinds or {},
        "violations": list(violations),
        "failover_summary": {"max": worst_failover},
        "unavailability": {c: {"worst": w, "total": w, "windows": []}
                           for c, w in (unavailability or {}).items()},
    }


DOC = """# Reliability

## Results

| date | machine | scenario | schedules | faults injected (by kind) | violations | worst failover | worst unavailability | down while allowed to run |
|---|---|---|---|---|---|---|---|---|
| 2026-01-01 | old | x | 1 (0 failed) | none | 0 | - | - | - |

Text after the table.
"""


class SummaryTests(unittest.TestCase):
    def test_figures_add_up_over_reports(self):
        summary = soak.summarize([
            report(kinds={"split": 1, "kill_daemon": 2}, worst_failover=3.5,
                   unavailability={"c1": 2.0, "c2": 4.25}),
            report(verdict="FAIL", kinds={"split": 2}, violations=["OVERLAP c1", "STALE c1"],
                   worst_failover=7.0, unavailability={"c1": 1.0}),
            report(kinds={}),
        ], missing=1)
        self.assertEqual(summary, {
            "schedules": 4, "failed": 2, "faults_by_kind": {"kill_daemon": 2, "split": 3},
            "violations": 2, "worst_failover": 7.0, "worst_unavailability": 4.25,
            "bound_checked": 0, "bound_exceeded": 0, "worst_recovery": None, "escaping": 0,
        })

    def test_runs_with_escaping_services_are_counted(self):
        escaping = {**report(kinds={"reshape": 1}), "escaping": True}
        summary = soak.summarize([escaping, report(kinds={"clock_rate": 2})])
        self.assertEqual(summary["escaping"], 1)
        row = soak.table_row(summary, date="d", machine="m", scenario="s")
        self.assertIn("| clock_rate 2, reshape 1; services escaping their process group in 1 runs |",
                      row)

    def test_failover_bound_figures(self):
        summary = soak.summarize([
            report(bound={"bound": 24.89, "exceeded": [], "worst_recovery": {"c1": 1.5, "nx": 3.25},
                          "required_seconds": {}}),
            report(bound={"bound": 24.89, "exceeded": ["BOUND EXCEEDED c1"],
                          "worst_recovery": {"c1": 30.0}, "required_seconds": {}}),
            report(),
        ])
        self.assertEqual((summary["bound_checked"], summary["bound_exceeded"],
                          summary["worst_recovery"]), (2, 1, 30.0))
        row = soak.table_row(summary, date="d", machine="m", scenario="s")
        self.assertTrue(row.endswith("| 1 exceeded; worst 30.00 s |"), row)

    def test_no_failovers_is_not_zero_seconds(self):
        summary = soak.summarize([report()])
        row = soak.table_row(summary, date="2026-11-26", machine="m", scenario="s")
        self.assertEqual(row, "| 2026-11-26 | m | s | 1 (0 failed) | none | 0 | - | - | - |")

    def test_row_goes_after_the_last_table_line(self):
        row = soak.table_row(
            soak.summarize([report(kinds={"loss": 1}, worst_failover=1.234,
                                   unavailability={"c1": 0.5})]),
            date="2026-11-26", machine="host (2 CPU)", scenario="clusters | 3 nodes")
        text = soak.append_row(DOC, row)
        lines = text.split("\n")
        index = lines.index(row)
        self.assertTrue(lines[index - 1].startswith("| 2026-01-01"))
        self.assertEqual(lines[index + 1], "")
        self.assertIn("Text after the table.", text)
        # A pipe inside a cell would split it: replaced.
        self.assertIn("| clusters / 3 nodes |", row)
        self.assertIn("| loss 1 | 0 | 1.23 s | 0.50 s |", row)

    def test_file_without_table_is_refused(self):
        with self.assertRaises(ValueError) as caught:
            soak.append_row("# nothing here\n", "| row |")
        self.assertIn("no results table", str(caught.exception))

    def test_a_results_file_without_the_table_is_refused_before_any_run(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("# nothing here\n")
        for results in (path, path + "-missing"):
            with self.assertRaises(SystemExit) as caught:
                soak.main(["--seeds", "1", "--out", self.mktemp(), "--results", results])
            self.assertEqual(caught.exception.code, 2)
