"""The ``groups`` scenario: an ordered group and the clusters that depend on it, under faults.

On N nodes (the last a witness, every other node a worker):

  - ``A`` is an ordered group of three protected services, ``vol``, ``db``
    and ``exp`` (doc/groups.md), on every worker (priorities 100, 80, ...
    in node order). Its members record as ``A.vol``, ``A.db`` and ``A.exp``,
    so the checker holds each member to one copy across the nodes, and
    checks that they start bottom up within each tenure
    (L{rig.checker.group_order});
  - ``B`` runs ``with = ["A"]``: on the node that runs A, started after it
    there. Its own priorities are the reverse of A's, so only the
    colocation puts it beside A;
  - ``C`` runs ``after = ["A"]``: only while A runs somewhere. It prefers
    the second worker, so it usually follows A from another node.

Every cluster has every worker as a candidate (and the spares, at priority
10), so a side of a partition that can run A can run B and C: the failover
bound during the run needs no rule of its own for the dependencies.
A ``reshape`` restarts a node with C as ``n-active``, ``count = 1``
(A and B keep their shape: B's ``with`` may not name an n-active A). A
``kill_service`` or ``pause_service`` hits any service of its node, a member
of the group as often as not (L{GroupsScenario.service_to_hit}).
"""

import sys

from rig.cluster import ClusterRig, Layout, member_resource, service_name
from rig.faults.cleanup import OWNER_ENV
from rig.faults.runner import ClustersScenario
from rig.launcher import RIG_ENV

GROUP = "A"
MEMBERS = ("vol", "db", "exp")
COLOCATED = "B"
FOLLOWER = "C"


def groups_layout(names, *, spares=()):
    """The scenario's L{Layout}: A, B with A, C after A on every worker; the last node a witness.

    Voters: every node for 3 or 5 nodes, else the first 3 (or 5 from 6 nodes on).
    """
    names = tuple(names)
    if len(names) < 3:
        raise ValueError(f"the groups scenario needs at least 3 nodes, got {len(names)}")
    spares = tuple(spares)
    if set(spares) & set(names):
        raise ValueError(f"spares {list(spares)} overlap the nodes {list(names)}")
    voters = names if len(names) in (3, 5) else names[:5 if len(names) > 5 else 3]
    workers = names[:-1]
    step = 60 // len(workers)

    def ranked(order):
        prio = {node: 100 - step * i for i, node in enumerate(order)}
        prio.update({spare: 10 for spare in spares})
        return prio
    return Layout(
        nodes=names, voters=voters, spares=spares,
        clusters={GROUP: ranked(workers), COLOCATED: ranked(workers[::-1]),
                  FOLLOWER: ranked(workers[1:] + workers[:1])},
        cluster_settings={COLOCATED: {"with": [GROUP]}, FOLLOWER: {"after": [GROUP]}})


def member_resources():
    """The group's members as the checker knows them, bottom first: C{("A.vol", ...)}."""
    return tuple(member_resource(GROUP, m) for m in MEMBERS)


def judged_layout(layout):
    """C{layout} with the group replaced by its members, for the checks on records.

    The records name members (``A.db``), not the group; each member must
    run wherever and whenever the group must.
    """
    clusters = {c: prio for c, prio in layout.clusters.items() if c != GROUP}
    clusters.update({m: layout.clusters[GROUP] for m in member_resources()})
    return Layout(nodes=layout.nodes, voters=layout.voters, clusters=clusters,
                  spares=layout.spares)


class GroupsRig(ClusterRig):
    """Template parts for L{groups_layout}: A as a group, B and C as single services."""

    def _resources(self, node):
        for cluster in self.layout.clusters_of(node):
            if cluster == GROUP:
                yield from ((cluster, m, member_resource(cluster, m)) for m in MEMBERS)
            else:
                yield cluster, None, cluster

    def _port_keys(self, node):
        """Each member of A, and B and C, gets its own HTTP port."""
        return [resource for _, _, resource in self._resources(node)]

    def _service(self, node, launcher, name, resource, *, member):
        host, port = self.http_address(launcher, node.name, resource)
        command = [sys.executable, "-m", "rig.protected_service",
                   "--record", launcher.records_dir, "--interval", str(self.interval),
                   "--http", f"{host}:{port}", *(["--escape"] if self.escaping else []),
                   *self._ready_args()]
        if member:
            # Members of one group must not share a recorded name (see member_resource).
            command += ["--cluster", resource]
        service = {"name": name, "command": command,
                   "env": {RIG_ENV: launcher.rig_id, OWNER_ENV: str(launcher.owner_pid)},
                   "restart": "always", "stop_timeout": 3.0}
        if self.health_check:
            service["check"] = {**self.check, "target": f"http://{host}:{port}/"}
        return service

    def clusters_part(self, node, launcher):
        services, clusters = [], []
        for cluster in self.layout.clusters_of(node.name):
            entry = {"id": cluster, "priority": self.layout.clusters[cluster][node.name]}
            if cluster == GROUP:
                names = [f"{service_name(cluster)}-{m}" for m in MEMBERS]
                services += [self._service(node, launcher, name, member_resource(cluster, m),
                                           member=True) for name, m in zip(names, MEMBERS)]
                entry["services"] = names
            else:
                services.append(self._service(node, launcher, service_name(cluster), cluster,
                                              member=False))
                entry["service"] = service_name(cluster)
            entry.update(self.layout.cluster_options)
            entry.update(self.reshaped.get((node.name, cluster),
                                           self.layout.cluster_settings.get(cluster, {})))
            clusters.append(entry)
        tables = {}
        if services:
            tables["service"] = services
            tables["cluster"] = clusters
        return tables


class GroupsScenario(ClustersScenario):
    """Real failover of an ordered group (A) and of clusters tied to it (B with A, C after A)."""

    name = "groups"

    def __init__(self, *, timing=None, escaping=False):
        super().__init__(timing=timing, n_active=0, escaping=escaping)

    @property
    def description(self):
        escaping = ", services escape their process group" if self.escaping else ""
        return (f"groups (A: ordered group {', '.join(MEMBERS)}; B with A; C after A; "
                f"witness; {self.timing.name} timing{escaping})")

    def make_rig(self, nodes, spares):
        return GroupsRig(groups_layout(nodes, spares=spares), self.timing,
                         escaping=self.escaping)

    def reshape(self, launcher, node, change):
        """Give C{node} C as ``n-active``, ``count = 1`` from its next start (either change).

        @raise ValueError: C{node} is no candidate for C.
        """
        rig = self.cluster_rig(launcher)
        if node not in rig.layout.clusters[FOLLOWER]:
            raise ValueError(f"{node} does not run {FOLLOWER}")
        settings = {**rig.layout.cluster_settings[FOLLOWER], "mode": "n-active", "count": 1}
        rig.reshaped[node, FOLLOWER] = settings
        return FOLLOWER, settings, lambda: rig.reshaped.pop((node, FOLLOWER), None)

    def capacity(self, launcher):
        return {}

    def expected_clusters(self, launcher):
        return list(self.layout(launcher).clusters)

    def layout(self, launcher):
        """What the records are judged against: the group's members stand for the group."""
        return judged_layout(self.cluster_rig(launcher).layout)

    def service_to_hit(self, running, event):
        """Which of a node's running instances a kill or pause of a service hits.

        The newest one (the runner's default) is nearly always B or C, started
        after the group; here any of them, members included, by the event's
        time, so a replay hits the same one wherever the same instances run.
        """
        ordered = sorted(running, key=lambda i: (i.cluster, i.instance))
        return ordered[round(event.at * 100) % len(ordered)]

    def groups(self, launcher):
        """The ordered groups whose start order the checker judges."""
        return {GROUP: member_resources()}
