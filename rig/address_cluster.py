"""Three real daemons in a test network, one cluster with a floating address, a client watching.

For the floating-address failover tests and ``bench/failover.py --address``:
an L{AddressCluster} writes certificates and configs for ``alpha``,
``beta`` and ``witness`` of a L{rig.netns.Netns} rig and runs each
``twistd clsd`` inside its node's namespace (peers over mutual TLS on the
nodes' 192.0.2.x addresses). Cluster ``A`` (alpha 100, beta 50, the witness
votes) runs L{rig.address_http_service} (it answers with its
node's name) with the floating address. A L{ClientWatch} runs
L{rig.address_client_watch} in the client's namespace; a L{HolderWatch}
runs L{rig.address_holder_watch} (which nodes have the address). With
C{admin=True} each daemon listens for SSH admin commands on its own
address (L{AddressCluster.admin} runs OpenSSH's ``ssh`` there).

Blocking (subprocess), like the rest of the rig.
"""

import json
import os
import signal
import subprocess
import sys

from clsd.certs import store
from rig import tomlgen

FLOATING = "192.0.2.10/24"
FLOATING_V6 = "2001:db8::10/64"
HTTP_PORT = 8080
PEER_PORT = 7946
ADMIN_PORT = 7422
NODES = ("alpha", "beta", "witness")
PRIORITIES = {"alpha": 100, "beta": 50}
#: Membership timing for a quiet bridge: failures found within about a second.
MEMBERSHIP = {"heartbeat_interval": 0.1, "failure_timeout": 0.5, "link_down_grace": 0.2,
              "suspicion_timeout": 1.0, "join_retry_interval": 0.3,
              "reconnect_interval": 1.0}


def ip_of(address):
    return address.split("/")[0]


class AddressCluster:
    """Certificates, configs and the three daemons, in C{rig}'s namespaces.

    @param add_cleanup: registers a callable to run at the end (a test's addCleanup).
    """

    def __init__(self, base, rig, add_cleanup, *, order="before", addresses=(FLOATING,),
                 lease=1.0, drift_margin=0.1, preempt_delay=None, admin=False,
                 announce=None):
        self.base = base
        self.rig = rig
        self._add_cleanup = add_cleanup
        self.order = order
        self.addresses = list(addresses)
        self.lease = lease
        self.drift_margin = drift_margin
        #: None: no preempt; else a returning alpha takes A back after this long.
        self.preempt_delay = preempt_delay
        #: The cluster's ``announce`` table ({"count", "interval"}), None: the defaults.
        self.announce = announce
        os.makedirs(base, exist_ok=True)
        self.ca = os.path.join(base, "ca")
        store.init_authority(self.ca)
        self.daemons = {}
        self.admin_key = None
        if admin:
            self.admin_key = os.path.join(base, "admin_id")
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test",
                            "-f", self.admin_key], check=True, stdin=subprocess.DEVNULL)

    def node_dir(self, name):
        return os.path.join(self.base, name)

    def config(self, name):
        node = self.rig.node(name)
        directory = self.node_dir(name)
        cert, key = store.node_paths(directory, name)
        if not os.path.exists(cert):
            store.issue_node(self.ca, name, out=directory, ip_addresses=[str(node.ipv4.ip)])
        others = [n for n in NODES if n != name]
        tables = {
            "node": {"name": name, "data_dir": os.path.join(directory, "data"),
                     "listen": f"{node.ipv4.ip}:{PEER_PORT}",
                     "join": [f"{self.rig.node(o).ipv4.ip}:{PEER_PORT}" for o in others]},
            "tls": {"ca": store.ca_paths(self.ca)[0], "cert": cert, "key": key},
            "membership": dict(MEMBERSHIP),
            "quorum": {"voters": list(NODES), "lease": self.lease,
                       "drift_margin": self.drift_margin},
        }
        priority = PRIORITIES.get(name)
        if priority is not None:
            tables["service"], cluster = self.services(name)
            cluster.update({"id": "A", "priority": priority, "address": self.addresses,
                            "interface": "eth0", "address_order": self.order})
            if self.announce is not None:
                cluster["announce"] = dict(self.announce)
            if self.preempt_delay is not None:
                cluster.update(preempt=True, preempt_delay=self.preempt_delay)
            tables["cluster"] = [cluster]
        if self.admin_key is not None:
            tables["admin"] = {"ssh": f"{node.ipv4.ip}:{ADMIN_PORT}",
                               "authorized_keys": self.admin_key + ".pub"}
        path = os.path.join(directory, "clsd.toml")
        with open(path, "w") as f:
            f.write(tomlgen.dumps(tables))
        return path

    def services(self, name):
        """Node C{name}'s ``[[service]]`` tables for A, and what A's ``[[cluster]]`` says runs it."""
        return [{"name": "web", "command": [
            sys.executable, "-m", "rig.address_http_service", str(HTTP_PORT)],
            "restart": "always", "stop_timeout": 2.0}], {"service": "web"}

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
        self._add_cleanup(lambda: self.stop(name))
        return process

    def start_all(self):
        for name in NODES:
            self.start(name)

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
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            process.wait(5)

    def log(self, name):
        try:
            with open(os.path.join(self.node_dir(name), "twistd.log"), "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def events(self, name):
        """The node's event history (data_dir/events.jsonl), oldest first."""
        path = os.path.join(self.node_dir(name), "data", "events.jsonl")
        try:
            with open(path) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def admin(self, name, *command, timeout=30):
        """Run the admin command on node C{name} (``ssh`` from inside its namespace); its output.

        Raises C{AssertionError} with the output when the command fails.
        """
        argv = ["ssh", "-F", "/dev/null", "-p", str(ADMIN_PORT), "-i", self.admin_key,
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
                "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20", "-T",
                f"admin@{self.rig.node(name).ipv4.ip}", *command]
        done = self.rig.run_in(name, argv, check=False, timeout=timeout)
        if done.returncode != 0:
            raise AssertionError(f"admin {' '.join(command)} on {name} failed "
                                 f"({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def has(self, name, address=FLOATING):
        return address in {str(a) for a in self.rig.addresses(name)}

    def url(self, name=None):
        """The service's URL at the floating address (or at node C{name}'s own)."""
        host = ip_of(FLOATING) if name is None else str(self.rig.node(name).ipv4.ip)
        return f"http://{host}:{HTTP_PORT}/"


class GroupAddressCluster(AddressCluster):
    """An L{AddressCluster} whose A is an ordered group of protected services.

    Member C{m} records every start and stop into C{records} as cluster
    ``A.m`` (L{rig.protected_service}; run a L{rig.recorder.LifelineCollector}
    there to observe deaths), and answers HTTP on its node's own address at
    port C{MEMBER_PORT + k}, where its health check finds it: so each member
    runs (and the next one may start) only after its ``start`` record.
    """

    MEMBER_PORT = 8081
    CHECK = {"type": "http", "interval": 0.1, "timeout": 0.1, "fall": 3, "rise": 1,
             "grace": 2.0}

    def __init__(self, base, rig, add_cleanup, *, members, records, **kwargs):
        super().__init__(base, rig, add_cleanup, **kwargs)
        self.members = tuple(members)
        self.records = records

    def services(self, name):
        host = self.rig.node(name).ipv4.ip
        services = []
        for k, member in enumerate(self.members):
            port = self.MEMBER_PORT + k
            services.append({
                "name": member, "restart": "always", "stop_timeout": 2.0,
                "command": [sys.executable, "-m", "rig.protected_service",
                            "--record", self.records, "--cluster", f"A.{member}",
                            "--http", f"{host}:{port}"],
                "check": {**self.CHECK, "target": f"http://{host}:{port}/"}})
        return services, {"services": list(self.members)}


class ClientWatch:
    """L{rig.address_client_watch} in the client's namespace; its rounds read back.

    Answers: index 0 the floating address, then each of C{nodes}' own address.
    """

    def __init__(self, out, rig, cluster, add_cleanup, nodes=()):
        self.out = out
        self.nodes = list(nodes)
        self._read = 0
        self._rounds = []
        urls = [cluster.url()] + [cluster.url(n) for n in self.nodes]
        argv = rig.exec_argv("client", [sys.executable, "-m", "rig.address_client_watch",
                                        "eth0", ip_of(FLOATING), out, *urls])
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        add_cleanup(self.stop)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)

    def rounds(self):
        """Every round so far (the file is read on from where the last call stopped)."""
        try:
            with open(self.out, "rb") as f:
                f.seek(self._read)
                data = f.read()
        except FileNotFoundError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self._read += len(complete)
        self._rounds += [json.loads(line) for line in complete.splitlines()]
        return self._rounds

    def last(self):
        """The latest round, or None."""
        rounds = self.rounds()
        return rounds[-1] if rounds else None

    def first(self, predicate, since):
        """The time of the first round at or after C{since} for which C{predicate(round)}."""
        for entry in self.rounds():
            if entry["t"] >= since and predicate(entry):
                return entry["t"]
        return None

    def answered_by(self, node, since=0.0):
        return self.first(lambda r: r["answers"][0] == node, since) is not None


class HolderWatch:
    """L{rig.address_holder_watch} over alpha and beta: which of them has C{address}, when."""

    def __init__(self, out, rig, add_cleanup, address=FLOATING, nodes=("alpha", "beta")):
        self.out = out
        argv = [sys.executable, "-m", "rig.address_holder_watch", address, out,
                *(f"{n}={rig.node(n).namespace}" for n in nodes)]
        self.process = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
        add_cleanup(self.stop)

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(5)

    def changes(self):
        """The changes of the holder set, oldest first (C{t}, C{n}: round, C{holders})."""
        try:
            with open(self.out) as f:
                return [json.loads(line) for line in f if line.endswith("\n")]
        except FileNotFoundError:
            return []

    def path(self):
        """The holders one after the other, no-holder stretches and repeats left out."""
        path = []
        for change in self.changes():
            holders = change["holders"]
            if holders and (not path or path[-1] != holders):
                path.append(holders)
        return path

    def rounds(self):
        changes = self.changes()
        return changes[-1]["n"] if changes else 0

    def clean_switches(self):
        """Each handover seen with a moment between: C{(old, new, t)}, C{t} when none held it.

        The address went from C{[old]} to no holder (at C{t}, a round read
        after C{old} removed it) and then to C{[new]}: the kernels showed
        the old owner without it before the new one had it.
        """
        changes = self.changes()
        return [(before["holders"][0], after["holders"][0], gap["t"])
                for before, gap, after in zip(changes, changes[1:], changes[2:])
                if len(before["holders"]) == 1 and gap["holders"] == []
                and len(after["holders"]) == 1 and before["holders"] != after["holders"]]
