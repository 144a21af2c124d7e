"""The admin shell wired into a real Daemon: services, history and reset over SSH.

The daemon runs in this process on trial's reactor with a real service; the
in-process conch client logs in on 127.0.0.1 (port 0 = a free port).
"""

import json
import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.admin.client import connect
from tests.support.admin_rig import new_ed25519_key, write_key_file
from tests.integration.test_supervision_integration import Workspace, wait_for


class DaemonAdminTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.ws = Workspace(self)
        self.key = new_ed25519_key()
        keys = write_key_file(self.ws.path("admin_keys"), self.key)
        marker = self.ws.path("healthy")
        config = parse_config(
            self.ws.config_text(
                f"[[service]]\nname = \"flaky\"\ncommand = {self.ws.command('crash-unless', marker)}\n"
                "backoff = { initial = 0.01, max = 0.01 }\n"
                "crash_loop = { max_failures = 2, window = 60.0 }\n"
                f"[admin]\nssh = \"127.0.0.1:0\"\nauthorized_keys = {json.dumps(keys)}\n"
            ),
            base_dir=self.ws.base,
        )
        self.marker = marker
        self.daemon = Daemon(config, reactor)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        yield self.daemon.ready
        port = yield self.daemon.admin.ssh.when_listening()
        self.conn = yield connect(reactor, ("127.0.0.1", port.getHost().port), key=self.key)
        self.addCleanup(self.conn.close)

    @defer.inlineCallbacks
    def run_json(self, command):
        result = yield self.conn.run(command + " --json")
        self.assertEqual(result.status, 0, result)
        return json.loads(result.stdout)

    @defer.inlineCallbacks
    def service_state(self):
        data = yield self.run_json("services")
        return data["services"][0]

    @defer.inlineCallbacks
    def test_crash_loop_seen_and_reset_over_ssh(self):
        runner = self.daemon.supervisor("flaky")
        yield wait_for(lambda: runner.state.value == "failed", what="crash loop")
        service = yield self.service_state()
        self.assertEqual((service["name"], service["state"], service["pid"]),
                         ("flaky", "failed", None))
        status = yield self.run_json("status")
        self.assertEqual(status["node"], "alpha")
        self.assertEqual(status["services"], [service])

        history = yield self.run_json("history 50")
        details = [event["detail"] for event in history["history"]]
        self.assertTrue(any("crash-loop" in detail for detail in details), details)

        open(self.marker, "w").close()
        result = yield self.conn.run("reset flaky")
        self.assertEqual(result.status, 0, result)
        self.assertIn("reset", result.text)
        yield wait_for(lambda: runner.state.value == "running", what="running after reset")
        service = yield self.service_state()
        self.assertEqual(service["state"], "running")
        self.assertEqual(os.getpgid(service["pid"]), service["pid"])

    @defer.inlineCallbacks
    def test_reset_of_unknown_service_is_a_one_line_error(self):
        result = yield self.conn.run("reset nosuch")
        self.assertNotEqual(result.status, 0)
        self.assertIn("no service named 'nosuch'", result.stderr.decode())
        self.assertEqual(len(result.stderr.decode().strip().splitlines()), 1)

    @defer.inlineCallbacks
    def test_operations_of_parts_not_wired_say_so(self):
        result = yield self.conn.run("move A beta")
        self.assertNotEqual(result.status, 0)
        self.assertIn("not available", result.stderr.decode())


