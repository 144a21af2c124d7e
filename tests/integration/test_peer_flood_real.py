"""A connection flood without a certificate against the owner of a real 3-node cluster.

Issue 16, point 6: thousands of plain TCP connections to the owner's peer
port, held and then closed at once, made the owner miss its renewal (the
cluster moved), took memory that was never returned, and logged every
connection. Here 3,000 connections from five loopback addresses are held
for 8 s against ``[peer] max_pending = 100`` (32 per address: both caps are hit) and
closed at once, with the dual-active checker on. The owner must keep the
lease (same instance, same epoch, renewals never late by a lease), no
member may change state, the refusals must be counted by cap, the log must
grow by a few summary lines, and the resident size must come back.
"""

import re
import time

from twisted.trial import unittest

from rig.failover import MEMBER_STATE
from rig.faults.cleanup import Cleanups
from rig.flood import Flood, RenewalWatch, resident_mb
from rig.metered import MeteredCluster
from clsd.polling import wait_for

CONNECTIONS = 3_000
HOLD = 8.0
MAX_PENDING = 100
#: The owner's log may grow by this many lines over the whole flood: the
#: summaries (one per 10 s), the trim, and ordinary chatter.
LOG_LINES = 25


class PeerFloodTests(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.cluster = MeteredCluster(self.mktemp(), cleanups=self.cleanups,
                                      extra={"peer": {"max_pending": MAX_PENDING}})
        self.cluster_rig, self.launcher = self.cluster.rig, self.cluster.launcher
        self.nodes = self.cluster.nodes
        self.addCleanup(self.launcher.teardown)
        self.sources = self.cluster.spare_addresses(5)
        self.cluster.start()

    def rejected(self, node):
        return self.cluster.by_label(node, "clsd_peer_connections_rejected_total", "reason")

    def state(self):
        running = [(i.cluster, i.node, i.epoch, i.instance)
                   for i in self.launcher.running_instances()]
        pids = {name: self.launcher.node(name).pid for name in self.nodes}
        return sorted(running), pids

    def test_the_owner_keeps_its_lease_and_its_memory(self):
        owner = "alpha"
        pid = self.launcher.node(owner).pid
        lease = self.cluster_rig.timing.lease_seconds
        time.sleep(2.0)  # let start-up allocations settle
        rss_before = resident_mb(pid)
        log_before = len(self.launcher.log_text(owner).splitlines())
        offsets = {name: len(self.launcher.log_text(name)) for name in self.nodes}
        state = self.state()
        watch = RenewalWatch(self.cluster.metrics_url(owner), "A").start()
        self.addCleanup(watch.stop)

        flood = Flood(self.cluster_rig.peer_address(self.launcher, owner), self.sources)
        self.addCleanup(flood.close)
        started = time.monotonic()
        # A third from one address (its cap), the rest from all five (the total cap).
        heavy = Flood(flood.target, self.sources[:1])
        self.addCleanup(heavy.close)
        heavy.open(CONNECTIONS // 3)
        flood.open(CONNECTIONS - CONNECTIONS // 3)
        held_until = time.monotonic() + HOLD
        rss_during = resident_mb(pid)
        pending = self.cluster.scrape(owner)[("clsd_peer_pending_handshakes", ())]
        while time.monotonic() < held_until:
            rss_during = max(rss_during, resident_mb(pid))
            time.sleep(0.2)
        flood.close()
        heavy.close()
        ended = time.monotonic()
        # The summary of the last interval, a quiet interval, then the trim.
        wait_for(lambda: "peer flood over" in self.launcher.log_text(owner)[offsets[owner]:],
                 timeout=40, what="the owner to see the flood over")
        time.sleep(1.0)
        rss_after = resident_mb(pid)
        watch.stop()
        renewals = watch.window(started, ended)
        print(f"\nflood of {CONNECTIONS}: pending {pending}, RSS {rss_before:.1f} -> "
              f"{rss_during:.1f} -> {rss_after:.1f} MB; renewals {renewals}")

        # The caps held and counted, before TLS.
        self.assertLessEqual(pending, MAX_PENDING)
        rejected = self.rejected(owner)
        self.assertGreater(rejected.get("pending-cap-address", 0), CONNECTIONS / 6, rejected)
        self.assertGreater(rejected.get("pending-cap", 0), CONNECTIONS / 3, rejected)
        # The lease: same instance and epoch everywhere, renewals kept coming.
        self.assertEqual(self.state(), state)
        self.assertEqual(len(renewals["epochs"]), 1, renewals)
        # Renewed every lease/3: never a whole renewal period late (sampling slack 0.25 s).
        self.assertLess(renewals["longest_gap_s"], 2 * lease / 3 + 0.25, renewals)
        for name in self.nodes:
            changes = MEMBER_STATE.findall(self.launcher.log_text(name)[offsets[name]:])
            self.assertEqual(changes, [], f"{name} saw members change during the flood")
        report = self.launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertEqual(self.launcher.log_problems(), [])
        # The log: a few summary lines, not one per connection.
        # (The health checks' HTTP client logs two lines per check, flood or not.)
        added = [line for line in self.launcher.log_text(owner).splitlines()[log_before:]
                 if "HTTP11ClientFactory" not in line]
        self.assertLessEqual(len(added), LOG_LINES, "\n".join(added))
        self.assertGreaterEqual(len([line for line in added if "[peer.refused]" in line]), 2)
        self.assertEqual([line for line in added if re.search(r"closed: tls-incomplete", line)],
                         [])
        # Memory: back near where it was.
        self.assertLess(rss_after, rss_before * 1.10 + 2.0,
                        f"RSS {rss_before:.1f} -> {rss_during:.1f} -> {rss_after:.1f} MB")

