"""The ``[[cluster]]`` tables: which cluster IDs this node can run, and how.

A cluster ID is user-chosen; many nodes register for the same ID (each with
the ``[[service]]`` that runs it there), and the lease decides which node
runs it. In the product "cluster" always means such an ID (the unit that
fails over), never a set of nodes; hence the module's name.
"""

import string

import attrs

from clsd.config.floating import check_floating, parse_floating
from clsd.ownership.core.escalation import DEFAULT_COOLDOWN

MODES = ("active-standby", "n-active")
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
    table.finish()
    return ClusterConfig(
        id=cluster_id, service=service, priority=priority, mode=mode, count=count,
        preempt=preempt, preempt_delay=preempt_delay, fence=fence, notify=notify,
        cooldown=cooldown, floating=floating, services=services,
    )


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
