"""Real daemons: ``time.sleep(10)`` in the lease owner's manhole costs it nothing.

Three ``twistd -n clsd`` on their own 127.0.0.x (alpha, beta, witness; the
mutual-standby example: alpha owns A, beta owns B, default lease 2 s and
membership failure_timeout 4 s). An operator logs in to alpha's SSH admin
shell, opens the manhole and types ``import time; time.sleep(10)``, then pastes
the same line ten times. The manhole budget interrupts each input after
0.1 s and holds the next input back four times as long as the last one ran, so alpha keeps its lease
(A keeps running there, same instance, never stopped) and its membership (no
member event about alpha on beta or witness). The figures are printed.

For contrast, the second test freezes alpha for 10 s with SIGSTOP, which is
what the same call does to an unprotected reactor, and shows the failover
and the dead declaration that the budget prevents.
"""

import json
import os
import time

from twisted.conch.ssh import keys
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.internet import defer, reactor, task
from twisted.trial import unittest

from clsd.certs.store import init_authority, issue_node
from clsd.admin.client import connect
from rig.faults.cleanup import Cleanups
from rig.launcher import ConfigTemplate, Launcher, free_port
from tests.integration.test_cluster_real import cluster_part, member_states, mutual_standby_part

SLEEP_LINE = b"import time; time.sleep(10)\r"
PASTED = 10
#: After the manhole work, watch this long: more than failure_timeout (4 s)
#: plus the lease (2 s), so any late consequence would show.
WATCH = 7.0


def events(launcher, name):
    path = os.path.join(launcher.node(name).spec.data_dir, "events.jsonl")
    out = []
    with open(path) as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def admin_part(ports, authorized_keys):
    def part(node, launcher):
        return {"admin": {"ssh": f"{node.address}:{ports[node.name]}",
                          "authorized_keys": authorized_keys}}
    return part


def sleep(seconds):
    return task.deferLater(reactor, seconds, lambda: None)


class Rig:
    def __init__(self, testcase, admin=False):
        testcase.cleanups = Cleanups()
        testcase.addCleanup(testcase.cleanups.run_all)
        directory = os.path.abspath(testcase.mktemp())
        certs = os.path.join(directory, "certs")
        init_authority(certs)
        launcher = Launcher(directory, ["alpha", "beta", "witness"],
                            cleanups=testcase.cleanups)
        testcase.addCleanup(launcher.teardown)
        ports, admin_ports = {}, {}
        for name in launcher.nodes:
            issue_node(certs, name, ip_addresses=[launcher.address(name)])
            ports[name] = free_port(launcher.address(name))
            admin_ports[name] = free_port(launcher.address(name))
        template = ConfigTemplate().with_part(cluster_part(certs, ports)).with_part(
            mutual_standby_part)
        self.key = keys.Key(ed25519.Ed25519PrivateKey.generate())
        if admin:
            authorized = os.path.join(directory, "admin_keys")
            with open(authorized, "wb") as f:
                f.write(self.key.public().toString("openssh") + b" operator@test\n")
            template = template.with_part(admin_part(admin_ports, authorized))
        launcher.template = template
        self.launcher = launcher
        self.admin_ports = admin_ports

    def start(self):
        launcher = self.launcher
        launcher.start_all()
        try:
            self.a = launcher.wait_running("alpha", "A", timeout=60)
            launcher.wait_running("beta", "B", timeout=60)
        except Exception:
            self.dump()
            raise

    def dump(self):
        for name in self.launcher.nodes:
            print(f"--- {name}: {member_states(self.launcher, name)}")
            print(self.launcher.log_tail(name, 60))

    def settled(self):
        """All three see each other alive (joined), after the owners run."""
        for name in self.launcher.nodes:
            states = member_states(self.launcher, name)
            others = [n for n in self.launcher.nodes if n != name]
            if not all(states.get(n, ("?",))[0] == "alive" for n in others):
                return False
        return True


class ManholeSleepKeepsLeaseAndMembership(unittest.TestCase):
    timeout = 180

    @defer.inlineCallbacks
    def test_sleep_10_in_the_owners_manhole(self):
        rig = Rig(self, admin=True)
        launcher = rig.launcher
        rig.start()
        for _ in range(300):
            if rig.settled():
                break
            yield sleep(0.1)
        self.assertTrue(rig.settled(), "the three nodes never all saw each other alive")
        yield sleep(1.0)
        conn = yield connect(reactor, (launcher.address("alpha"), rig.admin_ports["alpha"]),
                             key=rig.key)
        self.addCleanup(conn.close)
        shell = yield conn.shell(pty=True)
        at = yield shell.wait_for(b"clsd> ")
        shell.send(b"manhole\r")
        at = yield shell.wait_for(b">>> ", after=at)

        began = time.monotonic()
        shell.send(SLEEP_LINE)
        at = yield shell.wait_for(b"interrupted after", after=at)
        single = time.monotonic() - began
        at = yield shell.wait_for(b">>> ", after=at)

        pasted_began = time.monotonic()
        shell.send(SLEEP_LINE * PASTED)
        for _ in range(PASTED):
            at = yield shell.wait_for(b"interrupted after", after=at, timeout=30)
        pasted = time.monotonic() - pasted_began
        at = yield shell.wait_for(b">>> ", after=at)
        shell.send(b"ownership is not None\r")
        yield shell.wait_for(b"True", after=at)
        manhole_end = time.monotonic()

        yield sleep(WATCH)
        problems = self.consequences(launcher, began, rig.a)
        print(f"\nalpha's manhole: time.sleep(10) interrupted after {single:.2f} s "
              f"(budget 0.1 s); {PASTED} pasted copies done in {pasted:.2f} s; "
              f"watched {WATCH:g} s more: "
              + ("no lease lost, no failover, no suspicion or dead declaration"
                 if not problems else "; ".join(problems)))
        if problems:
            rig.dump()
        self.assertEqual(problems, [])
        self.assertLess(single, 2.0)
        self.assertLess(manhole_end - began, 20.0)
        report = launcher.check()
        self.assertEqual(report.overlaps, ())

    def consequences(self, launcher, since, a):
        problems = []
        instances = [r.instance for r in launcher.running_instances("alpha", "A")]
        if a.instance not in instances:
            problems.append(f"A's instance on alpha is gone (running: {instances})")
        for name in launcher.nodes:
            for event in events(launcher, name):
                if event["mono"] < since:
                    continue
                if event["kind"] == "member":
                    problems.append(f"{name}: member event {event['subject']} "
                                    f"{event['fields'].get('state')}: {event['reason']}")
                if event["kind"] == "ownership" and (
                        "stopping" in event["reason"] or "starting" in event["reason"]):
                    problems.append(f"{name}: {event['subject']}: {event['reason']}")
        return problems


class UnprotectedStallForContrast(unittest.TestCase):
    """What ``time.sleep(10)`` on an unprotected reactor does: SIGSTOP alpha 10 s."""

    timeout = 180

    @defer.inlineCallbacks
    def test_ten_second_freeze_costs_the_lease(self):
        rig = Rig(self)
        launcher = rig.launcher
        rig.start()
        for _ in range(300):
            if rig.settled():
                break
            yield sleep(0.1)
        yield sleep(1.0)
        frozen_at = time.monotonic()
        launcher.pause("alpha")
        try:
            yield sleep(10.0)
        finally:
            launcher.resume("alpha")
        moved = launcher.wait_running("beta", "A", timeout=60)
        dead = [(e["fields"]["state"], e["mono"] - frozen_at) for e in events(launcher, "beta")
                if e["kind"] == "member" and e["subject"] == "alpha"
                and e["mono"] > frozen_at and e["fields"].get("state") in ("suspect", "dead")]
        print(f"\nalpha frozen 10 s: A started on beta {moved.start - frozen_at:.2f} s "
              "after the freeze; beta's member events about alpha at "
              + ", ".join(f"{state} {t:.2f} s" for state, t in dead))
        self.assertLess(moved.start - frozen_at, 10.0)
        report = launcher.check()
        self.assertEqual(report.overlaps, ())
