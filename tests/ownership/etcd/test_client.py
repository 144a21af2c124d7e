"""The etcd gateway client on loopback: deadlines, endpoints in order, the watch stream.

Plain-HTTP servers on 127.0.0.1 stand in for etcd members here (the TLS
path runs against real etcd in tests/integration/test_failover_etcd_real.py).
"""

import json
import time

from twisted.internet import defer, reactor, task
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.client import ResponseDone

from clsd.ownership.etcd.client import MAX_WATCH_LINE, EtcdDriver, EtcdGateway, _Lines
from clsd.ownership.etcd.core.actions import EtcdCall, EtcdLog, EtcdReply, EtcdWatch, EtcdWatchMessage


class Answer(resource.Resource):
    isLeaf = True

    def __init__(self, mode):
        super().__init__()
        self.mode = mode
        self.requests = []
        self.lengths = []
        self.pending = []

    def render_POST(self, request):
        self.requests.append(json.loads(request.content.read()))
        self.lengths.append(request.getHeader(b"content-length"))
        if self.mode == "hang":
            self.pending.append(request)
            return server.NOT_DONE_YET
        if self.mode == "stream":
            request.write(b'{"result": {"created": true}}\n')
            request.write(b'{"result": {"events": []}}\n{"par')
            request.write(b'tial": 1}\n')
            self.pending.append(request)
            return server.NOT_DONE_YET
        return json.dumps({"ok": self.mode}).encode()


class Events:
    def __init__(self):
        self.records = []

    def record(self, *args, **kw):
        self.records.append(args)


class GatewayTests(unittest.TestCase):
    def serve(self, mode):
        site = Answer(mode)
        port = reactor.listenTCP(0, server.Site(site), interface="127.0.0.1")
        self.addCleanup(port.stopListening)

        def finish():
            for request in site.pending:
                if not request.finished and not request._disconnected:
                    request.finish()
        self.addCleanup(finish)
        return site, f"http://127.0.0.1:{port.getHost().port}"

    def gateway(self, endpoints):
        gateway = EtcdGateway(reactor, endpoints, None, monotonic=time.monotonic)
        self.addCleanup(gateway.close)
        return gateway

    def closed_port(self):
        port = reactor.listenTCP(0, server.Site(resource.Resource()), interface="127.0.0.1")
        number = port.getHost().port
        return port.stopListening().addCallback(lambda _: f"http://127.0.0.1:{number}")

    @defer.inlineCallbacks
    def test_endpoints_in_order_past_a_refusal(self):
        refused = yield self.closed_port()
        site, good = self.serve("good")
        gateway = self.gateway([refused, good])
        status, body, error = yield gateway.call("/v3/lease/grant", {"TTL": "2"}, 2.0)
        self.assertEqual((status, json.loads(body)), (200, {"ok": "good"}))
        self.assertEqual(site.requests, [{"TTL": "2"}])
        self.assertEqual(site.lengths, [str(len(b'{"TTL": "2"}')).encode()],
                         "the body is sent with its length, not chunked")
        self.assertEqual(gateway.preferred, good, "the member that answered is tried first")

    @defer.inlineCallbacks
    def test_a_hung_member_costs_the_deadline_and_is_moved_past(self):
        hung_site, hung = self.serve("hang")
        _, good = self.serve("good")
        gateway = self.gateway([hung, good])
        started = time.monotonic()
        status, body, error = yield gateway.call("/v3/kv/txn", {}, 0.3)
        self.assertIsNone(status)
        self.assertIn("timed out", error)
        self.assertLess(time.monotonic() - started, 1.5)
        self.assertEqual(gateway.preferred, good)
        status, _, _ = yield gateway.call("/v3/kv/txn", {}, 0.3)
        self.assertEqual(status, 200)

    @defer.inlineCallbacks
    def test_nobody_answers(self):
        refused = yield self.closed_port()
        status, body, error = yield self.gateway([refused]).call("/v3/kv/txn", {}, 0.5)
        self.assertIsNone(status)
        self.assertIn("connection refused", error)

    @defer.inlineCallbacks
    def test_driver_feeds_replies_watch_lines_and_logs(self):
        _, good = self.serve("good")
        _, stream = self.serve("stream")
        inputs, events = [], Events()
        gateway = self.gateway([good])
        driver = EtcdDriver(gateway, inputs.append, events)
        driver.execute(EtcdCall(7, "/v3/lease/keepalive", {"ID": "1"}, 1.0))
        driver.gateway = self.gateway([stream])
        driver.execute(EtcdWatch(8, {"create_request": {}}, 1.0))
        driver.execute(EtcdLog("A", "etcd keepalive failed: x"))
        for _ in range(100):
            if len(inputs) >= 4:
                break
            yield task.deferLater(reactor, 0.02)
        replies = [i for i in inputs if isinstance(i, EtcdReply)]
        lines = [i.body for i in inputs if isinstance(i, EtcdWatchMessage)]
        self.assertEqual([(r.id, r.status) for r in replies], [(7, 200)])
        self.assertEqual(lines, [b'{"result": {"created": true}}', b'{"result": {"events": []}}',
                                 b'{"partial": 1}'])
        self.assertEqual(events.records, [("etcd", "A", "etcd keepalive failed: x")])
        yield driver.stop(1.0)


class WatchLinesTests(unittest.TestCase):
    """The watch stream's framing, fed by hand (the body's transport is a producer proxy)."""

    def setUp(self):
        self.lines, self.closed = [], []
        self.protocol = _Lines(self.lines.append, self.closed.append)
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)

    def test_lines_split_across_chunks_and_blank_lines_skipped(self):
        for chunk in (b'{"a": 1}\n\n{"b"', b': 2}\n  \n{"c": 3}', b"\n"):
            self.protocol.dataReceived(chunk)
        self.assertEqual(self.lines, [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}'])
        self.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual(self.closed, ["etcd ended the stream"])

    def test_an_over_long_line_closes_the_stream_with_a_clear_reason(self):
        self.protocol.dataReceived(b'{"a": 1}\n')
        chunk = b"x" * (64 * 1024)
        for _ in range(MAX_WATCH_LINE // len(chunk) + 1):
            self.protocol.dataReceived(chunk)
        self.assertEqual(self.lines, [b'{"a": 1}'])
        self.assertEqual(self.closed,
                         [f"watch line longer than {MAX_WATCH_LINE} bytes: stream closed"])
        self.assertEqual(self.transport.producerState, "stopped")
        self.assertEqual(self.protocol._buffer, b"", "the partial line is not kept")
        self.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual(len(self.closed), 1, "the stream's end is reported once")

    def test_an_over_long_complete_line_is_not_delivered(self):
        self.protocol.dataReceived(b"y" * (MAX_WATCH_LINE + 1) + b'\n{"a": 1}\n')
        self.assertEqual(self.lines, [])
        self.assertEqual(len(self.closed), 1)
        self.assertIn(f"longer than {MAX_WATCH_LINE} bytes", self.closed[0])

    def test_stop_closes_silently(self):
        self.protocol.stop()
        self.protocol.connectionLost(Failure(ResponseDone()))
        self.assertEqual(self.closed, [])
        self.assertEqual(self.transport.producerState, "stopped")
