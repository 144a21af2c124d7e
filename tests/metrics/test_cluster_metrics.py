"""A real 3-node cluster's /metrics: members, leases and peer traffic, scraped over HTTP.

In-process daemons on trial's reactor (tests/support/cluster_rig.py), mutual TLS on
their own 127.0.0.x; each serves metrics on 127.0.0.1 port 0.
"""

import os

from twisted.internet import defer, reactor, task
from twisted.trial import unittest
from twisted.web.client import Agent, readBody

from rig.recorder import LifelineCollector
from tests.support.cluster_rig import ClusterRig, poll, protected_service
from tests.test_daemon_metrics import samples
from clsd.admin.ownership_status import ownership_status

NAMES = ("alpha", "beta", "witness")


class ClusterMetricsTests(unittest.TestCase):
    timeout = 120

    @defer.inlineCallbacks
    def setUp(self):
        self.rig = rig = ClusterRig(self, NAMES, reactor=reactor)
        records = os.path.join(rig.base, "records")
        os.makedirs(records)
        collector = LifelineCollector(records).start()
        self.addCleanup(collector.stop)
        quorum = {"voters": list(NAMES), "lease": 2.0}
        for name in NAMES:
            extra = {"quorum": quorum, "metrics": {"listen": "127.0.0.1:0"}}
            if name != "witness":
                extra["service"] = [protected_service("system-a", records)]
                extra["cluster"] = [{"id": "A", "service": "system-a",
                                     "priority": 100 if name == "alpha" else 50}]
            daemon = rig.daemon(name, extra)
            daemon.startService()
            self.addCleanup(lambda d=daemon: d.stopService() if d.running else None)
        for name in NAMES:
            yield rig.daemons[name].ready

    @defer.inlineCallbacks
    def scrape(self, name):
        port = yield self.rig.daemons[name].metrics_service.when_listening()
        url = f"http://127.0.0.1:{port.getHost().port}/metrics".encode()
        response = yield Agent(reactor).request(b"GET", url)
        body = yield readBody(response)
        return body.decode()

    @defer.inlineCallbacks
    def test_members_leases_and_peer_traffic(self):
        yield poll(reactor, lambda: self.rig.all_see(NAMES, {n: "alive" for n in NAMES}),
                   30, "all three alive")
        owner = self.rig.daemons["alpha"].ownership

        def alpha_runs_a():
            return ownership_status(owner)["clusters"][0]["state"] == "running"
        yield poll(reactor, alpha_runs_a, 30, "alpha running A")

        text = yield self.scrape("alpha")
        members = samples(text, "clsd_members")
        self.assertEqual(members[(("state", "alive"),)], 3.0)  # alpha counts itself too
        self.assertEqual(members[(("state", "dead"),)], 0.0)
        self.assertEqual(samples(text, "clsd_lease_held")[(("resource", "A"),)], 1.0)
        epoch = samples(text, "clsd_lease_epoch")[(("resource", "A"),)]
        self.assertGreater(epoch, 0)
        messages = samples(text, "clsd_peer_messages_total")
        self.assertGreater(messages[(("direction", "in"),)], 0)
        self.assertGreater(messages[(("direction", "out"),)], 0)

        standby = samples((yield self.scrape("beta")), "clsd_lease_held")
        self.assertEqual(standby.get((("resource", "A"),), 0.0), 0.0)

    @defer.inlineCallbacks
    def test_renewal_latency_and_failovers(self):
        yield poll(reactor, lambda: self.rig.all_see(NAMES, {n: "alive" for n in NAMES}),
                   30, "all three alive")
        alpha, beta = self.rig.daemons["alpha"].ownership, self.rig.daemons["beta"].ownership

        def runs_a(ownership):
            return lambda: ownership_status(ownership)["clusters"][0]["state"] == "running"
        yield poll(reactor, runs_a(alpha), 30, "alpha running A")

        def renewed():
            return samples(text_of[0], "clsd_lease_renewal_seconds_count")
        text_of = [""]
        for _ in range(100):  # a renewal every lease/3: within a few seconds
            text_of[0] = yield self.scrape("alpha")
            if renewed().get((("resource", "A"),), 0) >= 2:
                break
            yield task.deferLater(reactor, 0.2, lambda: None)
        text = text_of[0]
        self.assertGreaterEqual(renewed()[(("resource", "A"),)], 2)
        total = samples(text, "clsd_lease_renewal_seconds_sum")[(("resource", "A"),)]
        self.assertGreater(total, 0.0)
        # On loopback a renewal round trip is far below the lease (2 s).
        inf = samples(text, "clsd_lease_renewal_seconds_bucket")
        within = inf[(("le", "0.5"), ("resource", "A"))]
        self.assertEqual(within, renewed()[(("resource", "A"),)])
        self.assertEqual(samples(text, "clsd_failovers_total"), {})

        alpha.move("A", "beta")
        yield poll(reactor, runs_a(beta), 30, "beta running A after the move")
        failovers = samples((yield self.scrape("beta")), "clsd_failovers_total")
        self.assertEqual(failovers, {(("planned", "true"), ("resource", "A")): 1.0})
