"""L{ManagedGroup} on a Clock: an ordered group run under the lease by real runners on fake processes."""

import functools
import signal

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.ownership.core.group import Phase
from clsd.ownership.managed_group import ManagedGroup
from clsd.supervision.core.policy import State
from clsd.supervision.runner import ServiceRunner
from tests.ownership import test_service
from tests.ownership.test_floating import V4, KeeperHarness
from tests.ownership.test_service import FakeForkingRunner, ShellNode, pump, service_table
from tests.supervision.test_runner import FakeChecker

MEMBERS = ["vol", "db", "exp"]


def group_cluster(**extra):
    table = {"id": "A", "services": list(MEMBERS), "priority": 100}
    table.update(extra)
    return table


class GroupShellTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.node = ShellNode(self, self.clock, "alpha", ["alpha"], [group_cluster()],
                              services=[service_table(name) for name in MEMBERS]).start()
        pump(self.clock, 3.0)

    def spawned(self):
        """Service names in the order their instances were spawned."""
        return [e["subject"] for e in self.node.events.recent() if e["kind"] == "spawned"]

    def signalled(self):
        """Service names in the order they were sent SIGTERM."""
        by_pid = {}
        for event in self.node.events.recent():
            if event["kind"] == "spawned":
                by_pid[event["fields"]["pid"]] = event["subject"]
        return [by_pid[pid] for pid, signum in self.node.os.signals if signum == signal.SIGTERM]

    def group(self):
        managed = self.node.service._managed["A"]
        self.assertIsInstance(managed, ManagedGroup)
        return managed

    def test_members_start_in_order_with_the_groups_tenure_and_each_is_armed(self):
        self.assertEqual(self.spawned(), MEMBERS)
        self.assertEqual([self.node.runner(n).state.value for n in MEMBERS], ["running"] * 3)
        envs = [env for _, _, env in self.node.spawns]
        self.assertEqual(len(envs), 3)
        self.assertTrue(all(env == envs[0] for env in envs), envs)
        self.assertEqual(envs[0]["CLSD_CLUSTER"], "A")
        for name in MEMBERS:
            pid = self.node.runner(name).pid
            self.assertIn(pid, self.node.guard.armed)
        self.assertEqual({label for kind, *rest in self.node.guard.log if kind == "arm"
                          for label in rest[2:]}, {"A"})
        self.assertIn(f"starting vol, db, exp (epoch {envs[0]['CLSD_EPOCH']})",
                      self.node.reasons("ownership"))

    def test_status_shows_the_members(self):
        [cluster] = ownership_status(self.node.service)["clusters"]
        self.assertEqual(cluster["members"], MEMBERS)
        self.assertEqual([m["state"] for m in cluster["member_states"]], ["running"] * 3)
        self.assertEqual(cluster["service_state"], "running")
        self.assertIsNone(cluster["waiting_for"])

    def test_a_crashed_member_restarts_after_the_members_above_it_stopped(self):
        db = self.node.runner("db")
        self.node.os.exit(db.pid, code=1)
        pump(self.clock, 1.0)
        self.assertEqual(self.spawned(), MEMBERS + ["db", "exp"])
        self.assertEqual(self.signalled(), ["exp"])
        self.assertEqual([self.node.runner(n).state.value for n in MEMBERS], ["running"] * 3)
        self.assertIs(self.group().core.phase, Phase.RUNNING)
        history = self.node.reasons("group")
        recovery = history[history.index("all 3 members run") + 1:]
        self.assertEqual(recovery[:2], ["stopping member exp (3 of 3): db below it is not "
                                        "running",
                                        "member db (2 of 3) may start: every member after it "
                                        "has stopped"])
        self.assertEqual(recovery[2:], ["starting member exp (3 of 3)", "all 3 members run"])
        # The tenure went on: same epoch, lease still held.
        self.assertEqual(len({env["CLSD_EPOCH"] for _, _, env in self.node.spawns}), 1)

    def test_a_member_refused_while_one_above_lives_is_held_not_failed(self):
        self.node.os.obey = False          # exp ignores SIGTERM until SIGKILL (5 s)
        self.node.os.exit(self.node.runner("db").pid, code=1)
        pump(self.clock, 2.0)
        self.assertEqual(self.spawned(), MEMBERS, "db must not start while exp lives")
        self.assertEqual(self.node.runner("db").state.value, "backoff")
        self.assertIn("spawn-refused", [e["kind"] for e in self.node.events.recent()])
        self.assertEqual(self.group().status()["waiting_for"], "db")
        self.node.os.obey = True
        pump(self.clock, 4.0)              # exp's SIGKILL at stop_timeout
        self.assertEqual(self.spawned(), MEMBERS + ["db", "exp"])
        self.assertEqual(self.node.runner("db").status()["recent_failures"], 1,
                         "the held start is not counted as a failure")

    def test_a_crash_loop_of_a_member_moves_the_whole_group(self):
        for _ in range(3):
            self.node.os.exit(self.node.runner("db").pid, code=1)
            pump(self.clock, 1.5)
        self.assertEqual(self.node.runner("db").state.value, "failed")
        pump(self.clock, 0.5)
        self.assertEqual([self.node.runner(n).process_alive for n in MEMBERS], [False] * 3)
        manager = self.node.service.node.manager
        self.assertIn("A", manager.own_state(self.clock.seconds()).failed)
        self.assertEqual(self.node.guard.armed, {})
        # vol was stopped last (exp had been stopped by db's own recovery).
        self.assertEqual(self.signalled()[-1], "vol")

    def test_standby_stops_the_members_in_reverse_then_releases(self):
        self.node.service.standby()
        pump(self.clock, 0.5)
        self.assertEqual(self.signalled(), ["exp", "db", "vol"])
        manager = self.node.service.node.manager
        self.assertEqual(manager.status(self.clock.seconds())["A"][0], "idle")
        self.assertEqual(self.node.guard.armed, {})
        pump(self.clock, 5)
        self.node.service.unstandby()
        pump(self.clock, 0.5)
        self.assertEqual(self.spawned(), MEMBERS * 2)

    def test_shutdown_waits_for_the_group_then_the_guard(self):
        d = self.node.service.stopService()
        pump(self.clock, 1.0)
        self.assertTrue(d.called)
        self.assertEqual(self.signalled(), ["exp", "db", "vol"])
        self.assertTrue(self.node.guard.stopped)


class WarmingNode(ShellNode):
    """A node whose members' spawners have C{warm}, each call recorded with its member,
    and whose members have a health check (answered by hand)."""

    @property
    def base_spawn(self):
        warmed = self.__dict__.setdefault("warmed", [])
        # ShellNode asks for one per managed service, in the config's order.
        names = self.__dict__.setdefault("_spawner_names", iter(
            [s.name for s in self.config.services if self.service.manages(s.name)]))
        name = next(names)

        def spawn(protocol, extra_env=None, after_spawn=None):
            return ShellNode.base_spawn(self, protocol, extra_env, after_spawn)

        spawn.warm = lambda extra_env=None: warmed.append(
            (self.clock.seconds(), name, dict(extra_env or {})))
        return spawn


class GroupWarmGateTests(unittest.TestCase):
    def setUp(self):
        self.checkers = {}

        def checker_factory(check, reactor):
            checker = FakeChecker(check, reactor)
            self.checkers[check.target] = checker
            return checker

        self.patch(test_service, "ServiceRunner",
                   functools.partial(ServiceRunner, checker_factory=checker_factory))
        self.clock = Clock()
        self.clock.advance(1000)
        services = [service_table(name, check={"type": "tcp", "target": f"127.0.0.1:{port}",
                                               "interval": 0.1, "timeout": 0.1, "rise": 1,
                                               "grace": 5.0})
                    for port, name in enumerate(MEMBERS, start=7001)]
        self.node = WarmingNode(self, self.clock, "alpha", ["alpha"], [group_cluster()],
                                services=services).start()
        pump(self.clock, 3.0)

    def ready(self, index):
        """Member C{index} answers its next probe."""
        checker = self.checkers[("127.0.0.1", 7001 + index)]
        while not checker.pending:
            pump(self.clock, 0.005)
        checker.answer(True)

    def test_each_next_member_is_warmed_while_the_one_before_it_starts(self):
        node = self.node
        self.assertEqual([e["subject"] for e in node.events.recent() if e["kind"] == "spawned"],
                         ["vol"])
        tenure = node.spawns[0][2]
        self.assertEqual(node.warmed, [(node.spawns[0][0], "db", tenure)])
        self.ready(0)
        self.assertEqual(len(node.spawns), 2)
        self.assertEqual(node.warmed[1:], [(node.spawns[1][0], "exp", tenure)])
        self.ready(1)
        self.ready(2)
        self.assertEqual([node.runner(n).state.value for n in MEMBERS], ["running"] * 3)
        self.assertEqual(len(node.warmed), 2, "the last member has no next one")

    def test_members_that_run_at_once_are_not_warmed(self):
        clock = Clock()
        node = WarmingNode(self, clock, "alpha", ["alpha"], [group_cluster()],
                           services=[service_table(name) for name in MEMBERS]).start()
        pump(clock, 3.0)
        self.assertEqual([node.runner(n).state.value for n in MEMBERS], ["running"] * 3)
        self.assertEqual(node.warmed, [], "each next member had started already")


class GroupConfigShapeTests(unittest.TestCase):
    def test_a_group_differs_in_shape_from_another_order(self):
        from clsd.ownership.core.shape import fingerprint
        from clsd.ownership.core.timing import LeaseTiming
        from tests.ownership.shell_support import ownership_config

        services = [service_table(n) for n in MEMBERS]

        def config(members):
            return ownership_config("alpha", ["alpha"],
                                    [{"id": "A", "services": members}], self.mktemp(),
                                    services).clusters[0]

        timing = LeaseTiming(2.0, 0.1)
        one = fingerprint(config(MEMBERS), timing, "voters")
        self.assertEqual(one, fingerprint(config(list(MEMBERS)), timing, "voters"))
        self.assertNotEqual(one, fingerprint(config(["db", "vol", "exp"]), timing, "voters"))
        self.assertNotEqual(one, fingerprint(config(["vol", "db"]), timing, "voters"))


class GroupWithAddressTests(unittest.TestCase):
    """An ordered group's floating address: the first member's (before) or the last's (after)."""

    def group(self, order):
        self.h = KeeperHarness(order=order, addresses=(V4,))
        self.reports = []
        self.queue = []
        self.log = []
        group = ManagedGroup("A", "alpha", self.h.guard, ["m1", "m2"],
                             monotonic=self.h.clock.seconds,
                             report=lambda *a: self.reports.append(a[0]),
                             later=lambda f, *args: self.queue.append((f, args)),
                             keeper=self.h.keeper)
        self.runners = []
        for index, name in enumerate(["m1", "m2"]):
            runner = FakeForkingRunner()
            runner.config = type("Config", (), {"stop_timeout": 1.0})
            runner.start = lambda r=runner, n=name: self.started(r, n)
            runner.stop = lambda kill_after=None, r=runner, n=name: self.stopped(r, n)
            group.attach(index, runner)
            self.runners.append(runner)
        group.kill_at(110.0)
        return group

    def started(self, runner, name):
        self.log.append(("start", name, list(self.h.driver.calls)))
        runner.state = State.STARTING

    def stopped(self, runner, name):
        self.log.append(("stop", name, list(self.h.driver.calls)))
        runner.state = State.STOPPED
        runner.process_alive = False
        return defer.succeed(State.STOPPED)

    def flush(self):
        while self.queue:
            f, args = self.queue.pop(0)
            f(*args)

    def test_before_the_address_comes_before_the_first_member_and_goes_after_it(self):
        group = self.group("before")
        group.start(7)
        self.assertEqual(self.log, [("start", "m1", [("add", str(V4))])])
        self.runners[0].changed(state=State.RUNNING, process_alive=True)
        self.assertEqual(self.log[-1][:2], ("start", "m2"))
        self.runners[1].changed(state=State.RUNNING, process_alive=True)
        group.stop(110.0)
        self.flush()
        self.assertEqual([entry[:2] for entry in self.log[2:]], [("stop", "m2"), ("stop", "m1")])
        self.assertEqual(self.log[-1][2], [("add", str(V4))], "removed before m1 stopped")
        self.assertEqual(self.h.driver.calls, [("add", str(V4)), ("remove", str(V4))])
        self.assertEqual(self.reports, ["service_stopped"])

    def test_after_the_address_follows_the_last_member_and_goes_first(self):
        group = self.group("after")
        group.start(7)
        self.runners[0].changed(state=State.RUNNING, process_alive=True)
        self.assertEqual(self.h.driver.calls, [], "not while the group is incomplete")
        self.runners[1].changed(state=State.RUNNING, process_alive=True)
        self.assertEqual(self.h.driver.calls, [("add", str(V4))])
        group.stop(110.0)
        self.flush()
        self.assertEqual([entry[:2] for entry in self.log[2:]], [("stop", "m2"), ("stop", "m1")])
        self.assertEqual(self.log[2][2], [("add", str(V4)), ("remove", str(V4))],
                         "the address must be gone before the last member stops")
        self.assertEqual(self.reports, ["service_stopped"])
