"""Admission and expulsion on real daemons (``twistd clsd``, mutual TLS, 127.0.0.x).

alpha owns cluster A, beta stands by, witness votes; every node runs with
``[membership] allow = ["alpha", "beta", "witness", "delta"]``, the cluster's
revocation list ``[tls] crl`` (empty at first) and an SSH admin listener.

- delta, a spare with a certificate from the cluster CA, joins; mallory, also
  CA-signed but outside ``allow``, never gets in. Then the operator revokes
  delta (``clsd-certs revoke``) and runs ``reload`` on the three members over
  SSH: each closes its connections to delta at once, declares it gone (left)
  and refuses it when it dials again.
- Revoking the owner alpha: its own reload refuses the list, the others expel
  it, and A moves to beta under a new epoch.
- Narrowing ``allow`` and reloading expels delta by name.

The checker proves A never ran twice.
"""

import os
import subprocess
import sys
import time
import urllib.request

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import keys
from twisted.trial import unittest

from clsd.certs import store
from rig.cluster import ClusterRig, Layout
from rig.failover import last_states, log_offset
from rig.faults.cleanup import Cleanups
from rig.launcher import Launcher, free_port
from clsd.polling import wait_for
from tests.support.metrics_scrape import parse_samples

MEMBERS = ("alpha", "beta", "witness")
ALLOW = ["alpha", "beta", "witness", "delta"]
#: Bounds for a loaded shared machine; on a quiet one each takes well under a second.
JOIN_BOUND = 60.0
EXPEL_BOUND = 10.0


class AdmissionReal(unittest.TestCase):
    timeout = 240

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        layout = Layout(nodes=MEMBERS, voters=MEMBERS,
                        clusters={"A": {"alpha": 100, "beta": 50}},
                        spares=("delta", "mallory"))
        self.cluster_rig = rig = ClusterRig(layout)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key = ed25519.Ed25519PrivateKey.generate()
        self.key_path = os.path.join(directory, "admin.key")
        with open(self.key_path, "wb") as f:
            f.write(keys.Key(key).toString("openssh"))
        os.chmod(self.key_path, 0o600)
        authorized = os.path.join(directory, "admin_keys")
        with open(authorized, "wb") as f:
            f.write(keys.Key(key).public().toString("openssh") + b" operator@test\n")
        self.admin_ports, self.metrics_ports = {}, {}
        self.allow = list(ALLOW)

        def admission_part(node, launcher):
            crl = os.path.join(rig.ca_dir(launcher), store.CRL_FILE)
            if not os.path.exists(crl):
                rig.certificates(launcher, node.name)  # makes the CA first
                store.issue_crl(rig.ca_dir(launcher))
            address = launcher.address(node.name)
            if node.name not in self.admin_ports:
                self.admin_ports[node.name] = free_port(address)
                self.metrics_ports[node.name] = free_port(address)
            # mallory's own file trusts the CA completely (it could not start
            # with a list that leaves itself out).
            allow = {"allow": self.allow} if node.name != "mallory" else {}
            return {"tls": {"crl": crl}, "membership": allow,
                    "admin": {"ssh": f"{address}:{self.admin_ports[node.name]}",
                              "authorized_keys": authorized},
                    "metrics": {"listen": f"{address}:{self.metrics_ports[node.name]}"}}

        template = rig.template().with_part(admission_part)
        self.launcher = Launcher(directory, list(MEMBERS), template=template,
                                 cleanups=self.cleanups, spares=layout.spares)
        self.addCleanup(self.launcher.teardown)

    def admin(self, node, command):
        address = f"{self.launcher.address(node)}:{self.admin_ports[node]}"
        result = subprocess.run(
            [sys.executable, "-m", "clsd.admin.client", address, self.key_path, command],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, f"{command} on {node}: {result.stderr}")
        return result.stdout

    def counted(self, node, kind, reason):
        """C{clsd_peer_connections_KIND_total{reason=REASON}} scraped from C{node}."""
        url = f"http://{self.launcher.address(node)}:{self.metrics_ports[node]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            samples, _ = parse_samples(response.read().decode())
        return sum(value for (name, labels), value in samples.items()
                   if name == f"clsd_peer_connections_{kind}_total"
                   and dict(labels).get("reason") == reason)

    def states(self, observer):
        return last_states(self.launcher, observer, 0)

    def all_see(self, who, state, observers=MEMBERS + ("delta",)):
        return all(self.states(o).get(who) == state for o in observers if o != who)

    def test_join_then_revoke_expels_everywhere_and_mallory_never_gets_in(self):
        launcher = self.launcher
        launcher.start_all()
        launcher.wait_running(cluster="A", timeout=JOIN_BOUND)
        launcher.start("delta")
        wait_for(lambda: all(self.all_see(n, "alive") for n in MEMBERS + ("delta",)),
                 JOIN_BOUND, what="the four nodes see each other alive")

        # mallory: CA-signed, dials every member (join = the three), is refused by each.
        launcher.start("mallory")
        wait_for(lambda: all(self.counted(n, "rejected", "not-allowed") >= 1 for n in MEMBERS),
                 JOIN_BOUND, what="every member to refuse mallory")
        self.assertIn("refused by the peer: peer-closed", launcher.log_text("mallory"))

        # Revoke delta and reload the three members.
        added, _, _ = store.revoke(self.cluster_rig.ca_dir(launcher), "delta")
        self.assertEqual(len(added), 1)
        offsets = {n: log_offset(launcher, n) for n in MEMBERS + ("delta",)}
        took = {}
        for node in MEMBERS:
            started = time.monotonic()
            out = self.admin(node, "reload")
            took[node] = time.monotonic() - started
            self.assertIn("expelled delta", out)
            # Closed by the time reload answers: the log says so already.
            wait_for(lambda: "peer delta disconnected: tls-revoked"
                     in launcher.log_text(node)[offsets[node]:],
                     EXPEL_BOUND, what=f"{node} to drop delta")
        print(f"\nreload with expulsion took {', '.join(f'{n} {t:.2f} s' for n, t in took.items())}")
        wait_for(lambda: self.all_see("delta", "left", MEMBERS), EXPEL_BOUND,
                 what="delta declared gone on every member")
        self.assertIn("member delta is left: expelled on alpha: the certificate of 'delta'",
                      launcher.log_text("alpha")[offsets["alpha"]:])
        for node in MEMBERS:
            self.assertEqual(self.counted(node, "dropped", "tls-revoked"), 1, node)

        # delta keeps dialling (it still runs) and is refused every time; it
        # stays gone, and nobody sees mallory.
        wait_for(lambda: sum(self.counted(n, "rejected", "tls-revoked") for n in MEMBERS) >= 1,
                 JOIN_BOUND, what="delta to dial again and be refused")
        time.sleep(2 * self.cluster_rig.timing.lease_seconds)
        for node in MEMBERS:
            self.assertEqual(self.states(node).get("delta"), "left", node)
            self.assertNotIn("mallory", self.states(node), node)
            self.assertEqual(
                [n for n in MEMBERS if n != node and self.states(node).get(n) != "alive"], [])
        self.assertIn("tls-revoked", launcher.log_text("delta")[offsets["delta"]:])
        self.assertEqual([i.node for i in launcher.running_instances(cluster="A")], ["alpha"])
        report = launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])

    def test_revoking_the_owner_moves_its_cluster_without_overlap(self):
        """alpha owns A and votes; beta and witness reload it out; A moves to beta."""
        launcher = self.launcher
        launcher.start_all()
        first = launcher.wait_running("alpha", "A", timeout=JOIN_BOUND)
        wait_for(lambda: all(self.all_see(n, "alive", MEMBERS) for n in MEMBERS),
                 JOIN_BOUND, what="the three see each other alive")
        store.revoke(self.cluster_rig.ca_dir(launcher), "alpha")
        # alpha itself refuses the list that revokes it (it would isolate it):
        # its reload fails and changes nothing.
        address = f"{launcher.address('alpha')}:{self.admin_ports['alpha']}"
        refused = subprocess.run(
            [sys.executable, "-m", "clsd.admin.client", address, self.key_path, "reload"],
            capture_output=True, text=True, timeout=60)
        self.assertNotEqual(refused.returncode, 0)
        self.assertIn("revokes this node's own certificate", refused.stdout + refused.stderr)
        started = time.monotonic()
        for node in ("beta", "witness"):
            self.assertIn("expelled alpha", self.admin(node, "reload"))
        wait_for(lambda: self.all_see("alpha", "left", ("beta", "witness")), EXPEL_BOUND,
                 what="alpha declared gone on beta and witness")
        moved = launcher.wait_running("beta", "A", timeout=JOIN_BOUND)
        print(f"\nA running on beta {time.monotonic() - started:.1f} s after the reloads "
              f"(lease {self.cluster_rig.timing.lease_seconds:g} s)")
        self.assertGreater(moved.epoch, first.epoch)
        wait_for(lambda: not launcher.running_instances("alpha", "A"), JOIN_BOUND,
                 what="alpha to stop A (its lease cannot be renewed)")
        time.sleep(2 * self.cluster_rig.timing.lease_seconds)
        self.assertEqual([i.node for i in launcher.running_instances(cluster="A")], ["beta"])
        self.assertEqual(self.states("beta").get("alpha"), "left")
        report = launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])

    def test_narrowing_allow_expels_by_name(self):
        """The members' allow loses delta; a reload on each expels it (not-allowed)."""
        launcher = self.launcher
        launcher.start_all()
        launcher.start("delta")
        wait_for(lambda: all(self.all_see(n, "alive") for n in MEMBERS + ("delta",)),
                 JOIN_BOUND, what="the four nodes see each other alive")
        self.allow = [name for name in ALLOW if name != "delta"]
        for node in MEMBERS:
            launcher.write_config(node)
            self.assertIn("~membership.allow", self.admin(node, "reload"))
        wait_for(lambda: self.all_see("delta", "left", MEMBERS), EXPEL_BOUND,
                 what="delta declared gone on every member")
        for node in MEMBERS:
            self.assertEqual(self.counted(node, "dropped", "not-allowed"), 1, node)
        wait_for(lambda: sum(self.counted(n, "rejected", "not-allowed") for n in MEMBERS) >= 1,
                 JOIN_BOUND, what="delta to dial again and be refused")
        for node in MEMBERS:
            self.assertEqual(self.states(node).get("delta"), "left", node)
