"""Short random fault schedules on real clusters: the CI version of ``make soak``.

Each test runs one seed of the ``clusters`` scenario (a ring of
active-standby cluster IDs with a witness, rig.cluster) through the
schedule CLI, exactly as ``python -m rig.faults`` runs it, and
asserts on its ``report.json``: no overlap, no stale epoch or epoch reuse,
every cluster running again within the recovery bound after the final heal,
every daemon's membership view showing every node alive, no crash line in any daemon log, every fault applied or healed without a rig
error. A failing seed prints its replay command.

The seeds are fixed so that a regression shows up as the same failing
schedule every time; ``make soak`` draws new ones.
"""

import json
import os
import subprocess
import sys

from twisted.trial import unittest

from rig.faults.network import IptablesBackend, NftBackend
from rig.faults.runner import DEFAULT_RECOVERY_TIMEOUT
from tests.support.rig_support import require, require_root

#: Seconds of faults per seed: long enough for three to six events (one every
#: 5-15 s after 5 s of settling), short enough that three seeds add about two
#: minutes to `make test` under trial -j2.
DURATION = 40
#: Startup, settling, recovery (at most DEFAULT_RECOVERY_TIMEOUT) and
#: teardown on a busy machine; a run taking longer than this is a failure.
RUN_TIMEOUT = DURATION + 240


class ShortScheduleTests(unittest.TestCase):
    """A few fixed seeds of the clusters scenario on 3 and 5 real daemons."""

    timeout = RUN_TIMEOUT + 30

    def setUp(self):
        # Without root and a firewall tool the partitions and CPU quotas
        # would be skipped and the run would prove much less.
        require_root("partitions and CPU quotas")
        require(NftBackend.available() or IptablesBackend.available(), "nft or iptables")

    def run_seed(self, seed, nodes, duration=DURATION):
        out = os.path.abspath(self.mktemp())
        command = [sys.executable, "-m", "rig.faults", "--scenario", "clusters",
                   "--nodes", str(nodes), "--duration", str(duration), "--seed", str(seed),
                   "--out", out, "--quiet"]
        result = subprocess.run(command, capture_output=True, text=True, timeout=RUN_TIMEOUT)
        path = os.path.join(out, "report.json")
        self.assertTrue(os.path.exists(path), f"no report from {' '.join(command)}:\n"
                        f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        with open(path) as f:
            report = json.load(f)
        return result, report

    def assert_passed(self, result, report):
        why = f"seed {report['seed']}: {report['reasons']}; replay: {report['replay']}\n" \
              f"{result.stdout[-4000:]}"
        self.assertEqual(report["violations"], [], why)
        self.assertEqual(report["log_problems"], [], why)
        self.assertEqual(report["record_problems"], [], why)
        self.assertIsNone(report["recovery"]["error"], why)
        self.assertLessEqual(report["recovery"]["seconds"], DEFAULT_RECOVERY_TIMEOUT, why)
        self.assertIsNone(report["views"]["error"], why)
        self.assertIsNotNone(report["failover_bound"], why)
        self.assertEqual(report["failover_bound"]["exceeded"], [], why)
        self.assertIn("nx", report["failover_bound"]["worst_recovery"], why)
        self.assertIsNotNone(report["views"]["converged"], why)
        outcomes = [step["outcome"] for step in report["timeline"]]
        self.assertFalse([o for o in outcomes if o.startswith(("error", "heal error"))], why)
        # A schedule whose every fault was skipped proves nothing.
        self.assertGreater(sum(report["faults_by_kind"].values()), 0, why)
        self.assertEqual(report["verdict"], "PASS", why)
        self.assertEqual(result.returncode, 0, why)
        self.assertIn("--scenario clusters", report["replay"])

    # Seeds chosen for the kinds they draw (--print-schedule shows them).

    def test_seed_4_three_nodes(self):
        """split, long daemon pause, 1-10 % loss, kill -9 of a daemon; the witness leaves."""
        self.assert_passed(*self.run_seed(4, 3))

    def test_seed_8_three_nodes(self):
        """daemon pause, hung service, kill -9 of a service, CPU starvation; the witness leaves."""
        self.assert_passed(*self.run_seed(8, 3))

    def test_seed_5_five_nodes(self):
        """clock jump, majorities ring, kill -9 of a daemon; spare j1 joins and leaves again."""
        self.assert_passed(*self.run_seed(5, 5))

    def test_seed_4_five_nodes(self):
        """majority/minority split, loss, bridge node, daemon pause; n5 leaves and returns."""
        self.assert_passed(*self.run_seed(4, 5))

    def test_seed_38_three_nodes_join_and_leave(self):
        """n1, preferred for c1 and an nx copy, leaves gracefully for 8 s (its clusters are
        handed over) and returns; spare j1 joins and stays, so the final views have four
        members; daemon pause, isolation, restart of a daemon meanwhile."""
        result, report = self.run_seed(38, 3, duration=45)
        self.assert_passed(result, report)
        applied = {(step["kind"], tuple(step["targets"])) for step in report["timeline"]
                   if step["outcome"] == "applied"}
        self.assertTrue({("leave", ("n1",)), ("join", ("j1",))} <= applied, report["timeline"])
