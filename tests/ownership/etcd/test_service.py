"""OwnershipService with the etcd arbiter: its actions reach the arbiter's I/O, answers come back.

A tiny in-memory etcd (one key space, leases with TTLs on the test clock)
answers the core's calls through a fake C{arbiter_io}; everything else is the
real shell with the fakes of tests/ownership/test_service.py.
"""

import json
import random

from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.admin.ownership_status import ownership_status
from clsd.config import parse_config
from clsd.events import EventLog
from clsd.ownership.etcd.core import codec
from clsd.ownership.etcd.core.actions import (
    ETCD_ACTIONS, EtcdCall, EtcdLog, EtcdReply, EtcdWatch,
)
from clsd.ownership.service import OwnershipService
from clsd.supervision.process import DiscardedOutput
from clsd.supervision.runner import ServiceRunner
from tests.ownership.test_service import FakeGuard, pump
from tests.supervision.test_runner import FakeOS

CONFIG = """
[node]
name = "alpha"
data_dir = "{data_dir}"

[[service]]
name = "svc"
command = ["server"]
stop_timeout = 5.0

[[cluster]]
id = "A"
service = "svc"

[quorum]
arbiter = "etcd"
lease = 2

[etcd]
endpoints = ["https://127.0.0.5:2379"]
ca = "ca.pem"
cert = "alpha.pem"
key = "alpha.key"
"""


class MemoryEtcd:
    """Answers the core's calls one reactor turn later, like a fast etcd; can go dark."""

    def __init__(self, clock):
        self.clock = clock
        self.deliver = None
        self.revision = 100
        self.leases = {}   # id -> expiry
        self.keys = {}     # key -> (value, create_revision, lease)
        self.dark = False
        self.logs = []
        self.next_lease = 7

    def handles(self, action):
        return isinstance(action, ETCD_ACTIONS)

    def execute(self, action):
        if isinstance(action, EtcdLog):
            self.logs.append(action.text)
        elif isinstance(action, EtcdCall):
            self.clock.callLater(0.001, self._answer, action)
        elif isinstance(action, EtcdWatch):
            pass  # the slow poll suffices here

    def stop(self, timeout):
        from twisted.internet import defer
        return defer.succeed(None)

    def _expire(self):
        now = self.clock.seconds()
        for lease, expiry in list(self.leases.items()):
            if expiry <= now:
                del self.leases[lease]
                for key, (_, _, owner) in list(self.keys.items()):
                    if owner == lease:
                        del self.keys[key]

    def _answer(self, call):
        if self.dark:
            self.deliver(EtcdReply(call.id, None, b"", "timed out"))
            return
        self._expire()
        now = self.clock.seconds()
        body = call.body
        if call.path == codec.GRANT:
            self.next_lease += 1
            self.leases[self.next_lease] = now + int(body["TTL"])
            data = {"ID": str(self.next_lease), "TTL": body["TTL"]}
        elif call.path == codec.KEEPALIVE:
            lease = int(body["ID"])
            result = {"ID": body["ID"]}
            if lease in self.leases:
                self.leases[lease] = now + 2
                result["TTL"] = "2"
            data = {"result": result}
        elif call.path == codec.REVOKE:
            self.leases.pop(int(body["ID"]), None)
            self._expire()
            data = {"header": {"revision": str(self.revision)}}
        else:
            key = codec.unb64(body["compare"][0]["key"], "key")
            if body["compare"][0]["target"] == "CREATE":
                if key not in self.keys:
                    self.revision += 1
                    put = body["success"][1]["request_put"]
                    self.keys[key] = (codec.unb64(put["value"], "v"), self.revision,
                                      int(put["lease"]))
                    data = {"header": {"revision": str(self.revision)}, "succeeded": True,
                            "responses": [{"response_range": {}}, {}, {}]}
                else:
                    value, rev, lease = self.keys[key]
                    data = {"header": {"revision": str(self.revision)}, "responses": [
                        {"response_range": {"kvs": [{
                            "key": codec.b64(key), "value": codec.b64(value),
                            "create_revision": str(rev), "lease": str(lease)}]}}]}
            else:  # release
                lease = int(body["compare"][0]["lease"])
                if key in self.keys and self.keys[key][2] == lease:
                    del self.keys[key]
                data = {"header": {"revision": str(self.revision)}}
        self.deliver(EtcdReply(call.id, 200, json.dumps(data).encode()))


class EtcdShellTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.clock.advance(1000)
        self.config = parse_config(CONFIG.format(data_dir=self.mktemp()), "<alpha>")
        self.etcd = MemoryEtcd(self.clock)
        self.guard = FakeGuard()
        self.os = FakeOS()
        self.spawns = []
        self.service = OwnershipService(
            self.config, self.clock, events=EventLog(monotonic=self.clock.seconds),
            monotonic=self.clock.seconds, guard=self.guard, generation=5,
            rng=random.Random(1), arbiter_io=self.etcd)
        self.etcd.deliver = self.service._arbiter_input
        svc = self.config.services[0]

        def spawn(protocol, extra_env=None, after_spawn=None):
            self.spawns.append((self.clock.seconds(), dict(extra_env or {})))
            if after_spawn is not None:
                after_spawn(self.os.next_pid + 1)
            return self.os.spawn(protocol)
        self.runner = ServiceRunner(svc, self.clock, spawn=self.service.spawner(svc, spawn),
                                    groups=self.os, events=EventLog(),
                                    monotonic=self.clock.seconds, random=lambda: 0.5,
                                    output_factory=lambda logs: DiscardedOutput())
        self.service.attach(self.runner)
        self.runner.setServiceParent(self.service)
        self.service.startService()
        self.service.activate()

    def test_acquires_at_once_with_the_revision_as_epoch(self):
        pump(self.clock, 0.1)
        [(_, env)] = self.spawns
        [(key, (value, revision, lease))] = self.etcd.keys.items()
        self.assertEqual(key, "/clsd/A")
        self.assertEqual(json.loads(value)["node"], "alpha")
        self.assertEqual(env["CLSD_EPOCH"], str(revision))
        status = ownership_status(self.service)
        self.assertEqual(status["quorum"]["arbiter"], "etcd")
        self.assertTrue(status["quorum"]["have_quorum"])
        self.assertEqual(status["clusters"][0]["state"], "running")

    def test_keepalives_rearm_the_guard_and_etcd_going_dark_stops_the_service_in_time(self):
        pump(self.clock, 3.0)
        deadlines = [d for kind, *rest in self.guard.log if kind == "arm"
                     for d in [rest[1]]]
        self.assertGreater(len(deadlines), 3, "every keepalive re-arms the guard")
        self.assertEqual(deadlines, sorted(deadlines))
        self.etcd.dark = True
        dark_at = self.clock.seconds()
        last_deadline = max(self.guard.armed.values())
        pump(self.clock, 3.0)
        self.assertFalse(self.runner.process_alive)
        self.assertTrue(self.etcd.logs, "the failures were logged")
        # etcd would free the key no earlier than 2 s after the last keepalive sent;
        # the guard deadline stayed before that.
        self.assertLess(last_deadline, dark_at + 2.0)
        self.assertFalse(ownership_status(self.service)["quorum"]["have_quorum"])

    def test_shutdown_releases_the_key(self):
        pump(self.clock, 0.5)
        self.assertEqual(len(self.etcd.keys), 1)
        d = self.service.stopService()
        for _ in range(200):
            pump(self.clock, 0.05)
            if d.called:
                break
        self.assertEqual(self.etcd.keys, {})
        self.assertEqual(self.etcd.leases, {})
