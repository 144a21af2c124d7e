"""A service process stuck in the kernel: still present after SIGKILL, so not "stopped".

Shell tests on a Clock with fake processes (L{tests.ownership.test_service}):
the fake leader ignores every signal, SIGKILL included, like a process in
uninterruptible sleep.
"""

import signal

from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.supervision.core.policy import KILL_WAIT
from clsd.supervision.runner import STUCK_POLL
from tests.ownership.test_service import FENCE, ThreeNodeCluster, pump
from tests.supervision.test_runner import RunnerTestCase


class StuckServiceTests(ThreeNodeCluster, unittest.TestCase):
    def stop_timeout(self):
        return self.nodes["alpha"].runner().config.stop_timeout

    def test_a_group_present_after_kill_keeps_the_lease_until_it_is_gone(self):
        self.build(fence=FENCE)
        alpha, beta = self.nodes["alpha"], self.nodes["beta"]
        alpha.os.obey = False  # TERM and KILL leave it there
        pid = alpha.runner().pid
        alpha.service.standby()
        pump(self.clock, self.stop_timeout() + KILL_WAIT + 3.0)
        self.assertIn((pid, signal.SIGKILL), alpha.os.signals)
        self.assertTrue(alpha.os.alive(pid))
        # Not released: nobody starts while the stuck group is present.
        self.assertEqual(beta.spawns, [])
        self.assertEqual(self.nodes["gamma"].spawns, [])
        [cluster] = ownership_status(alpha.service)["clusters"]
        self.assertEqual(cluster["state"], "stuck")
        self.assertEqual(cluster["owners"], {"alpha": cluster["epoch"]})
        self.assertTrue(any("keeping lease A" in r and "stuck" in r
                            for r in alpha.reasons("lease")))
        self.assertIn(pid, alpha.guard.armed, "a stuck group stays armed in the guard")
        self.assertEqual(alpha.service.node.manager.status(self.clock.seconds())["A"][0],
                         "stuck")
        # The group finally goes: released as usual, the successor starts unfenced.
        alpha.os.exit(pid, signum=signal.SIGKILL)
        pump(self.clock, 2.0)
        self.assertEqual(len(beta.spawns), 1)
        self.assertEqual(beta.hook_processes.runs, [])
        self.assertNotIn(pid, alpha.guard.armed)

    def test_a_stuck_group_whose_lease_runs_out_makes_the_successor_fence(self):
        self.build(fence=FENCE)
        alpha, beta = self.nodes["alpha"], self.nodes["beta"]
        alpha.os.obey = False
        pid = alpha.runner().pid
        alpha.service.standby()
        pump(self.clock, self.stop_timeout() + KILL_WAIT + 1.0)
        self.assertEqual(alpha.service.node.manager.status(self.clock.seconds())["A"][0],
                         "stuck")
        self.net.isolate("alpha")
        pump(self.clock, 4.0)
        self.assertEqual(beta.spawns, [], "no start before the fence")
        [(context, _)] = beta.hook_processes.runs
        self.assertEqual(context.argv[:2], ("/sbin/fence", "alpha"))
        # Gone, and healed: alpha then releases nothing that would un-fence a later tenure.
        alpha.os.exit(pid, signum=signal.SIGKILL)
        beta.hook_processes.finish(code=0)
        pump(self.clock, 1.0)
        self.assertEqual(len(beta.spawns), 1)


class RunnerStuckGroupTests(RunnerTestCase):
    """The runner keeps watching a group it abandoned after SIGKILL."""

    def test_an_abandoned_group_is_stuck_until_a_probe_finds_it_gone(self):
        runner = self.make_runner()
        runner.startService()
        self.os.obey = False
        seen = []
        runner.add_observer(lambda r: seen.append(r.stuck_groups))
        stopped = runner.stop()
        self.clock.advance(3.0)   # stop_timeout: SIGKILL
        self.clock.advance(KILL_WAIT)
        self.successResultOf(stopped)  # the policy no longer waits ...
        self.assertEqual(runner.stuck_groups, {501})  # ... but the group is there
        self.assertEqual(runner.status()["stuck_groups"], [501])
        self.clock.advance(STUCK_POLL * 3)
        self.assertEqual(runner.stuck_groups, {501})
        self.os.leaders.discard(501)
        seen.clear()
        self.clock.advance(STUCK_POLL)
        self.assertEqual(runner.stuck_groups, frozenset())
        self.assertEqual(seen, [frozenset()], "observers hear that it is gone")
        self.assertIn("process group 501, abandoned after SIGKILL, is gone now",
                      self.reasons("state"))
