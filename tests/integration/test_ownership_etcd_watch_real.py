"""The watch stream of a real etcd, read by the codec: a resumed watch replays from its
start revision, and a start revision compacted away is reported as such.

One etcd member on 127.0.0.x with TLS (L{rig.etcd.EtcdCluster}); the stream is
read with a plain blocking HTTPS connection (a few lines, each within a second).
"""

import http.client
import json
import os

from twisted.trial import unittest

from clsd.ownership.etcd.core import codec
from rig.etcd import EtcdCluster
from tests.support.rig_support import require_tool

PREFIX = "/clsd/watch-test/"


class RealWatchTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        require_tool("etcd", "etcd-server")
        directory = os.path.abspath(self.mktemp())
        self.etcd = EtcdCluster(os.path.join(directory, "etcd"), 1,
                                ca_dir=os.path.join(directory, "ca"))
        self.addCleanup(self.etcd.teardown)
        self.etcd.start()
        self.member = self.etcd.members[0]

    def post(self, path, body):
        answer = self.etcd.post(self.member, path, body)
        self.assertIsNotNone(answer, f"{path} failed")
        return answer

    def put(self, key, value):
        return int(self.post("/v3/kv/put", {"key": codec.b64(PREFIX + key),
                                            "value": codec.b64(value)})["header"]["revision"])

    def delete(self, key):
        return int(self.post("/v3/kv/deleterange",
                             {"key": codec.b64(PREFIX + key)})["header"]["revision"])

    def watch(self, start_revision, messages=None):
        """The messages of a watch from C{start_revision}, parsed (the first C{messages}, or
        an endless iterator)."""
        connection = http.client.HTTPSConnection(
            self.member.address, self.member.client_port, timeout=5,
            context=self.etcd._context())
        self.addCleanup(connection.close)
        connection.request("POST", codec.WATCH,
                           json.dumps(codec.watch_body(PREFIX, start_revision)),
                           {"Content-Type": "application/json"})
        response = connection.getresponse()
        self.assertEqual(response.status, 200)

        def read():
            while True:
                raw = response.readline()
                if raw.strip():
                    yield codec.read_watch_message(codec.parse_json(raw, "watch"))
        stream = read()
        if messages is None:
            return stream
        return [next(stream) for _ in range(messages)]

    def test_a_resumed_watch_replays_every_put_and_delete_in_order(self):
        first = self.put("A", '{"node": "alpha"}')
        second = self.put("B", '{"node": "beta"}')
        gone = self.delete("A")
        (created, _, _), (kind, events, _) = self.watch(first, 2)
        self.assertEqual((created, kind), ("created", "events"))
        self.assertEqual([(e, kv["key"], kv["mod_revision"]) for e, kv, _ in events],
                         [("PUT", PREFIX + "A", first), ("PUT", PREFIX + "B", second),
                          ("DELETE", PREFIX + "A", gone)])
        self.assertEqual(events[2][2]["create_revision"], first, "prev_kv of the delete")

    def test_a_watch_from_now_reports_the_revision_it_starts_after(self):
        revision = self.put("A", "x")
        [(kind, _, header)] = self.watch(None, 1)
        self.assertEqual(kind, "created")
        self.assertEqual(header, revision)

    def test_a_compacted_start_revision_is_reported(self):
        first = self.put("A", "1")
        self.put("A", "2")
        last = self.put("A", "3")
        self.post("/v3/kv/compaction", {"revision": str(last)})
        stream = self.watch(first)
        kind, _, revision = next(stream)
        if kind == "created":  # etcd 3.4 says "created", then cancels the watch
            kind, _, revision = next(stream)
        self.assertEqual((kind, revision), ("compacted", last))
