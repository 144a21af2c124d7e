"""``reload`` over SSH on a real in-process Daemon with real services.

The config is a file (reload re-reads it); the conch client logs in on
127.0.0.1; services are the small journal-writing scripts of
tests.integration.test_supervision_integration.
"""

import json

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.config import load_config
from clsd.daemon import Daemon
from clsd.supervision.pgroups import group_alive
from clsd.admin.client import connect
from tests.support.admin_rig import new_ed25519_key, write_key_file
from tests.integration.test_supervision_integration import Workspace, wait_for


class ReloadOverSSHTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.ws = Workspace(self)
        self.key = new_ed25519_key()
        self.keys = write_key_file(self.ws.path("admin_keys"), self.key)
        self.file = self.ws.path("clsd.toml")
        self.write(self.service("web"), self.service("old"))
        self.daemon = Daemon(load_config(self.file), reactor)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        yield self.daemon.ready
        port = yield self.daemon.admin.ssh.when_listening()
        self.conn = yield connect(reactor, ("127.0.0.1", port.getHost().port), key=self.key)
        self.addCleanup(self.conn.close)
        yield self.wait_running("web")
        yield self.wait_running("old")

    def service(self, name, extra="", stop_timeout="5.0"):
        return (f"[[service]]\nname = \"{name}\"\ncommand = {self.ws.command('run')}\n"
                f"stop_timeout = {stop_timeout}\n{extra}")

    def write(self, *services, admin_extra=""):
        text = self.ws.config_text("".join(services)) + (
            f"[admin]\nssh = \"127.0.0.1:0\"\nauthorized_keys = {json.dumps(self.keys)}\n"
            + admin_extra)
        with open(self.file, "w") as f:
            f.write(text)

    def wait_running(self, name):
        return wait_for(lambda: self.daemon.supervisor(name).state.value == "running"
                        and self.daemon.supervisor(name).pid, what=f"{name} running")

    @defer.inlineCallbacks
    def reload(self, ok=True):
        result = yield self.conn.run("reload")
        if ok:
            self.assertEqual(result.status, 0, result)
        else:
            self.assertNotEqual(result.status, 0, result)
        return result

    def names(self):
        return [r.service_name for r in self.daemon.supervisors()]

    @defer.inlineCallbacks
    def test_add_remove_and_change_services(self):
        web_pid = self.daemon.supervisor("web").pid
        old_pid = self.daemon.supervisor("old").pid
        self.write(self.service("web", 'env = { COLOUR = "blue" }\n'), self.service("fresh"))
        result = yield self.reload()
        self.assertEqual(result.text.strip(), "reloaded: +fresh, -old, ~web")
        # The removed service's whole group is gone by the time reload answers.
        self.assertFalse(group_alive(old_pid))
        self.assertFalse(group_alive(web_pid))
        self.assertEqual(self.names(), ["fresh", "web"])
        yield self.wait_running("fresh")
        new_web = yield self.wait_running("web")
        self.assertNotEqual(new_web, web_pid)
        self.assertEqual(self.daemon.supervisor("web").config.env, {"COLOUR": "blue"})
        services = json.loads((yield self.conn.run("services --json")).stdout)["services"]
        self.assertEqual(sorted(s["name"] for s in services), ["fresh", "web"])
        history = json.loads((yield self.conn.run("history 100 --json")).stdout)["history"]
        self.assertIn("reloaded: +fresh, -old, ~web", [e["detail"] for e in history])

    @defer.inlineCallbacks
    def test_unchanged_file_restarts_nothing(self):
        pids = {n: self.daemon.supervisor(n).pid for n in ("web", "old")}
        result = yield self.reload()
        self.assertEqual(result.text.strip(), "reloaded: no changes")
        self.assertEqual({n: self.daemon.supervisor(n).pid for n in pids}, pids)

    @defer.inlineCallbacks
    def test_bad_file_changes_nothing_and_names_the_key(self):
        pids = {n: self.daemon.supervisor(n).pid for n in ("web", "old")}
        before = self.daemon.config
        self.write(self.service("web", stop_timeout="-1"))
        result = yield self.reload(ok=False)
        error = result.stderr.decode().strip()
        self.assertEqual(len(error.splitlines()), 1, error)
        self.assertIn("nothing changed", error)
        self.assertIn("service[0].stop_timeout", error)
        self.assertIs(self.daemon.config, before)
        self.assertEqual({n: self.daemon.supervisor(n).pid for n in pids}, pids)
        self.assertTrue(all(group_alive(pid) for pid in pids.values()))

    @defer.inlineCallbacks
    def test_restart_only_change_is_refused(self):
        pids = {n: self.daemon.supervisor(n).pid for n in ("web", "old")}
        # Would add a service too: nothing of it may happen.
        self.write(self.service("web"), self.service("old"), self.service("extra"),
                   admin_extra='telnet = ""\n[metrics]\nlisten = "127.0.0.1:0"\n')
        result = yield self.reload(ok=False)
        error = result.stderr.decode().strip()
        self.assertIn("only change at a restart: metrics.listen", error)
        self.assertIn("nothing changed", error)
        self.assertEqual(self.names(), ["old", "web"])
        self.assertEqual({n: self.daemon.supervisor(n).pid for n in pids}, pids)


class ReloadOverridesTests(unittest.TestCase):
    """The command-line overrides of the start are applied to the re-read file too."""

    timeout = 30

    @defer.inlineCallbacks
    def test_overrides_are_reapplied(self):
        ws = Workspace(self)
        path = ws.path("clsd.toml")
        with open(path, "w") as f:
            f.write(ws.config_text(""))
        overrides = {"node.name": "beta"}
        daemon = Daemon(load_config(path, overrides=overrides), reactor, overrides=overrides)
        daemon.startService()
        self.addCleanup(daemon.stopService)
        yield daemon.ready
        # Without the override the file says "alpha": a refused node.name change.
        summary = yield daemon.reload()
        self.assertEqual(summary, "reloaded: no changes")
        self.assertEqual(daemon.config.node.name, "beta")
        daemon.overrides = {}
        d = daemon.reload()
        failure = yield self.assertFailure(d, Exception)
        self.assertIn("node.name", str(failure))


class ReloadClusterTests(unittest.TestCase):
    """A single-node daemon (alpha is the only voter): cluster registrations reloaded."""

    timeout = 60

    def write(self, cluster_extra="", command_args=(), cluster=True, service="db"):
        text = (f"[[service]]\nname = \"{service}\"\n"
                f"command = {self.ws.command('run', *command_args)}\n"
                "stop_timeout = 5.0\n[quorum]\nvoters = [\"alpha\"]\nlease = 2.0\n")
        if cluster:
            text += f"[[cluster]]\nid = \"A\"\nservice = \"db\"\n{cluster_extra}"
        with open(self.path, "w") as f:
            f.write(self.ws.config_text(text))

    @defer.inlineCallbacks
    def setUp(self):
        self.ws = Workspace(self)
        self.path = self.ws.path("clsd.toml")
        self.write()
        self.daemon = Daemon(load_config(self.path), reactor)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        yield self.daemon.ready
        self.runner = self.daemon.supervisor("db")
        self.pid = yield self.running()

    def running(self):
        return wait_for(lambda: self.daemon.supervisor("db").state.value == "running"
                        and self.daemon.supervisor("db").pid, what="db running")

    def cluster(self):
        (cluster,) = [c for c in ownership_status(self.daemon.ownership)["clusters"] if c["id"] == "A"]
        return cluster

    @defer.inlineCallbacks
    def test_in_place_change_keeps_the_service_running(self):
        self.write('priority = 5\ncooldown = 30.0\n')
        summary = yield self.daemon.reload()
        self.assertEqual(summary, "reloaded: ~cluster A")
        self.assertIs(self.daemon.supervisor("db"), self.runner)
        self.assertEqual(self.runner.pid, self.pid)
        self.assertEqual(self.daemon.ownership.node.manager.clusters["A"].priority, 5)

    @defer.inlineCallbacks
    def test_a_leased_service_change_stops_then_starts_under_a_new_epoch(self):
        epoch = self.cluster()["epoch"]
        self.write(command_args=("v2",))
        summary = yield self.daemon.reload()
        self.assertEqual(summary, "reloaded: ~db, ~cluster A")
        self.assertFalse(group_alive(self.pid), "the old instance is gone before reload ends")
        new = self.daemon.supervisor("db")
        self.assertIsNot(new, self.runner)
        pid = yield self.running()
        self.assertNotEqual(pid, self.pid)
        self.assertGreater(self.cluster()["epoch"], epoch)

    @defer.inlineCallbacks
    def test_keeping_the_service_of_a_removed_cluster_is_refused(self):
        self.write(cluster=False)
        failure = yield self.assertFailure(self.daemon.reload(), Exception)
        self.assertIn("without its lease", str(failure))
        self.assertIs(self.daemon.supervisor("db"), self.runner)
        self.assertEqual(self.runner.pid, self.pid)

    @defer.inlineCallbacks
    def test_remove_then_add_the_cluster_back(self):
        self.write(cluster=False, service="other")
        summary = yield self.daemon.reload()
        self.assertEqual(summary, "reloaded: +other, -db, -cluster A")
        self.assertFalse(group_alive(self.pid))
        self.assertFalse(self.daemon.ownership.manages("db"))
        self.assertEqual(ownership_status(self.daemon.ownership)["clusters"], [])
        self.assertRaises(KeyError, self.daemon.supervisor, "db")
        self.write()
        summary = yield self.daemon.reload()
        self.assertEqual(summary, "reloaded: +db, -other, +cluster A")
        self.assertTrue(self.daemon.ownership.manages("db"))
        yield self.running()
        yield wait_for(lambda: self.cluster()["state"] == "running", what="A running")
