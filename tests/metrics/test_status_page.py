"""The status page on the metrics listener over real HTTP on 127.0.0.1 (port 0)."""

import json

from twisted.internet import defer
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from clsd.admin import commands
from clsd.admin.backend import AdminError
from clsd.admin.fake import FakeBackend
from clsd.admin.page import CONTENT_SECURITY_POLICY
from clsd.config import MetricsConfig
from clsd.metrics import Metrics, make_metrics_service

TIMEOUT = 10


class StatusPageHTTPTests(unittest.TestCase):

    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.backend = FakeBackend(asynchronous=True)
        self.service = make_metrics_service(MetricsConfig(listen=("127.0.0.1", 0)),
                                            Metrics("alpha").registry, reactor,
                                            status=self.backend)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    @defer.inlineCallbacks
    def request(self, path, method=b"GET"):
        port = yield self.service.when_listening()
        url = f"http://127.0.0.1:{port.getHost().port}{path}".encode()
        response = yield Agent(self.reactor).request(method, url, Headers({})).addTimeout(
            TIMEOUT, self.reactor)
        body = yield readBody(response).addTimeout(TIMEOUT, self.reactor)
        return response, body

    def header(self, response, name):
        return response.headers.getRawHeaders(name)[0]

    @defer.inlineCallbacks
    def test_the_page(self):
        response, body = yield self.request("/")
        self.assertEqual(response.code, 200)
        self.assertEqual(self.header(response, b"content-type"), b"text/html; charset=utf-8")
        self.assertEqual(self.header(response, b"content-security-policy").decode(),
                         CONTENT_SECURITY_POLICY)
        self.assertEqual(self.header(response, b"cache-control"), b"no-store")
        page = body.decode()
        self.assertIn("running on alpha", page)
        self.assertIn('<g class="cluster" data-cluster="A">', page)

    @defer.inlineCallbacks
    def test_status_json_is_the_document_of_status_json(self):
        response, body = yield self.request("/status.json")
        self.assertEqual(self.header(response, b"content-type"), b"application/json")
        outcome = yield commands.run_line(self.backend, commands.ROLE_MONITOR, "status --json")
        self.assertEqual(json.loads(body), json.loads(outcome.stdout))

    @defer.inlineCallbacks
    def test_history_fragment(self):
        response, body = yield self.request("/history.html")
        self.assertEqual(response.code, 200)
        self.assertTrue(body.startswith(b"<h2>Owners since "), body[:100])
        self.assertIn(b"db: 5 failures in 60s", body)

    @defer.inlineCallbacks
    def test_read_only(self):
        for path in ("/", "/status.json", "/history.html"):
            response, _ = yield self.request(path, b"POST")
            self.assertEqual(response.code, 405, path)
        self.assertEqual([name for name, _ in self.backend.calls
                          if name not in ("status", "clusters", "history")], [])

    @defer.inlineCallbacks
    def test_a_backend_failure_is_a_short_500(self):
        def broken():
            raise AdminError("boom")
        self.backend.status = broken
        response, body = yield self.request("/status.json")
        self.assertEqual((response.code, body),
                         (500, b"internal error (details in the daemon log)\n"))
        self.flushLoggedErrors(AdminError)

    @defer.inlineCallbacks
    def test_sampled_from_the_start(self):
        yield self.service.when_listening()
        self.assertEqual(sorted(self.service.source.timeline.view(1e12).segments), ["A", "B"])

    @defer.inlineCallbacks
    def test_metrics_still_served(self):
        response, body = yield self.request("/metrics")
        self.assertEqual(response.code, 200)
        self.assertIn(b"clsd_node_info", body)


class NoStatusTests(unittest.TestCase):
    """Without a backend the listener serves the metrics and its small index, as before."""

    def test_index_without_a_backend(self):
        from twisted.internet import reactor

        service = make_metrics_service(MetricsConfig(listen=None), Metrics("a").registry,
                                       reactor)
        self.assertIsNone(service.source)
        self.assertNotIn(b"status.json", service.site.resource.children)
