"""FailoverRig's own logic, without daemons: who owns a cluster, readiness from the logs."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from twisted.trial import unittest

from rig.cluster import ClusterRig, active_standby
from rig.failover import (
    DualActive, FailoverRig, http_identity, last_states, wait_rejoined,
)
from clsd.polling import WaitTimeout
from tests.support.fake_launcher import FakeLauncher


class Running:
    def __init__(self, node, instance="i"):
        self.node, self.instance = node, instance


def fake_launcher(logs=None, running=()):
    return FakeLauncher(("alpha", "beta", "witness"), logs=logs, running=running)


class OwnerTests(unittest.TestCase):
    def rig(self, running):
        return FailoverRig(fake_launcher(running=running), ClusterRig(active_standby()))

    def test_owner_is_the_node_running_it(self):
        self.assertEqual(self.rig([Running("beta")]).owner("A"), "beta")
        self.assertIsNone(self.rig([]).owner("A"))
        self.assertEqual(self.rig([]).standbys("A", "alpha"), ["beta"])

    def test_two_nodes_at_once_is_dual_active(self):
        self.assertRaises(DualActive, self.rig([Running("alpha"), Running("beta")]).owner, "A")


class ReadinessTests(unittest.TestCase):
    def test_last_state_after_the_offset_wins(self):
        launcher = fake_launcher({"beta": "member alpha is dead: x\n--\nmember alpha is alive: "
                                         "joined\nmember witness is suspect: y\n"})
        self.assertEqual(last_states(launcher, "beta", 0),
                         {"alpha": "alive", "witness": "suspect"})
        offset = launcher.logs["beta"].index("--")
        self.assertEqual(last_states(launcher, "beta", offset)["alpha"], "alive")
        self.assertEqual(last_states(launcher, "alpha", 0), {})

    def test_silence_since_the_fault_counts_as_alive(self):
        wait_rejoined(fake_launcher(), "alpha", {}, hold=0.0, timeout=1.0)

    def test_a_node_still_seen_dead_is_not_rejoined(self):
        launcher = fake_launcher({"witness": "member alpha is dead: gone\n"})
        self.assertRaises(WaitTimeout, wait_rejoined, launcher, "alpha", {}, hold=0.0,
                          timeout=0.1)
        # ...unless that was before the fault.
        wait_rejoined(launcher, "alpha", {"witness": len(launcher.logs["witness"])}, hold=0.0,
                      timeout=1.0)


class HttpIdentityTests(unittest.TestCase):
    def test_reads_the_identity_and_none_when_nothing_listens(self):
        body = json.dumps({"cluster": "A", "instance": "x"}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = HTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = f"http://127.0.0.1:{server.server_address[1]}/"
        self.assertEqual(http_identity(url), {"cluster": "A", "instance": "x"})
        port = server.server_address[1]
        server.shutdown()
        server.server_close()
        self.assertIsNone(http_identity(f"http://127.0.0.1:{port}/"))
