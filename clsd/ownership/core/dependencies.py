"""Clusters that depend on each other: ``after``, ``with`` and ``not_with`` (doc/groups.md).

Pure functions over what the live members publish (L{MemberState}: which
leases each holds, which clusters run there, which clusters each of its
clusters follows); the manager asks them when it places a cluster and before
it acquires one.

- ``after = ["DB"]``: the cluster starts only while DB has an owner that
  reports its service running, anywhere.  A failover of DB does not stop it
  (``after_failover = "keep"``, the default; ``"stop"`` stops it whenever DB
  has no running owner); DB stopping for good (no live node may run it) does,
  and DB's holder waits for its running dependents to stop first.
- ``with = ["DB"]``: the cluster is placed only on the node placement chooses
  for DB, and starts there once DB runs there; when DB moves, the cluster
  stops first, then DB, and both start on the new node, DB first.
- ``not_with = ["BATCH"]``: never placed on, nor started on, a node that
  holds BATCH, nor on one placement chooses for BATCH.  It holds both ways:
  BATCH prefers nodes that do not hold WEB (they are ranked last), and on a
  node that holds WEB it is taken only once WEB has left (the declaring
  cluster yields, as a Pacemaker dependent does).
"""

from collections.abc import Iterable, Mapping

from clsd.ownership.core.placement import MemberState, is_eligible
from clsd.ownership.core.shape import cluster_of


def holds(member: MemberState, cluster_id: str) -> bool:
    """Whether C{member} holds a lease of C{cluster_id} (the cluster or one of its slots)."""
    return any(cluster_of(resource) == cluster_id for resource in member.holding)


def after_wait(after: Iterable[str], members: Iterable[MemberState]) -> str | None:
    """Why a cluster following C{after} may not start now, or None when every one runs.

    ``after DB (no owner)`` when no live member holds DB, ``after DB (no live
    node has a cluster DB)`` when none even registers it (a typo shows so),
    ``after DB (alpha: not running yet)`` when its holder does not report it
    running.
    """
    members = list(members)
    for followed in after:
        holders = [m for m in members if holds(m, followed)]
        if any(followed in m.running for m in holders):
            continue
        if not holders and not any(followed in m.registrations for m in members):
            return f"after {followed} (no live node has a cluster {followed})"
        if not holders:
            return f"after {followed} (no owner)"
        names = ", ".join(sorted(m.name for m in holders))
        return f"after {followed} ({names}: not running yet)"
    return None


def followed_gone(after: Iterable[str], after_failover: str,
                  members: Iterable[MemberState]) -> str | None:
    """Why a running cluster following C{after} must stop now, or None.

    A followed cluster no live node may run (its holder is on standby or
    gone, and no other node is eligible) stops for good: the follower stops
    first (the holder waits for it, L{running_dependents}).  One that only
    fails over (a live eligible node will take it) stops the follower only
    with C{after_failover = "stop"}.
    """
    members = list(members)
    for followed in after:
        if not any(is_eligible(m, followed) for m in members):
            # Its holder (if any) is leaving and no live node may take it over.
            return f"{followed} stops (no live node may run it)"
        if after_failover == "stop" and not any(
                followed in m.running and holds(m, followed) for m in members):
            return f"{followed} has no running owner (after_failover = \"stop\")"
    return None


def running_dependents(cluster_id: str, members: Iterable[MemberState]) -> list[str]:
    """The live nodes running a cluster that follows C{cluster_id} (sorted names).

    The holder of C{cluster_id} stopping it for good waits for them: a
    dependent is stopped before what it follows.
    """
    return sorted(m.name for m in members
                  if any(cluster_id in m.follows.get(c, ()) for c in m.running))


def avoided_by(cluster_id: str, member: MemberState) -> str | None:
    """The cluster C{member} holds whose ``not_with`` names C{cluster_id}, or None."""
    for declaring, avoided in sorted(member.avoids.items()):
        if cluster_id in avoided and holds(member, declaring):
            return declaring
    return None


def placeable(member: MemberState, with_: Iterable[str], not_with: Iterable[str],
              anchor_targets: Mapping[str, Iterable[str | None]],
              avoided_targets: Mapping[str, Iterable[str | None]] | None = None) -> bool:
    """Whether placement may choose C{member} for a cluster with these dependencies.

    C{anchor_targets}: for each ``with`` anchor, the nodes placement chooses
    for it (a node that merely still holds an anchor that moves away is not
    one: its colocated clusters move first).  C{avoided_targets}: for each
    ``not_with`` cluster, the nodes placement chooses for it (the cluster
    leaves a node the other one is coming to).
    """
    if any(holds(member, other) for other in not_with):
        return False
    if any(member.name in set(targets) for targets in (avoided_targets or {}).values()):
        return False
    return all(member.name in set(anchor_targets.get(anchor, ())) for anchor in with_)


def local_wait(cluster_id: str, with_: Iterable[str], not_with: Iterable[str],
               me: MemberState) -> str | None:
    """Why this node (C{me}) may not start C{cluster_id}, with these dependencies, yet; or None.

    Besides its own ``with`` and ``not_with``: a cluster held here that is
    ``not_with`` C{cluster_id} leaves first.
    """
    for anchor in with_:
        if anchor not in me.running:
            return f"with {anchor} (not running here)"
    for other in not_with:
        if holds(me, other):
            return f"not with {other} (held here)"
    declaring = avoided_by(cluster_id, me)
    if declaring is not None:
        return f"{declaring} leaves first ({declaring} is not_with {cluster_id})"
    return None
