"""The floating address fails over with the cluster: real daemons in namespaces made by the test.

Each test builds its own network (L{clsd.testing.netns}: alpha, beta, witness
and client on one bridge; 192.0.2.0/24 and 2001:db8::/64 only, all inside
namespaces) and runs three ``twistd clsd`` daemons there, each in its
node's namespace (``ip netns exec``), peers over mutual TLS on the nodes'
192.0.2.x addresses. Cluster A (alpha preferred, beta standby, the witness
votes) has the floating address 192.0.2.10/24 on ``eth0``; its service
answers HTTP with its node's name (tests/address_http_service.py).

In the client's namespace tests/address_client_watch.py asks every 20 ms:
an ARP who-has for 192.0.2.10 (every MAC that answers is a machine that
has the address: two in one round is two holders) and an HTTP GET of
http://192.0.2.10:8080/. After each fault the standby must answer, no round
may see two MACs, and the client's neighbour entry must carry beta's MAC
at once (the gratuitous ARP), not after the entry aged out.

Needs root, ``ip`` and ``nft``: skipped elsewhere, must run under CI=true.
"""

import json
import os
import signal
import subprocess
import sys
import time

from twisted.trial import unittest

from clsd.certs import store
from clsd.testing import tomlgen
from clsd.testing.netns import Netns
from clsd.testing.polling import wait_for
from tests.test_address_netns_real import require_network_rig

HERE = os.path.dirname(os.path.abspath(__file__))
WATCH = os.path.join(HERE, "address_client_watch.py")
SERVICE = os.path.join(HERE, "address_http_service.py")
FLOATING = "192.0.2.10/24"
FLOATING_V6 = "2001:db8::10/64"
HTTP_PORT = 8080
PEER_PORT = 7946
LEASE = 1.0
START_TIMEOUT = 60.0
#: Lease 1 s: the standby answers within about 2 s of the fault (detection,
#: lease expiry, start); the margin is for a loaded 2-core machine.
FAILOVER_TIMEOUT = 15.0


class AddressCluster:
    """Certificates, configs and the three daemons of one test, in C{rig}'s namespaces."""

    def __init__(self, test, rig, *, order="before", addresses=(FLOATING,)):
        self.test = test
        self.rig = rig
        self.order = order
        self.addresses = list(addresses)
        self.base = os.path.abspath(test.mktemp())
        os.makedirs(self.base)
        self.ca = os.path.join(self.base, "ca")
        store.init_authority(self.ca)
        self.daemons = {}

    def node_dir(self, name):
        return os.path.join(self.base, name)

    def config(self, name):
        node = self.rig.node(name)
        directory = self.node_dir(name)
        cert, key = store.node_paths(directory, name)
        if not os.path.exists(cert):
            store.issue_node(self.ca, name, out=directory, ip_addresses=[str(node.ipv4.ip)])
        others = [n for n in ("alpha", "beta", "witness") if n != name]
        tables = {
            "node": {"name": name, "data_dir": os.path.join(directory, "data"),
                     "listen": f"{node.ipv4.ip}:{PEER_PORT}",
                     "join": [f"{self.rig.node(o).ipv4.ip}:{PEER_PORT}" for o in others]},
            "tls": {"ca": store.ca_paths(self.ca)[0], "cert": cert, "key": key},
            "membership": {"heartbeat_interval": 0.1, "failure_timeout": 0.5,
                           "link_down_grace": 0.2, "suspicion_timeout": 1.0,
                           "join_retry_interval": 0.3},
            "quorum": {"voters": ["alpha", "beta", "witness"], "lease": LEASE,
                       "drift_margin": 0.1},
        }
        priority = {"alpha": 100, "beta": 50}.get(name)
        if priority is not None:
            tables["service"] = [{"name": "web", "command": [sys.executable, SERVICE,
                                                             str(HTTP_PORT)],
                                  "restart": "always", "stop_timeout": 2.0}]
            tables["cluster"] = [{"id": "A", "service": "web", "priority": priority,
                                  "address": self.addresses, "interface": "eth0",
                                  "address_order": self.order}]
        path = os.path.join(directory, "clsd.toml")
        with open(path, "w") as f:
            f.write(tomlgen.dumps(tables))
        return path

    def start(self, name):
        path = self.config(name)
        log = open(os.path.join(self.node_dir(name), "twistd.log"), "ab")
        argv = self.rig.exec_argv(name, [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "-n", "--pidfile=", "clsd", "--config", path])
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.daemons[name] = process
        self.test.addCleanup(self.stop, name)
        return process

    def daemon_pid(self, name):
        """The twistd process (``ip netns exec`` execs it: the same pid)."""
        return self.daemons[name].pid

    def stop(self, name):
        process = self.daemons.get(name)
        if process is None or process.poll() is not None:
            return
        try:
            os.kill(process.pid, signal.SIGCONT)
            os.kill(process.pid, signal.SIGTERM)
            process.wait(15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)

    def log(self, name):
        try:
            with open(os.path.join(self.node_dir(name), "twistd.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def has(self, name, address=FLOATING):
        return address in {str(a) for a in self.rig.addresses(name)}


class ClientWatch:
    """tests/address_client_watch.py in the client's namespace; its rounds read back."""

    def __init__(self, test, rig):
        self.out = os.path.join(os.path.abspath(test.mktemp()) + "-watch.jsonl")
        argv = rig.exec_argv("client", [sys.executable, WATCH, "eth0", FLOATING.split("/")[0],
                                        f"http://{FLOATING.split('/')[0]}:{HTTP_PORT}/",
                                        self.out])
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        test.addCleanup(self.stop)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)

    def rounds(self):
        try:
            with open(self.out) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def answered_by(self, node, since=0.0):
        return any(r["http"] == node and r["t"] >= since for r in self.rounds())


class AddressFailoverTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_network_rig()
        self.rig = Netns.create(self)

    def start_cluster(self, **kwargs):
        cluster = AddressCluster(self, self.rig, **kwargs)
        for name in ("alpha", "beta", "witness"):
            cluster.start(name)
        wait_for(lambda: cluster.has("alpha"), START_TIMEOUT,
                 what="alpha to add the floating address")
        self.watch = ClientWatch(self, self.rig)
        wait_for(lambda: self.watch.answered_by("alpha"), 20, what="the client to reach alpha")
        return cluster

    def assertFailedOverToBeta(self, cluster, fault_at):
        wait_for(lambda: self.watch.answered_by("beta", since=fault_at), FAILOVER_TIMEOUT,
                 what="the client to be answered by beta at the floating address")
        beta_mac = self.rig.node("beta").mac
        # The gratuitous ARP, not ageing (minutes on Linux), moved the client's entry.
        wait_for(lambda: self.rig.neigh("client", FLOATING) == beta_mac, 2,
                 what="the client's neighbour entry to carry beta's MAC")
        time.sleep(0.5)  # a few more rounds after the switch
        self.watch.stop()
        rounds = self.watch.rounds()
        both = [r for r in rounds if len(r["macs"]) > 1]
        self.assertEqual(both, [], "two machines answered ARP for the address at once")
        seen = {m for r in rounds for m in r["macs"]}
        self.assertEqual(seen, {self.rig.node("alpha").mac, beta_mac},
                         "the watch did not see both owners (it could not have failed)")
        self.assertGreater(len(rounds), 20)
        return rounds

    def test_kill_9_of_the_owners_daemon(self):
        cluster = self.start_cluster()
        fault_at = time.monotonic()
        os.kill(cluster.daemon_pid("alpha"), signal.SIGKILL)
        self.assertFailedOverToBeta(cluster, fault_at)
        self.assertFalse(cluster.has("alpha"), "the guard left the address on alpha")
        self.assertIn("address.added", cluster.log("beta"))
        wait_for(lambda: "address.announced" in cluster.log("beta"), 5,
                 what="beta's announcements (5 rounds, 0.2 s apart) to be sent")

    def test_a_frozen_daemon_loses_the_address_to_its_guard(self):
        cluster = self.start_cluster()
        fault_at = time.monotonic()
        os.kill(cluster.daemon_pid("alpha"), signal.SIGSTOP)
        # The guard removes it at the lease deadline, with the daemon still frozen.
        wait_for(lambda: not cluster.has("alpha"), LEASE + 2.0,
                 what="alpha's guard to remove the address")
        self.assertFailedOverToBeta(cluster, fault_at)

    def test_a_partition_moves_the_address_ipv6_and_order_after(self):
        cluster = self.start_cluster(order="after", addresses=(FLOATING, FLOATING_V6))
        wait_for(lambda: cluster.has("alpha", FLOATING_V6), 10, what="the IPv6 address on alpha")
        self.rig.poke("client", FLOATING_V6)  # the client's IPv6 entry: alpha's MAC
        wait_for(lambda: self.rig.neigh("client", FLOATING_V6) == self.rig.node("alpha").mac,
                 5, what="the client to resolve the IPv6 address to alpha")
        fault_at = time.monotonic()
        # alpha is cut from beta and the witness, not from the client: if it kept
        # the address, the client's ARP would find two owners.
        self.rig.partition("alpha", "beta")
        self.rig.partition("alpha", "witness")
        self.assertFailedOverToBeta(cluster, fault_at)
        self.assertFalse(cluster.has("alpha", FLOATING_V6))
        wait_for(lambda: self.rig.neigh("client", FLOATING_V6) == self.rig.node("beta").mac,
                 2, what="the client's IPv6 entry to follow the unsolicited NA")

    def test_a_planned_handover_never_has_two_owners(self):
        """A daemon stopped as by ``systemctl stop`` hands the cluster over: address last out."""
        cluster = self.start_cluster()
        fault_at = time.monotonic()
        os.kill(cluster.daemon_pid("alpha"), signal.SIGTERM)
        self.assertFailedOverToBeta(cluster, fault_at)
        self.assertFalse(cluster.has("alpha"))
        self.assertIn("address.removed", cluster.log("alpha"))

    def test_an_address_left_behind_is_removed_at_start(self):
        cluster = AddressCluster(self, self.rig)
        self.rig.ip("beta", "addr", "add", FLOATING, "dev", "eth0")
        for name in ("alpha", "beta", "witness"):
            cluster.start(name)
        wait_for(lambda: not cluster.has("beta"), START_TIMEOUT,
                 what="beta to remove the address it does not hold")
        wait_for(lambda: cluster.has("alpha"), START_TIMEOUT, what="alpha to add it")
        self.assertIn("left behind by an earlier run", cluster.log("beta"))
