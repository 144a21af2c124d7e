"""The admin shell on a real three-node cluster: membership and ownership operations over SSH.

Three Daemons run in this process on trial's reactor, each on its own
127.0.0.x with mutual TLS, a shared [quorum] (all three vote) and cluster A
(a protected test service) placed on alpha (priority 100) or beta (50);
witness only votes.  Every operation goes through the in-process conch
client to the node's [admin] ssh on 127.0.0.1:0.  Service instances record
into a directory watched by a lifeline collector, and the checker proves
there was never an overlap.
"""

import os
import signal
import subprocess
import time

from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from rig import checker
from clsd.admin.client import connect
from rig.launcher import twistd_command
from rig.recorder import LifelineCollector, read_records
from tests.support.admin_rig import new_ed25519_key, write_key_file
from tests.support.cluster_rig import ClusterRig, json_of, poll, protected_service

LEASE = 4.0
JOIN_BOUND = 30.0
NAMES = ("alpha", "beta", "witness")


class ClusterAdminTests(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def setUp(self):
        self.rig = rig = ClusterRig(self, [*NAMES, "extra"], reactor=reactor)
        self.records = os.path.join(rig.base, "records")
        os.makedirs(self.records)
        self.collector = LifelineCollector(self.records).start()
        self.addCleanup(self.collector.stop)
        self.key = new_ed25519_key()
        keys = write_key_file(os.path.join(rig.base, "admin_keys"), self.key)
        self.conns = {}
        quorum = {"voters": list(NAMES), "lease": LEASE, "drift_margin": 0.1}
        for name in NAMES:
            extra = {"quorum": quorum,
                     "admin": {"ssh": "127.0.0.1:0", "authorized_keys": keys}}
            if name != "witness":
                extra["service"] = [protected_service("system-a", self.records)]
                extra["cluster"] = [{"id": "A", "service": "system-a",
                                     "priority": 100 if name == "alpha" else 50}]
            daemon = rig.daemon(name, extra)
            daemon.startService()
            self.addCleanup(self._stop, daemon)
        for name in NAMES:
            yield rig.daemons[name].ready
            port = yield rig.daemons[name].admin.ssh.when_listening()
            conn = yield connect(reactor, ("127.0.0.1", port.getHost().port), key=self.key)
            self.addCleanup(conn.close)
            self.conns[name] = conn
        yield poll(reactor, lambda: rig.all_see(NAMES, {n: "alive" for n in NAMES}),
                   JOIN_BOUND, "all three to see each other alive")

    def _stop(self, daemon):
        if daemon.running:
            return daemon.stopService()

    @defer.inlineCallbacks
    def admin(self, node, command, *, ok=True):
        """Run C{command} on C{node}; with C{ok}, assert it succeeded."""
        result = yield self.conns[node].run(command)
        if ok:
            self.assertEqual(result.status, 0, result)
        return result

    @defer.inlineCallbacks
    def json(self, node, command):
        result = yield self.admin(node, command + " --json")
        return json_of(result)

    @defer.inlineCallbacks
    def fails(self, node, command, reason):
        """C{command} fails on C{node} with a one-line reason containing C{reason}."""
        result = yield self.admin(node, command, ok=False)
        self.assertNotEqual(result.status, 0, f"{command!r} succeeded: {result}")
        lines = result.stderr.decode().strip().splitlines()
        self.assertEqual(len(lines), 1, f"{command!r}: {lines}")
        self.assertIn(reason, lines[0], command)
        return lines[0]

    @defer.inlineCallbacks
    def cluster_a(self, node):
        data = yield self.json(node, "clusters")
        [cluster] = data["clusters"]
        return cluster

    def running(self, node):
        """The running instance of A on C{node} (lifeline connected), or None."""
        watched = self.collector.watched()
        for interval in checker.intervals(read_records(self.records).records):
            if (interval.node == node and interval.cluster == "A" and interval.end is None
                    and interval.instance in watched):
                return interval
        return None

    def interval(self, instance):
        for interval in checker.intervals(read_records(self.records).records):
            if interval.instance == instance:
                return interval
        raise AssertionError(f"no records of instance {instance}")

    def assert_no_overlap(self):
        report = checker.check(read_records(self.records), horizon=time.monotonic())
        self.assertEqual(report.overlaps, ())
        self.assertEqual(report.epoch_reuses, ())
        self.assertEqual(report.stale_actions, ())

    @defer.inlineCallbacks
    def wait_owner(self, node, what):
        """Until A runs on C{node} and the admin view of the other node of A says so.

        (witness has no [[cluster]] table; its ``clusters`` shows A as not registered.)
        """
        other = "beta" if node == "alpha" else "alpha"
        instance = yield poll(reactor, lambda: self.running(node), 3 * LEASE, what)

        deadline = time.monotonic() + 3 * LEASE
        while True:
            cluster = yield self.cluster_a(other)
            if cluster["owners"] == [node] and cluster["state"] == "standing-by":
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"{other} never showed A owned by {node} only: {cluster}")
            yield task.deferLater(reactor, 0.1, lambda: None)
        return instance, cluster

    # -- the tests ----------------------------------------------------------------------

    @defer.inlineCallbacks
    def test_views_and_handovers(self):
        rig = self.rig
        # members: everyone alive, with the address each listens on.
        for name in NAMES:
            data = yield self.json(name, "members")
            members = {m["name"]: m for m in data["members"]}
            self.assertEqual(set(members), set(NAMES))
            for member in NAMES:
                self.assertEqual(members[member]["state"], "alive", (name, members))
                self.assertEqual(members[member]["address"], rig.address(member))
        # status: quorum.
        for name in NAMES:
            status = yield self.json(name, "status")
            self.assertEqual(status["node"], name)
            self.assertTrue(status["quorum"]["have_quorum"], status)
            self.assertEqual(sorted(status["quorum"]["voters"]), sorted(NAMES))
        # clusters: A runs on alpha (the higher priority) under an epoch.
        first, cluster = yield self.wait_owner("alpha", "A running on alpha")
        self.assertGreater(cluster["epoch"], 0)
        here = yield self.cluster_a("alpha")
        self.assertEqual((here["owners"], here["state"]), (["alpha"], "running"))
        self.assertEqual(here["epoch"], cluster["epoch"])
        # The wording: the cluster's state is the same on every node, each node's role its own.
        for name, role in (("alpha", "owner"), ("beta", "standby #1")):
            here = yield self.cluster_a(name)
            self.assertEqual((here["summary"], here["role_text"], here["standbys"]),
                             ("running on alpha", role, ["beta"]), name)

        # standby: a graceful handover, no waiting for the lease to expire.
        asked = time.monotonic()
        result = yield self.admin("alpha", "standby")
        self.assertIn("standing by", result.text)
        second, cluster = yield self.wait_owner("beta", "A moved to beta after standby")
        old = self.interval(first.instance)
        self.assertIsNotNone(old.end, "alpha's instance has stopped")
        self.assertLessEqual(old.end, second.start, "no overlap")
        handover = second.start - asked
        print(f"\nstandby: A stopped on alpha {old.end - asked:.3f} s and started on beta "
              f"{handover:.3f} s after the command (lease {LEASE:g} s)")
        self.assertLess(handover, LEASE / 2, "handover waited for the lease")
        self.assertGreater(cluster["epoch"], first.epoch)
        status = yield self.json("alpha", "status")
        self.assertEqual([(c["state"], c["summary"], c["role_text"]) for c in status["clusters"]],
                         [("standing-by", "running on beta", "ineligible: on standby")])
        # why: the acquirer has the move and its causes; alpha, which released, points there.
        result = yield self.admin("beta", "why A")
        lines = result.text.splitlines()
        self.assertIn("latest change: ", lines[1])
        self.assertIn("moved from alpha to beta", lines[1])
        self.assertTrue(lines[2].startswith("  <- "), lines)
        result = yield self.admin("alpha", "why A")
        self.assertIn("released lease A", result.text)
        self.assertIn("run 'why A' on beta", result.text)

        # unstandby, then move it back explicitly.
        result = yield self.admin("alpha", "unstandby")
        self.assertIn("may own clusters again", result.text)
        yield self.fails("witness", "move A alpha", "not registered for cluster 'A'")
        # Until alpha's unstandby has reached beta (gossip), beta refuses the move.
        deadline = time.monotonic() + 10.0
        while True:
            result = yield self.admin("beta", "move A alpha", ok=False)
            if result.status == 0 or time.monotonic() > deadline:
                break
            self.assertIn("not eligible", result.stderr.decode())
            yield task.deferLater(reactor, 0.1, lambda: None)
        self.assertEqual(result.status, 0, result)
        self.assertIn("moving to alpha", result.text)
        third, cluster = yield self.wait_owner("alpha", "A moved back to alpha")
        self.assertLessEqual(self.interval(second.instance).end, third.start)

        # pause / resume.
        result = yield self.admin("alpha", "pause A")
        self.assertIn("paused", result.text)
        here = yield self.cluster_a("alpha")
        self.assertEqual(here["state"], "paused")
        yield self.admin("alpha", "resume A")
        here = yield self.cluster_a("alpha")
        self.assertNotEqual(here["state"], "paused")
        self.assertIsNotNone(self.running("alpha"))
        self.assert_no_overlap()

    @defer.inlineCallbacks
    def test_a_move_asked_elsewhere_carries_who_asked_to_the_holder(self):
        """beta's operator moves A: alpha (the holder) records beta and the session's key."""
        from clsd.admin.hostkey import fingerprint

        first, _ = yield self.wait_owner("alpha", "A running on alpha")
        result = yield self.admin("beta", "move A beta")
        self.assertIn("moving to beta", result.text)
        second, _ = yield self.wait_owner("beta", "A moved to beta")
        self.assertLessEqual(self.interval(first.instance).end, second.start)
        key = fingerprint(self.key.public())
        history = yield self.json("alpha", "history 50")
        asked = [e["detail"] for e in history["history"] if "asked by" in e["detail"]]
        self.assertEqual(asked, [f"move to beta asked (asked by beta, admin key {key})"])
        history = yield self.json("beta", "history 50")
        self.assertIn(f"admin: move A beta (admin key {key})",
                      [e["detail"] for e in history["history"]])
        self.assert_no_overlap()

    @defer.inlineCallbacks
    def test_errors_are_one_line_reasons(self):
        yield self.wait_owner("alpha", "A running on alpha")
        data = yield self.json("witness", "clusters")
        # witness has no [[cluster]]: it shows A as the others publish it, not registered.
        self.assertEqual([(c["id"], c["summary"], c["role_text"]) for c in data["clusters"]],
                         [("A", "running on alpha", "not registered")])
        yield self.fails("alpha", "move A nosuch", "nosuch")
        yield self.fails("alpha", "move Z beta", "Z")
        yield self.fails("alpha", "pause Z", "Z")
        yield self.fails("alpha", "standby beta", "run it on beta")
        yield self.fails("alpha", "force-remove beta", "not dead")
        yield self.fails("alpha", "force-remove nosuch", "no member named 'nosuch'")
        yield self.fails("alpha", "force-remove alpha", "use leave")
        yield self.fails("alpha", "move A", "")
        # Nothing changed: A runs on alpha.
        yield self.wait_owner("alpha", "A running on alpha")

    @defer.inlineCallbacks
    def test_force_remove_of_a_killed_node_and_leave(self):
        rig = self.rig
        first, _ = yield self.wait_owner("alpha", "A running on alpha")
        # A fourth node (no vote, no cluster) as a real twistd process, killed with -9.
        path = rig.write_config("extra", {"quorum": {"voters": list(NAMES), "lease": LEASE,
                                                      "drift_margin": 0.1}})
        log = open(os.path.join(rig.base, "extra.log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen([*twistd_command(), "-n", "--pidfile", "", "clsd",
                                    "--config", path], stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        self.addCleanup(lambda: process.poll() is None and (process.kill(), process.wait()))
        everyone = [*NAMES, "extra"]
        yield poll(reactor, lambda: rig.all_see(NAMES, {n: "alive" for n in everyone}),
                   JOIN_BOUND, "extra to join")
        data = yield self.json("alpha", "members")
        self.assertIn("extra", [m["name"] for m in data["members"]])
        yield self.fails("alpha", "force-remove extra", "not dead")
        process.send_signal(signal.SIGKILL)
        process.wait()
        yield poll(reactor, lambda: rig.all_see(NAMES, {"extra": "dead"}), 20,
                   "extra declared dead")
        result = yield self.admin("alpha", "force-remove extra")
        self.assertIn("removed", result.text)
        yield poll(reactor, lambda: rig.all_see(NAMES, {"extra": "left"}), 10,
                   "the removal to spread")

        # leave: witness announces it; the others see it left, not dead.
        result = yield self.admin("witness", "leave")
        self.assertIn("leaving", result.text)
        yield poll(reactor, lambda: rig.all_see(["alpha", "beta"], {"witness": "left"}), 10,
                   "witness seen as left")
        data = yield self.json("alpha", "members")
        states = {m["name"]: m["state"] for m in data["members"]}
        self.assertEqual(states["witness"], "left")
        # Two voters of three remain: still a quorum, and A still runs.
        status = yield self.json("alpha", "status")
        self.assertTrue(status["quorum"]["have_quorum"], status)
        self.assertEqual(self.running("alpha").instance, first.instance)
        self.assert_no_overlap()



class BorrowedRig(unittest.TestCase):
    """The rig and helpers of ClusterAdminTests (not its tests), for other modules' tests."""

    timeout = 180

    setUp = ClusterAdminTests.setUp
    _stop = ClusterAdminTests._stop
    admin = ClusterAdminTests.admin
    json = ClusterAdminTests.json
    cluster_a = ClusterAdminTests.cluster_a
    running = ClusterAdminTests.running
    assert_no_overlap = ClusterAdminTests.assert_no_overlap
    wait_owner = ClusterAdminTests.wait_owner
