"""``make demo``: three nodes, two clusters, a kill -9 and a failover, narrated.

The layout is doc/examples/mutual-standby: alpha runs system A and stands by
for B, beta runs B and stands by for A, witness is the third voter. Each
system is a small HTTP service (L{clsd.demo.system}) that answers ``GET /``
with the node, cluster and lease epoch it runs under, on its node's own
address (A on port 8081, B on 8082).

Steps: a demo CA and node certificates (L{clsd.certs.store}), an admin SSH
key, three ``twistd -n clsd`` started through L{clsd.demo.nodes} (which finds
and kills every process of the demo at the end, on an error or on Ctrl-C),
``status`` over the admin SSH shell (L{clsd.admin.client}), kill -9 of A's
owner, A answered from its standby after the old copy ended, the node back,
``status`` again, and a clean stop with nothing left running.
"""

import json
import os
import subprocess
import sys
import time
import urllib.request

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import keys

from clsd.certs.store import init_authority, issue_node, node_paths
from clsd.demo.nodes import DemoNodes
from clsd.polling import WaitTimeout, wait_for
from clsd.supervision.pgroups import pid_alive

NODES = ("alpha", "beta", "witness")
#: alpha, beta and witness on 127.0.0.11-13, as in doc/examples/mutual-standby.
FIRST_ADDRESS = "127.0.0.11"
#: On every node's own address: the peer listener, the admin SSH, the systems.
PEER_PORT = 7420
SSH_PORT = 7422
#: The metrics listener, which serves the status page at / (doc/metrics.md).
METRICS_PORT = 9400
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


def toml_value(value):
    """TOML for the values a demo config holds (JSON's strings and numbers are TOML's)."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value)


def toml_table(header, table):
    return "\n".join([header, *(f"{k} = {toml_value(v)}" for k, v in table.items()), ""])


def demo_config(node, nodes, certs, authorized_keys, lease):
    """Node C{node}'s configuration: peer, TLS, admin, quorum, and its systems' clusters."""
    address = nodes.address(node)
    cert, key = node_paths(certs, node)
    tables = [
        toml_table("[node]", {"name": node, "data_dir": nodes.node(node).data_dir,
                              "listen": f"{address}:{PEER_PORT}",
                              "join": [f"{nodes.address(NODES[0])}:{PEER_PORT}"]}),
        toml_table("[tls]", {"ca": os.path.join(certs, "ca.pem"), "cert": cert, "key": key}),
        toml_table("[admin]", {"ssh": f"{address}:{SSH_PORT}",
                               "authorized_keys": authorized_keys}),
        toml_table("[metrics]", {"listen": f"{address}:{METRICS_PORT}"}),
        toml_table("[quorum]", {"voters": list(NODES), "lease": lease,
                                "drift_margin": round(lease / 20, 3)}),
    ]
    if node != "witness":  # the witness is a voter that runs nothing
        for cluster, port in HTTP_PORTS.items():
            name = f"system-{cluster.lower()}"
            url = f"http://{address}:{port}/"
            tables.append(toml_table("[[service]]", {
                "name": name,
                "command": [sys.executable, "-m", "clsd.demo.system",
                            "--http", f"{address}:{port}"],
                "env": nodes.marker, "restart": "always", "stop_timeout": 3.0,
                # A hung system is found within about a second.
                "check": {"type": "http", "target": url, "interval": 0.3, "timeout": 0.25,
                          "fall": 3, "rise": 1, "grace": 2.0},
            }))
            tables.append(toml_table("[[cluster]]", {
                "id": cluster, "service": name, "priority": PRIORITIES[cluster][node]}))
    return "\n".join(tables)


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


class CopyWatch:
    """When a copy of a system, seen by its pid from outside, was last seen gone (wall clock).

    Polled while the demo waits for the standby, so that the moment is seen
    within a poll of when it happened.
    """

    def __init__(self, pid):
        self.pid = pid
        self.ended = None

    def look(self):
        """Note the end if the copy is gone now; always true (to chain in a wait)."""
        if self.ended is None and not pid_alive(self.pid):
            self.ended = time.time()
        return True

    def look_for_end(self):
        self.look()
        return self.ended


class ClusterDemo:
    """The rig, its files, and the narrated steps."""

    def __init__(self, workdir, out, *, fast=False, first_address=FIRST_ADDRESS):
        self.workdir = workdir
        self.out = out
        self.fast = fast
        self.started = time.monotonic()
        self.nodes = DemoNodes(workdir, NODES, first_address)
        self.certs = os.path.join(workdir, "certs")
        init_authority(self.certs)
        self.key, self.authorized = write_admin_key(workdir)
        for name in NODES:
            issue_node(self.certs, name, ip_addresses=[self.nodes.address(name)])
        self.lease = FAST_LEASE if fast else LEASE

    # -- helpers ------------------------------------------------------------------

    def say(self, text=""):
        self.out(text)

    def step(self, text):
        self.out(f"\n[{time.monotonic() - self.started:5.1f} s] {text}")

    def page_url(self, node):
        """The status page of C{node} (on its metrics listener)."""
        return f"http://{self.nodes.address(node)}:{METRICS_PORT}/"

    def url(self, cluster, node):
        return f"http://{self.nodes.address(node)}:{HTTP_PORTS[cluster]}/"

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
        address = f"{self.nodes.address(node)}:{SSH_PORT}"
        result = subprocess.run(
            [sys.executable, "-m", "clsd.admin.client", address, self.key, command],
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
        self.say(f"$ {ssh_command(self.nodes.address(node), 'admin_key')} status")
        for line in self.admin(node, "status").rstrip().splitlines():
            self.say(f"  {line}")

    def wait(self, predicate, bound, what):
        try:
            return wait_for(predicate, bound, what=what, interval=0.05)
        except WaitTimeout as e:
            raise DemoError(str(e)) from None

    def start_node(self, name):
        self.nodes.start(name, demo_config(name, self.nodes, self.certs, self.authorized,
                                           self.lease))

    # -- the steps ------------------------------------------------------------------

    def start(self):
        self.step("Starting three clsd daemons (twistd -n clsd), each on its own address:")
        for name in NODES:
            runs = {"alpha": "runs A, stands by for B", "beta": "runs B, stands by for A",
                    "witness": "the third voter, runs nothing"}[name]
            self.say(f"  {name:<8} {self.nodes.address(name)}  {runs}")
        self.say(f"  (mutual TLS with certificates from a demo CA in {self.workdir}/certs)")
        # alpha and beta first: together they are a majority of the voters, so
        # no lease is granted before both are up and know each other, and each
        # begins with the system it prefers. (Started all at once on a slow
        # machine, whichever node is up first may take both systems and, with
        # preempt = false, keep them: correct, but not the layout to show.)
        self.start_node("alpha")
        self.start_node("beta")
        self.wait(lambda: self._sees_alive("alpha", ("alpha", "beta")), UP_BOUND,
                  "alpha and beta to see each other")
        self.start_node("witness")
        for cluster in HTTP_PORTS:
            self.wait(lambda c=cluster: self.server_of(c), UP_BOUND, f"cluster {cluster} to answer")
            node, answer = self.server_of(cluster)
            self.say(f"  cluster {cluster}: GET {self.url(cluster, node)} -> "
                     f"node {answer['node']}, epoch {answer['epoch']}")
        # Status once the membership has settled: every node sees the others alive.
        self.wait(lambda: self.admin("witness", "members").count(" alive") >= len(NODES),
                  UP_BOUND, "all three members alive")
        self.say("  status pages (open one in a browser; it refreshes itself every 2 s):")
        for name in NODES:
            self.say(f"    {name:<8} {self.page_url(name)}")

    def failover(self):
        """Kill A's owner with -9; returns (old owner, new owner, seconds until A answered)."""
        owner, before = self.server_of("A")
        self.step(f"kill -9 {owner}'s daemon (pid {self.nodes.node(owner).pid}), the owner of A")
        killed_at = time.time()
        self.nodes.kill(owner)
        self.say(f"  {owner}'s lease guard (a separate process) kills its copy of A when the")
        self.say("  daemon dies, at the latest when its lease ends; the voters grant A to the")
        self.say("  standby only after that lease has expired.")
        old_copy = CopyWatch(before["pid"])
        moved = self.wait(lambda: old_copy.look() and self.server_of("A", exclude=(owner,)),
                          FAILOVER_BOUND, "A to answer from its standby")
        elapsed = time.time() - killed_at
        node, answer = moved
        self.say(f"  GET {self.url('A', node)} -> node {answer['node']}, "
                 f"epoch {answer['epoch']} (was {before['epoch']} on {owner})")
        ended = self.wait(old_copy.look_for_end, 5.0, f"{owner}'s copy of A to end")
        if answer["started"] < ended:
            raise DemoError(f"two copies of A at once: {node}'s started at {answer['started']:.3f}, "
                            f"{owner}'s ended at {ended:.3f}")
        self.say(f"  {owner}'s copy of A ended {ended - killed_at:.2f} s after the kill; "
                 f"{node}'s started {answer['started'] - killed_at:.2f} s after the kill")
        self.say(f"FAILOVER: A served by {node} {elapsed:.1f} s after the kill")
        return owner, node, elapsed

    def bring_back(self, name, survivor):
        self.step(f"Starting {name} again")
        self.start_node(name)
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
        self.nodes.stop_all(timeout=STOP_BOUND)
        left = self.nodes.leftovers()
        if left:
            raise DemoError(f"processes still running after the stop: {left}")
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
            self.say(f"  {ssh_command(self.nodes.address(name), self.key)}")
        self.say("Try: status, members, clusters, why A, history, standby alpha, move A beta, "
                 "status --watch, and GET the systems:")
        for cluster in HTTP_PORTS:
            self.say("  curl " + " ".join(self.url(cluster, n) for n in PRIORITIES[cluster]))
        self.say("Status pages: " + "  ".join(self.page_url(n) for n in NODES))
        self.say(f"Logs: {self.workdir}/nodes/NODE/twistd.log. Press Ctrl-C to stop all.")
        try:
            wait_forever()
        except KeyboardInterrupt:
            self.say("")
        self.stop()

    def close(self):
        """Whatever happened: every process this demo started is gone after this."""
        self.nodes.close(timeout=STOP_BOUND)
