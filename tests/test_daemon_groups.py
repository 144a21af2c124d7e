"""The daemon with an ordered group: members start in order under one tenure; reload changes it.

A real Daemon on trial's reactor, a single machine (its own voter), a short
lease, real services (small Python scripts that note when they start and
stop), the real guard.  Bounded waits.
"""

import json
import os
import sys
import textwrap

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.config import load_config
from clsd.daemon import Daemon
from clsd.polling import poll as wait_until
from clsd.supervision.pgroups import pid_alive

#: Notes its start (monotonic time, pid, CLSD_*) and its stop on SIGTERM.
SERVICE = textwrap.dedent("""\
    import json, os, signal, sys, time
    def note(kind):
        with open(sys.argv[1], "a") as f:
            f.write(json.dumps({"kind": kind, "t": time.monotonic(), "pid": os.getpid(),
                                "env": {k: v for k, v in os.environ.items()
                                        if k.startswith("CLSD_")}}) + "\\n")
    def stop(*_):
        note("stop")
        sys.exit(0)
    signal.signal(signal.SIGTERM, stop)
    note("start")
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
name = "db"
command = ["{python}", "{script}", "{journal}"]
stop_timeout = 2.0

[[service]]
name = "web"
command = ["{python}", "{script}", "{journal}"]
stop_timeout = 2.0

[[cluster]]
id = "A"
services = {members}
"""


class DaemonGroupTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.script = os.path.join(self.base, "service.py")
        with open(self.script, "w") as f:
            f.write(SERVICE)
        self.journal = os.path.join(self.base, "journal")
        self.path = os.path.join(self.base, "clsd.toml")
        self.write(["db", "web"])
        self.daemon = Daemon(load_config(self.path), reactor)
        self.addCleanup(self.stop)

    def write(self, members):
        with open(self.path, "w") as f:
            f.write(CONFIG.format(data_dir=os.path.join(self.base, "data"),
                                  python=sys.executable, script=self.script,
                                  journal=self.journal, members=json.dumps(members)))

    def stop(self):
        if self.daemon.running:
            return self.daemon.stopService()

    def entries(self):
        try:
            with open(self.journal) as f:
                return [json.loads(line) for line in f]
        except FileNotFoundError:
            return []

    def starts(self, since=0):
        """The journal's start entries (a simple service without a check runs once spawned,
        so two members' own first lines may come in either order: see L{spawned})."""
        return [e for e in self.entries()[since:] if e["kind"] == "start"]

    def spawned(self, since=0):
        """The members the daemon spawned, in order (its event history)."""
        return [e["subject"] for e in self.daemon.events.recent()[since:]
                if e["kind"] == "spawned"]

    @defer.inlineCallbacks
    def test_members_run_in_order_under_one_tenure_and_reload_changes_the_order(self):
        daemon = self.daemon
        self.assertTrue(daemon.ownership.manages("db") and daemon.ownership.manages("web"))
        daemon.startService()
        yield daemon.ready
        yield defer.ensureDeferred(wait_until(reactor, lambda: len(self.starts()) == 2, 10))
        self.assertEqual(self.spawned(), ["db", "web"])
        by_pid = {e["pid"]: e for e in self.starts()}
        db, web = by_pid[daemon.supervisor("db").pid], by_pid[daemon.supervisor("web").pid]
        self.assertEqual(db["env"], web["env"])
        [cluster] = ownership_status(daemon.ownership)["clusters"]
        self.assertEqual(db["env"]["CLSD_EPOCH"], str(cluster["epoch"]))
        self.assertEqual([m["state"] for m in cluster["member_states"]], ["running"] * 2)
        for pid in (db["pid"], web["pid"]):
            self.assertIn(pid, daemon.ownership.guard.armed)

        # The other order: the cluster is replaced; web stops first, then db, then
        # both start again, web first.
        seen = len(self.entries())
        events_seen = len(self.daemon.events.recent())
        self.write(["web", "db"])
        result = yield daemon.reload()
        self.assertIn("cluster A", result)
        yield defer.ensureDeferred(
            wait_until(reactor, lambda: len(self.starts(seen)) == 2, 10))
        stops = [e["pid"] for e in self.entries()[seen:] if e["kind"] == "stop"]
        self.assertEqual(stops, [web["pid"], db["pid"]])
        self.assertEqual(self.spawned(events_seen), ["web", "db"])
        by_pid = {e["pid"]: e for e in self.starts(seen)}
        web2, db2 = by_pid[daemon.supervisor("web").pid], by_pid[daemon.supervisor("db").pid]
        self.assertFalse(pid_alive(db["pid"]) or pid_alive(web["pid"]))

        # Shutdown: db (now on top) first.
        seen = len(self.entries())
        yield daemon.stopService()
        stops = [e["pid"] for e in self.entries()[seen:] if e["kind"] == "stop"]
        self.assertEqual(stops, [db2["pid"], web2["pid"]])
