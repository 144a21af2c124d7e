"""The figures of L{clsd.metrics.Metrics}: read from the parts, reported, exposed.

Exposed with prometheus_client's own text encoder and parsed back with its
parser, so names, types and labels are checked as a scraper sees them.
"""

import enum
import os
import re

from prometheus_client import CollectorRegistry, generate_latest
from twisted.internet import defer
from twisted.trial import unittest

from clsd.metrics import Metrics
from clsd.metrics.registry import HEALTH_CHECK_BUCKETS, Histogram
from tests.support.metrics_scrape import parse_samples, value


def scrape(metrics):
    return parse_samples(generate_latest(metrics.registry).decode("utf-8"))


class FakeResult:
    def __init__(self, ok, latency):
        self.ok = ok
        self.latency = latency


class FakeChecker:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def check(self):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            return defer.fail(outcome)
        return defer.succeed(outcome)


class MetricsTests(unittest.TestCase):
    def setUp(self):
        self.metrics = Metrics("alpha", version="1.2.3")

    def test_own_registry_per_daemon(self):
        other = Metrics("beta")
        self.assertIsNot(self.metrics.registry, other.registry)
        self.metrics.failover("A", planned=False)
        samples, _ = scrape(other)
        self.assertNotIn(("clsd_failovers_total", (("planned", "false"), ("resource", "A"))),
                         samples)

    def test_given_registry_is_used(self):
        registry = CollectorRegistry()
        Metrics("gamma", registry=registry)
        self.assertIn(b'clsd_node_info{node="gamma"', generate_latest(registry))

    def test_node_info(self):
        samples, types = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_node_info", node="alpha", version="1.2.3"), 1)
        self.assertEqual(types["clsd_node_info"], "gauge")

    def test_every_family_has_help_and_a_stable_prefix(self):
        text = generate_latest(self.metrics.registry).decode()
        names = [line.split()[2] for line in text.splitlines() if line.startswith("# HELP")]
        self.assertGreaterEqual(len(names), 15)
        for name in names:
            self.assertTrue(name.startswith("clsd_"), name)

    def test_doc_lists_exactly_the_families(self):
        doc = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "doc", "metrics.md")
        with open(doc, encoding="utf-8") as f:
            rows = re.findall(r"^\| `(clsd_[a-z_]+)` \| (\w+) \|", f.read(), re.M)
        text = generate_latest(self.metrics.registry).decode()
        exposed = re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M)
        self.assertEqual(sorted(rows), sorted(exposed))

    def test_members_by_state_with_zeros(self):
        counts = {"alive": 5, "suspect": 1}
        self.metrics.watch_members(lambda: counts)
        samples, types = scrape(self.metrics)
        self.assertEqual(types["clsd_members"], "gauge")
        self.assertEqual(value(samples, "clsd_members", state="alive"), 5)
        self.assertEqual(value(samples, "clsd_members", state="suspect"), 1)
        self.assertEqual(value(samples, "clsd_members", state="dead"), 0)
        self.assertEqual(value(samples, "clsd_members", state="left"), 0)
        counts["alive"], counts["dead"] = 4, 2  # read again at the next scrape
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_members", state="alive"), 4)
        self.assertEqual(value(samples, "clsd_members", state="dead"), 2)

    def test_member_states_may_be_enums(self):
        
        class State(enum.Enum):
            ALIVE = "alive"

        self.metrics.watch_members(lambda: {State.ALIVE: 3})
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_members", state="alive"), 3)

    def test_leases_held_and_epochs(self):
        status = {"A": ("running", 7), "B": ("acquiring", 0), "C": ("stopping", 3)}
        self.metrics.watch_leases(lambda: status)
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_lease_held", resource="A"), 1)
        self.assertEqual(value(samples, "clsd_lease_held", resource="B"), 0)
        self.assertEqual(value(samples, "clsd_lease_held", resource="C"), 0)
        self.assertEqual(value(samples, "clsd_lease_epoch", resource="A"), 7)
        self.assertEqual(value(samples, "clsd_lease_epoch", resource="C"), 3)
        self.assertEqual(value(samples, "clsd_lease_phase", resource="C", phase="stopping"), 1)
        self.assertEqual(value(samples, "clsd_lease_phase", resource="C", phase="running"), 0)
        self.assertEqual(value(samples, "clsd_lease_phase", resource="B", phase="acquiring"), 1)
        status["A"] = ("idle", 7)
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_lease_held", resource="A"), 0)

    def test_floating_addresses_up_here(self):
        status = {"A": {"192.0.2.10/24": True, "2001:db8::10/64": True},
                  "B": {"192.0.2.11/24": False}}
        self.metrics.watch_addresses(lambda: status)
        samples, types = scrape(self.metrics)
        self.assertEqual(types["clsd_cluster_address_up"], "gauge")
        self.assertEqual(value(samples, "clsd_cluster_address_up", cluster="A",
                               address="2001:db8::10/64"), 1)
        self.assertEqual(value(samples, "clsd_cluster_address_up", cluster="B",
                               address="192.0.2.11/24"), 0)
        status["A"]["192.0.2.10/24"] = False
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_cluster_address_up", cluster="A",
                               address="192.0.2.10/24"), 0)

    def test_failovers(self):
        self.metrics.failover("A", planned=False)
        self.metrics.failover("A", planned=False)
        self.metrics.failover("A", planned=True)
        samples, types = scrape(self.metrics)
        self.assertEqual(types["clsd_failovers"], "counter")
        self.assertEqual(value(samples, "clsd_failovers_total", resource="A", planned="false"), 2)
        self.assertEqual(value(samples, "clsd_failovers_total", resource="A", planned="true"), 1)

    def test_lease_renewal_latency(self):
        self.metrics.lease_renewed("A", 0.0008)
        self.metrics.lease_renewed("A", 0.003)
        self.metrics.lease_renewed("A", 30.0)
        samples, types = scrape(self.metrics)
        self.assertEqual(types["clsd_lease_renewal_seconds"], "histogram")
        name = "clsd_lease_renewal_seconds"
        self.assertEqual(value(samples, name + "_bucket", resource="A", le="0.0005"), 0)
        self.assertEqual(value(samples, name + "_bucket", resource="A", le="0.001"), 1)
        self.assertEqual(value(samples, name + "_bucket", resource="A", le="0.005"), 2)
        self.assertEqual(value(samples, name + "_bucket", resource="A", le="+Inf"), 3)
        self.assertEqual(value(samples, name + "_count", resource="A"), 3)
        self.assertAlmostEqual(value(samples, name + "_sum", resource="A"), 30.0038)

    def test_services(self):
        statuses = [
            {"name": "web", "state": "running", "restarts": 2, "healthy": True},
            {"name": "db", "state": "backoff", "restarts": 5, "healthy": None},
        ]
        self.metrics.watch_services(lambda: statuses)
        samples, types = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_service_state", service="web", state="running"), 1)
        self.assertEqual(value(samples, "clsd_service_state", service="web", state="failed"), 0)
        self.assertEqual(value(samples, "clsd_service_state", service="db", state="backoff"), 1)
        self.assertEqual(types["clsd_service_restarts"], "counter")
        self.assertEqual(value(samples, "clsd_service_restarts_total", service="web"), 2)
        self.assertEqual(value(samples, "clsd_service_restarts_total", service="db"), 5)
        self.assertEqual(value(samples, "clsd_service_healthy", service="web"), 1)
        self.assertNotIn(("clsd_service_healthy", (("service", "db"),)), samples)
        statuses[0] = dict(statuses[0], state="backoff", restarts=3, healthy=False)
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_service_state", service="web", state="running"), 0)
        self.assertEqual(value(samples, "clsd_service_restarts_total", service="web"), 3)
        self.assertEqual(value(samples, "clsd_service_healthy", service="web"), 0)

    def test_unknown_service_state_is_still_shown(self):
        self.metrics.watch_services(lambda: [{"name": "web", "state": "paused"}])
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_service_state", service="web", state="paused"), 1)
        self.assertEqual(value(samples, "clsd_service_restarts_total", service="web"), 0)

    def test_health_checks(self):
        self.metrics.health_checked("web", True, 0.004)
        self.metrics.health_checked("web", False, 0.5)
        self.metrics.health_checked("web", False, None)
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_health_checks_total", service="web", result="pass"),
                         1)
        self.assertEqual(value(samples, "clsd_health_checks_total", service="web", result="fail"),
                         2)
        self.assertEqual(value(samples, "clsd_health_check_seconds_count", service="web"), 2)
        self.assertEqual(
            value(samples, "clsd_health_check_seconds_bucket", service="web", le="0.005"), 1)

    def test_instrumented_checker_factory(self):
        made = []

        def factory(check, reactor):
            made.append((check, reactor))
            return FakeChecker([FakeResult(True, 0.002), FakeResult(False, 0.7),
                                RuntimeError("checker bug")])

        wrapped = self.metrics.instrument_checker_factory("web", factory)
        checker = wrapped("the-check", "the-reactor")
        self.assertEqual(made, [("the-check", "the-reactor")])
        results = []
        checker.check().addCallback(results.append)
        checker.check().addCallback(results.append)
        self.failureResultOf(checker.check(), RuntimeError)
        self.assertEqual([r.ok for r in results], [True, False])
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_health_checks_total", service="web", result="pass"),
                         1)
        self.assertEqual(value(samples, "clsd_health_checks_total", service="web", result="fail"),
                         2)
        self.assertEqual(value(samples, "clsd_health_check_seconds_count", service="web"), 2)

    def test_no_checker_factory_stays_none(self):
        self.assertIsNone(self.metrics.instrument_checker_factory("web", None))

    def test_peers(self):
        stats = {
            "connections": 4, "established": 3, "messages_in": 10, "messages_out": 12,
            "bytes_in": 1000, "bytes_out": 1200,
            "rejected": {"bad-certificate": 2, "name-mismatch": 1}, "dropped": {"idle": 1},
        }
        self.metrics.watch_peers(lambda: stats)
        samples, types = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_peer_connections_total"), 4)
        self.assertEqual(value(samples, "clsd_peer_connections_established_total"), 3)
        self.assertEqual(value(samples, "clsd_peer_messages_total", direction="in"), 10)
        self.assertEqual(value(samples, "clsd_peer_messages_total", direction="out"), 12)
        self.assertEqual(value(samples, "clsd_peer_bytes_total", direction="in"), 1000)
        self.assertEqual(value(samples, "clsd_peer_bytes_total", direction="out"), 1200)
        self.assertEqual(
            value(samples, "clsd_peer_connections_rejected_total", reason="bad-certificate"), 2)
        self.assertEqual(
            value(samples, "clsd_peer_connections_rejected_total", reason="name-mismatch"), 1)
        self.assertEqual(value(samples, "clsd_peer_connections_dropped_total", reason="idle"), 1)
        self.assertEqual(types["clsd_peer_bytes"], "counter")

    def test_watching_twice_is_a_mistake(self):
        self.metrics.watch_members(dict)
        self.assertRaises(ValueError, self.metrics.watch_members, dict)

    def test_a_broken_part_does_not_break_the_scrape(self):
        def broken():
            raise RuntimeError("boom")

        self.metrics.watch_members(broken)
        self.metrics.watch_leases(lambda: {"A": ("running", 1)})
        samples, _ = scrape(self.metrics)
        self.assertEqual(value(samples, "clsd_lease_held", resource="A"), 1)
        self.assertEqual(value(samples, "clsd_metrics_collect_errors_total", source="members"), 1)
        self.assertNotIn(("clsd_members", (("state", "alive"),)), samples)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_registering_reads_no_part(self):
        calls = []
        metrics = Metrics("delta")
        metrics.watch_members(lambda: calls.append(1) or {})
        self.assertEqual(calls, [])
        scrape(metrics)
        self.assertEqual(calls, [1])


class HistogramTests(unittest.TestCase):
    def test_cumulative_buckets_include_the_bound(self):
        histogram = Histogram((1.0, 2.0))
        for v in (0.5, 1.0, 1.5, 2.0, 9.0):
            histogram.observe(v)
        self.assertEqual(histogram.buckets(), [("1.0", 2), ("2.0", 4), ("+Inf", 5)])
        self.assertEqual(histogram.sum, 14.0)

    def test_buckets_are_increasing(self):
        self.assertEqual(list(HEALTH_CHECK_BUCKETS), sorted(set(HEALTH_CHECK_BUCKETS)))
