"""Unit tests of containment: mountinfo, paths, the choice, and the providers over fakes."""

import errno
import os
import signal

from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.config import parse_config
from clsd.config.reader import ConfigError
from clsd.daemon import Daemon
from clsd.supervision import cgroupfs
from clsd.supervision.containment import (
    CgroupContainment, CgroupTree, CgroupWatcher, ContainmentError, Containments, IContainment,
    ProcessGroupContainment, choose, daemon_directory_name, find_tree,
)

#: This host (a hybrid one): v1 controllers, v2 at /sys/fs/cgroup/unified.
HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
#: A pure v2 host (systemd's default), with an optional field before the separator.
PURE_V2 = """\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
28 24 0:25 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate
"""
NO_V2 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
"""


class MountinfoTests(unittest.TestCase):
    def test_hybrid_host(self):
        self.assertEqual(cgroupfs.find_v2_mount(HYBRID), ("/sys/fs/cgroup/unified", "/"))

    def test_pure_v2_host(self):
        self.assertEqual(cgroupfs.find_v2_mount(PURE_V2), ("/sys/fs/cgroup", "/"))

    def test_no_v2(self):
        self.assertIsNone(cgroupfs.find_v2_mount(NO_V2))
        self.assertIsNone(cgroupfs.find_v2_mount(""))

    def test_read_write_mount_preferred(self):
        text = ("50 1 0:40 / /mnt/ro ro,relatime - cgroup2 cgroup2 ro\n"
                "51 1 0:40 /sub /mnt/rw rw,relatime - cgroup2 cgroup2 rw\n")
        self.assertEqual(cgroupfs.find_v2_mount(text), ("/mnt/rw", "/sub"))

    def test_escaped_mount_point_and_junk_lines(self):
        text = "garbage\n52 1 0:41 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n"
        self.assertEqual(cgroupfs.find_v2_mount(text), ("/mnt/my cgroups", "/"))

    def test_favordynmods_is_a_super_option(self):
        self.assertFalse(cgroupfs.favors_dynamic_changes(HYBRID))
        self.assertTrue(cgroupfs.favors_dynamic_changes(
            "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 "
            "rw,favordynmods\n"))

    def test_v2_membership(self):
        text = "9:name=systemd:/\n4:memory:/x\n0::/system.slice/clsd.service\n"
        self.assertEqual(cgroupfs.v2_membership(text), "/system.slice/clsd.service")
        self.assertIsNone(cgroupfs.v2_membership("4:memory:/x\n"))

    def test_absolute_path(self):
        self.assertEqual(cgroupfs.absolute_path("/sys/fs/cgroup", "/", "/a/b"),
                         "/sys/fs/cgroup/a/b")
        self.assertEqual(cgroupfs.absolute_path("/sys/fs/cgroup", "/", "/"), "/sys/fs/cgroup")
        # A mount of a subtree: paths are relative to its root; outside it, None.
        self.assertEqual(cgroupfs.absolute_path("/mnt", "/sub", "/sub/a"), "/mnt/a")
        self.assertEqual(cgroupfs.absolute_path("/mnt", "/sub", "/sub"), "/mnt")
        self.assertIsNone(cgroupfs.absolute_path("/mnt", "/sub", "/subway"))

    def test_is_within(self):
        self.assertTrue(cgroupfs.is_within("/c/clsd/a", "/c"))
        self.assertTrue(cgroupfs.is_within("/c", "/c"))
        self.assertFalse(cgroupfs.is_within("/cx", "/c"))

    def test_parse_events(self):
        self.assertEqual(cgroupfs.parse_events("populated 1\nfrozen 0\n"),
                         {"populated": 1, "frozen": 0})


class TreeTests(unittest.TestCase):
    def test_directory_names_the_node_and_the_data_dir(self):
        a = daemon_directory_name("alpha", "/var/lib/clsd")
        self.assertTrue(a.startswith("alpha-"))
        self.assertEqual(a, daemon_directory_name("alpha", "/var/lib/clsd/"))
        self.assertNotEqual(a, daemon_directory_name("alpha", "/tmp/rig/alpha"))
        tree = CgroupTree("/sys/fs/cgroup", "alpha", "/var/lib/clsd")
        self.assertEqual(tree.path("web"), f"/sys/fs/cgroup/clsd/{a}/web")

    def fake_read(self, text):
        return lambda path: text if path == "/proc/self/mountinfo" else ""

    def test_found_when_writable(self):
        made = []
        tree, reason = find_tree("alpha", "/d", read=self.fake_read(PURE_V2),
                                 makedirs=lambda p, exist_ok: made.append(p),
                                 access=lambda p, mode: True)
        self.assertIsNone(reason)
        self.assertEqual(made, ["/sys/fs/cgroup/clsd"])
        self.assertTrue(tree.directory.startswith("/sys/fs/cgroup/clsd/alpha-"))

    def test_reasons(self):
        def fail(path, exist_ok):
            raise OSError(errno.EROFS, "Read-only file system")

        _, reason = find_tree("a", "/d", read=self.fake_read(NO_V2))
        self.assertEqual(reason, "no cgroup v2 hierarchy is mounted")
        _, reason = find_tree("a", "/d", read=self.fake_read(PURE_V2), makedirs=fail)
        self.assertEqual(reason, "cannot create /sys/fs/cgroup/clsd: Read-only file system")
        _, reason = find_tree("a", "/d", read=self.fake_read(PURE_V2),
                              makedirs=lambda p, exist_ok: None,
                              access=lambda p, mode: not p.endswith("cgroup.procs"))
        self.assertEqual(reason, "/sys/fs/cgroup/clsd/cgroup.procs is not writable")


class ChoiceTests(unittest.TestCase):
    def test_table(self):
        none = "no cgroup v2 hierarchy is mounted"
        cases = [
            # setting, cgroups_reason, in_cluster, type -> result
            ("auto", None, False, "simple", "cgroup"),
            ("auto", None, True, "forking", "cgroup"),
            ("cgroup", None, True, "simple", "cgroup"),
            ("process-group", None, True, "simple", "process-group"),
            ("auto", none, False, "simple", "process-group"),
            ("auto", none, True, "simple", "process-group"),
            ("auto", none, False, "forking", "process-group"),
            ("process-group", none, True, "ocf", "process-group"),
        ]
        for setting, reason, in_cluster, kind, expected in cases:
            self.assertEqual(choose("web", setting, cgroups_reason=reason, in_cluster=in_cluster,
                                    service_type=kind), expected,
                             (setting, reason, in_cluster, kind))

    def test_cgroup_without_cgroups_names_the_service(self):
        e = self.assertRaises(ContainmentError, choose, "web", "cgroup",
                              cgroups_reason="no cgroup v2 hierarchy is mounted", in_cluster=False)
        self.assertEqual(str(e), 'service \'web\': containment = "cgroup", but no cgroup v2 is '
                                 'writable here (no cgroup v2 hierarchy is mounted)')

    def test_escaping_types_in_a_cluster_need_the_explicit_setting(self):
        for kind in ("forking", "lsb", "ocf"):
            e = self.assertRaises(ContainmentError, choose, "db", "auto", cgroups_reason="x",
                                  in_cluster=True, service_type=kind)
            self.assertIn("service 'db': type", str(e))
            self.assertIn('set containment = "process-group"', str(e))


class FakeGroups:
    def __init__(self):
        self.signals = []
        self.live = set()

    def signal(self, pgid, signum):
        self.signals.append((pgid, signum))
        return True

    def alive(self, pgid):
        return pgid in self.live


class FakeFS:
    """cgroupfs over a dict: cgroup -> pids."""

    def __init__(self):
        self.members = {}
        self.placed = []
        self.killed = []

    def populated(self, cgroup):
        if cgroup not in self.members:
            raise FileNotFoundError(errno.ENOENT, "no such cgroup", cgroup)
        return bool(self.members[cgroup])

    def pids(self, cgroup):
        return list(self.members.get(cgroup, ()))

    pids_below = pids

    def place(self, cgroup, pid):
        self.placed.append((cgroup, pid))
        self.members.setdefault(cgroup, []).append(pid)

    def kill_all(self, cgroup):
        self.killed.append(cgroup)
        self.members[cgroup] = []
        return True

    def signal_all(self, cgroup, signum, skip=()):
        return [p for p in self.members.get(cgroup, ()) if p not in skip]


class ProviderTests(unittest.TestCase):
    def make_cgroup(self, watcher=None):
        self.fs = FakeFS()
        self.groups = FakeGroups()
        self.kills = []
        self.pgids = {}
        path = os.path.join(self.mktemp(), "web")
        containment = CgroupContainment(
            path, watcher=watcher, groups=self.groups, fs=self.fs,
            kill=lambda pid, signum: self.kills.append((pid, signum)),
            getpgid=lambda pid: self.pgids[pid])
        return containment

    def test_both_provide_the_interface(self):
        verifyObject(IContainment, ProcessGroupContainment(FakeGroups()))
        verifyObject(IContainment, self.make_cgroup())

    def test_process_group_is_the_group(self):
        groups = FakeGroups()
        containment = ProcessGroupContainment(groups)
        containment.signal(10, signal.SIGTERM)
        self.assertEqual(groups.signals, [(10, signal.SIGTERM)])
        self.assertFalse(containment.alive(10))
        groups.live.add(10)
        self.assertTrue(containment.alive(10))
        self.assertIsNone(containment.watch_empty(10, lambda: None))
        self.assertFalse(containment.escape_proof)

    def test_stop_signal_to_the_group_and_term_to_the_escaped(self):
        containment = self.make_cgroup()
        self.fs.members[containment.cgroup] = [10, 11, 20]
        self.pgids.update({10: 10, 11: 10, 20: 20})  # 20 called setsid
        containment.signal(10, signal.SIGQUIT)
        self.assertEqual(self.groups.signals, [(10, signal.SIGQUIT)])
        self.assertEqual(self.kills, [(20, signal.SIGTERM)])

    def test_kill_is_cgroup_kill(self):
        containment = self.make_cgroup()
        self.fs.members[containment.cgroup] = [10, 20]
        containment.signal(10, signal.SIGKILL)
        self.assertEqual(self.fs.killed, [containment.cgroup])
        self.assertEqual(self.groups.signals, [(10, signal.SIGKILL)])
        self.assertFalse(containment.alive(10))

    def test_prepare_makes_the_cgroup_and_refuses_a_busy_one(self):
        containment = self.make_cgroup()
        self.fs.members[containment.cgroup] = []
        containment.prepare()
        self.assertTrue(os.path.isdir(containment.cgroup))
        containment.place(42)
        self.assertEqual(self.fs.placed, [(containment.cgroup, 42)])
        e = self.assertRaises(ContainmentError, containment.prepare)
        self.assertEqual(str(e), f"cgroup {containment.cgroup} still has processes [42]")
        self.assertEqual(containment.count(42), 1)

    def test_alive_is_populated_and_a_missing_cgroup_is_empty(self):
        containment = self.make_cgroup()
        self.assertFalse(containment.alive(1))
        self.fs.members[containment.cgroup] = [5]
        self.assertTrue(containment.alive(1))

    def test_watch_calls_back_only_when_empty(self):
        watcher = FakeWatcher()
        containment = self.make_cgroup(watcher)
        self.fs.members[containment.cgroup] = [5]
        calls = []
        cancel = containment.watch_empty(5, lambda: calls.append("empty"))
        watcher.changed(containment.cgroup)
        self.assertEqual(calls, [])
        self.fs.members[containment.cgroup] = []
        watcher.changed(containment.cgroup)
        self.assertEqual(calls, ["empty"])
        cancel()
        watcher.changed(containment.cgroup)
        self.assertEqual(calls, ["empty"])


class FakeWatcher:
    def __init__(self):
        self.callbacks = {}

    def watch(self, cgroup, callback):
        self.callbacks[cgroup] = callback
        return lambda: self.callbacks.pop(cgroup, None)

    def changed(self, cgroup):
        if cgroup in self.callbacks:
            self.callbacks[cgroup]()

    def forget(self, cgroup):
        self.callbacks.pop(cgroup, None)


class FakeINotify:
    def __init__(self):
        self.watches = {}
        self.ignored = []

    def watch(self, path, mask, callbacks):
        self.watches[path.path] = callbacks

    def ignore(self, path):
        self.ignored.append(path.path)
        del self.watches[path.path]

    def fire(self, path):
        for callback in self.watches[path]:
            callback(None, path, 2)


class WatcherTests(unittest.TestCase):
    def test_a_watch_that_cannot_be_made_means_poll(self):
        inotify = FakeINotify()

        def refuse(path, mask, callbacks):
            raise OSError(28, "No space left on device")  # out of inotify watches
        inotify.watch = refuse
        watcher = CgroupWatcher(Clock(), inotify=inotify)
        self.assertIsNone(watcher.watch("/cg/web", lambda: None))
        self.flushLoggedErrors(OSError)

    def test_watch_checks_at_once_then_on_every_change(self):
        inotify = FakeINotify()
        watcher = CgroupWatcher(Clock(), inotify=inotify)
        calls = []
        cancel = watcher.watch("/cg/web", lambda: calls.append(1))
        self.assertEqual(calls, [1], "the cgroup may have emptied before the watch")
        inotify.fire("/cg/web/cgroup.events")
        self.assertEqual(calls, [1, 1])
        cancel()
        inotify.fire("/cg/web/cgroup.events")
        self.assertEqual(calls, [1, 1])
        watcher.forget("/cg/web")
        self.assertEqual(inotify.ignored, ["/cg/web/cgroup.events"])


SERVICE = """
[node]
name = "alpha"
data_dir = "{data_dir}"

[[service]]
name = "web"
command = ["server"]
{extra}
"""


class DaemonChoiceTests(unittest.TestCase):
    def config(self, extra=""):
        return parse_config(SERVICE.format(data_dir=os.path.abspath(self.mktemp()), extra=extra))

    def test_cgroup_where_none_is_writable_stops_start_up_naming_the_service(self):
        containments = Containments(Clock(), reason="no cgroup v2 hierarchy is mounted")
        e = self.assertRaises(ConfigError, Daemon, self.config('containment = "cgroup"'),
                              Clock(), containments=containments)
        self.assertIn("service[0].containment: service 'web': containment = \"cgroup\"", str(e))

    def test_auto_without_cgroups_is_the_process_group(self):
        containments = Containments(Clock(), reason="no cgroup v2 hierarchy is mounted")
        daemon = Daemon(self.config(), Clock(), containments=containments)
        self.assertEqual(daemon.supervisor("web").containment.kind, "process-group")
        self.assertIsNone(daemon.supervisor("web").cgroup)

    def test_auto_with_cgroups_is_the_cgroup(self):
        tree = CgroupTree("/nonexistent-cgroup-root", "alpha", "/d")
        containments = Containments(Clock(), tree=tree, watcher_factory=lambda r: FakeWatcher())
        daemon = Daemon(self.config(), Clock(), containments=containments)
        runner = daemon.supervisor("web")
        self.assertEqual(runner.containment.kind, "cgroup")
        self.assertEqual(runner.cgroup, tree.path("web"))
        self.assertEqual(runner.status()["containment"], "cgroup")


class EscapeContainment:
    """A cgroup-like containment over the runner tests' FakeOS, with escaped processes."""

    kind = "cgroup"
    escape_proof = True
    cgroup = "/cg/web"
    needs_placement = True

    def __init__(self, fake_os):
        self.os = fake_os
        self.escaped = 0       # processes that left the leader's group
        self.prepared = 0
        self.watchers = []
        self.signals = []
        self.busy = None

    def prepare(self):
        if self.busy:
            raise ContainmentError(self.busy)
        self.prepared += 1

    def place(self, pid):
        pass

    def signal(self, pgid, signum):
        self.signals.append((pgid, signum))
        if signum == signal.SIGKILL:
            self.escaped = 0
            self.empty_now()
        self.os.signal(pgid, signum)

    def alive(self, pgid):
        return self.os.alive(pgid) or self.escaped > 0

    def watch_empty(self, pgid, callback):
        self.watchers.append(callback)
        return lambda: self.watchers.remove(callback) if callback in self.watchers else None

    def empty_now(self):
        for callback in list(self.watchers):
            callback()

    def count(self, pgid):
        return self.escaped + (1 if self.os.alive(pgid) else 0)

    def release(self):
        pass


class CgroupRegistry:
    def __init__(self):
        self.records = {}

    def add(self, service, pgid, stop_signal, stop_timeout, cgroup=None):
        self.records[pgid] = (service, cgroup)

    def remove(self, pgid):
        self.records.pop(pgid, None)


class RunnerWithCgroupTests(unittest.TestCase):
    """The runner over an escape-proof containment: stopped means empty."""

    def make_runner(self, **config):
        from clsd.events import EventLog
        from clsd.supervision.runner import ServiceRunner
        from tests.supervision.test_runner import FakeOS, make_config

        self.clock = Clock()
        self.os = FakeOS()
        self.containment = EscapeContainment(self.os)
        self.registry = CgroupRegistry()
        self.events = EventLog(wall=lambda: 0.0, monotonic=self.clock.seconds)
        self.runner = ServiceRunner(
            make_config(logs=None, **config), self.clock, spawn=self.os.spawn, groups=None,
            events=self.events, registry=self.registry, monotonic=self.clock.seconds,
            random=lambda: 0.5, containment=self.containment)
        return self.runner

    def test_main_exit_with_escaped_processes_stops_them_before_the_restart(self):
        runner = self.make_runner(restart="always")
        runner.startService()
        self.assertEqual(self.registry.records, {501: ("web", "/cg/web")})
        self.containment.escaped = 1          # a setsid'd child lives on
        self.os.exit(501, code=1)
        self.assertEqual(runner.state.value, "stopping", "not restarted while it runs")
        self.assertEqual(self.os.spawned, [501])
        self.assertEqual(self.containment.signals, [(501, signal.SIGTERM)])
        self.assertEqual(len(self.containment.watchers), 1)
        self.assertEqual(self.clock.getDelayedCalls()[0].func.__name__, "_timer_fired",
                         "no poll loop: the cgroup is watched")
        self.containment.escaped = 0
        self.containment.empty_now()
        self.assertEqual(self.os.spawned, [501, 502], "restarted once the cgroup is empty")
        self.assertEqual(self.containment.watchers, [], "the watch ends with the instance")

    def test_escaped_process_deaf_to_term_is_cgroup_killed_at_the_stop_timeout(self):
        runner = self.make_runner(stop_timeout=2.0)
        runner.startService()
        self.containment.escaped = 1
        stopped = runner.stop()
        self.clock.advance(1.9)
        self.assertNoResult(stopped)
        self.clock.advance(0.2)
        self.assertIn((501, signal.SIGKILL), self.containment.signals)
        self.assertEqual(self.successResultOf(stopped).value, "stopped")
        self.assertEqual(runner.status()["processes"], 0)

    def test_a_busy_cgroup_is_a_spawn_failure(self):
        runner = self.make_runner(restart="never")
        self.containment.busy = "cgroup /cg/web still has processes [7]"
        runner.startService()
        self.assertEqual(self.os.spawned, [])
        self.assertIn("spawn failed: ContainmentError: cgroup /cg/web still has processes [7]",
                      [e["reason"] for e in self.events.recent()])


class ConfigKeyTests(unittest.TestCase):
    """``[[service]] containment`` and the bounds of ``backoff``."""

    def mistake(self, extra, path, fragment):
        from tests.config.test_config import WEB, parse

        e = self.assertRaises(ConfigError, parse, WEB + extra)
        self.assertEqual(e.path, path)
        self.assertIn(fragment, e.message)

    def test_containment_values(self):
        from tests.config.test_config import WEB, parse

        self.assertEqual(parse(WEB).services[0].containment, "auto")
        for value in ("auto", "cgroup", "process-group"):
            config = parse(WEB + f'containment = "{value}"\n')
            self.assertEqual(config.services[0].containment, value)
        self.mistake('containment = "jail"\n', "service[0].containment",
                     "must be one of auto | cgroup | process-group, got 'jail'")

    def test_backoff_is_bounded(self):
        self.mistake("backoff = { max = 1e308 }\n", "service[0].backoff.max",
                     "must be at most 86400.0, got 1e+308")
        self.mistake("backoff = { initial = 1e308, max = 1e308 }\n",
                     "service[0].backoff.initial", "must be at most 3600.0")
        self.mistake("backoff = { factor = 1e308 }\n", "service[0].backoff.factor",
                     "must be at most 100.0")


class FakeTree:
    def __init__(self, directory, services):
        self.directory = directory
        self._services = list(services)

    def services(self):
        return list(self._services)

    def path(self, service):
        return os.path.join(self.directory, service)


class OrphanCgroupTests(unittest.TestCase):
    """Reaping a previous run's cgroups: found by listing the tree, emptied, removed."""

    def setUp(self):
        from clsd.events import EventLog
        from clsd.supervision.orphans import GroupRegistry

        self.clock = Clock()
        self.events = EventLog(wall=lambda: 0.0, monotonic=self.clock.seconds)
        self.registry = GroupRegistry(self.mktemp(), identity=lambda pid: "same",
                                      boot=lambda: "boot")
        self.groups = FakeGroups()
        self.fs = FakeFS()
        self.directory = os.path.abspath(self.mktemp())

    def reap(self, services):
        from clsd.supervision.orphans import reap_leftovers

        os.makedirs(self.directory, exist_ok=True)
        for name in services:
            os.makedirs(os.path.join(self.directory, name), exist_ok=True)
        tree = FakeTree(self.directory, services)
        return reap_leftovers(self.registry, self.clock, self.groups, self.events,
                              monotonic=self.clock.seconds, tree=tree, fs=self.fs)

    def reasons(self):
        return [e["reason"] for e in self.events.recent()]

    def test_a_populated_cgroup_without_a_record_is_emptied(self):
        web = os.path.join(self.directory, "web")
        self.fs.members[web] = [30, 31]   # the daemon died before writing a record
        d = self.reap(["web"])
        self.assertNoResult(d)
        self.assertIn(f"terminating leftover cgroup {web} of a previous run (SIGTERM)",
                      self.reasons())
        self.clock.pump([0.02] * 260)      # 5 s: the longest a leftover gets
        self.assertEqual(self.fs.killed, [web])
        self.assertEqual(self.successResultOf(d), [])
        self.assertIn(f"leftover cgroup {web} is gone", self.reasons())
        self.assertFalse(os.path.exists(web), "the emptied cgroup is removed")

    def test_a_recorded_group_gets_its_stop_signal_and_the_rest_term(self):
        web = os.path.join(self.directory, "web")
        self.registry.add("web", 30, "INT", 1.0, cgroup=web)
        self.fs.members[web] = [30, 40]
        terms = []
        self.fs.signal_all = lambda cgroup, signum, skip=(): terms.append((cgroup, signum, skip))
        d = self.reap(["web"])
        self.assertEqual(self.groups.signals, [(30, signal.SIGINT)])
        self.assertEqual(terms, [(web, signal.SIGTERM, {30})])
        self.fs.members[web] = []          # they obeyed
        self.clock.advance(0.02)
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual(self.fs.killed, [])
        self.assertEqual(self.registry.records(), [])

    def test_empty_cgroups_and_their_records_are_dropped_at_once(self):
        web = os.path.join(self.directory, "web")
        self.registry.add("web", 30, "TERM", 1.0, cgroup=web)
        self.fs.members[web] = []
        self.assertEqual(self.successResultOf(self.reap(["web"])), [])
        self.assertFalse(os.path.exists(web))
        self.assertEqual(self.registry.records(), [])

    def test_a_cgroup_that_will_not_empty_blocks_its_service(self):
        web = os.path.join(self.directory, "web")
        self.fs.members[web] = [30]
        self.fs.kill_all = lambda cgroup: True   # stuck in the kernel
        d = self.reap(["web"])
        self.clock.pump([0.1] * 120)
        (stuck,) = self.successResultOf(d)
        self.assertEqual(stuck.service, "web")
        self.assertIn(f"leftover cgroup {web} still present 5s after SIGKILL; the service is "
                      "not started", self.reasons())
