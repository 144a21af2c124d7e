"""Forged membership claims from a hostile insider, against 3 real daemons (issue 16, attack 4).

Mallory holds a certificate from the cluster's CA but is in no
configuration (L{rig.hostile}). It dials beta and the witness in
turn (learning alpha's record by anti-entropy, without joining) and, a
dozen times in about 10 s, gossips what made them
declare alpha dead before: reports of alpha naming beta and the witness as
observers (unsigned, and signed with mallory's own key), and alpha's death
"reported unreachable by witness, beta". Alpha must never be declared dead
by anyone (its members view and the log's member lines), the connections
that carried a forged report must be closed as ``forged`` and counted in
``clsd_peer_forged_total{peer="mallory"}``, the refusals counted in
``clsd_membership_refused_total``, and cluster A must stay on alpha with the
dual-active checker finding nothing.
"""

import time

from twisted.trial import unittest

from clsd.certs import store
from clsd.certs.identity import NodeIdentity
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import Report, record_statement
from clsd.membership.core.notary import X509Notary
from rig.failover import last_states
from rig.hostile import spare_address
from clsd.polling import wait_for
from tests.support import mallory_rig

#: A killed node is declared dead by every other node within this (crash
#: detection is link_down_grace plus gossip, about 1.5 s; a loaded machine).
DEATH_BOUND = 15.0

#: Rounds of forgeries, and the time between them (issue 16: 12 in 10 s).
ROUNDS = 12
BETWEEN = 0.8


class MalloryRig(mallory_rig.MalloryRig):
    """Three real daemons (alpha holds A, beta stands by, a witness votes) and mallory."""

    def alpha_deaths(self, offsets):
        """Every line since C{offsets} in which beta or the witness declared alpha dead."""
        found = []
        for observer in ("beta", "witness"):
            text = self.launcher.log_text(observer)[offsets[observer]:]
            found += [f"{observer}: {line}" for line in text.splitlines()
                      if "member alpha is dead" in line or "member alpha is left" in line]
        return found

    # -- mallory's tools ------------------------------------------------------------------

    def dial(self, node):
        """A connection of mallory's to C{node}; alpha's record as C{node} sent it.

        Mallory does not join (on the rings it would be one more observer of
        alpha, and two forged reporters would no longer be all of them): an
        anti-entropy digest of an empty list brings the daemon's records.
        """
        connection = self.mallory.connect(self.peer(node))
        connection.send("m.sync-digest", buckets=[0] * 64, round=0)
        records = connection.wait_for("m.sync-records", lambda m: any(
            r.get("n") == "alpha" for r in m.get("records", ())))
        alpha = next(r for r in records["records"] if r["n"] == "alpha")
        return connection, alpha

    def mallory_notary(self):
        cert = store.load_certificate(self.mallory.cert)
        key = store.load_private_key(self.mallory.key)
        ca_cert, _ = store.ca_paths(self.rig.ca_dir(self.launcher))
        ca = store.load_certificates(ca_cert)
        return X509Notary(NodeIdentity("mallory", key, cert, tuple(ca)))



class ForgedDeathTests(MalloryRig, unittest.TestCase):
    def test_forged_reports_and_deaths_never_kill_alpha(self):
        offsets = {name: len(self.launcher.log_text(name)) for name in self.nodes}
        owners = sorted((i.node, i.epoch) for i in self.launcher.running_instances(cluster="A"))
        notary = self.mallory_notary()
        closed = []
        for round_ in range(ROUNDS):
            target = ("beta", "witness")[round_ % 2]
            connection, alpha = self.dial(target)
            g, i = alpha["g"], alpha["i"]
            # A death naming both observers, for alpha's current life and the next
            # few incarnations (a refutation raises it): a claim, not evidence.
            # (With alpha's meta as it reads: a death of another meta is not
            # of the life held, and not even a suspicion.)
            deaths = [{"k": "m", "n": "alpha", "a": alpha["a"], "g": g, "i": i + step,
                       "s": "dead", "by": ["witness", "beta"],
                       **({"d": alpha["d"]} if "d" in alpha else {})} for step in range(3)]
            connection.send("m.gossip", updates=deaths)
            # Reports naming the observers: unsigned, then signed by mallory itself.
            observer = ("witness", "beta")[round_ % 2]
            forged = Report("alpha", g, i, observer)
            if round_ % 4 >= 2:
                signature, certificate = notary.sign(forged.statement)
                forged = Report("alpha", g, i, observer, signature, certificate)
            connection.send("m.gossip", updates=[forged.to_wire()])
            closed.append((target, connection.wait_closed()))
            time.sleep(BETWEEN)

        self.assertEqual(closed, [(("beta", "witness")[r % 2], "forged") for r in range(ROUNDS)])
        for node in ("beta", "witness"):
            self.assertGreaterEqual(
                self.counter(node, "clsd_peer_forged_total", peer="mallory"), ROUNDS // 2, node)
            self.assertGreaterEqual(
                self.counter(node, "clsd_membership_refused_total", reason="report-proof"),
                ROUNDS // 2, node)
        # Give a wrongly believed death time to happen (the slow path's minimum
        # is 10 s), then: alpha was never declared dead, and is alive everywhere.
        time.sleep(12)
        self.assertEqual(self.alpha_deaths(offsets), [])
        # The forged deaths did arrive (as suspicions, which alpha refuted).
        for observer in ("beta", "witness"):
            self.assertIn("member alpha is suspect",
                          self.launcher.log_text(observer)[offsets[observer]:], observer)
        for observer in ("beta", "witness"):
            self.assertEqual(last_states(self.launcher, observer, 0).get("alpha"), "alive",
                             observer)
        self.assertEqual(
            sorted((i.node, i.epoch) for i in self.launcher.running_instances(cluster="A")),
            owners)
        report = self.launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])
        self.assertEqual(self.launcher.log_problems(), [])


class ForgedLifeTests(MalloryRig, unittest.TestCase):
    """Relayed alive records are believed only with their member's signature.

    Mallory relays an invented newer life of alpha at an address where
    nothing listens (its observers would report it and declare alpha dead
    while it runs), and, after beta is killed, beta's record with ever higher
    incarnations (to mask its death): unsigned, and with a signature of its
    own under the real member's certificate fingerprint (forged).
    """

    def record(self, member, signature=None, fingerprint=None):
        wire = {"k": "m", "n": member.name, "a": member.address, "g": member.generation,
                "i": member.incarnation, "s": member.state.value}
        if signature is not None:
            wire["p"], wire["f"] = signature, fingerprint
        return wire

    def forge(self, target, member, fingerprint, notary):
        """Send C{member} unsigned (not believed: the connection stays open), then
        signed by mallory under C{fingerprint} (closed as forged)."""
        connection, _ = self.dial(target)
        connection.send("m.gossip", updates=[self.record(member)])
        # Lines are handled in order: an answer to a digest sent after it shows
        # that the unsigned record was handled and the connection kept.
        connection.send("m.sync-digest", buckets=[0] * 64, round=0)
        wait_for(lambda: len(connection.of_type("m.sync-records")) >= 2 or connection.ended,
                 10, what="the daemon's answer to a second digest")
        self.assertIsNone(connection.ended, "an unsigned record is not forged, only not believed")
        signature = notary.sign(record_statement(member))[0]
        connection.send("m.gossip", updates=[self.record(member, signature, fingerprint)])
        return connection.wait_closed()

    def test_forged_lives_neither_kill_alpha_nor_mask_a_death(self):
        offsets = {name: len(self.launcher.log_text(name)) for name in self.nodes}
        notary = self.mallory_notary()
        nowhere = spare_address(self.launcher, self.layout, offset=3)
        closed = []
        for target in ("beta", "witness"):
            first, alpha = self.dial(target)
            first.close()
            self.assertIn("f", alpha, "alive records travel with their signature")
            phantom = Member("alpha", f"{nowhere}:7400", alpha["g"] + 1000, 0, State.ALIVE)
            closed.append(self.forge(target, phantom, alpha["f"], notary))
        self.assertEqual(closed, ["forged", "forged"])

        first, _ = self.dial("alpha")
        first.close()
        beta = next(r for m in first.of_type("m.sync-records") for r in m["records"]
                    if r["n"] == "beta")
        killed_at = time.monotonic()
        self.launcher.kill("beta")
        closed = []
        deadline = killed_at + 6.0
        step = 1
        while time.monotonic() < deadline:
            for target in ("alpha", "witness"):
                back = Member("beta", beta["a"], beta["g"], beta["i"] + step, State.ALIVE)
                closed.append(self.forge(target, back, beta["f"], notary))
            step += 1
        self.assertEqual(set(closed), {"forged"})

        def declared_dead():
            return all("member beta is dead" in self.launcher.log_text(observer)[
                offsets[observer]:] for observer in ("alpha", "witness"))

        wait_for(declared_dead, timeout=max(0.1, killed_at + DEATH_BOUND - time.monotonic()),
                 what=f"alpha and the witness to declare beta dead within {DEATH_BOUND} s")
        # and it stays dead: no forged incarnation brought it back
        for observer in ("alpha", "witness"):
            text = self.launcher.log_text(observer)[offsets[observer]:]
            self.assertNotIn("member beta is alive", text, observer)
            self.assertEqual(last_states(self.launcher, observer, 0).get("beta"), "dead",
                             observer)
        # Alpha's invented life never took: nobody declared alpha dead.
        time.sleep(6)
        for observer in ("witness",):
            text = self.launcher.log_text(observer)[offsets[observer]:]
            self.assertNotIn("member alpha is dead", text)
            self.assertNotIn("member alpha is suspect", text)
            self.assertEqual(last_states(self.launcher, observer, 0).get("alpha"), "alive")
        for node in ("alpha", "witness"):
            self.assertGreaterEqual(
                self.counter(node, "clsd_peer_forged_total", peer="mallory"), 2, node)
            self.assertGreaterEqual(
                self.counter(node, "clsd_membership_refused_total", reason="life-proof"), 2, node)
            self.assertGreaterEqual(
                self.counter(node, "clsd_membership_refused_total", reason="life-unproven"), 2,
                node)
        self.assertEqual(self.launcher.log_problems(), [])
