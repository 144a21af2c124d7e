"""What a ``reload`` would change: old L{Config} + new L{Config} -> L{ReloadPlan}, pure.

The daemon applies a plan only when it is L{ReloadPlan.allowed}: the
settings the running node was built from (its name, addresses, TLS files,
quorum, etcd, membership, peer limits, listeners, logging) are read once at start, so a change
to them is refused and named rather than half-applied.

Cluster registrations do change at runtime.  A cluster whose ``priority``,
``preempt``, ``preempt_delay``, ``fence``, ``notify`` or ``cooldown`` changed
is *updated* in place.  A cluster that is removed, or whose ``service``,
``mode`` or ``count`` changed, or whose ``[[service]]`` table changed, is
*withdrawn* first (like standby for that cluster: its service stops, the lease
is released, the next candidate takes over); a *replaced* one is then
registered again with the new settings.

Admission changes at runtime too: ``membership.allow`` and ``tls.crl`` (and
the revocation list's contents, which the daemon re-reads at every reload)
are applied at once, expelling nodes no longer admitted.
"""

import attrs

from clsd.ownership.core.manager import changes_in_place

#: The sections a running node reads only at start, in the order they are reported.
RESTART_ONLY = ("node", "tls", "quorum", "etcd", "membership", "peer", "admin", "metrics",
                "log")
#: Keys inside those sections that a reload applies (who is admitted as a peer).
ADMISSION_KEYS = ("membership.allow", "tls.crl")


@attrs.frozen
class ReloadPlan:
    """Service names (sorted) by what happens to them, and why the reload is refused."""

    added: tuple = ()
    removed: tuple = ()
    changed: tuple = ()
    unchanged: tuple = ()
    clusters_added: tuple = ()
    clusters_removed: tuple = ()
    #: Clusters changed only in fields that change in place (priority, hooks...).
    clusters_changed: tuple = ()
    #: Clusters withdrawn then registered again (service, mode, count or the
    #: leased ``[[service]]`` table changed).
    clusters_replaced: tuple = ()
    #: Unleased runners to stop (removed, changed, or now run by a cluster).
    plain_stop: tuple = ()
    #: Unleased runners to start (added, changed, or no longer run by a cluster).
    plain_start: tuple = ()
    #: Dotted keys that differ and only take effect at a restart (``node.listen``).
    restart_only: tuple = ()
    #: Changes the running node cannot make yet, one sentence each.
    unsupported: tuple = ()
    #: Admission keys (L{ADMISSION_KEYS}) that differ: applied by the reload.
    admission: tuple = ()

    @property
    def allowed(self):
        return not self.restart_only and not self.unsupported

    @property
    def empty(self):
        return not (self.added or self.removed or self.changed or self.clusters_added
                    or self.clusters_removed or self.clusters_changed
                    or self.clusters_replaced or self.admission)

    @property
    def clusters_withdrawn(self):
        """Clusters to unregister (gracefully) before anything is added."""
        return tuple(sorted(self.clusters_removed + self.clusters_replaced))

    @property
    def clusters_registered(self):
        """Clusters to register once the withdrawn ones are gone."""
        return tuple(sorted(self.clusters_added + self.clusters_replaced))

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
                 + [f"~{n}" for n in self.changed]
                 + [f"+cluster {n}" for n in self.clusters_added]
                 + [f"-cluster {n}" for n in self.clusters_removed]
                 + [f"~cluster {n}" for n in self.clusters_changed + self.clusters_replaced]
                 + [f"~{key}" for key in self.admission])
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
    changed_ids = sorted(i for i in set(old_clusters) & set(new_clusters)
                         if old_clusters[i] != new_clusters[i])

    in_place = [i for i in changed_ids
                if changes_in_place(old_clusters[i], new_clusters[i])
                and not set(old_clusters[i].members) & set(changed)]
    replaced = sorted(set(changed_ids) - set(in_place) | {
        i for i in set(old_clusters) & set(new_clusters)
        if old_clusters[i] == new_clusters[i] and set(old_clusters[i].members) & set(changed)})
    clusters_changed = sorted(in_place)

    # A service that runs a cluster (before or after) is started and stopped by
    # the lease, not by reload: its runner goes and comes with its cluster.
    old_leased = {name for c in old.clusters for name in c.members}
    new_leased = {name for c in new.clusters for name in c.members}
    plain_stop = sorted(n for n in old_services if n not in old_leased
                        and (n in removed or n in changed or n in new_leased))
    plain_start = sorted(n for n in new_services if n not in new_leased
                         and (n in added or n in changed or n in old_leased))
    unsupported = []
    # Safety: a service that ran a cluster here and stays as a plain service
    # would start unleased beside the cluster's new owner (two copies).
    orphaned = sorted(f"{name} (cluster {i})"
                      for i in clusters_removed + replaced
                      for name in old_clusters[i].members if name in plain_start)
    if orphaned:
        unsupported.append(
            "a service that runs a cluster would keep running here without its lease "
            "(next to the cluster's owner): remove or rename its [[service]] table too: "
            + ", ".join(orphaned))

    restart_only = []
    for section in RESTART_ONLY:
        restart_only.extend(_differing_keys(section, getattr(old, section),
                                            getattr(new, section)))
    admission = tuple(key for key in restart_only if key in ADMISSION_KEYS)
    restart_only = [key for key in restart_only if key not in ADMISSION_KEYS]
    return ReloadPlan(
        added=tuple(added), removed=tuple(removed), changed=tuple(changed),
        unchanged=tuple(unchanged), clusters_added=tuple(clusters_added),
        clusters_removed=tuple(clusters_removed), clusters_changed=tuple(clusters_changed),
        clusters_replaced=tuple(replaced), plain_stop=tuple(plain_stop),
        plain_start=tuple(plain_start),
        restart_only=tuple(restart_only), unsupported=tuple(unsupported),
        admission=admission)


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
