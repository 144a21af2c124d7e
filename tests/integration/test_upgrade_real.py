"""A rolling upgrade on real daemons, one node at a time, as doc/operations.md says.

Three ``twistd clsd`` daemons in the mutual-standby layout (alpha runs A and stands by for
B, beta the reverse, a witness votes), mutual TLS on their own 127.0.0.x, protected test
services that record every start and stop, and an SSH admin listener on each node. The
operator's procedure ("Upgrade one node at a time") is run over SSH for each node in turn:
``standby``, wait until ``clusters`` shows nothing owned by it, stop the daemon, start the
new version, wait until ``members`` shows it alive on the new version and ``status`` on it
has quorum, wait one lease, ``unstandby``.

The cluster starts on the previous release, built from git history (the commit of its row in
doc/releases.md, into a virtualenv of its own: L{rig.releases}). While this tree is that
release itself (a single row), the new release is this code with the protocol range of the
next one (``PROTOCOL_MAX`` to ``PROTOCOL_MAX + 1``, the test hook
L{clsd.version.PROTOCOL_RANGE_ENV}): it speaks the old release's newest protocol, as every
release must. Then one node is downgraded to the old release and upgraded again.

Checked at every step: the cluster's effective protocol (``status``) and who holds it back;
each member's version (``members``); A and B never run on two nodes at once (the checker
over every record), each cluster is never down longer than one failover bound
(L{rig.faults.availability.bound_for}), and an HTTP poller finds each cluster answering
on some node throughout. At the end every node speaks the new protocol and the cluster
uses it.
"""

import json
import os
import subprocess
import sys
import threading
import time

from twisted.trial import unittest

import attrs

from clsd import version
from clsd.polling import wait_for
from rig.cluster import DEFAULT_TIMING, ClusterRig, mutual_standby
from rig.failover import FailoverRig, http_identity
from rig.faults.availability import bound_for
from rig.faults.cleanup import Cleanups
from rig import releases
from rig.launcher import Launcher, free_port
from tests.support.admin_rig import new_ed25519_key, write_key_file, write_private_key

NODES = ("alpha", "beta", "witness")
#: Generous bounds for a loaded shared machine.
START_BOUND = 60.0
STEP_BOUND = 60.0
#: The HTTP poller's period.
POLL_INTERVAL = 0.1

CURRENT = (version.PROTOCOL_MIN, version.PROTOCOL_MAX)
NEXT = (version.PROTOCOL_MAX, version.PROTOCOL_MAX + 1)


@attrs.frozen
class Runnable:
    """A release a node can run: its version, protocol range and how to start it."""

    version: str
    protocols: tuple[int, int]
    env: dict = attrs.field(factory=dict)
    twistd: list | None = None  # None: this tree's

    @property
    def protocol_text(self):
        low, high = self.protocols
        return str(low) if low == high else f"{low}-{high}"


def protocol_range(text):
    low, _, high = text.partition("-")
    return int(low), int(high or low)


def new_release(old):
    """This tree: with the next protocol range while it is the old release itself."""
    if old.version != version.VERSION:
        return Runnable(version.VERSION, CURRENT)
    return Runnable(f"{version.VERSION}+protocol{NEXT[0]}.{NEXT[1]}", NEXT,
                    {version.PROTOCOL_RANGE_ENV: f"{NEXT[0]}-{NEXT[1]}"})


class AvailabilityPoller:
    """Asks each cluster's HTTP service on every candidate node, all the time, from a thread.

    Records the stretches where no node answered for a cluster: what a client sees.
    """

    def __init__(self, rig, clusters):
        self.rig = rig
        self.clusters = clusters
        self.outages = {cluster: [] for cluster in clusters}
        self._down_since = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(10)
        now = time.monotonic()
        for cluster, since in self._down_since.items():
            self.outages[cluster].append((since, now))
        self._down_since = {}

    def _run(self):
        while not self._stop.is_set():
            for cluster in self.clusters:
                now = time.monotonic()
                up = any(
                    (identity := http_identity(self.rig.url(node, cluster))) is not None
                    and identity.get("cluster") == cluster
                    for node in self.rig.layout.candidates(cluster))
                if up and cluster in self._down_since:
                    self.outages[cluster].append((self._down_since.pop(cluster), now))
                elif not up and cluster not in self._down_since:
                    self._down_since[cluster] = now
            self._stop.wait(POLL_INTERVAL)

    def longest(self, cluster):
        return max((end - start for start, end in self.outages[cluster]), default=0.0)


class RollingUpgradeTests(unittest.TestCase):
    timeout = 900

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.layout = mutual_standby()
        self.cluster_rig = cluster_rig = ClusterRig(self.layout, DEFAULT_TIMING)
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        key = new_ed25519_key()
        self.key_path = write_private_key(os.path.join(directory, "admin.key"), key)
        authorized = write_key_file(os.path.join(directory, "admin_keys"), key)
        self.admin_ports = {}

        def admin_part(node, launcher):
            address = launcher.address(node.name)
            if node.name not in self.admin_ports:
                self.admin_ports[node.name] = free_port(address)
            return {"admin": {"ssh": f"{address}:{self.admin_ports[node.name]}",
                              "authorized_keys": authorized}}

        self.launcher = Launcher(directory, list(NODES),
                                 template=cluster_rig.template().with_part(admin_part),
                                 cleanups=self.cleanups)
        self.addCleanup(self.launcher.teardown)
        self.rig = FailoverRig(self.launcher, cluster_rig)
        self.bound = bound_for(DEFAULT_TIMING)
        self.lease = DEFAULT_TIMING.lease_seconds
        row = releases.previous(version.VERSION, releases.rows())
        twistd = releases.build(row, os.path.join(directory, "previous-release"))
        self.old = Runnable(row.version, protocol_range(row.protocols), twistd=twistd)
        self.new = new_release(self.old)
        #: The release each node runs now.
        self.release = dict.fromkeys(NODES, self.old)

    # -- the operator's tools ---------------------------------------------------------

    def admin(self, node, command):
        address = f"{self.launcher.address(node)}:{self.admin_ports[node]}"
        result = subprocess.run(
            [sys.executable, "-m", "clsd.admin.client", address, self.key_path, command],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(result.returncode, 0, f"{command} on {node}: {result.stderr}")
        return result.stdout

    def admin_json(self, node, command):
        return json.loads(self.admin(node, f"{command} --json"))

    def owned_by(self, node):
        """The clusters ``clusters`` on C{node} shows it owning."""
        return sorted(c["id"] for c in self.admin_json(node, "clusters")["clusters"]
                      if node in c["owners"])

    def members(self, observer):
        return {m["name"]: m for m in self.admin_json(observer, "members")["members"]}

    def up_to_date(self, node):
        """Every other running node sees C{node} alive with the version it runs now."""
        expected = self.release[node].version
        for observer in NODES:
            if observer == node:
                continue
            member = self.members(observer).get(node)
            if member is None or member["state"] != "alive" or member["version"] != expected:
                return False
        return self.admin_json(node, "status")["quorum"]["have_quorum"]

    def no_dual_active(self):
        for cluster in self.layout.clusters:
            self.rig.owner(cluster)  # raises DualActive

    # -- the procedure of doc/operations.md ---------------------------------------------

    def upgrade(self, node, release):
        """doc/operations.md, "Upgrade one node at a time", for C{node}: to C{release}."""
        step = f"{node} to {release.version}"
        self.admin(node, f"standby {node}")
        wait_for(lambda: (self.no_dual_active(), self.owned_by(node) == [])[1], STEP_BOUND,
                 what=f"{step}: clusters to leave {node}")
        # Its clusters run elsewhere before it stops.
        for cluster in self.layout.clusters_of(node):
            self.launcher.wait_running(cluster=cluster, timeout=STEP_BOUND)
        self.launcher.stop(node)
        self.release[node] = release
        self.launcher.start(node, env=release.env, twistd=release.twistd)
        wait_for(lambda: self.up_to_date(node), STEP_BOUND,
                 what=f"{step}: every member to see it alive on its new version")
        # A restarted voter grants nothing for one lease period plus the drift margin.
        time.sleep(self.lease + 0.5)
        self.admin(node, f"unstandby {node}")
        self.no_dual_active()

    def assert_cluster_protocol(self, expected, held_back_by):
        for observer in NODES:
            protocol = self.admin_json(observer, "status")["protocol"]
            self.assertEqual(protocol, {"version": expected, "held_back_by": held_back_by},
                             observer)

    def wait_cluster_protocol(self, expected, held_back_by):
        def agreed():
            return all(self.admin_json(o, "status")["protocol"]
                       == {"version": expected, "held_back_by": held_back_by} for o in NODES)
        wait_for(agreed, STEP_BOUND, what=f"the cluster to speak protocol {expected}")

    # -- the test -----------------------------------------------------------------------

    def test_upgrade_one_node_at_a_time_then_downgrade_one(self):
        launcher, old, new = self.launcher, self.old, self.new
        raises = new.protocols[1] > old.protocols[1]  # the nodes left behind hold it back

        def held_back(nodes):
            return sorted(nodes) if raises else []

        for node in NODES:
            launcher.start(node, wait=False, twistd=old.twistd)
        for node in NODES:
            launcher.wait_started(node)
        try:
            self.assertEqual(self.rig.wait_owner("A", timeout=START_BOUND), "alpha")
            self.assertEqual(self.rig.wait_owner("B", timeout=START_BOUND), "beta")
            self.wait_cluster_protocol(old.protocols[1], [])
            self.assertEqual(self.members("alpha")["beta"]["version"], old.version)
            poller = AvailabilityPoller(self.rig, sorted(self.layout.clusters)).start()
            self.addCleanup(poller.stop)
            upgraded = []
            for node in NODES:
                self.upgrade(node, new)
                upgraded.append(node)
                behind = set(NODES) - set(upgraded)
                self.wait_cluster_protocol(new.protocols[1] if not behind else old.protocols[1],
                                           held_back(behind))
            # The reverse: beta goes back to the old release, then forward again.
            self.upgrade("beta", old)
            self.wait_cluster_protocol(old.protocols[1], held_back(["beta"]))
            members = self.members("alpha")
            self.assertEqual(members["beta"]["protocols"], list(old.protocols))
            self.assertEqual(members["witness"]["protocols"], list(new.protocols))
            self.upgrade("beta", new)
            self.wait_cluster_protocol(new.protocols[1], [])
            for cluster in self.layout.clusters:
                self.assertIsNotNone(self.rig.wait_owner(cluster, timeout=STEP_BOUND))
            poller.stop()
        except Exception:
            for name in NODES:
                print(f"--- {name}")
                print(launcher.log_tail(name, 60))
            raise
        self.assert_cluster_protocol(new.protocols[1], [])
        for node in NODES:
            self.assertIn(f"{new.version} (protocol {new.protocol_text})",
                          self.admin(node, "members"))
        report = launcher.check()
        self.assertEqual(report.overlaps, ())
        self.assertEqual(report.stale_actions, ())
        self.assertEqual(report.epoch_reuses, ())
        downs = {cluster: max((w.duration for w in report.unavailability
                               if w.cluster == cluster), default=0.0)
                 for cluster in self.layout.clusters}
        seen = {cluster: poller.longest(cluster) for cluster in self.layout.clusters}
        print(f"\nrolling upgrade of 3 nodes from {old.version} (built from history) to "
              f"{new.version}, a downgrade and an upgrade again: longest "
              "outage per cluster: " + ", ".join(
                  f"{c} {downs[c]:.2f} s (records) / {seen[c]:.2f} s (HTTP)"
                  for c in sorted(downs)) + f"; failover bound {self.bound} s")
        for cluster in self.layout.clusters:
            self.assertLessEqual(downs[cluster], self.bound, cluster)
            self.assertLessEqual(seen[cluster], self.bound, cluster)
        self.assertEqual(launcher.log_problems(), [])
