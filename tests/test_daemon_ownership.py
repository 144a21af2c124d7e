"""The daemon with a [quorum]: managed services start only under a lease, via its lease guard.

A real Daemon on trial's reactor, a single machine (its own voter), a short
lease; real services (small Python scripts), the real guard.  Bounded waits.
"""

import json
import os
import sys
import textwrap

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.ownership.floor import read_floor
from clsd.polling import poll as wait_until
from clsd.supervision.pgroups import pid_alive

#: Writes its pid, process group and CLSD_* environment, then sleeps.
SERVICE = textwrap.dedent("""\
    import json, os, sys, time
    with open(sys.argv[1], "a") as f:
        f.write(json.dumps({"pid": os.getpid(), "pgid": os.getpgrp(),
                            "env": {k: v for k, v in os.environ.items()
                                    if k.startswith("CLSD_")}}) + "\\n")
    while True:
        time.sleep(1)
""")

CONFIG = """
[node]
name = "alpha"
data_dir = "{data_dir}"

[quorum]
voters = ["alpha"]
lease = 0.6
drift_margin = 0.05

[[service]]
name = "web"
command = ["{python}", "{script}", "{journal}.web"]
stop_timeout = 1.0

[[service]]
name = "plain"
command = ["{python}", "{script}", "{journal}.plain"]
stop_timeout = 1.0

[[cluster]]
id = "A"
service = "web"
"""


class DaemonOwnershipTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        base = os.path.abspath(self.mktemp())
        os.makedirs(base)
        script = os.path.join(base, "service.py")
        with open(script, "w") as f:
            f.write(SERVICE)
        self.journal = os.path.join(base, "journal")
        self.data_dir = os.path.join(base, "data")
        config = parse_config(CONFIG.format(data_dir=self.data_dir, python=sys.executable,
                                            script=script, journal=self.journal))
        self.daemon = Daemon(config, reactor)
        self.addCleanup(self.stop)

    def stop(self):
        if self.daemon.running:
            return self.daemon.stopService()

    def entries(self, name):
        try:
            with open(f"{self.journal}.{name}") as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    @defer.inlineCallbacks
    def test_managed_service_runs_under_the_lease(self):
        daemon = self.daemon
        self.assertTrue(daemon.ownership.manages("web"))
        self.assertFalse(daemon.ownership.manages("plain"))
        self.assertFalse(daemon.supervisor("web").autostart)
        daemon.startService()
        yield daemon.ready
        guard = daemon.ownership.guard
        self.assertTrue(guard.running, "the guard starts before any service")
        # The unmanaged service starts at once; the managed one once the lease is held.
        yield defer.ensureDeferred(wait_until(reactor, lambda: self.entries("plain"), 10))
        yield defer.ensureDeferred(wait_until(reactor, lambda: self.entries("web"), 10))
        [web] = self.entries("web")
        status = ownership_status(daemon.ownership)
        [cluster] = status["clusters"]
        self.assertEqual(cluster["state"], "running")
        self.assertEqual(web["env"], {"CLSD_CLUSTER": "A", "CLSD_NODE": "alpha",
                                      "CLSD_EPOCH": str(cluster["epoch"])})
        self.assertEqual(self.entries("plain")[0]["env"], {})
        self.assertEqual(web["pgid"], web["pid"])
        self.assertIn(web["pid"], guard.armed)
        self.assertEqual(read_floor(self.data_dir), 10000)
        guard_pid = guard.pid
        yield daemon.stopService()
        self.assertFalse(pid_alive(web["pid"]))
        self.assertFalse(pid_alive(guard_pid), "the guard exits with the daemon")
        self.assertEqual(guard.kills, [], "the service was stopped, not killed by the guard")
