"""A cluster's *shape*: the settings that change what its lease means, as a short fingerprint.

Two nodes that disagree on a cluster's mode or count take different lease
names for it (``A`` for active-standby, ``A/0`` .. ``A/N-1`` for n-active), so
the voters would let each of them hold "its" lease and both would run the
service.  Lease length, drift margin and arbiter change how long a grant
lasts and who grants it.  Every node therefore publishes, with its
registrations, one fingerprint per cluster of exactly these settings
(L{fingerprint}); a node acquires a cluster only while every live node
registered for it publishes the same fingerprint (L{disagreeing}).  The
voters close the same gap on their own, whatever membership says
(L{clsd.ownership.core.voter}: no grant of ``A/k`` beside another owner's ``A``).

Lease names are ``ID`` or ``ID/slot``; cluster IDs never contain ``/``
(L{clsd.config.reader.NAME_PATTERN}), so L{cluster_of} is unambiguous.
"""

import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.timing import LeaseTiming

if TYPE_CHECKING:
    from clsd.config.cluster_id import ClusterConfig

#: Characters of the hex digest published per cluster: 48 bits, enough to
#: tell a handful of configurations apart, short enough to gossip for
#: hundreds of clusters.
FINGERPRINT_LENGTH = 12

#: Every key L{shape} may hold, in the order of the per-setting digests of
#: L{detailed}.  A setting added to the shape is appended here (never
#: inserted): a peer that knows fewer settings compares the ones both know.
SHAPE_KEYS = ("mode", "count", "arbiter", "lease", "drift_margin", "services", "after", "with",
              "not_with", "after_failover", "address")

#: Hex characters per setting in L{detailed}: 8 bits, enough to name which
#: setting differs (a miss only loses the name; L{fingerprint} decides).
SETTING_DIGEST_LENGTH = 2

#: The [[cluster]] fields in the shape (the [quorum] ones come from timing and arbiter).
SHAPE_FIELDS = ("mode", "count", "services", "after", "with_", "not_with", "after_failover")


def cluster_of(resource: str) -> str:
    """The cluster ID of lease name C{resource} (``A`` for ``A`` and for ``A/3``)."""
    return resource.split("/", 1)[0]


def is_slot(resource: str) -> bool:
    """Whether C{resource} names one slot of an n-active cluster (``A/3``)."""
    return "/" in resource


def shape(cluster: "ClusterConfig", timing: LeaseTiming, arbiter: str) -> dict[str, object]:
    """The settings of C{cluster} that every node must share, as a plain dict.

    C{arbiter}: ``"voters"`` or ``"etcd"``.  A new setting that changes what
    a lease means belongs here too.  The floating address is one: two nodes
    that disagree on it would each add "their" address, or one would add it
    where the other's clients do not look.  A cluster without one has the
    shape it had before addresses existed.  So is an ordered group's member
    list (``services``): a node that would run another group (more, fewer or
    other members, another order) under the same lease must not co-own it.  A
    cluster of one ``service`` has the shape it had before groups existed.
    Dependencies (``after``, ``with``, ``not_with``) too: nodes that disagree
    on where a cluster may run would each place it elsewhere.
    """
    result: dict[str, object] = {"mode": cluster.mode, "count": cluster.count, "arbiter": arbiter,
              "lease": timing.lease, "drift_margin": timing.drift_margin}
    members = getattr(cluster, "services", ())
    if members:
        result["services"] = list(members)
    for key, field in (("after", "after"), ("with", "with_"), ("not_with", "not_with")):
        value = getattr(cluster, field, ())
        if value:  # dependencies (doc/groups.md): every node must place it alike
            result[key] = sorted(value)
    if getattr(cluster, "after", ()) and cluster.after_failover != "keep":
        result["after_failover"] = cluster.after_failover
    floating = _floating_shape(cluster)
    if floating is not None:
        result["address"] = floating
    return result


def _floating_shape(cluster: "ClusterConfig") -> object:
    floating = getattr(cluster, "floating", None)
    return floating.shape() if floating is not None else None


@functools.lru_cache(maxsize=4096)
def fingerprint(cluster: "ClusterConfig", timing: LeaseTiming, arbiter: str) -> str:
    """A short, stable digest of L{shape}: equal settings give equal strings on every node."""
    canonical = json.dumps(shape(cluster, timing, arbiter), sort_keys=True,
                           separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()[:FINGERPRINT_LENGTH]


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


@functools.lru_cache(maxsize=4096)
def detailed(cluster: "ClusterConfig", timing: LeaseTiming, arbiter: str) -> str:
    """L{fingerprint}, then ``.`` and a short digest of each L{SHAPE_KEYS} setting.

    Published instead of the bare fingerprint only while a peer disagrees,
    so that each side can name the settings that differ (L{differing}) at
    the cost of a few more bytes of membership metadata for that cluster.
    """
    settings = shape(cluster, timing, arbiter)
    return fingerprint(cluster, timing, arbiter) + "." + "".join(
        _digest(settings.get(key))[:SETTING_DIGEST_LENGTH] for key in SHAPE_KEYS)


def base(published: str) -> str:
    """The fingerprint part of a published shape (bare or L{detailed})."""
    return published.split(".", 1)[0]


def differing(mine: str, theirs: str) -> list[str]:
    """The L{SHAPE_KEYS} whose digests differ between two L{detailed} shapes.

    Empty when either side published no details (yet), or when the settings
    that differ collide in their short digests: the caller then says only
    that the settings differ.
    """
    if "." not in mine or "." not in theirs:
        return []
    ours, other = mine.split(".", 1)[1], theirs.split(".", 1)[1]
    step = SETTING_DIGEST_LENGTH
    return [key for index, key in enumerate(SHAPE_KEYS)
            if ours[index * step:(index + 1) * step] != other[index * step:(index + 1) * step]
            and (index + 1) * step <= min(len(ours), len(other))]


def describe(differences: Mapping[str, list[str]]) -> str:
    """``beta (lease, address), gamma``: the disagreeing nodes, with the settings named where known."""
    return ", ".join(f"{node} ({', '.join(keys)})" if keys else node
                     for node, keys in sorted(differences.items()))


def arbiter_kind(arbiter: object) -> str:
    """``"etcd"`` or ``"voters"`` for an L{clsd.ownership.core.arbiter.IArbiter}."""
    return "etcd" if type(arbiter).__name__ == "EtcdArbiter" else "voters"


def disagreeing(cluster_id: str, mine: str, members: Iterable[MemberState]) -> list[str]:
    """The names of C{members} registered for C{cluster_id} whose fingerprint differs from C{mine}.

    A member that publishes no fingerprint for it (a daemon older than this
    rule) has no say; the voters' own rule still keeps the two shapes apart.
    """
    return sorted(m.name for m in members
                  if cluster_id in m.registrations
                  and base(m.shapes.get(cluster_id, mine)) != base(mine))


def shape_changed(old: "ClusterConfig", new: "ClusterConfig") -> bool:
    """Whether cluster specs C{old} and C{new} differ in a L{SHAPE_FIELDS} field or address."""
    return any(getattr(old, f, ()) != getattr(new, f, ()) for f in SHAPE_FIELDS) \
        or _floating_shape(old) != _floating_shape(new)


def change_refusal(cluster_id: str, new_print: str, runs_here: bool,
                   members: Iterable[MemberState]) -> str | None:
    """Why a reload may not give C{cluster_id} the shape C{new_print} now (None: it may).

    The nodes that run the cluster change last: a change there stops the
    service, and only nodes that already have the new settings may take it
    over (the others disagree with it).  So a node that runs it may change
    only once every registered node that does not run it has the new
    settings; the nodes that run it (several for n-active) then change one
    after the other.  A node that does not run it may change at any time;
    until every registered node agrees it acquires nothing.  A member that
    publishes no fingerprint cannot confirm.
    """
    if not runs_here:
        return None
    behind = sorted(m.name for m in members
                    if cluster_id in m.registrations
                    and base(m.shapes.get(cluster_id, "")) != base(new_print)
                    and not any(cluster_of(r) == cluster_id for r in m.holding))
    if not behind:
        return None
    return (f"cluster {cluster_id} runs here and {', '.join(behind)} still "
            f"{'has' if len(behind) == 1 else 'have'} its old mode/count/address: change "
            "mode, count or address on the nodes that do not run it first, and on the nodes that "
            "run it last "
            "(doc/operations.md, \"Changing a cluster's mode or count\")")
