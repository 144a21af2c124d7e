"""The daemon's /metrics endpoint shows its real services, scraped over HTTP on 127.0.0.1."""

import os
import signal

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import defer, reactor
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from clsd.config import parse_config
from clsd.daemon import Daemon
from tests.integration.test_supervision_integration import Workspace, wait_for


def samples(text, name):
    """{labels tuple: value} of metric family C{name} in exposition C{text}."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


class DaemonMetricsTests(unittest.TestCase):
    timeout = 60

    @defer.inlineCallbacks
    def setUp(self):
        self.ws = Workspace(self)
        config = parse_config(
            self.ws.config_text(
                f"[[service]]\nname = \"web\"\ncommand = {self.ws.command('run')}\n"
                '[metrics]\nlisten = "127.0.0.1:0"\n'),
            base_dir=self.ws.base)
        self.daemon = Daemon(config, reactor)
        self.daemon.startService()
        self.addCleanup(self.daemon.stopService)
        yield self.daemon.ready
        port = yield self.daemon.metrics_service.when_listening()
        self.url = f"http://127.0.0.1:{port.getHost().port}/metrics".encode()

    @defer.inlineCallbacks
    def scrape(self):
        response = yield Agent(reactor).request(b"GET", self.url)
        self.assertEqual(response.code, 200)
        body = yield readBody(response)
        return body.decode()

    @defer.inlineCallbacks
    def test_service_state_and_restarts(self):
        runner = self.daemon.supervisor("web")
        yield wait_for(lambda: runner.status()["pid"], what="web running")
        text = yield self.scrape()
        state = samples(text, "clsd_service_state")
        self.assertEqual(state[(("service", "web"), ("state", "running"))], 1.0)
        self.assertEqual(state[(("service", "web"), ("state", "failed"))], 0.0)
        before = samples(text, "clsd_service_restarts_total")

        pid = runner.status()["pid"]
        os.kill(pid, signal.SIGKILL)
        yield wait_for(lambda: runner.status()["pid"] not in (None, pid), what="restart")
        after = samples((yield self.scrape()), "clsd_service_restarts_total")
        self.assertEqual(sum(after.values()), sum(before.values()) + 1)
