"""L{OwnershipService} on a Clock: the core's actions carried out on fake processes.

Real L{ServiceRunner}s supervise fake processes (the FakeOS of the runner
tests); the lease guard and the hook processes are fakes; several nodes talk
through the in-memory network of L{tests.ownership.shell_support}.
"""

import random

import attrs
import signal

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.events import EventLog
from clsd.ownership.core.managed import ManagedService
from clsd.ownership.core.manager import ManagerError
from clsd.ownership.core.voter import DEFAULT_RESERVE_BLOCK
from clsd.ownership.floor import read_floor, write_floor
from clsd.ownership.guard import GuardClient
from clsd.ownership.hooks import HookRunner
from clsd.ownership.service import OwnershipService
from clsd.supervision.process import DiscardedOutput
from clsd.supervision.core.policy import State
from clsd.supervision.runner import ServiceRunner
from tests.ownership.shell_support import MemoryNetwork, ownership_config
from tests.ownership.test_hooks import FakeHooks
from tests.supervision.test_runner import FakeOS

LEASE = 2.0
MARGIN = 0.1
FENCE = ["/sbin/fence", "{node}", "{cluster}", "{epoch}"]


class FakeGuard:
    def __init__(self):
        self.running = True
        self.armed = {}
        self.log = []
        self.pid = 99
        self.start_times = [0.01]
        self.stopped = False

    def start(self):
        return defer.succeed(self)

    def stop(self):
        self.stopped = True
        return defer.succeed(None)

    def arm(self, pgid, deadline, label=None):
        self.armed[pgid] = deadline
        self.log.append(("arm", pgid, deadline, label))
        return self.running

    def disarm(self, pgid):
        self.armed.pop(pgid, None)
        self.log.append(("disarm", pgid))

    def status(self):
        return {"running": self.running, "armed": len(self.armed)}


def service_table(name, **extra):
    table = {"name": name, "command": ["server"], "stop_timeout": 5.0,
             "crash_loop": {"max_failures": 3, "window": 60.0}}
    table.update(extra)
    return table


class ShellNode:
    """One node: config, OwnershipService, runners on a FakeOS, fake guard and hooks."""

    def __init__(self, test, clock, name, voters, clusters, services=None, data_dir=None):
        self.name = name
        self.clock = clock
        data_dir = data_dir or test.mktemp()
        if services is None:
            services = [service_table(c["service"]) for c in clusters]
        self.config = ownership_config(name, voters, clusters, data_dir, services,
                                       lease=LEASE, drift_margin=MARGIN)
        self.events = EventLog(monotonic=clock.seconds)
        self.os = FakeOS()
        self.os.next_pid = {"alpha": 500, "beta": 600, "gamma": 700}.get(name, 800)
        self.guard = FakeGuard()
        self.hook_processes = FakeHooks()
        hooks = HookRunner(clock, events=self.events, monotonic=clock.seconds,
                           spawn=self.hook_processes.spawn,
                           signal_group=self.hook_processes.signal)
        self.service = OwnershipService(
            self.config, clock, events=self.events, monotonic=clock.seconds, guard=self.guard,
            hooks=hooks, generation=hash(name) & 0xFFFF, rng=random.Random(name))
        self.spawns = []  # (time, pid, extra_env)
        self.overlaps = []  # (node still running, node starting)
        self.runners = {}
        for svc in self.config.services:
            spawn = self.os.spawn
            if self.service.manages(svc.name):
                spawn = self.service.spawner(svc, base_spawn=self.base_spawn)
            runner = ServiceRunner(svc, clock, spawn=spawn, groups=self.os, events=self.events,
                                   monotonic=clock.seconds, random=lambda: 0.5,
                                   output_factory=lambda logs: DiscardedOutput())
            if self.service.manages(svc.name):
                self.service.attach(runner)
                runner.setServiceParent(self.service)
            self.runners[svc.name] = runner

    #: Other nodes (set by multi-node tests): at each spawn, whose service is alive?
    peers = ()

    def base_spawn(self, protocol, extra_env=None, after_spawn=None):
        self.overlaps.extend((peer.name, self.name) for peer in self.peers
                             if peer is not self and any(r.process_alive
                                                         for r in peer.runners.values()))
        pid = self.os.next_pid + 1
        self.spawns.append((self.clock.seconds(), pid, dict(extra_env or {})))
        if after_spawn is not None:
            after_spawn(pid)
        return self.os.spawn(protocol)

    def start(self):
        self.service.startService()
        self.service.activate()
        return self

    def runner(self, name="svc"):
        return self.runners[name]

    def reasons(self, kind=None):
        return [e["reason"] for e in self.events.recent() if kind is None or e["kind"] == kind]


def pump(clock, seconds, step=0.005):
    end = clock.seconds() + seconds
    while clock.seconds() < end - 1e-9:
        clock.advance(min(step, end - clock.seconds()))


def cluster_table(priority=100, **extra):
    table = {"id": "A", "service": "svc", "priority": priority}
    table.update(extra)
    return table


class SingleNodeTests(unittest.TestCase):
    """A single machine: alpha is the only voter and the only candidate."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.node = ShellNode(self, self.clock, "alpha", ["alpha"], [cluster_table()]).start()

    def test_starts_after_the_voter_quiet_period_with_the_tenure_environment(self):
        pump(self.clock, LEASE + MARGIN - 0.05)
        self.assertEqual(self.node.spawns, [], "a fresh voter grants nothing for T + m")
        pump(self.clock, 1.0)  # quiet refusals are retried every T/4, jittered
        [(_, pid, env)] = self.node.spawns
        epoch = self.node.service.node.manager.status(self.clock.seconds())["A"][1]
        self.assertEqual(env, {"CLSD_CLUSTER": "A", "CLSD_EPOCH": str(epoch),
                               "CLSD_NODE": "alpha"})
        self.assertGreater(epoch, 0)
        self.assertEqual(self.node.runner().state.value, "running")
        # Armed before anything else heard of the group, with the lease deadline.
        arm = self.node.guard.log[0]
        self.assertEqual(arm[:2], ("arm", pid))
        self.assertEqual(arm[3], "A")
        started_at = self.node.spawns[0][0]
        self.assertGreater(arm[2], started_at)
        self.assertLessEqual(arm[2], started_at + LEASE - MARGIN)
        self.assertIn(f"starting svc (epoch {epoch})", self.node.reasons("ownership"))

    def test_renewals_rearm_the_guard_with_later_deadlines(self):
        pump(self.clock, 3.0)
        pid = self.node.runner().pid
        pump(self.clock, 3.0)
        deadlines = [d for kind, p, *rest in self.node.guard.log if kind == "arm"
                     for d in rest[:1] if p == pid]
        self.assertGreater(len(deadlines), 5)
        self.assertEqual(deadlines, sorted(deadlines))
        self.assertGreater(self.node.guard.armed[pid], self.clock.seconds())
        self.assertEqual(len(self.node.spawns), 1)

    def test_the_epoch_floor_is_stored(self):
        self.assertEqual(read_floor(self.node.config.node.data_dir), DEFAULT_RESERVE_BLOCK)
        voter = self.node.service.node.voter
        self.assertEqual(voter.reserved, DEFAULT_RESERVE_BLOCK)

    def test_a_restart_uses_the_stored_floor(self):
        write_floor(self.node.config.node.data_dir, 50000)
        clock = Clock()
        node = ShellNode(self, clock, "alpha", ["alpha"], [cluster_table()],
                         data_dir=self.node.config.node.data_dir).start()
        pump(clock, 3.0)
        epoch = node.service.node.manager.status(clock.seconds())["A"][1]
        self.assertGreater(epoch, 50000)

    def test_a_local_crash_restarts_under_the_same_tenure_and_rearms(self):
        pump(self.clock, 3.0)
        first = self.node.runner().pid
        self.node.os.exit(first, code=1)
        second = self.node.runner().pid
        self.assertNotEqual(first, second)
        self.assertEqual(self.node.spawns[0][2], self.node.spawns[1][2])  # same epoch
        self.assertNotIn(first, self.node.guard.armed)
        self.assertIn(second, self.node.guard.armed)
        self.assertIn(("disarm", first), self.node.guard.log)

    def test_a_crash_loop_gives_the_cluster_up(self):
        pump(self.clock, 3.0)
        for _ in range(3):
            self.node.os.exit(self.node.runner().pid, code=1)
            pump(self.clock, 1.5)
        self.assertEqual(self.node.runner().state.value, "failed")
        pump(self.clock, 0.1)
        manager = self.node.service.node.manager
        self.assertEqual(manager.status(self.clock.seconds())["A"][0], "idle")
        self.assertIn("A", manager.own_state(self.clock.seconds()).failed)
        self.assertEqual(self.node.guard.armed, {})
        status = ownership_status(self.node.service)
        self.assertEqual(status["clusters"][0]["state"], "failed")

    def test_standby_stops_releases_and_unstandby_starts_again(self):
        pump(self.clock, 3.0)
        pid = self.node.runner().pid
        self.node.service.standby()
        self.assertIn((pid, signal.SIGTERM), self.node.os.signals)
        pump(self.clock, 0.1)
        self.assertEqual(self.node.runner().state.value, "stopped")
        self.assertEqual(self.node.guard.armed, {})
        manager = self.node.service.node.manager
        self.assertEqual(manager.status(self.clock.seconds())["A"][0], "idle")
        self.assertIsNone(manager.arbiter.holding("A", self.clock.seconds()))
        pump(self.clock, 5)
        self.assertEqual(len(self.node.spawns), 1, "nothing starts on standby")
        self.node.service.unstandby()
        pump(self.clock, 0.5)
        self.assertEqual(len(self.node.spawns), 2)
        self.assertEqual(self.node.runner().state.value, "running")

    def test_pause_keeps_the_lease_and_resume(self):
        pump(self.clock, 3.0)
        self.node.service.pause("A")
        pump(self.clock, 5)
        self.assertEqual(self.node.runner().state.value, "running")
        self.assertEqual(ownership_status(self.node.service)["clusters"][0]["state"], "paused")
        self.node.service.resume("A")
        self.assertEqual(ownership_status(self.node.service)["clusters"][0]["state"], "running")

    def test_admin_errors_are_raised_with_the_reason(self):
        pump(self.clock, 3.0)
        with self.assertRaises(ManagerError) as e:
            self.node.service.move("A", "zeta")
        self.assertIn("not a live member", str(e.exception))
        with self.assertRaises(ManagerError) as e:
            self.node.service.pause("Q")
        self.assertIn("not registered for cluster 'Q'", str(e.exception))

    def test_an_operator_start_of_a_managed_service_is_refused(self):
        self.node.runner().start()
        self.assertEqual(self.node.spawns, [])
        [reason] = [r for r in self.node.reasons("spawn-failed")][:1]
        self.assertIn("does not hold its lease", reason)

    def test_an_operator_stop_gives_the_cluster_up(self):
        pump(self.clock, 3.0)
        self.node.runner().stop()
        pump(self.clock, 0.1)
        manager = self.node.service.node.manager
        self.assertIn("A", manager.own_state(self.clock.seconds()).failed)
        self.assertEqual(manager.status(self.clock.seconds())["A"][0], "idle")

    def test_no_guard_no_start(self):
        self.node.guard.running = False
        pump(self.clock, 3.0)
        self.assertEqual(self.node.spawns, [])
        self.assertTrue(any("lease guard is not running" in r
                            for r in self.node.reasons("spawn-refused")))

    def test_status(self):
        pump(self.clock, 3.0)
        status = ownership_status(self.node.service)
        self.assertTrue(status["active"])
        self.assertEqual(status["quorum"], {
            "voters": ["alpha"], "majority": 1, "reachable": ["alpha"], "have_quorum": True,
            "lease": LEASE, "drift_margin": MARGIN, "previous_voters": [], "voters_apart": []})
        [cluster] = status["clusters"]
        epoch = cluster["epoch"]
        self.assertEqual(cluster["owners"], {"alpha": epoch})
        self.assertEqual(cluster["state"], "running")
        self.assertEqual(cluster["resources"], {"A": {"phase": "running", "epoch": epoch}})
        self.assertEqual(cluster["service_state"], "running")

    def test_shutdown_stops_the_service_then_the_guard(self):
        pump(self.clock, 3.0)
        self.node.os.obey = False
        pid = self.node.runner().pid
        d = self.node.service.stopService()
        self.assertIn((pid, signal.SIGTERM), self.node.os.signals)
        self.assertFalse(self.node.guard.stopped, "the guard outlives the service")
        self.node.os.exit(pid, signum=signal.SIGTERM)
        pump(self.clock, 0.1)
        self.successResultOf(d)
        self.assertTrue(self.node.guard.stopped)
        self.assertEqual(self.node.guard.armed, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])


class BadInputTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.node = ShellNode(self, self.clock, "alpha", ["alpha", "beta", "gamma"],
                              [cluster_table()])

    def test_messages_before_activation_are_counted(self):
        self.node.service.receive("beta", {"type": "cluster.handover", "resource": "A",
                                           "epoch": 1})
        self.assertEqual(self.node.service.counters["early_messages"], 1)

    def test_malformed_messages_are_counted_never_raised(self):
        self.node.start()
        for sender, wire in [("beta", None), ("beta", {"type": "nope"}), ("beta", []),
                             ("beta", {"type": "lease.prepare", "resource": "A"}),
                             ("beta", {"type": "lease.propose", "resource": "A",
                                       "ballot": [1, "beta", 1], "duration": -1, "epoch": 1}),
                             (None, {"type": "cluster.handover", "resource": "A", "epoch": 1})]:
            self.node.service.receive(sender, wire)
        self.assertEqual(self.node.service.counters["bad_messages"], 6)

    def test_malformed_member_states_count_as_registered_for_nothing(self):
        self.node.start()
        self.node.service.members_changed({"beta": {"v": 99}, "gamma": "junk", "alpha": None})
        self.assertEqual(self.node.service.counters["bad_states"], 2)
        self.assertEqual(sorted(self.node.service._members), ["beta", "gamma"])
        self.assertEqual(self.node.service._members["beta"].registrations, {})

    def test_admin_before_activation(self):
        with self.assertRaises(ManagerError):
            self.node.service.standby()


class ThreeNodeCluster:
    """alpha, beta, gamma all vote; A prefers alpha, then beta, then gamma.

    A mixin for test cases: L{build} starts the three shells on a Clock and
    an in-memory network; tearDown checks that no service ever overlapped.
    """

    def build(self, **cluster_extra):
        self.clock = Clock()
        self.clock.advance(1000)
        self.net = MemoryNetwork(self.clock, detection=0.3)
        self.nodes = {}
        for name, priority in (("alpha", 300), ("beta", 200), ("gamma", 100)):
            node = ShellNode(self, self.clock, name, ["alpha", "beta", "gamma"],
                             [cluster_table(priority, **cluster_extra)])
            self.net.add(name, node.service)
            self.nodes[name] = node
        for node in self.nodes.values():
            node.peers = list(self.nodes.values())
            node.start()
        pump(self.clock, 3.0)

    def tearDown(self):
        for node in self.nodes.values():
            self.assertEqual(node.overlaps, [], "a service started while another ran")


class ThreeNodeTests(ThreeNodeCluster, unittest.TestCase):
    def running(self):
        return [n for n, node in self.nodes.items()
                if node.runner().state.value in ("running", "starting", "stopping")]

    def test_one_owner_and_a_clean_failover_when_it_is_cut_off(self):
        self.build()
        self.assertEqual(self.running(), ["alpha"])
        alpha = self.nodes["alpha"]
        alpha.os.obey = False  # the service ignores SIGTERM: only SIGKILL ends it
        pid = alpha.runner().pid
        deadline = alpha.guard.armed[pid]
        cut_at = self.clock.seconds()
        self.net.isolate("alpha")
        term_at = kill_at = None
        while self.clock.seconds() < cut_at + 6:
            pump(self.clock, 0.005)
            if term_at is None and (pid, signal.SIGTERM) in alpha.os.signals:
                term_at = self.clock.seconds()
            if kill_at is None and (pid, signal.SIGKILL) in alpha.os.signals:
                kill_at = self.clock.seconds()
                deadline = alpha.guard.armed.get(pid, deadline)
                alpha.os.exit(pid, signum=signal.SIGKILL)
        self.assertIsNotNone(term_at)
        self.assertIsNotNone(kill_at)
        self.assertLessEqual(kill_at, deadline + 0.006, "KILL no later than the lease deadline")
        self.assertLess(term_at, kill_at)
        beta = self.nodes["beta"]
        self.assertEqual(len(beta.spawns), 1)
        beta_start = beta.spawns[0][0]
        self.assertGreater(beta_start, kill_at, "the successor starts after the old one died")
        self.assertEqual(self.running(), ["beta"])
        self.assertGreater(int(beta.spawns[0][2]["CLSD_EPOCH"]),
                           int(alpha.spawns[0][2]["CLSD_EPOCH"]))
        self.assertEqual(beta.spawns[0][2]["CLSD_NODE"], "beta")

    def test_move_hands_over_without_overlap_or_waiting_for_expiry(self):
        self.build()
        alpha, beta = self.nodes["alpha"], self.nodes["beta"]
        self.nodes["gamma"].service.move("A", "beta")  # forwarded to the holder
        moved_at = self.clock.seconds()
        pump(self.clock, 1.0)
        self.assertEqual(self.running(), ["beta"])
        self.assertEqual(alpha.runner().state.value, "stopped")
        self.assertLess(beta.spawns[0][0] - moved_at, 0.2, "no waiting for the lease to expire")
        self.assertEqual(beta.overlaps, [])

    def test_fence_runs_before_the_successor_starts(self):
        self.build(fence=FENCE)
        self.net.isolate("alpha")
        pump(self.clock, 4.0)
        beta = self.nodes["beta"]
        self.assertEqual(beta.spawns, [], "no start before the fence succeeded")
        [(context, _)] = beta.hook_processes.runs
        self.assertEqual(context.argv[:3], ("/sbin/fence", "alpha", "A"))
        self.assertEqual(context.env["CLSD_EVENT"], "fence")
        beta.hook_processes.finish(code=0)
        pump(self.clock, 0.1)
        self.assertEqual(len(beta.spawns), 1)
        self.assertEqual(context.env["CLSD_EPOCH"], beta.spawns[0][2]["CLSD_EPOCH"])


class ManagedServiceTests(unittest.TestCase):
    """The lease gate on its own."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.os = FakeOS()
        self.guard = FakeGuard()
        self.reports = []
        self.managed = ManagedService("A", "alpha", self.guard, monotonic=self.clock.seconds,
                                      report=lambda *a: self.reports.append(a))
        node = ShellNode(self, self.clock, "alpha", ["alpha"], [cluster_table()])
        config = node.config.services[0]
        self.spawned = []

        def base(protocol, extra_env=None, after_spawn=None):
            self.spawned.append(extra_env)
            after_spawn(self.os.next_pid + 1)
            return self.os.spawn(protocol)
        self.runner = ServiceRunner(config, self.clock, spawn=self.managed.wrap(base),
                                    groups=self.os, events=EventLog(),
                                    monotonic=self.clock.seconds, random=lambda: 0.5,
                                    output_factory=lambda logs: DiscardedOutput())
        self.managed.attach(self.runner)

    def test_attach_turns_autostart_off(self):
        self.assertFalse(self.runner.autostart)

    def test_no_spawn_once_the_deadline_passed(self):
        self.managed.kill_at(99.0)
        self.managed.start(5)
        self.assertEqual(self.spawned, [])
        self.assertIn("deadline has passed", self.runner.status()["last_reason"])

    def test_a_late_renewal_is_waited_for_not_a_crash_loop(self):
        """Starts refused because the deadline passed are retried, not counted (seed 720029)."""
        self.managed.kill_at(99.0)
        self.managed.start(5)
        for _ in range(20):
            self.clock.advance(0.5)
        self.assertEqual(self.spawned, [])
        self.assertEqual(self.runner.state.value, "backoff", "waits for the lease")
        self.assertEqual(self.runner.status()["recent_failures"], 0)
        self.assertEqual(self.reports, [], "the cluster was given up")
        self.managed.kill_at(200.0)  # the renewal arrives
        self.clock.advance(0.5)
        self.assertEqual(len(self.spawned), 1)
        self.assertEqual(self.runner.state.value, "running")
        self.assertEqual(self.runner.status()["restarts"], 0)

    def test_stop_when_not_running_still_reports_stopped(self):
        self.managed.stop(None)
        self.assertEqual(self.reports, [("service_stopped", "A")])

    def test_a_second_stop_brings_the_kill_forward_and_reports_once(self):
        self.managed.kill_at(110.0)
        self.managed.start(5)
        self.os.obey = False
        self.managed.stop(None)  # graceful: stop_timeout 5 s
        self.managed.stop(101.0)  # then the lease could not be renewed
        self.clock.advance(1.0)
        self.assertEqual(self.os.signals[-1], (501, signal.SIGKILL))
        self.os.exit(501, signum=signal.SIGKILL)
        self.assertEqual(self.reports, [("service_stopped", "A")])
        self.assertEqual(self.guard.armed, {})

    def test_a_new_tenure_resets_a_failed_service(self):
        self.managed.kill_at(1000.0)
        self.managed.start(5)
        for _ in range(3):
            self.os.exit(self.runner.pid, code=1)
            self.clock.advance(2.0)
        self.assertEqual(self.runner.state.value, "failed")
        self.assertEqual(self.reports, [("service_failed", "A")])
        self.managed.kill_at(1000.0)
        self.managed.start(9)
        self.assertEqual(self.runner.state.value, "running")
        self.assertEqual(self.spawned[-1]["CLSD_EPOCH"], "9")

    def test_blocked_service_is_given_up(self):
        self.managed.blocked = "leftovers"
        self.managed.kill_at(1000.0)
        self.managed.start(5)
        self.assertEqual(self.spawned, [])
        self.assertEqual(self.reports, [("service_failed", "A")])


class FakeForkingRunner:
    """A runner whose pid moves to the main process once the start command exits."""

    def __init__(self):
        self.state = State.STOPPED
        self.process_alive = False
        self.pid = None
        self.stuck_groups = frozenset()
        self.cgroup = "/sys/fs/cgroup/clsd/alpha/web"
        self.observers = []
        self.standbys = []

    def guard_by_lease(self):
        pass

    def add_observer(self, observer):
        self.observers.append(observer)

    def standby(self, on):
        self.standbys.append(on)

    def start(self):
        self.state = State.STARTING

    def changed(self, **values):
        for name, value in values.items():
            setattr(self, name, value)
        for observer in self.observers:
            observer(self)


class ManagedForkingTests(unittest.TestCase):
    """The armed group outlives the start command: it is what the guard must kill."""

    def setUp(self):
        self.clock = Clock()
        self.clock.advance(100)
        self.guard = FakeGuard()
        self.guard.arm = self.arm
        self.managed = ManagedService("A", "alpha", self.guard, monotonic=self.clock.seconds,
                                      report=lambda *a: None)
        self.runner = FakeForkingRunner()
        self.managed.attach(self.runner)

    def arm(self, pgid, deadline, label=None, cgroup=None):
        self.guard.armed[pgid] = (deadline, cgroup)
        return True

    def test_the_group_stays_armed_when_the_pid_becomes_the_main_process(self):
        self.managed.kill_at(110.0)
        self.managed.start(5)
        spawn = self.managed.wrap(lambda protocol, extra_env, after_spawn: after_spawn(700))
        spawn(None)
        self.runner.changed(process_alive=True, pid=700)
        self.assertEqual(self.guard.armed, {700: (110.0, self.runner.cgroup)})
        # The start command (pid 700) exits; nginx's master is pid 702.
        self.runner.changed(pid=702, state=State.RUNNING)
        self.assertEqual(self.guard.armed, {700: (110.0, self.runner.cgroup)},
                         "disarmed while the service runs: the guard would not kill it")
        self.managed.kill_at(111.0)
        self.assertEqual(self.guard.armed[700], (111.0, self.runner.cgroup))
        self.runner.changed(process_alive=False, state=State.STOPPED)
        self.assertEqual(self.guard.armed, {})


class ReregistrationTests(unittest.TestCase):
    """Registrations withdrawn and added back at runtime on the shell (reload's path)."""

    build = ThreeNodeTests.build
    tearDown = ThreeNodeTests.tearDown
    running = ThreeNodeTests.running

    def test_unregister_moves_the_cluster_without_overlap_then_register_again(self):
        self.build()
        alpha, beta = self.nodes["alpha"], self.nodes["beta"]
        self.assertEqual(self.running(), ["alpha"])
        cluster = alpha.service._specs["A"]
        done = alpha.service.unregister("A")
        self.assertEqual(ownership_status(alpha.service)["clusters"][0]["state"], "unregistering")
        started = self.clock.seconds()
        pump(self.clock, 1.0)
        runner = self.successResultOf(done)
        self.assertIs(runner, alpha.runner())
        self.assertIsNone(runner.parent)
        self.assertEqual(runner.state.value, "stopped")
        self.assertEqual(self.running(), ["beta"])
        self.assertLess(beta.spawns[0][0] - started, 0.5, "handover, not lease expiry")
        self.assertFalse(alpha.service.manages("svc"))
        self.assertEqual(ownership_status(alpha.service)["clusters"], [])
        self.assertEqual(alpha.guard.armed, {})
        # The others no longer count alpha as a candidate for A.
        pump(self.clock, 0.5)
        self.assertEqual(self.net.published["alpha"]["registrations"], {})
        # Added back, with preempt: alpha is a candidate again and takes A back.
        alpha.service.add_cluster(attrs.evolve(cluster, preempt=True, preempt_delay=0.5))
        new = ServiceRunner(alpha.config.service("svc"), self.clock,
                            spawn=alpha.service.spawner(alpha.config.service("svc"),
                                                        base_spawn=alpha.base_spawn),
                            groups=alpha.os, events=alpha.events, monotonic=self.clock.seconds,
                            random=lambda: 0.5, output_factory=lambda logs: DiscardedOutput())
        alpha.service.attach(new)
        new.setServiceParent(alpha.service)
        alpha.runners["svc"] = new
        self.successResultOf(alpha.service.register(
            attrs.evolve(cluster, preempt=True, preempt_delay=0.5)))
        pump(self.clock, 0.2)
        self.assertEqual(self.running(), ["beta"], "not before the preempt delay")
        # beta's own registration has no preempt, but placement on beta reads
        # preempt from beta's spec: update it in place there.
        for node in self.nodes.values():
            if node is not alpha:
                node.service.update_cluster(attrs.evolve(
                    node.service._specs["A"], preempt=True, preempt_delay=0.5))
        pump(self.clock, 2.0)
        self.assertEqual(self.running(), ["alpha"])

    def test_priority_change_moves_only_with_preempt(self):
        self.build()
        alpha = self.nodes["alpha"]
        lowered = attrs.evolve(alpha.service._specs["A"], priority=50)
        alpha.service.update_cluster(lowered)
        pump(self.clock, 2.0)
        self.assertEqual(self.running(), ["alpha"], "sticky without preempt")
        for node in self.nodes.values():
            node.service.update_cluster(attrs.evolve(
                node.service._specs["A"], preempt=True, preempt_delay=0.5))
        pump(self.clock, 2.0)
        self.assertEqual(self.running(), ["beta"])


class AddClusterTests(unittest.TestCase):
    def test_a_node_with_no_cluster_gets_one_and_a_guard(self):
        clock = Clock()
        clock.advance(1000)
        node = ShellNode(self, clock, "alpha", ["alpha"], [],
                         services=[service_table("svc")])
        node.service.guard = None  # as built for a node with no cluster
        node.start()
        pump(clock, 2.0)
        cluster = ownership_config("alpha", ["alpha"], [cluster_table()], self.mktemp(),
                                   [service_table("svc")]).clusters[0]
        node.service.add_cluster(cluster)
        self.assertIsInstance(node.service.guard, GuardClient)
        guard = FakeGuard()
        guard.running = False
        guard.start = lambda: (setattr(guard, "running", True), defer.succeed(guard))[1]
        node.service.guard = guard  # what add_cluster built, swapped for a fake
        node.service._managed["A"].guard = guard
        svc = node.config.service("svc")
        runner = ServiceRunner(svc, clock, spawn=node.service.spawner(svc, node.base_spawn),
                               groups=node.os, events=node.events, monotonic=clock.seconds,
                               random=lambda: 0.5, output_factory=lambda logs: DiscardedOutput())
        node.service.attach(runner)
        runner.setServiceParent(node.service)
        node.runners["svc"] = runner
        self.successResultOf(node.service.register(cluster))
        pump(clock, 3.0)
        self.assertEqual(runner.state.value, "running")
        self.assertEqual(node.spawns[0][2]["CLSD_CLUSTER"], "A")
        self.assertIn(runner.pid, guard.armed)
