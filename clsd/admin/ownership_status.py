"""What the admin ``status`` shows of lease ownership: the clusters (id, owners, epoch, state,
and this node's role for each) and the quorum (voters, whether there is one).

Two parts. L{cluster_view} and the text helpers are pure: plain facts in, the wording out, so
every state a cluster can be in is tested without a daemon. L{ownership_status} reads those facts
from an L{clsd.ownership.service.OwnershipService} and its core; it reads and never changes, and
lives on the admin side so that the ownership shell keeps to running the core.

Two things are kept apart on purpose: the cluster's state is the same on every node (``running on
beta``), this node's role in it is not (``owner`` on beta, ``standby #1`` on alpha).
"""

import math
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from clsd.ownership.core.dependencies import avoided_by
from clsd.ownership.core.escalation import cluster_status
from clsd.ownership.core.manager import resource_name
from clsd.ownership.core.placement import Candidate, MemberState, is_eligible, place
from clsd.ownership.core.shape import describe
from clsd.ownership.core.voterset import VoterSet

#: The cluster's condition, the same seen from any node.
RUNNING, MOVING, STARTING, FAILED, UNOWNED, PAUSED, STUCK, SHAPE_MISMATCH, WAITING = (
    "running", "moving", "starting", "failed", "unowned", "paused", "stuck", "shape-mismatch",
    "waiting")
#: This node's role for a cluster.
OWNER, STOPPING, TAKING_OVER, STANDBY, INELIGIBLE, NOT_REGISTERED, UNREGISTERING = (
    "owner", "stopping", "taking-over", "standby", "ineligible", "not-registered",
    "unregistering")


@attrs.frozen
class ClusterView:
    """One cluster as the admin shows it: its state as the cluster is, and this node's role."""

    #: One of RUNNING, MOVING, STARTING, FAILED, UNOWNED, PAUSED, STUCK, SHAPE_MISMATCH.
    condition: str
    #: ``running on beta``, ``moving beta -> alpha``, ...: the condition for a reader.
    summary: str
    #: While MOVING: (from, to); a side not known is None.
    moving: tuple[str | None, str | None] | None
    #: The eligible nodes that do not own it, the next owner first.
    standbys: tuple[str, ...]
    #: One of OWNER, STOPPING, TAKING_OVER, STANDBY, INELIGIBLE, NOT_REGISTERED, UNREGISTERING.
    role: str
    #: ``owner``, ``standby #1``, ``ineligible: cooldown 4m``: the role for a reader.
    role_text: str
    #: A standby's place in line (1 = next), else None.
    standby_rank: int | None = None
    #: Why this node may not own it (``cooldown 4m``, ``on standby``), else None.
    ineligible: str | None = None


def duration_text(seconds: float) -> str:
    """``45s``, ``4m``, ``2h5m``: a remaining time, rounded up, for a status line."""
    seconds = max(0, math.ceil(seconds))
    if seconds <= 90:
        return f"{seconds}s"
    minutes = math.ceil(seconds / 60)
    if minutes < 120:
        return f"{minutes}m"
    return f"{minutes // 60}h{minutes % 60}m" if minutes % 60 else f"{minutes // 60}h"


def summary_text(condition: str, owners: Sequence[str], moving: tuple[str | None, str | None]
                 | None, count: int = 1, at: str | None = None) -> str:
    """The words for a cluster's C{condition}: ``running on beta``, ``moving beta -> alpha``."""
    if condition == RUNNING:
        text = "running on " + ", ".join(owners)
        return text + (f" ({len(owners)} of {count})" if len(owners) < count else "")
    if condition == MOVING and moving is not None:
        return f"moving {moving[0] or '?'} -> {moving[1] or '?'}"
    if condition in (STARTING, STUCK) and at is not None:
        return f"{condition} on {at}"
    if condition == WAITING and at is not None:
        return f"waiting: {at}"
    return condition


def role_text(role: str, standby_rank: int | None = None, ineligible: str | None = None) -> str:
    """The words for this node's C{role}: ``owner``, ``standby #1``, ``ineligible: cooldown 4m``."""
    if role == STANDBY and standby_rank is not None:
        return f"standby #{standby_rank}"
    if role == INELIGIBLE:
        return f"ineligible: {ineligible}" if ineligible else INELIGIBLE
    return {TAKING_OVER: "taking over", NOT_REGISTERED: "not registered",
            STOPPING: "stopping (handing over)"}.get(role, role)


def cluster_view(*, node: str, owners: Collection[str], targets: Sequence[str | None],
                 standbys: Sequence[str], previous: Collection[str] = (),
                 here: Collection[str] = (), count: int = 1, registered: bool = True,
                 withdrawing: bool = False, paused: bool = False, failed: bool = False,
                 mismatch: Sequence[str] = (), standby_mode: bool = False,
                 cooldown_left: float | None = None,
                 epochs: Mapping[str, int] | None = None,
                 waiting: str | None = None) -> ClusterView:
    """The state of one cluster and C{node}'s role in it, from what C{node} knows.

    @param owners: the nodes holding its lease now.
    @param targets: per slot, the node placement puts there (None: nobody eligible).
    @param standbys: the eligible nodes not owning it, best first.
    @param previous: nodes known to have held it that do not hold it now.
    @param here: the phases of its resources on C{node} (``acquiring``, ``stopping``, ...).
    @param failed: every live registered node gave it up (the escalation's FAILED).
    @param mismatch: live nodes whose settings for it differ from C{node}'s, each
        with the settings it names where known (``beta (lease)``).
    @param standby_mode: C{node} is on standby (the ``standby`` command).
    @param cooldown_left: seconds until C{node} may own it again after giving it up.
    @param epochs: each owner's epoch: of two owners of a one-slot cluster, the newer has
        just taken over and the older's claim is what it published before it went.
    @param waiting: why nobody may take it yet (a dependency, doc/groups.md), or None.
    """
    owners = sorted(owners)
    wanted = [t for t in targets if t is not None]
    # This node tries for the lease (a successor polling a live owner's lease does too).
    taking = bool({"acquiring", "fencing"} & set(here)) and node not in owners
    moving: tuple[str | None, str | None] | None = None
    at = None
    if paused:
        condition = PAUSED
    elif failed:
        condition = FAILED
    elif "stuck" in here:
        condition, at = STUCK, node
    elif waiting is not None and not owners:
        condition, at = WAITING, waiting
    elif "stopping" in here:
        condition = MOVING
        moving = (node, next((n for n in [*wanted, *standbys] if n != node), None))
    elif count == 1 and len(owners) > 1:
        newest = max(owners, key=lambda n: ((epochs or {}).get(n, 0), n))
        condition, moving = MOVING, (next(n for n in owners if n != newest), newest)
    elif owners:
        if count == 1 and wanted and wanted[0] not in owners:
            condition, moving = MOVING, (owners[0], wanted[0])
        else:
            condition = RUNNING
    elif mismatch:
        condition = SHAPE_MISMATCH
    elif wanted or taking:
        # This node's own attempt is surer than placement read from what others publish (a
        # move handed to it, say, which the old holder's published state does not show).
        to = node if taking else wanted[0]
        before = sorted(set(previous) - {to})
        if before:
            condition, moving = MOVING, (before[0], to)
        else:
            condition, at = STARTING, to
    else:
        condition = UNOWNED
    summary = summary_text(condition, owners, moving, count, at)

    rank = None
    reason = None
    if withdrawing:
        role = UNREGISTERING
    elif not registered:
        role = NOT_REGISTERED
    elif "stopping" in here:
        role = STOPPING
    elif node in owners:
        role = OWNER
    elif cooldown_left is not None:
        role, reason = INELIGIBLE, f"cooldown {duration_text(cooldown_left)}"
    elif standby_mode:
        role, reason = INELIGIBLE, "on standby"
    elif mismatch:
        role, reason = INELIGIBLE, "settings differ from " + ", ".join(mismatch)
    elif taking and (not owners or node in wanted):
        role = TAKING_OVER
    elif node in standbys:
        role, rank = STANDBY, list(standbys).index(node) + 1
    else:
        role, reason = INELIGIBLE, "not placed"
    return ClusterView(condition=condition, summary=summary, moving=moving,
                       standbys=tuple(standbys), role=role,
                       role_text=role_text(role, rank, reason), standby_rank=rank,
                       ineligible=reason)


def placement_view(cluster_id: str, members: Iterable[MemberState], owners: Collection[str],
                   count: int = 1, *, preempt: bool = False,
                   skipped: Collection[str] = ()) -> tuple[tuple[str | None, ...], tuple[str, ...]]:
    """Who placement puts on each slot of C{cluster_id}, and the standbys in line, best first.

    As L{clsd.ownership.core.placement.place} decides from the members' published states:
    owners keep their slots, the best eligible nodes fill the others. A preemption that waits
    for its C{preempt_delay} is not shown (it has not begun). C{skipped}: nodes placement skips
    for now (they stalled). A node holding a cluster that is ``not_with`` this one comes last.
    """
    eligible = [m for m in members if is_eligible(m, cluster_id) and m.name not in skipped]
    owner_list = sorted(owners)
    candidates = [Candidate(m.name, m.registrations[cluster_id], 0.0,
                            owner_list.index(m.name) if m.name in owner_list else None,
                            shunned=avoided_by(cluster_id, m) is not None)
                  for m in eligible]
    placement = place(candidates, count, preempt=preempt, preempt_delay=0.0, now=0.0)
    ranked = sorted(candidates, key=lambda c: (c.shunned, -c.priority, c.name))
    standbys = tuple(c.name for c in ranked if c.name not in owners)
    return placement.targets, standbys


def ownership_status(service):
    """Clusters (id, owners, epoch, state) and quorum (voters, have_quorum) of C{service}."""
    now = service.now()
    quorum = service.config.quorum
    peers = service.live_members()
    live = set(peers) | {service.node_name}
    voter_set = VoterSet(quorum.voters, quorum.previous_voters)
    reachable = [v for v in voter_set.members if v in live]
    result = {
        "node": service.node_name,
        "active": service.node is not None,
        "inactive_reason": service.inactive_reason,
        "generation": service.generation,
        "quorum": {"voters": list(quorum.voters), "majority": quorum.majority,
                   "previous_voters": list(quorum.previous_voters),
                   "reachable": reachable,
                   "have_quorum": bool(quorum.voters) and voter_set.granted_by(reachable),
                   "lease": quorum.lease, "drift_margin": quorum.drift_margin},
        "clusters": [],
        "guard": service.guard.status() if service.guard is not None else None,
        "counters": dict(service.counters),
        "voter": _voter_status(service),
    }
    if quorum.arbiter == "etcd":
        result["quorum"].update(_etcd_status(service.config, service.node, now))
    if service.node is None:
        return result
    manager = service.node.manager
    own = manager.own_state(now)
    result["standby"] = manager.standby
    #: Cold start: clusters nobody holds are not taken until membership settles.
    result["settling"] = manager.settling(now)
    result["quorum"]["voters_apart"] = manager.voters_apart()
    members = list(peers.values()) + [own]
    phases = manager.status(now)
    paused = manager.paused()
    withdrawing = manager.withdrawing()
    for cluster in service.clusters():
        owners = _owners_of(cluster.id, members)
        mine = {r: p for r, p in phases.items()
                if r == cluster.id or r.startswith(cluster.id + "/")}
        here = [phase for phase, _ in mine.values()]
        if cluster.id in withdrawing:
            state = "unregistering"
        elif cluster.id in paused:
            state = "paused"
        elif cluster_status(cluster.id, members) == "failed":
            state = "failed"
        elif cluster.id in own.failed:
            state = "cooling-down"
        elif manager.shape_mismatch(cluster.id) and not owners.get(service.node_name):
            state = "shape-mismatch"
        else:
            state = next((p for p in ("stuck", "stopping", "running", "fencing") if p in here),
                         None)
            if state is None and "acquiring" in here and not set(owners) - {
                    service.node_name}:
                state = "acquiring"
            elif state is None:
                # A successor polls the live owner's lease (phase acquiring)
                # so as to take over the moment it lapses: it stands by.
                state = "standing-by" if owners else "unowned"
        waiting = manager.dependency_wait(cluster.id, now)
        if waiting is not None and state in ("unowned", "acquiring"):
            state = "waiting"  # after / with / not_with (doc/groups.md)
        skipped = {m.name for m in members if manager.stalled(m.name, cluster.id, now)}
        targets, standbys = placement_view(
            cluster.id, members, owners, cluster.count, skipped=skipped,
            preempt=cluster.preempt and not cluster.preempt_delay)
        previous = set().union(*(manager.known_holders(resource_name(cluster.id, slot,
                                                                     cluster.mode))
                                 for slot in range(cluster.count))) - set(owners)
        view = cluster_view(
            node=service.node_name, owners=owners, targets=targets, standbys=standbys,
            previous=previous, here=here, count=cluster.count,
            withdrawing=cluster.id in withdrawing, paused=cluster.id in paused,
            failed=cluster_status(cluster.id, members) == "failed",
            mismatch=_mismatch_text(manager.shape_differences(cluster.id)),
            standby_mode=manager.standby,
            cooldown_left=manager.escalation.remaining(cluster.id, now), epochs=owners,
            waiting=waiting if state == "waiting" else None)
        result["clusters"].append({
            "id": cluster.id, "mode": cluster.mode, "count": cluster.count,
            "service": cluster.service, "owners": owners,
            "epoch": max(owners.values(), default=None), "state": state,
            "resources": {r: {"phase": p, "epoch": e} for r, (p, e) in mine.items()},
            "service_state": service.service_state(cluster.id),
            "shape_mismatch": manager.shape_mismatch(cluster.id),
            # node -> the settings that differ (empty until that node names them)
            "settings_differ": manager.shape_differences(cluster.id),
            "addresses": service.address_status().get(cluster.id, {}),
            "view": view,
            # An ordered group: its members in start order and their states here.
            "members": list(cluster.members),
            "member_states": service.member_states(cluster.id),
            "waiting_for": service.group_waiting_for(cluster.id),
            "waiting": waiting,
        })
    result["elsewhere"] = _elsewhere(service.node_name, members,
                                     {c.id for c in service.clusters()})
    return result


def _owners_of(cluster_id, members):
    """C{{node: epoch}} of the nodes holding a lease of C{cluster_id} (any slot)."""
    owners = {}
    for member in members:
        for resource, epoch in member.holding.items():
            if resource == cluster_id or resource.startswith(cluster_id + "/"):
                owners[member.name] = max(epoch, owners.get(member.name, 0))
    return owners


def _elsewhere(node, members, registered_here):
    """The clusters other nodes register for and this one does not, as far as they publish.

    Their settings are not known here: the slot count is read from the resources held.
    """
    ids = sorted({c for m in members for c in m.registrations} - set(registered_here))
    clusters = []
    for cluster_id in ids:
        owners = _owners_of(cluster_id, members)
        slots = {r for m in members for r in m.holding
                 if r == cluster_id or r.startswith(cluster_id + "/")}
        count = max(1, len(slots))
        targets, standbys = placement_view(cluster_id, members, owners, count)
        view = cluster_view(node=node, owners=owners, targets=targets, standbys=standbys,
                            count=count, registered=False, epochs=owners,
                            failed=cluster_status(cluster_id, members) == "failed")
        clusters.append({"id": cluster_id, "owners": owners,
                         "epoch": max(owners.values(), default=None), "view": view})
    return clusters


def _voter_status(service):
    """This node's voter: its epoch floor, and why it grants nothing if it cannot store it."""
    voter = service.node.voter if service.node is not None else None
    if voter is None:
        return None
    failure = service.floor_failure
    return {"floor": voter.floor, "reserved": voter.reserved,
            "granting": failure is None,
            "floor_error": None if failure is None else
            f"cannot store the epoch floor {failure[0]}: {failure[1]} "
            f"({failure[2]} attempts)"}


def _etcd_status(config, node, now):
    """What ``status`` shows under ``quorum`` when etcd arbitrates."""
    arbiter = node.manager.arbiter if node is not None else None
    reachable = arbiter is not None and arbiter.reachable(now)
    return {
        "arbiter": "etcd",
        "endpoints": list(config.etcd.endpoints),
        "prefix": config.etcd.prefix,
        "majority": 0,
        "have_quorum": reachable,
        "etcd_counters": dict(arbiter.counters) if arbiter is not None else {},
    }


def _mismatch_text(differences: dict[str, list[str]]) -> list[str]:
    """``["beta (lease, address)", "gamma"]``: who disagrees, and on what where known."""
    return [describe({node: keys}) for node, keys in sorted(differences.items())]
