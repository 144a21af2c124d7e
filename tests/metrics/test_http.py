"""The ``/metrics`` endpoint over real HTTP on 127.0.0.1 (port 0), with trial's reactor.

Every request is bounded by a timeout; the service stops listening at the
end of each test.
"""

import socket

from twisted.internet import defer
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactor
from twisted.logger import globalLogPublisher
from twisted.trial import unittest
from twisted.web.client import Agent, readBody
from twisted.web.http_headers import Headers

from clsd.config import MetricsConfig
from clsd.metrics import Metrics, MetricsService, make_metrics_service
from clsd.metrics.web import server_endpoint
from tests.support.metrics_scrape import parse_samples, value

TIMEOUT = 10


class MetricsHTTPTests(unittest.TestCase):
    def setUp(self):
        from twisted.internet import reactor

        self.reactor = reactor
        self.metrics = Metrics("alpha")
        self.service = make_metrics_service(
            MetricsConfig(listen=("127.0.0.1", 0)), self.metrics.registry, reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)

    @defer.inlineCallbacks
    def get(self, path, headers=None):
        port = yield self.service.when_listening()
        url = f"http://127.0.0.1:{port.getHost().port}{path}".encode()
        agent = Agent(self.reactor)
        response = yield agent.request(b"GET", url, Headers(headers or {})).addTimeout(
            TIMEOUT, self.reactor)
        body = yield readBody(response).addTimeout(TIMEOUT, self.reactor)
        return response, body

    @defer.inlineCallbacks
    def scrape(self):
        response, body = yield self.get("/metrics")
        self.assertEqual(response.code, 200)
        content_type = response.headers.getRawHeaders(b"content-type")[0]
        self.assertTrue(content_type.startswith(b"text/plain; version=0.0.4"), content_type)
        return parse_samples(body.decode("utf-8"))[0]

    @defer.inlineCallbacks
    def test_scrape_reflects_the_parts_and_the_reports(self):
        members = {"alive": 3}
        self.metrics.watch_members(lambda: members)
        samples = yield self.scrape()
        self.assertEqual(value(samples, "clsd_node_info", node="alpha",
                               version=self.metrics.version), 1)
        self.assertEqual(value(samples, "clsd_members", state="alive"), 3)
        self.assertNotIn(("clsd_failovers_total", (("planned", "false"), ("resource", "A"))),
                         samples)

        members["dead"] = 1
        self.metrics.failover("A", planned=False)
        self.metrics.health_checked("web", True, 0.01)
        samples = yield self.scrape()
        self.assertEqual(value(samples, "clsd_members", state="dead"), 1)
        self.assertEqual(value(samples, "clsd_failovers_total", resource="A", planned="false"),
                         1)
        self.assertEqual(value(samples, "clsd_health_checks_total", service="web",
                               result="pass"), 1)

    @defer.inlineCallbacks
    def test_openmetrics_when_asked(self):
        response, body = yield self.get(
            "/metrics", {b"Accept": [b"application/openmetrics-text; version=1.0.0"]})
        content_type = response.headers.getRawHeaders(b"content-type")[0]
        self.assertTrue(content_type.startswith(b"application/openmetrics-text"), content_type)
        self.assertTrue(body.endswith(b"# EOF\n"))

    @defer.inlineCallbacks
    def test_index_links_to_metrics(self):
        response, body = yield self.get("/")
        self.assertEqual(response.code, 200)
        self.assertIn(b"/metrics", body)

    @defer.inlineCallbacks
    def test_other_paths_are_not_found(self):
        response, _ = yield self.get("/nothing")
        self.assertEqual(response.code, 404)

    @defer.inlineCallbacks
    def test_stop_closes_the_port(self):
        port = yield self.service.when_listening()
        number = port.getHost().port
        yield self.service.stopService()
        self.assertIsNone(self.service.port)
        with socket.socket() as s:
            self.assertNotEqual(s.connect_ex(("127.0.0.1", number)), 0)


class MetricsServiceTests(unittest.TestCase):
    def test_listening_is_logged_with_the_address(self):
        from twisted.internet import reactor

        events = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        service = MetricsService(("127.0.0.1", 0), Metrics("alpha").registry, reactor)
        service.startService()
        self.addCleanup(service.stopService)
        [event] = [e for e in events if e.get("event") == "metrics.listening"]
        self.assertEqual(event["address"], f"127.0.0.1:{service.port.getHost().port}")

    def test_off_listens_on_nothing(self):
        from twisted.internet import reactor

        service = make_metrics_service(MetricsConfig(), Metrics("alpha").registry, reactor)
        service.startService()
        self.assertIsNone(service.port)
        self.assertIsNone(service.stopService())

    def test_address_in_use_fails_the_start(self):
        from twisted.internet import reactor

        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            address = taken.getsockname()
            service = MetricsService(address, Metrics("alpha").registry, reactor)
            self.assertRaises(CannotListenError, service.startService)

    def test_ipv6_address_gets_an_ipv6_endpoint(self):
        # Checked on a MemoryReactor: tests send and listen on 127.0.0.0/8 only.
        reactor = MemoryReactor()
        service = MetricsService(("::1", 9400), Metrics("alpha").registry, reactor)
        service.startService()
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (9400, "::1"))
        self.assertIs(factory, service.site)
        self.assertIsInstance(server_endpoint(reactor, ("::1", 1)), TCP6ServerEndpoint)
        self.assertIsInstance(server_endpoint(reactor, ("127.0.0.1", 1)), TCP4ServerEndpoint)
