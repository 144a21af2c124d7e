"""``why CLUSTER``, pure: the latest ownership change from the history, with its cause chain."""

import json

from twisted.trial import unittest

from clsd.admin import commands
from clsd.admin.backend import AdminError, ClusterInfo, HistoryEvent
from clsd.admin.ownership_status import cluster_view
from clsd.admin.why import MAX_CONTEXT, why_report, why_text

T = 1_700_000_000.0
CAUSE = ("previous owner alpha declared dead at 2023-11-14T22:13:21.000Z: reported unreachable "
         "by beta, witness (2 of 2 observers)",
         "lease epoch 7 of alpha expired unrenewed", "acquired epoch 8")


def info(node, owners):
    view = cluster_view(node=node, owners=owners, targets=owners, standbys=["alpha"])
    return ClusterInfo("A", owners, 8, "running").with_view(view)


def history():
    return (
        HistoryEvent(T - 100, "A:lease", "acquired lease A epoch 3"),
        HistoryEvent(T - 50, "B:lease", "acquired lease B epoch 4"),
        HistoryEvent(T - 3, "alpha:member", "reported unreachable by beta, witness"),
        HistoryEvent(T - 1, "A:lease", "acquired lease A epoch 8 (previous holder alpha)"),
        HistoryEvent(T, "A:cluster", "moved from alpha to beta (epoch 8)", cause=CAUSE),
        HistoryEvent(T + 1, "A:ownership", "starting system-a (epoch 8)"),
        HistoryEvent(T + 60, "B:cluster", "moved from gamma to beta (epoch 5)", cause=("x",)),
    )


class WhyTests(unittest.TestCase):

    def test_the_latest_move_with_its_causes_and_what_surrounded_it(self):
        report = why_report("A", [info("beta", ["beta"])], history())
        self.assertEqual(report.change.detail, "moved from alpha to beta (epoch 8)")
        self.assertEqual([e.detail for e in report.context],
                         ["reported unreachable by beta, witness",
                          "acquired lease A epoch 8 (previous holder alpha)",
                          "starting system-a (epoch 8)"])
        self.assertIsNone(report.hint)
        lines = why_text(report).splitlines()
        self.assertEqual(lines[0], "cluster A: running on beta (epoch 8); this node: owner")
        self.assertEqual(lines[1], "latest change: 2023-11-14 22:13:20Z  moved from alpha to "
                                   "beta (epoch 8)")
        self.assertEqual(lines[2:5], [f"  <- {fact}" for fact in CAUSE])
        self.assertEqual(lines[5], "around it:")

    def test_a_node_that_saw_only_its_side_names_the_new_owner(self):
        events = history()[:3] + (
            HistoryEvent(T, "A:lease", "lost lease A epoch 7: not renewed in time"),)
        report = why_report("A", [info("alpha", ["beta"])], events)
        self.assertEqual(report.change.detail, "lost lease A epoch 7: not renewed in time")
        self.assertEqual(report.hint, "the cause chain is recorded on the node that acquired "
                                      "it: run 'why A' on beta")
        self.assertIn("run 'why A' on beta", why_text(report))

    def test_no_change_in_the_history(self):
        report = why_report("A", [info("witness", ["beta"])], ())
        self.assertIsNone(report.change)
        self.assertIn("no ownership change of it in this node's history", why_text(report))

    def test_unknown_cluster(self):
        self.assertRaises(AdminError, why_report, "Z", [info("beta", ["beta"])], history())

    def test_one_screen(self):
        noise = tuple(HistoryEvent(T - 2 + i / 100, "A:ownership", f"line {i}")
                      for i in range(50))
        events = tuple(sorted(history() + noise, key=lambda e: e.time))
        text = why_text(why_report("A", [info("beta", ["beta"])], events))
        self.assertEqual(len(why_report("A", [], events).context), MAX_CONTEXT)
        self.assertLessEqual(len(text.splitlines()), 24)
        self.assertTrue(all(len(line) <= 200 for line in text.splitlines()))

    def test_text_from_peers_cannot_drive_the_terminal(self):
        events = (HistoryEvent(T, "A:cluster", "moved from \x1b]0;x\x07 to beta (epoch 8)",
                               cause=("evil\x1b[2J",)),)
        text = why_text(why_report("A", [], events))
        self.assertNotIn("\x1b", text)


class WhyCommandTests(unittest.TestCase):
    """Through the command language, with a backend that answers as the daemon's does."""

    class Backend:
        def clusters(self):
            return [info("beta", ["beta"])]

        def history(self, n):
            return history()[-n:]

    def command(self, line):
        results = []
        commands.run_line(self.Backend(), commands.ROLE_MONITOR, line).addCallback(
            results.append)
        return results[0]

    def test_human_and_json(self):
        outcome = self.command("why A")
        self.assertEqual(outcome.status, commands.EXIT_OK, outcome)
        self.assertIn("<- lease epoch 7 of alpha expired unrenewed", outcome.stdout)
        data = json.loads(self.command("why A --json").stdout)
        self.assertEqual(data["change"]["cause"], list(CAUSE))
        self.assertEqual(data["summary"], "running on beta")

    def test_unknown_cluster_fails(self):
        outcome = self.command("why Z")
        self.assertEqual(outcome.status, commands.EXIT_FAILED)
        self.assertIn("no cluster named 'Z'", outcome.stderr)

    def test_needs_a_cluster(self):
        self.assertEqual(self.command("why").status, commands.EXIT_USAGE)
