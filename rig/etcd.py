"""Real etcd members on 127.0.0.x for tests and benchmarks: TLS with client certificates.

L{EtcdCluster} starts 1..N ``etcd`` processes (Debian's ``etcd-server``),
each on its own reserved loopback address with free ports, a data dir under
the rig directory, and a server certificate for its address from the rig's
CA (the same CA that signs the nodes' certificates, which then serve as
etcd client certificates: etcd runs with ``--client-cert-auth``).

Synchronous on purpose, like L{rig.launcher}: it observes and
controls etcd from outside (subprocess, polling with deadlines).  Every
member is killed at L{EtcdCluster.teardown} (also registered with the
rig's cleanups), whatever happens.
"""

import http.client
import json
import os
import shutil
import signal
import ssl
import subprocess
import time

from clsd.certs import store
from clsd.polling import wait_for
from rig.addresses import reserve
from rig.launcher import free_port

#: Short elections so that a killed leader is replaced in about a second.
#: etcd's minimum lease TTL is 1.5 election timeouts (rounded up to whole
#: seconds), so 500 ms keeps it at 1 s, under every lease the tests use.
HEARTBEAT_MS = 50
ELECTION_MS = 500

#: A member that does not answer this soon after start did not start.
START_TIMEOUT = 30.0


def etcd_binary():
    return shutil.which("etcd")


class EtcdMember:
    def __init__(self, name, address, directory):
        self.name = name
        self.address = address
        self.directory = directory
        self.client_port = free_port(address)
        self.peer_port = free_port(address)
        self.process = None

    @property
    def client_url(self):
        return f"https://{self.address}:{self.client_port}"

    @property
    def peer_url(self):
        return f"https://{self.address}:{self.peer_port}"

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    """C{size} etcd members forming one cluster; see the module docstring."""

    def __init__(self, directory, size=1, *, ca_dir, cleanups=None):
        self.directory = os.path.abspath(directory)
        os.makedirs(self.directory, exist_ok=True)
        self.ca_dir = ca_dir
        ca_cert, _ = store.ca_paths(ca_dir)
        if not os.path.exists(ca_cert):
            store.init_authority(ca_dir, name="clsd etcd test CA")
        self.ca = ca_cert
        self._reservation = reserve(size)
        self.members = []
        for index, address in enumerate(self._reservation.addresses):
            name = f"etcd{index + 1}"
            member = EtcdMember(name, address, os.path.join(self.directory, name))
            os.makedirs(member.directory, exist_ok=True)
            # 127.0.0.1 too: members dial each other from it (etcd does not bind
            # the source), and etcd checks a peer's source address against its
            # certificate; with no IP matching it would resolve the DNS names.
            store.issue_node(ca_dir, name, out=member.directory,
                             ip_addresses=[address, "127.0.0.1"])
            self.members.append(member)
        # A client certificate for the rig's own status calls.
        store.issue_node(ca_dir, "etcd-probe", out=self.directory)
        self._probe = store.node_paths(self.directory, "etcd-probe")
        self._cleanup_token = None
        if cleanups is not None:
            self._cleanup_token = cleanups.add(self.teardown, f"etcd members in {directory}")

    @property
    def endpoints(self):
        return [m.client_url for m in self.members]

    @property
    def addresses(self):
        return [m.address for m in self.members]

    def member(self, name):
        return next(m for m in self.members if m.name == name)

    # -- processes ---------------------------------------------------------------------

    def _argv(self, member, state):
        cert, key = store.node_paths(member.directory, member.name)
        cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        return [
            etcd_binary(), "--name", member.name,
            "--data-dir", os.path.join(member.directory, "data"),
            "--listen-client-urls", member.client_url,
            "--advertise-client-urls", member.client_url,
            "--listen-peer-urls", member.peer_url,
            "--initial-advertise-peer-urls", member.peer_url,
            "--initial-cluster", cluster, "--initial-cluster-state", state,
            "--initial-cluster-token", os.path.basename(self.directory),
            "--cert-file", cert, "--key-file", key,
            "--client-cert-auth", "--trusted-ca-file", self.ca,
            "--peer-cert-file", cert, "--peer-key-file", key,
            "--peer-client-cert-auth", "--peer-trusted-ca-file", self.ca,
            "--heartbeat-interval", str(HEARTBEAT_MS), "--election-timeout", str(ELECTION_MS),
            "--log-outputs", "stderr", "--logger", "zap",
        ]

    def start(self, names=None, *, wait=True):
        """Start the members (all by default) and wait until each one answers."""
        for member in self.members:
            if names is not None and member.name not in names:
                continue
            if member.running:
                continue
            state = "existing" if os.path.exists(os.path.join(member.directory, "data")) \
                else "new"
            log = open(os.path.join(member.directory, "etcd.log"), "ab")
            member.process = subprocess.Popen(
                self._argv(member, state), stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True)
            log.close()
        if wait:
            for member in self.members:
                if names is None or member.name in names:
                    wait_for(lambda m=member: self.status(m) is not None and self.leader_id(m),
                             START_TIMEOUT, what=f"etcd member {member.name} to answer")
        return self

    def kill(self, name):
        """kill -9 one member; returns the monotonic time just before."""
        member = self.member(name)
        t = time.monotonic()
        if member.running:
            os.killpg(member.process.pid, signal.SIGKILL)
            member.process.wait(10)
        return t

    def teardown(self):
        for member in self.members:
            if member.running:
                try:
                    os.killpg(member.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                member.process.wait(10)
        self._reservation.release()

    # -- looking in ------------------------------------------------------------------------

    def _context(self):
        context = ssl.create_default_context(cafile=self.ca)
        context.load_cert_chain(*self._probe)
        return context

    def post(self, member, path, body, timeout=2.0):
        """POST JSON to C{member}'s gateway; the decoded answer, or None if it did not answer."""
        connection = http.client.HTTPSConnection(member.address, member.client_port,
                                                 timeout=timeout, context=self._context())
        try:
            connection.request("POST", path, json.dumps(body),
                               {"Content-Type": "application/json"})
            response = connection.getresponse()
            data = response.read()
            if response.status != 200:
                return None
            return json.loads(data)
        except (OSError, ValueError, http.client.HTTPException):
            return None
        finally:
            connection.close()

    def status(self, member):
        return self.post(member, "/v3/maintenance/status", {})

    def leader_id(self, member):
        status = self.status(member)
        return status.get("leader") if status else None

    def leader(self):
        """The name of the member that is leader now (asked of the running members)."""
        ids = {}
        leader = None
        for member in self.members:
            if not member.running:
                continue
            status = self.status(member)
            if status is None:
                continue
            ids[status["header"]["member_id"]] = member.name
            leader = leader or status.get("leader")
        return ids.get(leader)

    def get(self, key):
        """The kv of C{key} (a str), or None."""
        from clsd.ownership.etcd.core.codec import b64, unb64

        for member in self.members:
            if not member.running:
                continue
            answer = self.post(member, "/v3/kv/range", {"key": b64(key)})
            if answer is None:
                continue
            kvs = answer.get("kvs", [])
            if not kvs:
                return None
            kv = kvs[0]
            return {"value": unb64(kv.get("value", ""), "value"),
                    "create_revision": int(kv.get("create_revision", 0)),
                    "lease": int(kv.get("lease", 0))}
        return None


# -- a real CLSD cluster arbitrated by etcd ------------------------------------------------

#: The key prefix the rigs use.
RIG_PREFIX = "/clsd/rig/"


def etcd_layout(cluster="A"):
    """Two nodes, no witness (etcd arbitrates): alpha preferred for C{cluster}, beta its standby."""
    from rig.cluster import Layout

    return Layout(nodes=("alpha", "beta"), voters=(), clusters={cluster: {"alpha": 100,
                                                                          "beta": 50}})


def etcd_cluster_rig(layout, timing, etcd):
    """A L{rig.cluster.ClusterRig} whose nodes take their leases from C{etcd}
    (an L{EtcdCluster} made with the rig's CA directory), each node's own certificate
    serving as its etcd client certificate."""
    from rig.cluster import ClusterRig

    class EtcdClusterRig(ClusterRig):
        def quorum_part(self, node, launcher):
            ca, cert, key = self.certificates(launcher, node.name)
            quorum = {"arbiter": "etcd"}
            if self.timing.lease is not None:
                quorum["lease"] = self.timing.lease
            if self.timing.drift_margin is not None:
                quorum["drift_margin"] = self.timing.drift_margin
            tables = {"quorum": quorum,
                      "etcd": {"endpoints": etcd.endpoints, "prefix": RIG_PREFIX,
                               "ca": ca, "cert": cert, "key": key}}
            if self.timing.membership:
                tables["membership"] = dict(self.timing.membership)
            return tables

    return EtcdClusterRig(layout, timing)
