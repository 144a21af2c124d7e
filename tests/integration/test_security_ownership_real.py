"""Lease and cluster messages from a hostile insider, against 3 real daemons (issue 16).

Mallory holds a certificate from the cluster's CA but is in no
configuration (L{rig.hostile}). Alpha holds cluster A, beta stands
by, the witness votes. Each attack must change nothing the dual-active
checker or the owner's epoch can see: no overlap, A still on alpha under the
same epoch (or moved only as planned), and where mallory forged a claim its
connection is closed as ``forged`` and counted in
``clsd_peer_forged_total{peer="mallory"}`` (scraped from ``[metrics]``).
"""

import time

from clsd.ownership.core.manager import stall_after
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.floor import read_floor
from rig.hostile import ownership_meta

from twisted.trial import unittest

from rig.failover import last_states
from rig.hostile import HostilePeer
from tests.support.mallory_rig import MalloryRig
from clsd.polling import wait_for


class OwnershipAttackTests(MalloryRig, unittest.TestCase):
    def owners(self):
        """(node, epoch) of every running instance of A."""
        return sorted((i.node, i.epoch) for i in self.launcher.running_instances(cluster="A"))

    def peer(self, node):
        return self.cluster.peer_address(node)

    def assert_safe(self):
        report = self.launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertEqual(self.launcher.log_problems(), [])

    # -- the fixture itself -------------------------------------------------------------

    def test_mallory_speaks_the_protocol(self):
        """The fixture gets through TLS and the hello, and the daemon answers its lines."""
        connection = self.mallory.connect(self.peer("witness"))
        self.assertEqual(connection.peer_hello["name"], "witness")
        connection.send("lease.prepare", resource="Z", ballot=[1, "mallory", 1])
        promise = connection.wait_for("lease.promise")
        self.assertEqual(promise["resource"], "Z")
        self.assertIsNone(connection.ended)

    def test_an_impersonator_with_a_stolen_certificate_gets_through_tls(self):
        """The second kind of the fixture: beta's certificate and key, from another address,
        with a generation older than the live beta's (what it then does is the peer
        layer's to refuse; here only that the fixture reaches the hello)."""
        thief = HostilePeer.impersonating(self.rig, self.launcher, "beta")
        self.addCleanup(thief.stop)
        connection = thief.connect(self.peer("witness"), generation=1)
        self.assertEqual(connection.peer_hello["name"], "witness")
        self.assertNotEqual(thief.address, self.launcher.address("beta"))

    # -- helpers --------------------------------------------------------------------------

    def connect_all(self, **kwargs):
        return {name: self.mallory.connect(self.peer(name), **kwargs) for name in self.nodes}

    def alpha_holds(self):
        """The (node, epoch) A runs under now; it must be alpha's."""
        owners = self.owners()
        self.assertEqual([node for node, _ in owners], ["alpha"], f"A runs on {owners}")
        return owners[0]

    def assert_forged(self, connection, node):
        self.assertEqual(connection.wait_closed(), "forged", f"{node} kept the connection")
        wait_for(lambda: self.forged(node) >= 1, timeout=10,
                 what=f"clsd_peer_forged_total{{peer=mallory}} on {node}")

    def join_as_member(self, registrations):
        """Mallory joins the membership through every node, publishing C{registrations}."""
        connections = self.connect_all()
        generation = time.time_ns()
        self.mallory.join(list(connections.values()), generation=generation,
                          meta=ownership_meta(registrations))

        def seen_alive():
            return all(last_states(self.launcher, name, 0).get("mallory") == "alive"
                       for name in self.nodes)
        wait_for(seen_alive, timeout=20, what="every node to see mallory alive")
        return connections

    def settle(self):
        """Wait two leases: a late effect of an attack shows by then."""
        time.sleep(2 * self.rig.timing.lease_seconds)

    # -- the attacks -------------------------------------------------------------------------

    def test_attack_1_forged_release_and_handover(self):
        """Mallory releases alpha's grant in alpha's name and hands A over to beta."""
        before = self.alpha_holds()
        connections = self.connect_all()
        for voter in ("witness", "beta", "alpha"):
            connections[voter].send("lease.release", resource="A",
                                    ballot=[2**40, "alpha", 12345])
        for voter in ("witness", "beta", "alpha"):
            self.assert_forged(connections[voter], voter)
        # One connection per peer: a new one only after beta closed the first.
        to_beta = self.mallory.connect(self.peer("beta"))
        to_beta.send("cluster.handover", resource="A", epoch=before[1])
        self.assertEqual(to_beta.wait_closed(), "forged")
        wait_for(lambda: self.forged("beta") >= 2, timeout=10, what="beta to count both")
        self.settle()
        self.assertEqual(self.alpha_holds(), before, "A moved or changed epoch")
        self.assert_safe()

    def test_attack_2_a_move_from_a_non_member_is_refused_and_logged(self):
        before = self.alpha_holds()
        connection = self.mallory.connect(self.peer("alpha"))
        connection.send("cluster.move", cluster="A", target="beta", by="mallory")
        wait_for(lambda: "move.refused" in self.launcher.log_text("alpha"), timeout=10,
                 what="alpha to log the refused move")
        line = next(l for l in self.launcher.log_text("alpha").splitlines()
                    if "move.refused" in l)
        self.assertIn("mallory", line)
        # A move naming another member as the asker is a forgery.
        connection.send("cluster.move", cluster="A", target="beta", by="beta")
        self.assert_forged(connection, "alpha")
        self.settle()
        self.assertEqual(self.alpha_holds(), before)
        self.assert_safe()

    def test_attack_2_a_member_that_never_runs_the_cluster_cannot_keep_it_unowned(self):
        """Mallory registers for A at priority 1,000,000, joins and asks for A: it is handed A
        (it is a member), never runs it, and is skipped after the stall bound."""
        self.alpha_holds()
        connections = self.join_as_member({"A": 1_000_000})
        connections["alpha"].send("cluster.move", cluster="A", target="mallory", by="mallory")
        wait_for(lambda: self.owners() == [], timeout=15, what="alpha to hand A over")
        handed = time.monotonic()
        timing = LeaseTiming(lease=self.rig.timing.lease_seconds)
        bound = stall_after(timing)
        self.launcher.wait_running(cluster="A", timeout=bound + 15)
        gap = time.monotonic() - handed
        owners = self.owners()
        self.assertEqual(len(owners), 1)
        self.assertIn(owners[0][0], ("alpha", "beta"))
        self.assertLess(gap, bound + 15)
        log = self.launcher.log_text("alpha")
        self.assertRegex(log, r"move\.asked.*mallory")
        self.assertIn("cluster.stalled", log + self.launcher.log_text("beta"))
        self.assert_safe()
        print(f"\n  A unowned for {gap:.1f} s after the handover to mallory "
              f"(stall bound {bound:.1f} s)")

    def test_attack_3_a_ballot_storm_costs_the_stormer_not_the_holder(self):
        """Prepares every 50 ms with rising counters, from a registered member, for 10 s."""
        before = self.alpha_holds()
        connections = self.join_as_member({"A": 1})
        counter = 10**6
        end = time.monotonic() + 10.0
        while time.monotonic() < end:
            for name in self.nodes:
                connections[name].send("lease.prepare", resource="A",
                                       ballot=[counter, "mallory", 1])
            counter += 1000
            time.sleep(0.05)
        self.settle()
        self.assertEqual(self.alpha_holds(), before, "the storm moved A or cost a tenure")
        reasons = {m.get("reason") for c in connections.values()
                   for m in c.of_type("lease.promise") if not m["ok"]}
        self.assertIn("rate-limited", reasons)
        for c in connections.values():
            self.assertIsNone(c.ended, "a storm is refused, not a forgery")
        self.assert_safe()

    def test_attack_5_huge_counters(self):
        before = self.alpha_holds()
        floor = read_floor(self.launcher.node("witness").spec.data_dir)
        for counter in (2**63 + 10, int("9" * 4300)):
            connection = self.mallory.connect(self.peer("witness"))
            connection.send_raw(('{"v": 1, "type": "lease.prepare", "resource": "A", '
                                 f'"ballot": [{counter}, "mallory", 1]}}\n').encode())
            self.assertNotEqual(connection.wait_closed(), "closed-by-us")
            self.assertIsNotNone(connection.bye, "closed with a bye saying why")
            self.assertIn("64-bit", connection.bye["detail"])
        # Within int64 but far above every promise: refused by a member too.
        connections = self.join_as_member({"A": 1})
        connections["witness"].send("lease.prepare", resource="A", ballot=[2**62, "mallory", 1])
        promise = connections["witness"].wait_for("lease.promise")
        self.assertEqual((promise["ok"], promise["reason"]), (False, "counter-jump"))
        self.settle()
        self.assertEqual(read_floor(self.launcher.node("witness").spec.data_dir), floor,
                         "the refused counter moved the epoch floor")
        self.assertEqual(self.alpha_holds(), before)
        self.assert_safe()
