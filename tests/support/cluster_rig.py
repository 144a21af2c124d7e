"""In-process cluster nodes for tests: real Daemons on trial's reactor, mutual TLS on 127.0.0.x.

Each node is a L{clsd.daemon.Daemon} built from a generated TOML config
(certificates from a fresh CA, its own reserved loopback address, the first
node as seed). Bounded polling on the reactor, never sleeps.
"""

import json
import os
import sys

from clsd.certs.store import init_authority, issue_node, node_paths
from clsd.config import parse_config
from clsd.daemon import Daemon
from rig import tomlgen
from rig.addresses import reserve
from rig.launcher import free_port
from clsd.polling import poll  # noqa: F401  (re-exported for the cluster tests)

#: Membership timing for tests: quick heartbeats and detection, short leave.
FAST_MEMBERSHIP = {"heartbeat_interval": 0.2, "failure_timeout": 1.0,
                   "link_down_grace": 0.3, "suspicion_timeout": 2.0,
                   "join_retry_interval": 0.3, "sync_interval": 1.0}


class ClusterRig:
    """Certificates, addresses and configs for named nodes; builds their Daemons."""

    def __init__(self, test, names, *, reactor):
        self.reactor = reactor
        self.base = os.path.abspath(test.mktemp())
        os.makedirs(self.base)
        self.certs = os.path.join(self.base, "certs")
        init_authority(self.certs)
        self._reservation = reserve(len(names))
        test.addCleanup(self._reservation.release)
        self.names = list(names)
        self.addresses = dict(zip(self.names, self._reservation.addresses))
        self.ports = {}
        for name in self.names:
            issue_node(self.certs, name, ip_addresses=[self.addresses[name]])
            self.ports[name] = free_port(self.addresses[name])
        self.daemons = {}

    def address(self, name):
        return f"{self.addresses[name]}:{self.ports[name]}"

    def data_dir(self, name):
        return os.path.join(self.base, name, "data")

    def tables(self, name, extra=None):
        """The TOML tables of node C{name}'s config (merged with C{extra})."""
        cert, key = node_paths(self.certs, name)
        tables = {
            "node": {"name": name, "data_dir": self.data_dir(name),
                     "listen": self.address(name), "join": [self.address(self.names[0])]},
            "tls": {"ca": os.path.join(self.certs, "ca.pem"), "cert": cert, "key": key},
            "membership": dict(FAST_MEMBERSHIP),
        }
        for table, value in (extra or {}).items():
            if isinstance(value, dict):
                tables[table] = {**tables.get(table, {}), **value}
            else:
                tables[table] = value
        return tables

    def write_config(self, name, extra=None):
        path = os.path.join(self.base, name, "clsd.toml")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(tomlgen.dumps(self.tables(name, extra)))
        return path

    def daemon(self, name, extra=None):
        """Build (not start) node C{name}'s Daemon."""
        path = self.write_config(name, extra)
        with open(path) as f:
            config = parse_config(f.read(), path, base_dir=os.path.dirname(path))
        daemon = Daemon(config, self.reactor)
        self.daemons[name] = daemon
        return daemon

    def member_states(self, name):
        """{member: state} as node C{name}'s membership sees them."""
        return {info.member.name: info.member.state.value
                for info in self.daemons[name].membership.members()}

    def all_see(self, observers, expected):
        """Whether every observer sees every C{expected} member in its state."""
        return all(
            all(self.member_states(o).get(m) == s for m, s in expected.items() if m != o)
            for o in observers)


def protected_service(name, records_dir):
    """A ``[[service]]`` running the protected test service (records, lifeline)."""
    return {"name": name, "stop_timeout": 3.0, "restart": "always",
            "command": [sys.executable, "-m", "rig.protected_service",
                        "--record", records_dir, "--interval", "0.1"]}


def json_of(result):
    return json.loads(result.stdout)
