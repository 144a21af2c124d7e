"""Real daemons: three ``twistd -n clsd`` on their own 127.0.0.x, mutual TLS, membership.

They join through the first node and all see three alive; one is killed
with SIGKILL and the others declare it dead within a bound.  Observed from
outside through each node's event file (``data/events.jsonl``): its
``mono`` stamps are CLOCK_MONOTONIC, shared by every process on the machine,
so detection times are measured against the moment of the kill.
"""

import json
import os
import signal
import time

from twisted.trial import unittest

from clsd.certs.store import init_authority, issue_node, node_paths
from rig.faults.cleanup import Cleanups
from rig.launcher import ConfigTemplate, Launcher, free_port
from clsd.polling import wait_for

#: A killed daemon's connections close at once; its observers report it
#: after link_down_grace (1 s) and H of its observers agree: a few seconds
#: on a quiet machine. Generous here, for a loaded shared test machine.
DEATH_BOUND = 15.0
JOIN_BOUND = 30.0


def member_states(launcher, name):
    """{member: (state, mono)} from node C{name}'s event file, latest event wins."""
    path = os.path.join(launcher.node(name).spec.data_dir, "events.jsonl")
    states = {}
    try:
        with open(path) as f:
            for line in f:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue  # a line being written
                if event["kind"] == "member":
                    states[event["subject"]] = (event["fields"]["state"], event["mono"])
    except FileNotFoundError:
        pass
    return states


def cluster_part(certs, ports):
    def part(node, launcher):
        cert, key = node_paths(certs, node.name)
        first = next(iter(launcher.nodes))
        seed = f"{launcher.address(first)}:{ports[first]}"
        return {
            "node": {"listen": f"{node.address}:{ports[node.name]}", "join": [seed]},
            "tls": {"ca": os.path.join(certs, "ca.pem"), "cert": cert, "key": key},
        }
    return part


class ThreeNodes(unittest.TestCase):
    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        directory = os.path.abspath(self.mktemp())
        certs = os.path.join(directory, "certs")
        init_authority(certs)
        launcher = Launcher(directory, 3, cleanups=self.cleanups)
        self.addCleanup(launcher.teardown)
        ports = {}
        for name in launcher.nodes:
            issue_node(certs, name, ip_addresses=[launcher.address(name)])
            ports[name] = free_port(launcher.address(name))
        launcher.template = ConfigTemplate().with_part(cluster_part(certs, ports))
        self.launcher = launcher

    def all_see(self, names, expected, bound, what):
        def done():
            views = {n: member_states(self.launcher, n) for n in names}
            return all(
                all(views[n].get(m, ("?",))[0] == state for m, state in expected.items()
                    if m != n)
                for n in names) and views
        try:
            return wait_for(done, bound, what=what, interval=0.1)
        except Exception:
            for name in self.launcher.nodes:
                print(f"--- {name}: {member_states(self.launcher, name)}")
                print(self.launcher.log_tail(name, 40))
            raise

    def test_join_then_kill_is_detected(self):
        launcher = self.launcher
        names = list(launcher.nodes)
        started = time.monotonic()
        launcher.start_all()
        self.all_see(names, {n: "alive" for n in names}, JOIN_BOUND, "all see 3 alive")
        joined_in = time.monotonic() - started
        victim = names[-1]
        survivors = names[:-1]
        time.sleep(1.0)  # let heartbeats and watches settle
        killed_at = time.monotonic()
        launcher.kill(victim)
        views = self.all_see(survivors, {victim: "dead"}, DEATH_BOUND, f"{victim} declared dead")
        detected = {n: views[n][victim][1] - killed_at for n in survivors}
        print(f"\njoined (3 alive everywhere) {joined_in:.2f} s after starting; "
              f"kill -9 of {victim} declared dead after "
              + ", ".join(f"{n}: {t:.2f} s" for n, t in detected.items()))
        for delay in detected.values():
            self.assertLess(delay, DEATH_BOUND)
        for name in survivors:
            self.assertEqual(member_states(launcher, name)[survivors[0] if name != survivors[0]
                                                          else survivors[1]][0], "alive")

    def test_sigterm_is_a_graceful_leave(self):
        """SIGTERM: the daemon announces its leave before exiting; the others record "left"."""
        launcher = self.launcher
        names = list(launcher.nodes)
        launcher.start_all()
        self.all_see(names, {n: "alive" for n in names}, JOIN_BOUND, "all see 3 alive")
        leaver, survivors = names[-1], names[:-1]
        stopped_at = time.monotonic()
        status = launcher.stop(leaver)
        stop_took = time.monotonic() - stopped_at
        # twistd ends by re-raising the signal it stopped for (Twisted >= 20).
        self.assertIn(status, (0, -signal.SIGTERM), launcher.log_tail(leaver, 40))
        self.assertIn("left the cluster", launcher.log_text(leaver))
        views = self.all_see(survivors, {leaver: "left"}, DEATH_BOUND, f"{leaver} left")
        print(f"\nSIGTERM of {leaver}: exited after {stop_took:.2f} s; seen as left after "
              + ", ".join(f"{n}: {views[n][leaver][1] - stopped_at:.2f} s" for n in survivors))
        # Never through "dead" first: a graceful stop is not a failure.
        for name in survivors:
            path = os.path.join(launcher.node(name).spec.data_dir, "events.jsonl")
            with open(path) as f:
                states = [json.loads(line)["fields"]["state"] for line in f
                          if '"member"' in line and json.loads(line)["subject"] == leaver]
            self.assertNotIn("dead", states, name)


def mutual_standby_part(node, launcher):
    """doc/examples/mutual-standby: alpha runs A, beta runs B, each stands by for the other."""
    from rig.launcher import protected_service_part

    part = {"quorum": {"voters": list(launcher.nodes), "lease": 2.0, "drift_margin": 0.1}}
    if node.name == "witness":
        return part
    priorities = {"alpha": {"A": 100, "B": 50}, "beta": {"A": 50, "B": 100}}[node.name]
    services = []
    for cluster in ("A", "B"):
        services += protected_service_part(f"system-{cluster.lower()}", cluster=None)(
            node, launcher)["service"]
    part["service"] = services
    part["cluster"] = [{"id": c, "service": f"system-{c.lower()}", "priority": p}
                       for c, p in priorities.items()]
    return part


class MutualStandby(unittest.TestCase):
    def test_kill_of_the_owner_fails_over_without_overlap(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        directory = os.path.abspath(self.mktemp())
        certs = os.path.join(directory, "certs")
        init_authority(certs)
        launcher = Launcher(directory, ["alpha", "beta", "witness"], cleanups=self.cleanups)
        self.addCleanup(launcher.teardown)
        ports = {}
        for name in launcher.nodes:
            issue_node(certs, name, ip_addresses=[launcher.address(name)])
            ports[name] = free_port(launcher.address(name))
        launcher.template = ConfigTemplate().with_part(cluster_part(certs, ports)).with_part(
            mutual_standby_part)
        launcher.start_all()
        try:
            a = launcher.wait_running("alpha", "A", timeout=60)
            launcher.wait_running("beta", "B", timeout=60)
            killed_at = time.monotonic()
            launcher.kill("alpha")
            moved = launcher.wait_running("beta", "A", exclude=(a.instance,), timeout=60)
        except Exception:
            for name in launcher.nodes:
                print(f"--- {name}")
                print(launcher.log_tail(name, 60))
            raise
        print(f"\nA failed over to beta {moved.start - killed_at:.2f} s after kill -9 of alpha")
        report = launcher.check()
        self.assertEqual(report.overlaps, ())
        self.assertEqual(report.stale_actions, ())
        self.assertEqual(report.epoch_reuses, ())
