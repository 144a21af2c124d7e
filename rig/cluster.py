"""Launcher template parts for a REAL cluster: peers over mutual TLS, a quorum, cluster IDs.

A L{Layout} says who votes and which node runs which cluster ID at which
priority; a L{ClusterRig} turns it into L{rig.launcher} parts:

  - ``[node]`` listen/advertise on the node's own 127.0.0.x and ``join`` =
    every other node (so any one of them may be down at start);
  - ``[tls]`` with a per-node certificate from one test CA made with
    L{clsd.certs.store} in the rig directory (``ca/``);
  - ``[quorum]`` (the same on every node) and optionally ``[membership]``;
  - for each cluster ID a node is a candidate for: one ``[[service]]``
    running the protected test service (recording to the rig's recorder,
    serving HTTP on the node's address so that "it answers on the standby"
    can be measured) and its ``[[cluster]]`` entry. A voter with no entry in
    any cluster is a witness: no services at all.

Ports (peer listener, each service's HTTP) are picked once per rig, when the
first config is written, and kept: a node restarted under the same name comes
back on the same addresses, as a real machine would.
"""

import os
import sys

import attrs

from clsd.certs import store
from rig.faults.cleanup import OWNER_ENV
from rig.launcher import RIG_ENV, free_port

#: Service and HTTP health check settings of the protected service (see
#: L{rig.launcher.protected_service_part}): a hung service is found
#: in about a second.
HEALTH_CHECK = {"type": "http", "interval": 0.3, "timeout": 0.25, "fall": 3, "rise": 1,
                "grace": 2.0}


@attrs.frozen
class Layout:
    """Who votes, and for each cluster ID which nodes run it at which priority."""

    #: Node names in start order; each gets its own 127.0.0.x.
    nodes: tuple
    voters: tuple
    #: C{{cluster_id: {node: priority}}}.
    clusters: dict
    #: Extra keys for every ``[[cluster]]`` table (e.g. C{{"preempt": True}}).
    cluster_options: dict = attrs.Factory(dict)
    #: Extra keys for one cluster's tables: C{{cluster_id: {"mode": "n-active", "count": 2}}}.
    cluster_settings: dict = attrs.Factory(dict)
    #: Nodes not started with the others: they may join later through the
    #: others as seeds (fault kind ``join``). Never voters.
    spares: tuple = ()

    @property
    def all_nodes(self):
        return (*self.nodes, *self.spares)

    def count(self, cluster):
        """How many copies of C{cluster} run at once: 1, or N for an n-active cluster."""
        return self.cluster_settings.get(cluster, {}).get("count", 1)

    def candidates(self, cluster):
        """The nodes registered for C{cluster}, best first (priority, then name)."""
        prio = self.clusters[cluster]
        return sorted(prio, key=lambda n: (-prio[n], n))

    def preferred(self, cluster):
        return self.candidates(cluster)[0]

    def clusters_of(self, node):
        return [c for c, prio in self.clusters.items() if node in prio]

    @property
    def witnesses(self):
        return tuple(n for n in self.nodes if not self.clusters_of(n))


def mutual_standby():
    """The seed's example (doc/examples/mutual-standby): alpha runs A and stands by for B,
    beta the reverse, and a witness votes."""
    return Layout(
        nodes=("alpha", "beta", "witness"),
        voters=("alpha", "beta", "witness"),
        clusters={"A": {"alpha": 100, "beta": 50}, "B": {"beta": 100, "alpha": 50}},
    )


def active_standby(cluster="A"):
    """One cluster ID: alpha preferred, beta its standby, a witness as the third voter."""
    return Layout(
        nodes=("alpha", "beta", "witness"),
        voters=("alpha", "beta", "witness"),
        clusters={cluster: {"alpha": 100, "beta": 50}},
    )


def ring_layout(names, *, spares=(), n_active=0):
    """For the fault runner: N nodes, the last a witness; each other node runs one cluster
    ID (priority 100) and stands by (50) for its neighbour's, in a ring.

    With 3 nodes this is the mutual-standby example (c1 on n1 / n2, c2 on
    n2 / n1, n3 the witness). Voters: every node for 3 or 5, else the first 3
    (or 5 from 6 nodes on).

    @param spares: nodes that may join later; spare k stands by (priority 30)
        for cluster ``c{k}`` (round the ring) and for the n-active cluster.
    @param n_active: when above 0, an n-active cluster ``nx`` with
        C{count = n_active} on every non-witness node (priorities 90, 80, ...
        in node order) and the spares: C{n_active} copies on distinct nodes.
    """
    names = tuple(names)
    if len(names) < 3:
        raise ValueError(f"a cluster with failover needs at least 3 nodes, got {len(names)}")
    voters = names if len(names) in (3, 5) else names[:5 if len(names) > 5 else 3]
    workers = names[:-1]
    clusters = {
        f"c{i + 1}": {node: 100, workers[(i + 1) % len(workers)]: 50}
        for i, node in enumerate(workers)
    }
    spares = tuple(spares)
    if set(spares) & set(names):
        raise ValueError(f"spares {list(spares)} overlap the nodes {list(names)}")
    for k, spare in enumerate(spares):
        clusters[f"c{k % len(workers) + 1}"][spare] = 30
    settings = {}
    if n_active:
        if n_active > len(workers):
            raise ValueError(f"n_active = {n_active} needs as many non-witness nodes, "
                             f"have {len(workers)}")
        clusters["nx"] = {node: 90 - 10 * i for i, node in enumerate(workers)}
        clusters["nx"].update({spare: 30 for spare in spares})
        settings["nx"] = {"mode": "n-active", "count": n_active}
    return Layout(nodes=names, voters=voters, clusters=clusters, cluster_settings=settings,
                  spares=spares)


@attrs.frozen
class Timing:
    """``[quorum]`` lease settings and ``[membership]`` overrides (empty: defaults)."""

    name: str
    #: None: the daemon's defaults (clsd.ownership.core.timing).
    lease: float | None = None
    drift_margin: float | None = None
    membership: dict = attrs.Factory(dict)

    def with_membership(self, **settings):
        """The same timing with more ``[membership]`` keys."""
        return attrs.evolve(self, membership={**self.membership, **settings})

    @property
    def lease_seconds(self):
        """The lease the daemons will use."""
        from clsd.ownership.core.timing import DEFAULT_LEASE

        return DEFAULT_LEASE if self.lease is None else self.lease

    def quorum_table(self, voters):
        table = {"voters": list(voters)}
        if self.lease is not None:
            table["lease"] = self.lease
        if self.drift_margin is not None:
            table["drift_margin"] = self.drift_margin
        return table


#: What an operator gets without tuning anything.
DEFAULT_TIMING = Timing("default")

#: The fast profile for a quiet LAN or loopback: a 0.6 s lease (renewed every
#: 0.2 s, retried every 50 ms) and failure detection to match: heartbeats every
#: 100 ms, a node silent for 0.4 s (or whose connection stays closed for
#: 0.15 s) reported, suspicion settled within a second. A margin of 50 ms is
#: still 40 times the drift bound (2 * 500 ppm * 0.6 s) and leaves about 45 ms
#: for the guard's kill. Not for a loaded or lossy network: a 0.2 s hiccup
#: costs a renewal attempt, a 0.4 s one a failover.
FAST_TIMING = Timing(
    "fast", lease=0.6, drift_margin=0.05,
    membership={"heartbeat_interval": 0.1, "failure_timeout": 0.4, "link_down_grace": 0.15,
                "suspicion_timeout": 1.0, "gossip_interval": 0.05,
                "join_retry_interval": 0.3},
)

TIMINGS = {t.name: t for t in (DEFAULT_TIMING, FAST_TIMING)}


def service_name(cluster):
    return f"system-{cluster.lower()}"


class ClusterRig:
    """Template parts and addresses for one launcher running C{layout}."""

    def __init__(self, layout, timing=DEFAULT_TIMING, *, interval=0.1, health_check=True,
                 escaping=False, ready_delay=0.0, check=None):
        """
        @param interval: the protected service's heartbeat interval (s).
        @param health_check: give each service an HTTP health check.
        @param ready_delay: each protected service serves HTTP (is ready) this
            long after it starts.
        @param check: the health check's settings (default L{HEALTH_CHECK}).
        @param escaping: the protected services double-fork and setsid
            (``--escape``): the copy that records leaves its process group.
        """
        self.layout = layout
        self.timing = timing
        self.interval = interval
        self.health_check = health_check
        self.escaping = escaping
        self.ready_delay = ready_delay
        self.check = dict(check if check is not None else HEALTH_CHECK)
        #: C{{(node, cluster): settings}} that replace the layout's for one
        #: node's next config (the rig's ``reshape`` fault).
        self.reshaped = {}
        self._ports = None

    # -- addresses ----------------------------------------------------------------

    def _allocate(self, launcher):
        """Pick every port once, for every node (join needs the others' before they start)."""
        if self._ports is None:
            ports = {}
            for name in self.layout.all_nodes:
                address = launcher.address(name)
                ports[name, None] = free_port(address)
                for key in self._port_keys(name):
                    ports[name, key] = free_port(address)
            self._ports = ports
        return self._ports

    def _port_keys(self, node):
        """What on C{node} gets its own HTTP port: each of its clusters."""
        return self.layout.clusters_of(node)

    def peer_address(self, launcher, node):
        return launcher.address(node), self._allocate(launcher)[node, None]

    def http_address(self, launcher, node, cluster):
        """Where C{cluster}'s protected service answers when C{node} runs it."""
        return launcher.address(node), self._allocate(launcher)[node, cluster]

    def http_url(self, launcher, node, cluster):
        host, port = self.http_address(launcher, node, cluster)
        return f"http://{host}:{port}/"

    # -- certificates ----------------------------------------------------------------

    def ca_dir(self, launcher):
        return os.path.join(launcher.directory, "ca")

    def certificates(self, launcher, node):
        """C{(ca, cert, key)} paths for C{node}: the CA is made once, each node's once."""
        ca_dir = self.ca_dir(launcher)
        ca_cert, _ = store.ca_paths(ca_dir)
        if not os.path.exists(ca_cert):
            store.init_authority(ca_dir, name=f"clsd test CA {launcher.rig_id}")
        out = os.path.join(launcher.node(node).spec.directory, "tls")
        cert, key = store.node_paths(out, node)
        if not os.path.exists(cert):
            store.issue_node(ca_dir, node, out=out, ip_addresses=[launcher.address(node)])
        return ca_cert, cert, key

    # -- parts ------------------------------------------------------------------------------

    def parts(self):
        """The parts to add to a launcher's template, in order."""
        return [self.peers_part, self.tls_part, self.quorum_part, self.clusters_part]

    def template(self, base=None):
        from rig.launcher import ConfigTemplate

        template = base or ConfigTemplate()
        for part in self.parts():
            template = template.with_part(part)
        return template

    def _ready_args(self):
        return ["--ready-delay", str(self.ready_delay)] if self.ready_delay else []

    def peers_part(self, node, launcher):
        """``[node]`` listen = advertise = own address, join = every other node.

        Spares are never in anyone's ``join``: they are not running at first,
        and a spare that joins finds the others through them as seeds.
        """
        host, port = self.peer_address(launcher, node.name)
        join = [f"{h}:{p}" for h, p in (self.peer_address(launcher, other)
                                         for other in self.layout.nodes if other != node.name)]
        return {"node": {"listen": f"{host}:{port}", "advertise": f"{host}:{port}",
                         "join": join}}

    def tls_part(self, node, launcher):
        ca, cert, key = self.certificates(launcher, node.name)
        return {"tls": {"ca": ca, "cert": cert, "key": key}}

    def quorum_part(self, node, launcher):
        tables = {"quorum": self.timing.quorum_table(self.layout.voters)}
        if self.timing.membership:
            tables["membership"] = dict(self.timing.membership)
        return tables

    def clusters_part(self, node, launcher):
        """One protected ``[[service]]`` and ``[[cluster]]`` per cluster ID of this node."""
        services, clusters = [], []
        for cluster in self.layout.clusters_of(node.name):
            host, port = self.http_address(launcher, node.name, cluster)
            name = service_name(cluster)
            command = [sys.executable, "-m", "rig.protected_service",
                       "--record", launcher.records_dir, "--interval", str(self.interval),
                       "--http", f"{host}:{port}", *(["--escape"] if self.escaping else []),
                       *self._ready_args()]
            # CLSD_CLUSTER, CLSD_EPOCH and CLSD_NODE come from the daemon that
            # holds the lease: the records then show what ownership decided.
            service = {"name": name, "command": command,
                       "env": {RIG_ENV: launcher.rig_id, OWNER_ENV: str(launcher.owner_pid)},
                       "restart": "always", "stop_timeout": 3.0}
            if self.health_check:
                service["check"] = {**self.check, "target": f"http://{host}:{port}/"}
            services.append(service)
            clusters.append({"id": cluster, "service": name,
                             "priority": self.layout.clusters[cluster][node.name],
                             **self.layout.cluster_options,
                             **self.reshaped.get((node.name, cluster),
                                                 self.layout.cluster_settings.get(cluster, {}))})
        tables = {}
        if services:
            tables["service"] = services
            tables["cluster"] = clusters
        return tables


def member_resource(cluster, member):
    """What one member of an ordered group records as its cluster: ``A.db``.

    Each member is held to one copy at a time by the checker, like a cluster
    (``A.db`` on alpha and ``A.db`` on beta must never overlap); the group's
    members on one node run side by side, so they must not share a name.
    """
    return f"{cluster}.{member}"


class GroupClusterRig(ClusterRig):
    """A L{ClusterRig} whose every cluster ID is an ordered group of protected services.

    Member C{m} of cluster C{A} is the ``[[service]]`` ``system-a-m``; it
    records as cluster ``A.m`` (L{member_resource}) and answers HTTP on a
    port of its own, so C{FailoverRig.wait_owner("A.m")} finds it.  The
    ``[[cluster]]`` names them in order: ``services = [...]``.
    """

    def __init__(self, layout, members, timing=DEFAULT_TIMING, **kwargs):
        super().__init__(layout, timing, **kwargs)
        self.members = tuple(members)

    def _allocate(self, launcher):
        if self._ports is None:
            ports = {}
            for name in self.layout.all_nodes:
                address = launcher.address(name)
                ports[name, None] = free_port(address)
                for cluster in self.layout.clusters_of(name):
                    for member in self.members:
                        ports[name, member_resource(cluster, member)] = free_port(address)
            self._ports = ports
        return self._ports

    def clusters_part(self, node, launcher):
        services, clusters = [], []
        for cluster in self.layout.clusters_of(node.name):
            names = []
            for member in self.members:
                resource = member_resource(cluster, member)
                host, port = self.http_address(launcher, node.name, resource)
                name = f"{service_name(cluster)}-{member}"
                names.append(name)
                service = {"name": name,
                           "command": [sys.executable, "-m", "rig.protected_service",
                                       "--record", launcher.records_dir,
                                       "--interval", str(self.interval),
                                       "--http", f"{host}:{port}", "--cluster", resource,
                                       *self._ready_args()],
                           "env": {RIG_ENV: launcher.rig_id, OWNER_ENV: str(launcher.owner_pid)},
                           "restart": "always", "stop_timeout": 3.0}
                if self.health_check:
                    service["check"] = {**self.check, "target": f"http://{host}:{port}/"}
                services.append(service)
            clusters.append({"id": cluster, "services": names,
                             "priority": self.layout.clusters[cluster][node.name],
                             **self.layout.cluster_options,
                             **self.layout.cluster_settings.get(cluster, {})})
        tables = {}
        if services:
            tables["service"] = services
            tables["cluster"] = clusters
        return tables
