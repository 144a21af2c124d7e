"""The ``[[cluster]]`` tables: which cluster IDs this node can run, and how.

A cluster ID is user-chosen; many nodes register for the same ID (each with
the ``[[service]]`` that runs it there), and the lease decides which node
runs it. In the product "cluster" always means such an ID (the unit that
fails over), never a set of nodes; hence the module's name.
"""

import string

import attrs

from clsd.config.floating import check_floating, parse_floating
from clsd.config.reader import NAME_PATTERN
from clsd.ownership.core.escalation import DEFAULT_COOLDOWN

MODES = ("active-standby", "n-active")
#: What a dependent does while the cluster it follows (``after``) fails over:
#: keeps running (the default), or stops until it runs again.
AFTER_FAILOVER = ("keep", "stop")
#: The placeholders a fence or notify command may use.
PLACEHOLDERS = ("node", "cluster", "epoch", "event")
#: Default preempt delay: a returning higher-priority node must stay healthy
#: this long before it takes the cluster back, so a flapping node does not
#: drag the service back and forth.
DEFAULT_PREEMPT_DELAY = 30.0
MAX_PRIORITY = 1_000_000


@attrs.frozen
class ClusterConfig:
    id: str
    #: The one ``[[service]]`` that runs this cluster, or None for a group.
    service: str | None = None
    priority: int = 100
    mode: str = "active-standby"
    count: int = 1
    preempt: bool = False
    preempt_delay: float = DEFAULT_PREEMPT_DELAY
    fence: tuple | None = None
    notify: tuple | None = None
    cooldown: float = DEFAULT_COOLDOWN
    #: The floating service address (L{clsd.config.floating.FloatingAddress}), or None.
    floating: object = None
    #: An ordered group (``services = [...]``): started in this order, stopped in reverse.
    services: tuple = ()
    #: Cluster IDs that must run somewhere before this one starts (doc/groups.md).
    after: tuple = ()
    #: Cluster IDs this one runs beside: only on the node that runs them.
    with_: tuple = ()
    #: Cluster IDs this one never runs beside.
    not_with: tuple = ()
    #: ``keep`` or ``stop``: what this cluster does while one it follows fails over.
    after_failover: str = "keep"

    @property
    def members(self):
        """The services that run this cluster here, in start order (one unless a group)."""
        return self.services if self.services else (self.service,)

    @property
    def group(self):
        """Whether this cluster is run by an ordered group of services."""
        return bool(self.services)

    @property
    def label(self):
        """The service (or the group's members, in order) as one string for messages."""
        return ", ".join(self.members)


def parse_cluster(table):
    cluster_id = table.name("id", "cluster ID")
    service, services = _services(table)
    priority = table.integer("priority", 100, minimum=0, maximum=MAX_PRIORITY)
    mode = table.choice("mode", MODES, "active-standby")
    count = table.integer("count", 1, minimum=1, maximum=1024)
    if mode == "active-standby" and count != 1:
        raise table.error(
            "count", f"must be 1 for mode = \"active-standby\" (use mode = \"n-active\" "
            f"for {count} copies), got {count}")
    preempt = table.boolean("preempt", False)
    preempt_delay = table.number("preempt_delay", DEFAULT_PREEMPT_DELAY, minimum=0.0)
    fence = _command(table, "fence")
    notify = _command(table, "notify")
    cooldown = table.number("cooldown", DEFAULT_COOLDOWN, positive=True)
    floating = parse_floating(table)
    after = _cluster_ids(table, "after", cluster_id)
    with_ = _cluster_ids(table, "with", cluster_id)
    not_with = _cluster_ids(table, "not_with", cluster_id)
    for index, other in enumerate(not_with):
        if other in with_:
            raise table.error(f"not_with[{index}]",
                              f"names {other!r}, which with names too: a cluster cannot run "
                              "both beside and never beside another")
    after_failover = table.choice("after_failover", AFTER_FAILOVER, "keep")
    table.finish()
    return ClusterConfig(
        id=cluster_id, service=service, priority=priority, mode=mode, count=count,
        preempt=preempt, preempt_delay=preempt_delay, fence=fence, notify=notify,
        cooldown=cooldown, floating=floating, services=services, after=after, with_=with_,
        not_with=not_with, after_failover=after_failover,
    )


def _cluster_ids(table, key, own):
    """A list of other cluster IDs (``after``, ``with``, ``not_with``); empty when absent."""
    ids = table.string_list(key, [])
    seen = {}
    for index, value in enumerate(ids):
        path = f"{key}[{index}]"
        if not NAME_PATTERN.match(value):
            raise table.error(path, f"not a valid cluster ID: {value!r}")
        if value == own:
            raise table.error(path, f"names the cluster itself ({own!r})")
        if value in seen:
            raise table.error(path, f"names {value!r} twice (also {key}[{seen[value]}])")
        seen[value] = index
    return ids


def _services(table):
    """``service`` (one) or ``services`` (an ordered group): exactly one of the two."""
    if "services" in table:
        if "service" in table:
            raise table.error(
                "services", "and service are exclusive: give one service, or the ordered "
                "group in services alone")
        members = table.string_list("services", nonempty=True)
        seen = {}
        for index, name in enumerate(members):
            if name in seen:
                raise table.error(f"services[{index}]",
                                  f"names {name!r} twice (also services[{seen[name]}])")
            seen[name] = index
        return None, members
    if "service" not in table:
        raise table.error("service", "is required (or services = [...] for an ordered group)")
    return table.string("service"), ()


def _command(table, key):
    if key not in table:
        table.raw(key, None)
        return None
    argv = table.string_list(key, nonempty=True)
    if not argv[0]:
        raise table.error(f"{key}[0]", "the program name must not be empty")
    for index, arg in enumerate(argv):
        try:
            fields = [f for _, f, _, _ in string.Formatter().parse(arg) if f is not None]
        except ValueError as e:
            raise table.error(f"{key}[{index}]", f"bad placeholder in {arg!r}: {e}") from None
        for name in fields:
            if name not in PLACEHOLDERS:
                allowed = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                raise table.error(
                    f"{key}[{index}]", f"unknown placeholder {{{name}}} (allowed: {allowed})")
    return argv


def check_clusters(source, clusters, services, quorum, node_name):
    """Rules across tables; raises L{ConfigError} naming the offending key."""
    from clsd.config.reader import ConfigError

    names = {s.name for s in services}
    seen_ids, seen_services = {}, {}
    for index, cluster in enumerate(clusters):
        path = f"cluster[{index}]"
        if cluster.id in seen_ids:
            raise ConfigError(source, f"{path}.id",
                              f"duplicate cluster ID {cluster.id!r} (also cluster[{seen_ids[cluster.id]}])")
        seen_ids[cluster.id] = index
        for position, member in enumerate(cluster.members):
            key = f"{path}.services[{position}]" if cluster.group else f"{path}.service"
            if member not in names:
                known = ", ".join(sorted(names)) or "none defined"
                raise ConfigError(source, key,
                                  f"names no [[service]]: {member!r} (services: {known})")
            if member in seen_services:
                raise ConfigError(
                    source, key,
                    f"service {member!r} already runs cluster "
                    f"{clusters[seen_services[member]].id!r}: one service process "
                    "carries one cluster's identity and epoch; define a second [[service]]")
            seen_services[member] = index
    check_floating(source, clusters)
    check_dependencies(source, clusters)
    if clusters and quorum is None:
        raise ConfigError(
            source, "quorum",
            "is required when [[cluster]] tables exist: leases are granted by the voters "
            f"it names (for a single machine: [quorum] voters = [\"{node_name}\"])")
    if quorum is not None and len(quorum.voters) == 2:
        for index, cluster in enumerate(clusters):
            if cluster.fence is None:
                raise ConfigError(
                    source, f"cluster[{index}].fence",
                    f"is required because [quorum] has only two voters "
                    f"({', '.join(quorum.voters)}): a lease needs a majority, 2 of 2, so when "
                    "one machine dies or the link between them breaks, neither side can tell "
                    "the other is really stopped. Either add a third voter (a witness: a clsd "
                    "with no services) or give every cluster a fence command that powers "
                    "off or isolates the other node")


def check_dependencies(source, clusters):
    """``with`` names clusters of this node (of a mode it can follow); no cycle in after/with.

    ``after`` and ``not_with`` may name clusters this node does not run (the
    database another tier follows runs elsewhere); ``with`` may not: a
    colocated cluster runs only on the node that runs its anchor, so this
    node must be able to run the anchor.
    """
    from clsd.config.reader import ConfigError

    by_id = {c.id: (index, c) for index, c in enumerate(clusters)}
    for index, cluster in enumerate(clusters):
        for position, anchor in enumerate(cluster.with_):
            path = f"cluster[{index}].with[{position}]"
            if anchor not in by_id:
                known = ", ".join(sorted(by_id)) or "none"
                raise ConfigError(
                    source, path, f"names no [[cluster]] of this node: {anchor!r} (a cluster "
                    f"runs with another only on the node that runs it; clusters: {known})")
            other = by_id[anchor][1]
            if cluster.mode == "active-standby" and other.mode == "n-active":
                raise ConfigError(
                    source, path, f"names the n-active cluster {anchor!r} for the "
                    f"active-standby cluster {cluster.id!r}: it runs on {other.count} nodes, "
                    "so \"the node that runs it\" is not one node")
    edges = {c.id: [d for d in (*c.after, *c.with_) if d in by_id] for c in clusters}
    for cluster in clusters:
        cycle = _cycle_from(cluster.id, edges)
        if cycle is not None:
            index = by_id[cluster.id][0]
            key = "after" if cycle[1] in cluster.after else "with"
            raise ConfigError(source, f"cluster[{index}].{key}",
                              f"a cycle of after/with: {' -> '.join(cycle)}")


def _cycle_from(start, edges):
    """The first cycle through C{start} in C{edges} (a list of IDs, start repeated), or None."""
    stack = [(start, [start])]
    seen = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None
