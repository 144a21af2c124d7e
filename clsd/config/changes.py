"""What a ``reload`` would change: old L{Config} + new L{Config} -> L{ReloadPlan}, pure.

The daemon applies a plan only when it is L{ReloadPlan.allowed}: the
settings the running node was built from (its name, addresses, TLS files,
quorum, membership, listeners, logging) are read once at start, so a change
to them is refused and named rather than half-applied.  Cluster
registrations cannot be added or removed at runtime yet (the ownership core
has no way to drop a registration after handing its lease over), so a
change to a ``[[cluster]]`` or to the ``[[service]]`` one runs is refused
too, with "restart the node".
"""

import attrs

#: The sections a running node reads only at start, in the order they are reported.
RESTART_ONLY = ("node", "tls", "quorum", "membership", "admin", "metrics", "log")


@attrs.frozen
class ReloadPlan:
    """Service names (sorted) by what happens to them, and why the reload is refused."""

    added: tuple = ()
    removed: tuple = ()
    changed: tuple = ()
    unchanged: tuple = ()
    clusters_added: tuple = ()
    clusters_removed: tuple = ()
    clusters_changed: tuple = ()
    #: Dotted keys that differ and only take effect at a restart (``node.listen``).
    restart_only: tuple = ()
    #: Changes the running node cannot make yet, one sentence each.
    unsupported: tuple = ()

    @property
    def allowed(self):
        return not self.restart_only and not self.unsupported

    @property
    def empty(self):
        return not (self.added or self.removed or self.changed)

    def refusal(self):
        """One line saying why this plan cannot be applied (None when it can)."""
        reasons = []
        if self.restart_only:
            reasons.append("these settings only change at a restart: "
                           + ", ".join(self.restart_only))
        reasons.extend(self.unsupported)
        if not reasons:
            return None
        return "; ".join(reasons)

    def summary(self):
        """``+svc-x, -svc-y, ~svc-z`` or ``no changes``."""
        parts = ([f"+{n}" for n in self.added] + [f"-{n}" for n in self.removed]
                 + [f"~{n}" for n in self.changed])
        return ", ".join(parts) if parts else "no changes"


def plan_reload(old, new):
    """Compare two configurations of the same node; see L{ReloadPlan}."""
    old_services = {s.name: s for s in old.services}
    new_services = {s.name: s for s in new.services}
    added = sorted(set(new_services) - set(old_services))
    removed = sorted(set(old_services) - set(new_services))
    common = sorted(set(old_services) & set(new_services))
    changed = [n for n in common if old_services[n] != new_services[n]]
    unchanged = [n for n in common if old_services[n] == new_services[n]]

    old_clusters = {c.id: c for c in old.clusters}
    new_clusters = {c.id: c for c in new.clusters}
    clusters_added = sorted(set(new_clusters) - set(old_clusters))
    clusters_removed = sorted(set(old_clusters) - set(new_clusters))
    clusters_changed = sorted(i for i in set(old_clusters) & set(new_clusters)
                              if old_clusters[i] != new_clusters[i])

    unsupported = []
    touched = clusters_added + clusters_removed + clusters_changed
    if touched:
        unsupported.append(
            "cluster registrations cannot change at runtime (not supported yet: restart "
            f"the node): cluster {', '.join(touched)}")
    # A service that runs a cluster (before or after) is started and stopped by
    # the lease, not by reload: changing it would bypass the handover.
    leased = {c.service: c.id for c in old.clusters} | {c.service: c.id for c in new.clusters}
    managed = [n for n in added + removed + changed if n in leased]
    if managed:
        unsupported.append(
            "services that run a cluster cannot change at runtime (not supported yet: "
            "restart the node): " + ", ".join(f"{n} (cluster {leased[n]})" for n in managed))

    restart_only = []
    for section in RESTART_ONLY:
        restart_only.extend(_differing_keys(section, getattr(old, section),
                                            getattr(new, section)))
    return ReloadPlan(
        added=tuple(added), removed=tuple(removed), changed=tuple(changed),
        unchanged=tuple(unchanged), clusters_added=tuple(clusters_added),
        clusters_removed=tuple(clusters_removed), clusters_changed=tuple(clusters_changed),
        restart_only=tuple(restart_only), unsupported=tuple(unsupported))


def _differing_keys(path, old, new):
    """The dotted keys under C{path} whose values differ (C{path} itself for a whole table)."""
    if old == new:
        return []
    if (old is None or new is None or type(old) is not type(new)
            or not attrs.has(type(old))):
        return [path]
    keys = []
    for field in attrs.fields(type(old)):
        keys.extend(_differing_keys(f"{path}.{field.name}", getattr(old, field.name),
                                    getattr(new, field.name)))
    return keys
