"""``make demo``: three nodes, two clusters, a kill -9 and a failover, narrated.

The layout is doc/examples/mutual-standby: alpha runs system A and stands by
for B, beta runs B and stands by for A, witness is the third voter. Each
system is a small HTTP service (L{rig.protected_service}) that
answers ``GET /`` with the node, cluster and lease epoch it runs under, on
its node's own address (A on port 8081, B on 8082).

Steps: a demo CA and node certificates (L{clsd.certs.store}), an admin SSH
key, three ``twistd -n clsd`` started through L{rig.launcher}
(which owns every process it starts and kills them all at the end, on an
error or on Ctrl-C), ``status`` over the admin SSH shell, kill -9 of A's
owner, A answered from its standby, the node back, ``status`` again, and a
clean stop checked by the start/stop records of every service copy.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

from twisted.conch.ssh import keys
from cryptography.hazmat.primitives.asymmetric import ed25519

from clsd.certs.store import init_authority, issue_node, node_paths
from rig.faults.cleanup import Cleanups
from rig.launcher import ConfigTemplate, Launcher, protected_service_part
from clsd.polling import WaitTimeout, wait_for

NODES = ("alpha", "beta", "witness")
#: alpha, beta and witness on 127.0.0.11-13, as in doc/examples/mutual-standby.
FIRST_ADDRESS = "127.0.0.11"
#: On every node's own address: the peer listener, the admin SSH, the systems.
PEER_PORT = 7420
SSH_PORT = 7422
HTTP_PORTS = {"A": 8081, "B": 8082}
#: Cluster -> {node: priority}: each system's home and its standby.
PRIORITIES = {"A": {"alpha": 100, "beta": 50}, "B": {"alpha": 50, "beta": 100}}

#: The documented default lease (failover in about two seconds) and the fast
#: profile the test suite uses.
LEASE = 2.0
FAST_LEASE = 1.0

#: Bounds of each wait, generous for a loaded machine; a quiet one takes a
#: fraction (see the timings the demo prints).
UP_BOUND = 45.0
FAILOVER_BOUND = 20.0
STOP_BOUND = 20.0


class DemoError(Exception):
    pass


# -- the configuration ----------------------------------------------------------------


def demo_part(certs, authorized_keys, lease):
    """Peer, TLS, admin, quorum, services and clusters of one demo node."""

    def part(node, launcher):
        cert, key = node_paths(certs, node.name)
        seed = launcher.address(NODES[0])
        config = {
            "node": {"listen": f"{node.address}:{PEER_PORT}",
                     "join": [f"{seed}:{PEER_PORT}"]},
            "tls": {"ca": os.path.join(certs, "ca.pem"), "cert": cert, "key": key},
            "admin": {"ssh": f"{node.address}:{SSH_PORT}", "authorized_keys": authorized_keys},
            "quorum": {"voters": list(NODES), "lease": lease,
                       "drift_margin": round(lease / 20, 3)},
        }
        if node.name == "witness":
            return config  # a voter that runs nothing
        services, clusters = [], []
        for cluster, port in HTTP_PORTS.items():
            name = f"system-{cluster.lower()}"
            services += protected_service_part(name, cluster=None, http_port=port)(
                node, launcher)["service"]
            clusters.append({"id": cluster, "service": name,
                             "priority": PRIORITIES[cluster][node.name]})
        return {**config, "service": services, "cluster": clusters}

    return part


def write_admin_key(directory):
    """A fresh ed25519 admin key: the private key (0600) and an authorized_keys file."""
    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    private = os.path.join(directory, "admin_key")
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.toString("openssh"))
    authorized = os.path.join(directory, "authorized_keys")
    with open(authorized, "wb") as f:
        f.write(key.public().toString("openssh") + b" clsd-demo\n")
    return private, authorized


# -- observing ------------------------------------------------------------------------


def http_get(url):
    """The JSON a demo system answers, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def ssh_command(address, key):
    return (f"ssh -i {key} -p {SSH_PORT} -o StrictHostKeyChecking=no "
            f"-o UserKnownHostsFile=/dev/null admin@{address}")


class ClusterDemo:
    """The rig, its files, and the narrated steps."""

    def __init__(self, workdir, out, *, fast=False, first_address=FIRST_ADDRESS):
        self.workdir = workdir
        self.out = out
        self.fast = fast
        self.started = time.monotonic()
        self.cleanups = Cleanups()
        certs = os.path.join(workdir, "certs")
        init_authority(certs)
        self.key, authorized = write_admin_key(workdir)
        self.launcher = Launcher(workdir, list(NODES), first_address=first_address,
                                 cleanups=self.cleanups)
        for name in NODES:
            issue_node(certs, name, ip_addresses=[self.launcher.address(name)])
        self.launcher.template = ConfigTemplate().with_part(
            demo_part(certs, authorized, FAST_LEASE if fast else LEASE))

    # -- helpers ------------------------------------------------------------------

    def say(self, text=""):
        self.out(text)

    def step(self, text):
        self.out(f"\n[{time.monotonic() - self.started:5.1f} s] {text}")

    def url(self, cluster, node):
        return f"http://{self.launcher.address(node)}:{HTTP_PORTS[cluster]}/"

    def server_of(self, cluster, exclude=()):
        """(node, answer) of whichever node answers for C{cluster} now."""
        for node in PRIORITIES[cluster]:
            if node in exclude:
                continue
            answer = http_get(self.url(cluster, node))
            if answer is not None:
                return node, answer
        return None

    def admin(self, node, command):
        """Run an admin command on C{node} over SSH; its output."""
        address = f"{self.launcher.address(node)}:{SSH_PORT}"
        result = subprocess.run(
            [sys.executable, "-m", "rig.admin_exec", address, self.key, command],
            capture_output=True, text=True, timeout=30,
        )
        if result.returncode != 0:
            raise DemoError(f"'{command}' on {node} failed ({result.returncode}): "
                            f"{result.stderr.strip() or result.stdout.strip()}")
        return result.stdout

    def _sees_alive(self, node, names):
        """True once C{node}'s member list shows every one of C{names} alive."""
        try:
            lines = self.admin(node, "members").splitlines()
        except DemoError:
            return False  # not listening yet
        alive = {line.split()[0] for line in lines[1:] if line.split()[1:2] == ["alive"]}
        return alive.issuperset(names)

    def show_status(self, node):
        self.say(f"$ {ssh_command(self.launcher.address(node), 'admin_key')} status")
        for line in self.admin(node, "status").rstrip().splitlines():
            self.say(f"  {line}")

    def wait(self, predicate, bound, what):
        try:
            return wait_for(predicate, bound, what=what, interval=0.05)
        except WaitTimeout as e:
            raise DemoError(str(e)) from None

    # -- the steps ------------------------------------------------------------------

    def start(self):
        self.step("Starting three clsd daemons (twistd -n clsd), each on its own address:")
        for name in NODES:
            runs = {"alpha": "runs A, stands by for B", "beta": "runs B, stands by for A",
                    "witness": "the third voter, runs nothing"}[name]
            self.say(f"  {name:<8} {self.launcher.address(name)}  {runs}")
        self.say(f"  (mutual TLS with certificates from a demo CA in {self.workdir}/certs)")
        # alpha and beta first: together they are a majority of the voters, so
        # no lease is granted before both are up and know each other, and each
        # begins with the system it prefers. (Started all at once on a slow
        # machine, whichever node is up first may take both systems and, with
        # preempt = false, keep them: correct, but not the layout to show.)
        self.launcher.start("alpha")
        self.launcher.start("beta")
        self.wait(lambda: self._sees_alive("alpha", ("alpha", "beta")), UP_BOUND,
                  "alpha and beta to see each other")
        self.launcher.start("witness")
        for cluster in HTTP_PORTS:
            self.wait(lambda c=cluster: self.server_of(c), UP_BOUND, f"cluster {cluster} to answer")
            node, answer = self.server_of(cluster)
            self.say(f"  cluster {cluster}: GET {self.url(cluster, node)} -> "
                     f"node {answer['node']}, epoch {answer['epoch']}")
        # Status once the membership has settled: every node sees the others alive.
        self.wait(lambda: self.admin("witness", "members").count(" alive") >= len(NODES),
                  UP_BOUND, "all three members alive")

    def failover(self):
        """Kill A's owner with -9; returns the seconds until A answered elsewhere."""
        owner, before = self.server_of("A")
        self.step(f"kill -9 {owner}'s daemon (pid {self.launcher.node(owner).pid}), the owner of A")
        killed_at = time.monotonic()
        self.launcher.kill(owner)
        self.say(f"  {owner}'s lease guard (a separate process) kills its copy of A when the")
        self.say("  daemon dies, at the latest when its lease ends; the voters grant A to the")
        self.say("  standby only after that lease has expired.")
        moved = self.wait(lambda: self.server_of("A", exclude=(owner,)), FAILOVER_BOUND,
                          "A to answer from its standby")
        elapsed = time.monotonic() - killed_at
        node, answer = moved
        self.say(f"  GET {self.url('A', node)} -> node {answer['node']}, "
                 f"epoch {answer['epoch']} (was {before['epoch']} on {owner})")
        stopped = self._old_copy_end(owner, "A", killed_at)
        elapsed_start = self._new_copy_start(node, "A", killed_at) - killed_at - (stopped or 0)
        if stopped is not None:
            self.say(f"  {owner}'s copy of A ended {stopped:.2f} s after the kill; "
                     f"{node}'s started {elapsed_start:.2f} s after it")
        self.say(f"FAILOVER: A served by {node} {elapsed:.1f} s after the kill")
        return owner, node, elapsed

    def _old_copy_end(self, node, cluster, since):
        """Seconds from C{since} to the end of C{node}'s last copy of C{cluster} (records)."""
        def ended():
            ends = [i.end for i in self.launcher.check().intervals
                    if i.node == node and i.cluster == cluster and i.start < since]
            return ends and all(e is not None for e in ends) and max(ends)
        try:
            return wait_for(ended, 5.0, what="the old copy's end record") - since
        except WaitTimeout:
            return None

    def _new_copy_start(self, node, cluster, since):
        return min(i.start for i in self.launcher.check().intervals
                   if i.node == node and i.cluster == cluster and i.start >= since)

    def bring_back(self, name, survivor):
        self.step(f"Starting {name} again")
        self.launcher.start(name)
        self.wait(lambda: f"{name} " in self.admin(survivor, "members")
                  and self._state_of(survivor, name) == "alive",
                  UP_BOUND, f"{name} to rejoin")
        self.say(f"  {name} rejoined; A stays on {survivor} (preempt = false: no failback "
                 "unless asked, e.g. 'move A alpha')")

    def _state_of(self, viewer, member):
        for line in self.admin(viewer, "members").splitlines():
            fields = line.split()
            if fields and fields[0] == member:
                return fields[1]
        return None

    def stop(self):
        self.step("Stopping every daemon with SIGTERM (each stops its services first)")
        self.launcher.teardown(timeout=STOP_BOUND)
        left = self.launcher.marked_processes()
        if left:
            raise DemoError(f"processes still running after the stop: {left}")
        report = self.launcher.check()
        if not report.ok:
            raise DemoError(f"the checker found violations: {report.violations}")
        copies = sum(1 for _ in self.launcher.records().records if _.kind == "start")
        self.say(f"  {copies} service copies started in all; the checker found no two copies "
                 "of a cluster running at once")
        self.say(f"Stopped cleanly; nothing left running. Demo took "
                 f"{time.monotonic() - self.started:.1f} s.")

    def run(self):
        self.start()
        self.step("status, over the admin SSH shell of alpha:")
        self.show_status("alpha")
        owner, survivor, elapsed = self.failover()
        self.bring_back(owner, survivor)
        self.step(f"status, over the admin SSH shell of {survivor}:")
        self.show_status(survivor)
        self.stop()
        return elapsed

    def keep(self, wait_forever):
        """Start, print how to explore with ssh, then wait (Ctrl-C stops everything)."""
        self.start()
        self.step("The cluster is up. Explore it with ssh (the admin shell; 'help' lists "
                  "commands):")
        for name in NODES:
            self.say(f"  {ssh_command(self.launcher.address(name), self.key)}")
        self.say("Try: status, members, clusters, history, standby alpha, move A beta, "
                 "and GET the systems:")
        for cluster, port in HTTP_PORTS.items():
            self.say("  curl " + " ".join(self.url(cluster, n) for n in PRIORITIES[cluster]))
        self.say(f"Logs: {self.workdir}/nodes/NODE/twistd.log. Press Ctrl-C to stop all.")
        try:
            wait_forever()
        except KeyboardInterrupt:
            self.say("")
        self.stop()

    def close(self):
        """Whatever happened: every process this demo started is gone after this."""
        self.launcher.teardown(timeout=STOP_BOUND)
        self.cleanups.run_all()
