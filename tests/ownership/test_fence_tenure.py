"""Fences are bound to their tenure: a fence of an ended tenure is killed and its result ignored.

The danger: a fence started for epoch E1 that finishes after epoch E3 began
would start E3's service without fencing the node E3 had to fence.
"""

import signal

from twisted.trial import unittest

from clsd.ownership.core.actions import CancelFence, RunHook, StartService
from clsd.ownership.core.arbiter_events import LeaseAcquired, LeaseEnding
from clsd.ownership.core.manager import FENCING, IDLE
from tests.ownership import test_hooks as test_ownership_hooks
from tests.ownership import test_manager as test_ownership_manager
from tests.ownership.test_hooks import hook
from tests.ownership.test_manager import FENCE, of, spec
from tests.ownership.test_service import FENCE as SHELL_FENCE, ThreeNodeCluster, pump


class CoreTests(unittest.TestCase):
    setUp = test_ownership_manager.ManagerTests.setUp
    manager = test_ownership_manager.ManagerTests.manager
    grant = test_ownership_manager.ManagerTests.grant

    def test_a_fence_result_of_another_epoch_is_ignored(self):
        m = self.manager(spec(fence=FENCE))
        self.grant(m, epoch=9, previous="beta")
        actions = m.hook_done("A", "fence", 4, True, 1.2)
        self.assertEqual(of(StartService, actions), [])
        self.assertEqual(m.status(1.2)["A"], (FENCING, 9))
        actions = m.hook_done("A", "fence", 9, True, 1.3)
        self.assertEqual(of(StartService, actions), [StartService("A", "svc-A", 9, 0)])

    def test_a_tenure_ending_while_fencing_cancels_its_fence(self):
        m = self.manager(spec(fence=FENCE))
        self.grant(m, epoch=9, previous="beta")
        actions = m.receive("alpha", LeaseEnding("A", 9, 2.9), 2.4)
        self.assertEqual(of(CancelFence, actions), [CancelFence("A", 9)])
        self.assertEqual(m.status(2.4)["A"][0], IDLE)
        # Its result, arriving late, starts nothing in a later tenure.
        m.tick(3.5)  # acquiring again
        self.arbiter.held["A"] = (17, 5.9)
        actions = m.receive("alpha", LeaseAcquired("A", 17, 5.9, "gamma", False), 4.0)
        self.assertEqual(of(RunHook, actions), [RunHook("A", "fence", FENCE, "gamma", 17)])
        actions = m.hook_done("A", "fence", 9, True, 4.1)
        self.assertEqual(of(StartService, actions), [])

    def test_a_handover_while_fencing_cancels_its_fence(self):
        m = self.manager(spec(fence=FENCE))
        self.grant(m, epoch=9, previous="beta")
        actions = m.set_standby(True, 1.5)
        self.assertEqual(of(CancelFence, actions), [CancelFence("A", 9)])


class RunnerCancelTests(unittest.TestCase):
    setUp = test_ownership_hooks.HookRunnerTests.setUp
    run_hook = test_ownership_hooks.HookRunnerTests.run_hook
    hook_events = test_ownership_hooks.HookRunnerTests.hook_events

    def test_a_running_fence_is_killed_and_its_result_dropped(self):
        self.run_hook(hook(event="fence", epoch=9))
        self.run_hook(hook(event="fence", epoch=9, node="gamma"))  # a retry queued behind
        self.run_hook(hook(event="fence", epoch=17))
        pid = self.fake.runs[0][1].pid
        self.runner.cancel("A", "fence", 9)
        self.assertEqual(self.fake.signals, [(pid, signal.SIGKILL)])
        self.fake.killed(0)
        self.assertEqual(self.done, [], "a cancelled fence reports nothing")
        [context] = [c for c, _ in self.fake.runs[1:]]
        self.assertEqual(context.env["CLSD_EPOCH"], "17", "the next tenure's fence runs next")
        self.fake.finish(index=1)
        self.assertEqual(self.done, [("A", "fence", True)])
        reasons = [e["reason"] for e in self.hook_events()]
        self.assertTrue(any("cancelled: its tenure ended" in r for r in reasons), reasons)

    def test_a_fence_waiting_for_its_retry_is_dropped(self):
        self.run_hook(hook(event="fence", epoch=9))
        self.fake.finish(code=1)
        self.runner.cancel("A", "fence", 9)
        self.clock.advance(60)
        self.assertEqual(len(self.fake.runs), 1, "no retry of a cancelled fence")
        self.assertFalse(self.runner.busy("A"))
        self.assertEqual(self.done, [])

    def test_other_hooks_and_epochs_are_left_alone(self):
        self.run_hook(hook(event="release", epoch=9))
        self.run_hook(hook(event="fence", epoch=17))
        self.runner.cancel("A", "fence", 9)
        self.assertEqual(self.fake.signals, [])
        self.fake.finish(index=0)
        self.assertEqual(len(self.fake.runs), 2)


class FenceOfAnEndedTenureTests(ThreeNodeCluster, unittest.TestCase):
    def test_the_next_tenure_waits_for_its_own_fence(self):
        self.build(fence=SHELL_FENCE)
        alpha, beta, gamma = (self.nodes[n] for n in ("alpha", "beta", "gamma"))
        # alpha is cut off: beta takes over and fences alpha (the fence hangs).
        self.net.isolate("alpha")
        pump(self.clock, 4.0)
        [(first, protocol)] = beta.hook_processes.runs
        self.assertEqual(first.argv[1], "alpha")
        # beta's tenure ends while it fences: standby hands the cluster to gamma.
        beta.service.standby()
        pump(self.clock, 1.0)
        self.assertIn((protocol.pid, signal.SIGKILL), beta.hook_processes.signals,
                      "the fence of the ended tenure is killed")
        beta.hook_processes.killed(0)
        self.assertEqual(len(gamma.spawns), 1)
        # alpha comes back on standby; beta may run A again; gamma is cut off.
        alpha.service.standby()
        self.net.heal("alpha")
        beta.service.unstandby()
        pump(self.clock, 1.0)
        self.net.isolate("gamma")
        pump(self.clock, 4.0)
        fences = [c.argv[1] for c, _ in beta.hook_processes.runs]
        self.assertEqual(fences, ["alpha", "gamma"])
        self.assertEqual(beta.spawns, [], "no start before gamma is fenced")
        beta.hook_processes.finish(index=1)
        pump(self.clock, 0.1)
        self.assertEqual(len(beta.spawns), 1)
