"""The per-node cluster manager: leases + placement + escalation + maintenance, sans-IO.

For every cluster ID this node is registered for, it decides whether to try
to hold the lease (placement), what to do with the service when the lease
comes, goes, or is handed over, and what to tell the operator (hooks).  It
is fed events with the current monotonic time and returns actions
(L{clsd.ownership.core.actions}); it never touches a socket, a process or a clock.

The service of a cluster runs only between L{StartService} and the
L{StopService} that follows, and only inside a lease: L{KillAt} tells the
lease guard the deadline before the start and after every renewal.

Per resource, the phases are::

    IDLE -> ACQUIRING -> [FENCING] -> RUNNING -> STOPPING -> IDLE
                                         \\-> (lease ending) STOPPING -/
                                 RUNNING | STOPPING -> STUCK -> IDLE

STUCK: a process group of the service is still present after SIGKILL (a
process stuck in the kernel).  The lease is kept (renewed while it can be)
and released only once the group is gone: a successor of a released lease
does not fence, and that process may still complete I/O it had started.
"""

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, TypedDict, Unpack

import attrs

from clsd.ownership.core.actions import (
    CancelFence, ForgetCluster, KillAt, PublishState, Report, RunHook, Send, StartService, StopService,
)
from clsd.ownership.core.arbiter import IArbiter
from clsd.ownership.core.arbiter_events import (
    ARBITER_EVENTS, ArbiterEvent, LeaseAcquired, LeaseEnding, LeaseLost, LeaseObserved,
    LeaseRenewed,
)
from clsd.ownership.core.escalation import FAILED, Escalation, cluster_status, notifier
from clsd.ownership.core.messages import Handover, MoveRequest
from clsd.ownership.core.dependencies import (
    after_wait, avoided_by, followed_gone, holds, local_wait, placeable, running_dependents,
)
from clsd.ownership.core.placement import Candidate, MemberState, Placement, is_eligible, place
from clsd.ownership.core.shape import (
    arbiter_kind, change_refusal, cluster_of, describe, detailed, differing, disagreeing,
    fingerprint,
)
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voterset import compatible

if TYPE_CHECKING:
    from clsd.config.cluster_id import ClusterConfig

IDLE, ACQUIRING, FENCING, RUNNING, STOPPING, STUCK = (
    "idle", "acquiring", "fencing", "running", "stopping", "stuck")

#: The phases in which this node holds (or held, until released) a resource.
HELD = (FENCING, RUNNING, STOPPING, STUCK)

#: After a failed fence, wait this long before trying the lease again, so a
#: broken fence command is retried a few times a minute, not in a tight loop.
FENCE_RETRY_DELAY = 5.0

#: A placed target that has not taken its slot after L{stall_after} is
#: skipped by placement for this many leases (doubling each time the same
#: node stalls the same cluster again, up to L{STALL_COOLDOWN_MAX}), so that
#: a node that registers at a high priority and never runs the cluster (a
#: broken or hostile one) cannot keep it unowned.
STALL_COOLDOWN_LEASES = 30
STALL_COOLDOWN_MAX = 3600.0


def stall_after(timing: LeaseTiming) -> float:
    """How long an honest target may need to take a free slot: the worst case
    from a handover or a failure until an eligible node holds again
    (L{LeaseTiming.reacquire_bound}, with one lease for the news to spread)."""
    return timing.reacquire_bound(timing.lease)


def resource_name(cluster_id: str, slot: int, mode: str) -> str:
    """The lease name: the cluster ID itself, or ``ID/slot`` for an n-active slot."""
    return cluster_id if mode == "active-standby" else f"{cluster_id}/{slot}"


#: The ``[[cluster]]`` fields a live registration may change in place: placement,
#: hooks and escalation read them afresh at every decision.  A change to
#: ``service``, ``mode`` or ``count`` changes what runs and how leases are
#: named, so it is an L{ClusterManager.unregister} (graceful handover) followed
#: by a L{ClusterManager.register} once the old registration is forgotten.
IN_PLACE_FIELDS = frozenset(
    {"priority", "preempt", "preempt_delay", "fence", "notify", "cooldown"})


def changes_in_place(old: "ClusterConfig", new: "ClusterConfig") -> bool:
    """Whether cluster spec C{new} differs from C{old} only in L{IN_PLACE_FIELDS}."""
    return all(getattr(old, f.name) == getattr(new, f.name)
               for f in attrs.fields(type(old)) if f.name not in IN_PLACE_FIELDS)


class _ReportFields(TypedDict, total=False):
    """The optional fields of a L{Report} (L{ClusterManager._report})."""

    previous: str | None
    previous_epoch: int | None
    previous_released: bool
    handed_over: bool
    fenced: bool
    round_trip: float | None
    reason: str
    target: str | None
    by: str | None
    key: str


class _MoveAsked(TypedDict):
    """Who asked for a move, and where to (the L{Report}s of a L{MoveRequest})."""

    target: str
    by: str
    key: str


class ManagerError(ValueError):
    """An operator request that cannot be carried out; the message says why."""


@attrs.define
class _Resource:
    """Everything this node keeps about one resource (a cluster ID's slot) it has dealt with:
    its tenure here and the timers that apply to it alone."""

    cluster: "ClusterConfig"
    slot: int
    name: str
    phase: str = IDLE
    epoch: int = 0
    expiry: float | None = None
    stop_reason: str | None = None
    handover_to: str | None = None
    fenced_peer: str | None = None
    fence_kind: str | None = None  # "previous" (before start) | "peer" (two-voter mode)
    #: How this tenure began, for the L{Report} "moved" once the service starts.
    previous: str | None = None
    previous_epoch: int | None = None
    previous_released: bool = False
    handed_over: bool = False
    fenced: bool = False
    #: Handed to us (L{Handover}): acquire at once, until then.
    forced_until: float | None = None
    #: A fence failed: do not try for the lease again until then.
    fence_backoff_until: float | None = None


@attrs.define
class _Sighting:
    """What this node knows of one resource's holders and targets elsewhere; kept apart from
    L{_Resource} because it covers resources this node never dealt with."""

    #: (holder, epoch) the arbiter last reported; dropped when the holder dies.
    observed: tuple[str | None, int] | None = None
    #: (holder, epoch) last seen holding it; kept when it dies.
    last_holder: tuple[str, int] | None = None
    #: (target, since): placed on another node, not held yet (stall detection).
    unheld: tuple[str, float] | None = None


class ClusterManager:
    """One node's ownership decisions for all the cluster IDs it is registered for."""

    def __init__(self, node: str, clusters: Iterable["ClusterConfig"], arbiter: IArbiter,
                 timing: LeaseTiming, now: float, *, voters: Iterable[str] = (),
                 settle_until: float | None = None) -> None:
        self.node = node
        self.clusters = {c.id: c for c in clusters}
        self.arbiter = arbiter
        self.timing = timing
        self.voters = tuple(voters)
        self.escalation = Escalation()
        self.standby = False
        self._members: dict[str, MemberState] = {}    # live peers, not us
        self._eligible_since: dict[tuple[str, str], float] = {}   # (name, cluster) -> time
        self._res: dict[str, _Resource] = {}         # only those we touched
        self._seen: dict[str, _Sighting] = {}
        self._paused: set[str] = set()
        self._leaving: dict[str, float] = {}  # cluster -> until: handed over, don't grab it back
        self._failed_notified: set[str] = set()
        self._published: MemberState | None = None
        self._withdrawing: set[str] = set()  # unregistered, service still stopping here
        #: Cold start: until membership has settled (L{membership_settled}) or
        #: this time passes, a resource nobody is known to hold is not acquired
        #: as placement's target: a better candidate may not be visible yet.
        self._settle_until = settle_until
        # cluster -> nodes whose shape differs (reported)
        self._mismatch: dict[str, list[str]] = {}
        # cluster -> disagreeing node -> the settings it names as different
        self._mismatch_named: dict[str, dict[str, list[str]]] = {}
        # live nodes two steps of a voter change away (reported)
        self._voters_apart: list[str] = []
        # (node, cluster) -> until: skipped by placement
        self._stalled: dict[tuple[str, str], float] = {}
        # (node, cluster) -> how many times it stalled
        self._stalls: dict[tuple[str, str], int] = {}
        # clusters whose service the shell reports running here
        self._running: set[str] = set()
        # cluster -> target of a move waiting for its dependents
        self._moving: dict[str, str] = {}
        # cluster -> the wait last reported (history)
        self._waits_reported: dict[str, str] = {}

    # -- helpers -------------------------------------------------------------

    def _resource(self, cluster: "ClusterConfig", slot: int) -> _Resource:
        name = resource_name(cluster.id, slot, cluster.mode)
        res = self._res.get(name)
        if res is None:
            res = self._res[name] = _Resource(cluster, slot, name)
        return res

    def _sighting(self, resource: str) -> _Sighting:
        seen = self._seen.get(resource)
        if seen is None:
            seen = self._seen[resource] = _Sighting()
        return seen

    def _clear_unheld(self, resource: str) -> None:
        seen = self._seen.get(resource)
        if seen is not None:
            seen.unheld = None

    def _resources_of(self, cluster_id: str) -> list[_Resource]:
        return [r for r in self._res.values() if r.cluster.id == cluster_id]

    def own_state(self, now: float) -> MemberState:
        holding = {r.name: r.epoch for r in self._res.values()
                   if r.phase in HELD
                   and self.arbiter.holding(r.name, now) is not None}
        registered = [c for c in self.clusters.values() if c.id not in self._withdrawing]
        return MemberState(
            name=self.node,
            registrations={c.id: c.priority for c in registered},
            standby=self.standby,
            failed=self.escalation.ineligible(now),
            holding=holding,
            shapes={c.id: self._published_shape(c) for c in registered},
            voters=getattr(self.arbiter, "voter_tag", None),
            running=frozenset(c for c in self._running
                              if any(cluster_of(r) == c for r in holding)),
            follows={c.id: tuple(c.after) for c in registered if c.after},
            avoids={c.id: tuple(c.not_with) for c in registered if c.not_with},
        )

    def shape_of(self, cluster: "ClusterConfig") -> str:
        """The fingerprint of C{cluster}'s lease-relevant settings on this node."""
        return fingerprint(cluster, self.timing, arbiter_kind(self.arbiter))

    def _published_shape(self, cluster: "ClusterConfig") -> str:
        """The bare fingerprint, or with per-setting digests while a peer disagrees (to name them)."""
        if cluster.id in self._mismatch:
            return detailed(cluster, self.timing, arbiter_kind(self.arbiter))
        return self.shape_of(cluster)

    def shape_differences(self, cluster_id: str) -> dict[str, list[str]]:
        """Each live node whose settings for C{cluster_id} differ -> the settings (if known).

        A peer names its settings only once it, too, has seen the disagreement
        (L{clsd.ownership.core.shape.detailed}); until then the list is empty.
        """
        return self._differences(cluster_id, self.shape_mismatch(cluster_id))

    def _differences(self, cluster_id: str, names: list[str]) -> dict[str, list[str]]:
        cluster = self.clusters.get(cluster_id)
        if cluster is None or not names:
            return {}
        mine = detailed(cluster, self.timing, arbiter_kind(self.arbiter))
        return {name: differing(mine, self._members[name].shapes.get(cluster_id, ""))
                for name in names if name in self._members}

    def shape_change_refusal(self, cluster: "ClusterConfig", now: float) -> str | None:
        """Why registering C{cluster} (new mode or count) must wait, or None."""
        runs_here = any(r.phase in (FENCING, RUNNING, STOPPING)
                        for r in self._resources_of(cluster.id))
        return change_refusal(cluster.id, self.shape_of(cluster), runs_here,
                              self._members.values())

    def shape_mismatch(self, cluster_id: str) -> list[str]:
        """The live nodes whose settings for C{cluster_id} differ from ours (sorted).

        While there are any, this node does not acquire the cluster: with the
        same ID under two shapes, both could hold a lease (see
        L{clsd.ownership.core.shape}).  With no holder we cannot tell whose
        settings are meant, so no one with a disagreeing peer acquires.
        """
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            return []
        return disagreeing(cluster_id, self.shape_of(cluster), self._members.values())

    def _all_members(self, now: float) -> dict[str, MemberState]:
        members = dict(self._members)
        members[self.node] = self.own_state(now)
        return members

    def _publish(self, now: float) -> list[object]:
        state = self.own_state(now)
        if state == self._published:
            return []
        self._published = state
        return [PublishState(state)]

    def _holders(self, cluster: "ClusterConfig", members: Mapping[str, MemberState],
                 now: float) -> dict[str, str]:
        """resource -> holder node, from our own leases, published claims and observations."""
        claims: dict[str, list[tuple[int, str]]] = {}
        for member in members.values():
            for resource, epoch in member.holding.items():
                claims.setdefault(resource, []).append((epoch, member.name))
        for resource, seen in self._seen.items():
            if seen.observed is None:
                continue
            holder, epoch = seen.observed
            if holder is not None and holder in members:
                claims.setdefault(resource, []).append((epoch, holder))
        holders = {}
        for resource, found in claims.items():
            holders[resource] = max(found)[1]
        for res in self._resources_of(cluster.id):
            if res.phase in HELD:
                holders[res.name] = self.node  # our own lease is authoritative for us
            elif holders.get(res.name) == self.node:
                del holders[res.name]
        return holders

    def _placement(self, cluster: "ClusterConfig", now: float,
                   looks: str = "full") -> tuple[Placement, dict[str, str]]:
        """Where C{cluster} should run, and who holds its slots now.

        ``not_with`` both ways (doc/groups.md): a cluster another one is
        ``not_with`` ranks last the nodes that hold that one or that its own
        placement chooses (C{looks} ``"named"``); the declaring cluster also
        avoids the nodes the other one's placement chooses (``"full"``).
        Each looks at the other's placement one step simpler (``"base"``:
        holders only), so the two never ask each other in a circle.
        """
        members = self._all_members(now)
        holders = self._holders(cluster, members, now)
        slot_of = {}
        for slot in range(cluster.count):
            holder = holders.get(resource_name(cluster.id, slot, cluster.mode))
            if holder is not None and holder not in slot_of:
                slot_of[holder] = slot
        anchors = {anchor: self._placement(self.clusters[anchor], now, looks)[0].targets
                   for anchor in cluster.with_ if anchor in self.clusters}
        chosen_for_declaring: set[str | None] = set()
        avoided: dict[str, tuple[str | None, ...]] = {}
        if looks != "base":
            for declaring in self.clusters.values():
                if cluster.id in declaring.not_with:
                    chosen_for_declaring.update(self._placement(declaring, now, "base")[0].targets)
        if looks == "full":
            avoided = {other: self._placement(self.clusters[other], now, "named")[0].targets
                       for other in cluster.not_with if other in self.clusters}
        gone = followed_gone(cluster.after, cluster.after_failover, members.values())
        candidates = [
            Candidate(m.name, m.registrations[cluster.id],
                      self._eligible_since.get((m.name, cluster.id), now),
                      slot_of.get(m.name),
                      shunned=(m.name in chosen_for_declaring
                               or avoided_by(cluster.id, m) is not None))
            for m in members.values()
            if is_eligible(m, cluster.id) and not self.stalled(m.name, cluster.id, now)
            and gone is None and placeable(m, cluster.with_, cluster.not_with, anchors, avoided)
        ]
        placement = place(candidates, cluster.count, preempt=cluster.preempt,
                          preempt_delay=cluster.preempt_delay, now=now)
        return placement, holders

    def _track_eligibility(self, now: float) -> None:
        members = self._all_members(now)
        current = set()
        for member in members.values():
            for cluster_id in member.registrations:
                if is_eligible(member, cluster_id):
                    current.add((member.name, cluster_id))
                    self._eligible_since.setdefault((member.name, cluster_id), now)
        for key in list(self._eligible_since):
            if key not in current:
                del self._eligible_since[key]

    # -- inputs ----------------------------------------------------------------

    def start(self, now: float) -> list[object]:
        """First actions: publish our state and start acting on placement."""
        return self._reconcile_all(now)

    def membership_settled(self, now: float) -> list[object]:
        """Membership has settled (every live peer seen with its registrations): act freely."""
        if self._settle_until is None:
            return []
        self._settle_until = None
        return self._reconcile_all(now)

    def settling(self, now: float) -> bool:
        """Whether the cold-start hold-off is still on."""
        if self._settle_until is not None and now >= self._settle_until:
            self._settle_until = None
        return self._settle_until is not None

    def members_changed(self, members: Iterable[MemberState], now: float) -> list[object]:
        """The live members (other than us) and what each published; from membership."""
        self._members = {m.name: m for m in members if m.name != self.node}
        for member in self._members.values():
            for resource, epoch in member.holding.items():
                seen = self._sighting(resource)
                if seen.last_holder is None or epoch >= seen.last_holder[1]:
                    seen.last_holder = (member.name, epoch)
        for seen in self._seen.values():
            holder = seen.observed[0] if seen.observed is not None else None
            if holder is not None and holder != self.node and holder not in self._members:
                seen.observed = None
        return self._reconcile_all(now)

    def receive(self, sender: str, message: object, now: float) -> list[object]:
        """A message for the manager or its arbiter (voter requests go to the voter)."""
        if self.arbiter.accepts(message):
            return self._process(self.arbiter.receive(sender, message, now), now)
        if isinstance(message, Handover):
            return self._on_handover(sender, message, now)
        if isinstance(message, MoveRequest):
            return self._on_move_request(sender, message, now)
        return []

    def known_holders(self, resource: str) -> frozenset[str]:
        """The nodes this node knows as holders of C{resource}: its own lease, what
        members publish, what the voters answered, the last holder seen.

        A L{Handover} is accepted only from one of them (doc/ownership.md).
        """
        names = {m.name for m in self._members.values() if resource in m.holding}
        seen = self._seen.get(resource) or _Sighting()
        for known in (seen.observed, seen.last_holder):
            if known is not None and known[0] is not None:
                names.add(known[0])
        res = self._res.get(resource)
        if res is not None and res.phase in (FENCING, RUNNING, STOPPING):
            names.add(self.node)
        return frozenset(names)

    def stalled(self, node: str, cluster_id: str, now: float) -> bool:
        """Whether placement skips C{node} for C{cluster_id} (it did not take it in time)."""
        until = self._stalled.get((node, cluster_id))
        return until is not None and now < until

    def tick(self, now: float) -> list[object]:
        out = self._process(self.arbiter.tick(now), now)
        for res in self._res.values():
            if res.forced_until is not None and res.forced_until <= now:
                res.forced_until = None
            if res.fence_backoff_until is not None and res.fence_backoff_until <= now:
                res.fence_backoff_until = None
        for cluster, until in list(self._leaving.items()):
            if until <= now:
                del self._leaving[cluster]
        for key, until in list(self._stalled.items()):
            if until <= now:
                del self._stalled[key]
        self.escalation.expire(now)
        out += self._check_silent_peer(now)
        return out + self._reconcile_all(now)

    def next_wakeup(self) -> float | None:
        times = [self.arbiter.next_wakeup(), self.escalation.next_wakeup(), self._settle_until]
        times += [r.forced_until for r in self._res.values()] + list(self._leaving.values())
        times += [r.fence_backoff_until for r in self._res.values()]
        times += list(self._stalled.values())
        times += [seen.unheld[1] + stall_after(self.timing) for seen in self._seen.values()
                  if seen.unheld is not None]
        for cluster in self.clusters.values():
            if cluster.preempt:
                for (_name, cid), since in self._eligible_since.items():
                    due = since + cluster.preempt_delay
                    if cid == cluster.id and due > self._last_now:
                        times.append(due)
        if len(self.voters) == 2 and any(
                r.phase == ACQUIRING and r.cluster.fence for r in self._res.values()):
            times.append(self._last_now + self.timing.acquire_retry)
        known = [t for t in times if t is not None]
        return min(known) if known else None

    #: The time of the latest event, for wakeups relative to "now".
    _last_now = float("-inf")

    def service_stopped(self, cluster_id: str, now: float) -> list[object]:
        """The service of C{cluster_id} has exited after our L{StopService}."""
        out = []
        for res in self._resources_of(cluster_id):
            if res.phase in (STOPPING, STUCK):
                out += self._finish_stop(res, now)
        return out + self._reconcile_all(now)

    def service_stuck(self, cluster_id: str, now: float) -> list[object]:
        """A process group of C{cluster_id}'s service outlived SIGKILL: keep the lease.

        It is not released (a successor of a released lease does not fence)
        until L{service_stopped} or L{service_failed} says the group is gone.
        """
        out = []
        for res in self._resources_of(cluster_id):
            if res.phase in (RUNNING, STOPPING):
                res.phase = STUCK
                out.append(self._report(
                    "stuck", res, reason="a process of the service is still present after "
                    "SIGKILL (stuck in the kernel); the lease is kept until it is gone"))
        return out + self._reconcile_all(now)

    def service_failed(self, cluster_id: str, now: float) -> list[object]:
        """Supervision gave up on C{cluster_id}'s service (crash-loop limit): escalate."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            return []
        self.escalation.gave_up(cluster_id, now, cluster.cooldown)
        placement, _ = self._placement(cluster, now)  # without us: we are ineligible now
        out = []
        for res in self._resources_of(cluster_id):
            if res.phase in HELD:
                # The service is not running (supervision gave up): release at once,
                # and tell the next candidate rather than wait for gossip.
                res.stop_reason = "failed"
                res.handover_to = placement.targets[res.slot]
                out += self._finish_stop(res, now)
            elif res.phase == ACQUIRING:
                out += self._process(self.arbiter.abandon(res.name, now), now)
                res.phase = IDLE
        return out + self._reconcile_all(now)

    def hook_done(self, cluster_id: str, event: str, epoch: int, ok: bool,
                  now: float) -> list[object]:
        """A fence hook run for tenure C{epoch} finished (other hooks need no answer).

        The result of a tenure that has ended (another epoch now, or no
        longer fencing) is ignored: it says nothing about the node the
        current tenure must fence.
        """
        out = []
        for res in self._resources_of(cluster_id):
            if res.phase != FENCING or event != "fence" or res.epoch != epoch:
                continue
            if res.fence_kind == "peer":
                res.phase = ACQUIRING
                if ok:
                    assert res.fenced_peer is not None  # set with fence_kind "peer"
                    self.arbiter.assume_granted(res.name, res.fenced_peer)
                    out += self._process(self.arbiter.hurry(res.name, now), now)
                else:
                    res.fence_backoff_until = now + FENCE_RETRY_DELAY
                    res.fenced_peer = None
            elif ok:
                res.fenced = True
                out += self._start_service(res, now)
            else:
                out += self._process(self.arbiter.release(res.name, now), now)
                res.phase = IDLE
                res.fence_backoff_until = now + FENCE_RETRY_DELAY
        return out + self._reconcile_all(now)

    # -- maintenance operations ---------------------------------------------------

    def set_standby(self, standby: bool, now: float) -> list[object]:
        """Standby: every cluster held here moves away gracefully; nothing new starts here."""
        self.standby = bool(standby)
        return self._reconcile_all(now)

    def pause(self, cluster_id: str, now: float) -> list[object]:
        """Stop managing C{cluster_id}: no start, stop or move; a held lease is still renewed."""
        self._require(cluster_id)
        self._paused.add(cluster_id)
        out = []
        for res in self._resources_of(cluster_id):
            if res.phase == ACQUIRING:
                out += self._process(self.arbiter.abandon(res.name, now), now)
                res.phase = IDLE
        return out

    def resume(self, cluster_id: str, now: float) -> list[object]:
        self._require(cluster_id)
        self._paused.discard(cluster_id)
        return self._reconcile_all(now)

    def move(self, cluster_id: str, target: str, now: float, *, by: str | None = None,
             key: str = "") -> list[object]:
        """Move C{cluster_id} to node C{target} gracefully (stop, release, target acquires).

        @param by: the member that asked over the wire (L{MoveRequest}), or
            None for an operator on this node; a request from another node
            is carried out only by the holder, never passed on.
        @param key: the admin key fingerprint of the session that asked.
        """
        cluster = self._require(cluster_id)
        members = self._all_members(now)
        member = members.get(target)
        if member is None:
            raise ManagerError(f"cannot move {cluster_id}: node {target!r} is not a live member")
        if not is_eligible(member, cluster_id):
            raise ManagerError(
                f"cannot move {cluster_id}: node {target!r} is not eligible for it "
                "(not registered, on standby, or failed for it)")
        if self.stalled(target, cluster_id, now):
            raise ManagerError(
                f"cannot move {cluster_id}: node {target!r} did not take it in time when "
                f"placed; it is skipped for {self._stalled[target, cluster_id] - now:.0f} s")
        if cluster.mode != "active-standby":
            raise ManagerError(f"cannot move {cluster_id}: only active-standby clusters move")
        if cluster_id in self._paused:
            raise ManagerError(f"cannot move {cluster_id}: it is paused here (resume it first)")
        if any(r.phase in (STOPPING, STUCK) for r in self._resources_of(cluster_id)):
            raise ManagerError(f"cannot move {cluster_id}: its service is stopping here already")
        held = [r for r in self._resources_of(cluster_id) if r.phase in (FENCING, RUNNING)]
        if target == self.node:
            if held:
                return []
            holder = self._holders(cluster, members, now).get(cluster_id)
            if holder is None:
                raise ManagerError(f"cannot move {cluster_id}: nobody holds it now")
            return self._ask_holder(holder, cluster_id, target, by, key)
        if held:
            colocated = [r for other in self.clusters.values() if cluster_id in other.with_
                         for r in self._resources_of(other.id) if r.phase in (FENCING, RUNNING)]
            if colocated:
                # What runs with it moves first; it follows once they stopped (_act_on).
                self._moving[cluster_id] = target
                out = []
                for res in colocated:
                    out += self._begin_handover(res, target, now)
                return out + self._publish(now)
            return self._begin_handover(held[0], target, now) + self._publish(now)
        holder = self._holders(cluster, members, now).get(cluster_id)
        if holder is None:
            raise ManagerError(f"cannot move {cluster_id}: nobody holds it now")
        return self._ask_holder(holder, cluster_id, target, by, key)

    def _ask_holder(self, holder: str, cluster_id: str, target: str, by: str | None,
                    key: str) -> list[object]:
        if by is not None:
            raise ManagerError(f"cannot move {cluster_id}: this node does not hold it "
                               f"({holder} does)")
        return [Send(holder, MoveRequest(cluster_id, target, by=self.node, key=key))]

    def _on_move_request(self, sender: str, message: MoveRequest, now: float) -> list[object]:
        """A member asks the holder to move a cluster; attributed in a L{Report} either way."""
        cluster_id = message.cluster
        if cluster_id not in self.clusters:
            return []
        asked: _MoveAsked = {"target": message.target, "by": sender, "key": message.key}
        if sender != self.node and sender not in self._members:
            return [Report("move-refused", cluster_id, cluster_id, 0,
                           reason=f"{sender} is not a member", **asked)]
        try:
            out = self.move(cluster_id, message.target, now, by=sender, key=message.key)
        except ManagerError as e:
            return [Report("move-refused", cluster_id, cluster_id, 0, reason=str(e), **asked)]
        return [Report("move-asked", cluster_id, cluster_id, 0, **asked)] + out

    def _require(self, cluster_id: str) -> "ClusterConfig":
        cluster = self.clusters.get(cluster_id)
        if cluster is None:
            raise ManagerError(f"this node is not registered for cluster {cluster_id!r}")
        if cluster_id in self._withdrawing:
            raise ManagerError(f"cluster {cluster_id!r} is being unregistered here "
                               "(its service is stopping)")
        return cluster

    # -- registrations at runtime (reload) ---------------------------------------------

    def registered(self, cluster_id: str) -> bool:
        """Whether C{cluster_id} is registered here (not being unregistered)."""
        return cluster_id in self.clusters and cluster_id not in self._withdrawing

    def withdrawing(self) -> frozenset[str]:
        """The cluster IDs unregistered whose service has not stopped yet."""
        return frozenset(self._withdrawing)

    def register(self, cluster: "ClusterConfig", now: float) -> list[object]:
        """Add a registration, or change one in place (L{IN_PLACE_FIELDS} only).

        The new registration is published at once, so every node's placement
        counts this node as a candidate (or with its new priority); whether a
        current holder gives way follows the usual rules (C{preempt}).
        """
        if cluster.id in self._withdrawing:
            raise ManagerError(f"cluster {cluster.id!r} is still being unregistered here; "
                               "register it again once its service has stopped")
        old = self.clusters.get(cluster.id)
        if old is not None and not changes_in_place(old, cluster):
            raise ManagerError(
                f"cluster {cluster.id!r}: service, mode and count cannot change in place "
                "(unregister it, then register it again)")
        self.clusters[cluster.id] = cluster
        for res in self._resources_of(cluster.id):
            res.cluster = cluster
        return self._reconcile_all(now)

    def unregister(self, cluster_id: str, now: float) -> list[object]:
        """Withdraw this node from C{cluster_id}, gracefully, then forget it.

        Exactly like standby for that one cluster: the registration disappears
        from what we publish (so placement elsewhere no longer counts us), a
        service running here is stopped, its lease released and the next
        candidate told (L{Handover}); an acquisition is abandoned.  Only when
        no resource of the cluster is held or stopping here any more is the
        cluster forgotten (L{ForgetCluster}).  A pause of it is lifted: the
        operator's new configuration wins.
        """
        self._require(cluster_id)
        self._withdrawing.add(cluster_id)
        self._paused.discard(cluster_id)
        for res in self._resources_of(cluster_id):
            res.forced_until = None
        return self._reconcile_all(now)

    def _forget_withdrawn(self) -> list[object]:
        out: list[object] = []
        for cluster_id in sorted(self._withdrawing):
            if any(r.phase != IDLE for r in self._resources_of(cluster_id)):
                continue
            self._withdrawing.discard(cluster_id)
            del self.clusters[cluster_id]
            for res in self._resources_of(cluster_id):
                del self._res[res.name]
                if res.name in self._seen:
                    self._seen[res.name].last_holder = None
            self._leaving.pop(cluster_id, None)
            self._failed_notified.discard(cluster_id)
            self.escalation.clear(cluster_id)
            for key in [k for k in self._eligible_since if k == (self.node, cluster_id)]:
                del self._eligible_since[key]
            out.append(ForgetCluster(cluster_id))
        return out

    # -- status ------------------------------------------------------------------

    def status(self, now: float) -> dict[str, tuple[str, int]]:
        """resource -> (phase, epoch) of every resource this node has dealt with.

        A cluster this node may not acquire because a live peer's settings
        differ shows its idle resources as ``shape-mismatch``.
        """
        phases = {r.name: (r.phase, r.epoch) for r in self._res.values()}
        for cluster_id in self._mismatch:
            cluster = self.clusters[cluster_id]
            for slot in range(cluster.count):
                name = resource_name(cluster_id, slot, cluster.mode)
                phase, epoch = phases.get(name, (IDLE, 0))
                if phase == IDLE:
                    phases[name] = ("shape-mismatch", epoch)
        return phases

    def paused(self) -> frozenset[str]:
        """The cluster IDs paused here."""
        return frozenset(self._paused)

    # -- arbiter events ------------------------------------------------------------

    def _process(self, items: Iterable[object], now: float) -> list[object]:
        out = []
        for item in items:
            if isinstance(item, ARBITER_EVENTS):
                out += self._on_lease_event(item, now)
            else:
                out.append(item)
        return out

    def _on_lease_event(self, event: ArbiterEvent, now: float) -> list[object]:
        res = self._res.get(event.resource)
        if isinstance(event, LeaseObserved):
            seen = self._sighting(event.resource)
            seen.observed = (event.holder, event.epoch)
            if event.holder is not None:
                seen.last_holder = (event.holder, event.epoch)
            return []
        if res is None:
            if isinstance(event, LeaseAcquired):
                # A grant that raced an unregistration: we do not want it.
                return self._process(self.arbiter.release(event.resource, now), now)
            return []
        if isinstance(event, LeaseAcquired):
            seen = self._sighting(event.resource)
            before = seen.last_holder
            seen.observed = seen.last_holder = (self.node, event.epoch)
            if res.phase != ACQUIRING or not self._may_hold(res, now):
                # We no longer want it (or never did): give it straight back.
                res.phase = IDLE
                return self._process(self.arbiter.release(res.name, now), now)
            res.epoch, res.expiry = event.epoch, event.expiry
            res.stop_reason = res.handover_to = None
            res.handed_over, res.forced_until = res.forced_until is not None, None
            previous = event.previous
            res.previous, res.previous_released = previous, event.previous_released
            res.previous_epoch = before[1] if before is not None and before[0] == previous else None
            res.fenced = previous is not None and previous == res.fenced_peer
            fenced, res.fenced_peer = res.fenced_peer, None  # fenced for this tenure only
            acquired = [self._report("acquired", res, previous=previous)]
            if (res.cluster.fence and previous is not None and previous != self.node
                    and not event.previous_released and previous != fenced):
                res.phase = FENCING
                res.fence_kind = "previous"
                return acquired + [self._hook(res, "fence", res.cluster.fence, previous)] + (
                    self._publish(now))
            return acquired + self._start_service(res, now)
        if isinstance(event, LeaseRenewed):
            res.expiry = event.expiry
            if res.phase in (RUNNING, STOPPING, STUCK):
                return [KillAt(res.cluster.id, event.expiry),
                        self._report("renewed", res, round_trip=event.round_trip)]
            return []
        if isinstance(event, LeaseEnding):
            if res.phase == STUCK and res.stop_reason != "lease-lost":
                res.stop_reason = "lease-lost"  # not released: the successor fences
                out = self._process(self.arbiter.abandon(res.name, now), now)
                return out + [self._report("lost", res, reason="could not be renewed in time "
                                           "(a process of the service is stuck)")]
            if res.phase in (RUNNING, STOPPING):
                res.phase = STOPPING
                res.stop_reason = "lease-lost"
                out = []
                if res.expiry is not None and event.deadline < res.expiry:
                    # Taken by another holder: the guard kills now, not at the old deadline.
                    res.expiry = event.deadline
                    out.append(KillAt(res.cluster.id, event.deadline))
                out += self._process(self.arbiter.abandon(res.name, now), now)
                return out + [self._report("lost", res, reason="could not be renewed in time"),
                              StopService(res.cluster.id, event.deadline, "lease could not be renewed")]
            if res.phase == FENCING:
                cancel = self._cancel_fence(res)
                res.phase = IDLE
                return cancel + self._process(self.arbiter.release(res.name, now), now)
            return []
        if isinstance(event, LeaseLost):
            if res.phase == STUCK and res.stop_reason != "lease-lost":
                res.stop_reason = "lease-lost"
                return [self._report("lost", res, reason="expired (a process of the service "
                                     "is stuck)")]
            if res.phase == RUNNING:
                # We were frozen past both the stop point and the deadline.
                res.phase = STOPPING
                res.stop_reason = "lease-lost"
                return [self._report("lost", res, reason="expired (this node was too late)"),
                        StopService(res.cluster.id, now, "lease expired")]
            if res.phase == FENCING:
                cancel = self._cancel_fence(res)
                res.phase = IDLE
                return cancel + self._process(self.arbiter.release(res.name, now), now)
            return self._publish(now)
        return []

    def _may_hold(self, res: _Resource, now: float) -> bool:
        cluster = res.cluster
        me = self.own_state(now)
        other_slot = any(r is not res and r.phase in HELD
                         for r in self._resources_of(cluster.id))
        return (is_eligible(me, cluster.id) and cluster.id not in self._paused
                and res.fence_backoff_until is None and not other_slot
                and not self.shape_mismatch(cluster.id)
                and not self._not_with_held_here(cluster))

    def _report(self, what: str, res: _Resource, **fields: Unpack[_ReportFields]) -> Report:
        return Report(what, res.cluster.id, res.name, res.epoch, **fields)

    def _hook(self, res: _Resource, event: str, argv: Iterable[str], subject: str) -> RunHook:
        return RunHook(res.cluster.id, event, tuple(argv), subject, res.epoch)

    def _start_service(self, res: _Resource, now: float) -> list[object]:
        res.phase = RUNNING
        assert res.expiry is not None  # set by the LeaseAcquired that began the tenure
        out = [KillAt(res.cluster.id, res.expiry),
               StartService(res.cluster.id, res.cluster.label, res.epoch, res.slot)]
        if res.previous is not None and res.previous != self.node:
            out.append(self._report(
                "moved", res, previous=res.previous, previous_epoch=res.previous_epoch,
                previous_released=res.previous_released, handed_over=res.handed_over,
                fenced=res.fenced))
        if res.cluster.notify:
            out.append(self._hook(res, "acquire", res.cluster.notify, self.node))
        return out + self._publish(now)

    def _begin_handover(self, res: _Resource, target: str | None, now: float) -> list[object]:
        self._moving.pop(res.cluster.id, None)
        res.handover_to = target
        res.stop_reason = "handover"
        if res.phase == FENCING:
            return self._finish_stop(res, now)
        res.phase = STOPPING
        return [StopService(res.cluster.id, None, f"handover to {target}" if target else "handover")]

    def _cancel_fence(self, res: _Resource) -> list[CancelFence]:
        """The tenure ends while its fence runs: kill the fence, drop its result."""
        return [CancelFence(res.cluster.id, res.epoch)] if res.phase == FENCING else []

    def _finish_stop(self, res: _Resource, now: float) -> list[object]:
        """The service is gone: release the lease and tell the successor."""
        out = self._cancel_fence(res) + self._process(self.arbiter.release(res.name, now), now)
        res.phase = IDLE
        if res.stop_reason != "lease-lost":  # a lost lease was reported as lost
            out.append(self._report("released", res, reason=res.stop_reason or "stopped"))
        if res.cluster.notify:
            out.append(self._hook(res, "release", res.cluster.notify, self.node))
        if res.stop_reason == "handover":
            self._leaving[res.cluster.id] = now + 2 * self.timing.lease
        if res.stop_reason in ("handover", "failed") and res.handover_to is not None:
            out.append(Send(res.handover_to, Handover(res.name, res.epoch)))
        res.handover_to = None
        return out + self._publish(now)

    def _on_handover(self, sender: str, message: Handover, now: float) -> list[object]:
        res = self._res.get(message.resource)
        if res is None:
            for cluster in self.clusters.values():
                for slot in range(cluster.count):
                    if resource_name(cluster.id, slot, cluster.mode) == message.resource:
                        res = self._resource(cluster, slot)
        if res is None or not self._may_hold(res, now):
            return []
        res.forced_until = now + 2 * self.timing.lease
        self._leaving.pop(res.cluster.id, None)
        out = self._reconcile_all(now)
        if res.phase == ACQUIRING:
            out += self._process(self.arbiter.hurry(res.name, now), now)
        return out

    # -- two-voter mode: fence a silent peer voter -----------------------------------

    def _check_silent_peer(self, now: float) -> list[object]:
        if len(self.voters) != 2 or self.node not in self.voters:
            return []
        (peer,) = [v for v in self.voters if v != self.node]
        out: list[object] = []
        for res in self._res.values():
            if (res.phase != ACQUIRING or not res.cluster.fence or res.fenced_peer == peer
                    or res.fence_backoff_until is not None):
                continue
            silent = self.arbiter.silent_voters(res.name, now, self.timing.voter_quiet)
            if peer in silent:
                res.phase = FENCING
                res.fence_kind = "peer"
                res.fenced_peer = peer
                out.append(self._hook(res, "fence", res.cluster.fence, peer))
        return out

    # -- placement -------------------------------------------------------------------

    def _reconcile_all(self, now: float) -> list[object]:
        self._last_now = now
        self._track_eligibility(now)
        out = []
        out += self._check_voters()
        self._forget_unheld_of_other_shapes()
        for cluster in list(self.clusters.values()):
            out += self._check_shape(cluster)
            out += self._reconcile(cluster, now)
            out += self._report_waiting(cluster, now)
        out += self._forget_withdrawn()
        out += self._notify_failed(now)
        return out + self._publish(now)

    def _forget_unheld_of_other_shapes(self) -> None:
        """Stall timers only for resources the clusters have now (a reload may change a mode,
        and a timer nobody checks again would wake the core at once, forever)."""
        current = {resource_name(c.id, slot, c.mode)
                   for c in self.clusters.values() for slot in range(c.count)}
        for resource, seen in self._seen.items():
            if resource not in current:
                seen.unheld = None

    def _reconcile(self, cluster: "ClusterConfig", now: float) -> list[object]:
        if cluster.id in self._paused:
            for slot in range(cluster.count):
                self._clear_unheld(resource_name(cluster.id, slot, cluster.mode))
            return []
        placement, holders = self._placement(cluster, now)
        stalls = self._track_stalls(cluster, placement, holders, now)
        if stalls:
            placement, holders = self._placement(cluster, now)
        return stalls + self._act_on(cluster, placement, holders, now)

    def _quorum_in_view(self) -> bool:
        """Whether a majority of the voters are live members as far as this node knows."""
        if not self.voters:
            return True
        live = sum(1 for v in self.voters if v == self.node or v in self._members)
        return live >= len(self.voters) // 2 + 1

    def _track_stalls(self, cluster: "ClusterConfig", placement: Placement,
                      holders: Mapping[str, str], now: float) -> list[object]:
        """Skip a target that has not taken its free slot within L{stall_after}.

        Only other nodes are judged (a node trying for a slot knows better
        than a timer), and only while a majority of the voters is in view:
        without a quorum no target can take anything and none is to blame.
        """
        out: list[object] = []
        for slot, target in enumerate(placement.targets):
            resource = resource_name(cluster.id, slot, cluster.mode)
            if (target is None or target == self.node or holders.get(resource) is not None
                    or not self._quorum_in_view()
                    or self._target_waits(cluster, target, now)):
                self._clear_unheld(resource)
                continue
            sighting = self._sighting(resource)
            seen = sighting.unheld
            if seen is None or seen[0] != target:
                sighting.unheld = (target, now)
                continue
            if now < seen[1] + stall_after(self.timing):  # the same sum as next_wakeup's
                continue
            sighting.unheld = None
            key = (target, cluster.id)
            self._stalls[key] = self._stalls.get(key, 0) + 1
            cooldown = min(STALL_COOLDOWN_LEASES * self.timing.lease
                           * 2 ** (self._stalls[key] - 1), STALL_COOLDOWN_MAX)
            self._stalled[key] = now + cooldown
            out.append(Report(
                "stalled", cluster.id, resource, 0, target=target,
                reason=f"{target} was placed for {resource} but did not take it within "
                       f"{stall_after(self.timing):.1f} s; skipped for {cooldown:.0f} s"))
        return out

    def _act_on(self, cluster: "ClusterConfig", placement: Placement,
                holders: Mapping[str, str], now: float) -> list[object]:
        mine = [r for r in self._resources_of(cluster.id)
                if r.phase in HELD]
        out = []
        if mine:
            for res in mine:
                if res.phase in (STOPPING, STUCK):
                    continue
                target = self._moving.get(cluster.id, placement.targets[res.slot])
                if target != self.node:
                    if self._dependents_first(cluster, target, now):
                        continue
                    out += self._begin_handover(res, target, now)
            # Give up any other slot we were trying for: one slot per node.
            for res in self._resources_of(cluster.id):
                if res.phase == ACQUIRING:
                    res.phase = IDLE
                    out += self._process(self.arbiter.abandon(res.name, now), now)
            return out
        role, slot = placement.role(self.node)
        if role == "successor":
            # A successor polls a live holder's lease to take over the moment it
            # lapses; with no known holder the target acquires, not us.
            assert slot is not None
            holder = holders.get(resource_name(cluster.id, slot, cluster.mode))
            if holder is None or holder == self.node:
                role = None
        forced = [r for r in self._resources_of(cluster.id) if r.forced_until is not None]
        if forced:
            role, slot = "target", forced[0].slot
        elif cluster.id in self._leaving:
            role = None
        elif role == "target" and self.settling(now):
            role = None  # cold start: wait until the other candidates can be seen
        if (not is_eligible(self.own_state(now), cluster.id) or cluster.id in self._mismatch
                or self._voters_apart):
            role = None
        if role is not None and self.dependency_wait(cluster.id, now) is not None:
            role = None  # after / with / not_with: not yet
        wanted = None
        if role is not None:
            assert slot is not None
            wanted = self._resource(cluster, slot)
            if wanted.fence_backoff_until is not None:
                wanted = None
        for res in self._resources_of(cluster.id):
            if res is wanted:
                if res.phase == IDLE:
                    res.phase = ACQUIRING
                    out += self._process(self.arbiter.acquire(res.name, now), now)
            elif res.phase == ACQUIRING:
                res.phase = IDLE
                out += self._process(self.arbiter.abandon(res.name, now), now)
        return out

    # -- dependencies between clusters (doc/groups.md) -------------------------------

    def service_running(self, cluster_id: str, running: bool, now: float) -> list[object]:
        """The shell: C{cluster_id}'s service (every member of a group) runs here, or no longer."""
        if running:
            self._running.add(cluster_id)
        else:
            self._running.discard(cluster_id)
        return self._reconcile_all(now)

    def _constrained(self, cluster: "ClusterConfig") -> bool:
        """Whether C{cluster} has dependencies, or a cluster of this node is ``not_with`` it."""
        return bool(cluster.after or cluster.with_ or cluster.not_with) or any(
            cluster.id in other.not_with for other in self.clusters.values())

    def dependency_wait(self, cluster_id: str, now: float) -> str | None:
        """Why C{cluster_id} may not start here yet for its after/with/not_with, or None."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None or not self._constrained(cluster):
            return None
        members = self._all_members(now)
        return (after_wait(cluster.after, members.values())
                or local_wait(cluster.id, cluster.with_, cluster.not_with, members[self.node]))

    def _not_with_held_here(self, cluster: "ClusterConfig") -> bool:
        """Whether a cluster held here is ``not_with`` C{cluster}, or C{cluster} with it.

        Checked when a lease is granted: two clusters placed here at once
        (each acquiring before the other held) must not both start.
        """
        return any(r.phase in HELD and (r.cluster.id in cluster.not_with
                                        or cluster.id in r.cluster.not_with)
                   for r in self._res.values())

    def _report_waiting(self, cluster: "ClusterConfig", now: float) -> list[object]:
        """Report (once per change) that C{cluster}, run nowhere, waits here for its
        dependencies, and when it no longer does (history: ``waiting: after DB (no owner)``)."""
        now_waiting = None
        if self._constrained(cluster):
            members = self._all_members(now)
            if (is_eligible(members[self.node], cluster.id) and cluster.id not in self._paused
                    and not any(holds(m, cluster.id) for m in members.values())):
                now_waiting = self.dependency_wait(cluster.id, now)
        before = self._waits_reported.get(cluster.id)
        if now_waiting == before:
            return []
        if now_waiting is None:
            del self._waits_reported[cluster.id]
            return [Report("waited", cluster.id, cluster.id, 0,
                           reason=f"no longer waiting ({before})")]
        self._waits_reported[cluster.id] = now_waiting
        return [Report("waiting", cluster.id, cluster.id, 0, reason=now_waiting)]

    def _target_waits(self, cluster: "ClusterConfig", target: str, now: float) -> bool:
        """Whether C{target} has a reason of its dependencies not to take C{cluster} yet.

        It is not stalled then: it waits for what the cluster follows or runs with.
        """
        members = self._all_members(now)
        state = members.get(target)
        if state is not None and avoided_by(cluster.id, state) is not None:
            return True  # what is not_with it leaves the target first
        if not (cluster.after or cluster.with_ or cluster.not_with):
            return False
        return state is None or (after_wait(cluster.after, members.values())
                                 or local_wait(cluster.id, cluster.with_, cluster.not_with,
                                               state)) is not None

    def _dependents_first(self, cluster: "ClusterConfig", target: str | None,
                          now: float) -> bool:
        """Whether a held C{cluster} must wait before it stops: what depends on it stops first.

        A cluster colocated with it (``with``) that runs here stops before it
        moves; a cluster that follows it (``after``) and runs anywhere stops
        before it stops for good (no target).
        """
        for other in self.clusters.values():
            if cluster.id in other.with_ and any(
                    r.phase in HELD for r in self._resources_of(other.id)):
                return True
        if target is None and self.node is not None:
            members = self._all_members(now)
            return bool(running_dependents(cluster.id, members.values()))
        return False

    def voters_apart(self) -> list[str]:
        """Live nodes whose voter set is two steps of a change from ours (sorted).

        While there are any, this node acquires nothing: its majorities and
        theirs need not share a voter (L{clsd.ownership.core.voterset}).
        """
        return list(self._voters_apart)

    def _check_voters(self) -> list[object]:
        mine = getattr(self.arbiter, "voter_tag", None)
        apart = [] if mine is None else sorted(
            m.name for m in self._members.values()
            if m.voters is not None and not compatible(mine, m.voters))
        if apart == self._voters_apart:
            return []
        self._voters_apart = apart
        if apart:
            reason = (f"the voters of {', '.join(apart)} are two steps of a change away "
                      "from this node's (old beside new): acquiring nothing until every "
                      "node has previous_voters or the same voters")
        else:
            reason = "voter sets agree again (at most one step apart)"
        return [Report("voters-mismatch" if apart else "voters-agreed", "", "", 0,
                       reason=reason)]

    def _check_shape(self, cluster: "ClusterConfig") -> list[object]:
        """Note (and report once per change) the live peers whose settings for C{cluster} differ."""
        if cluster.id in self._withdrawing:
            self._mismatch.pop(cluster.id, None)
            self._mismatch_named.pop(cluster.id, None)
            return []
        others = self.shape_mismatch(cluster.id)
        differences = self._differences(cluster.id, others)
        if (others, differences) == (self._mismatch.get(cluster.id, []),
                                     self._mismatch_named.get(cluster.id, {})):
            return []
        if others:
            self._mismatch[cluster.id] = others
            self._mismatch_named[cluster.id] = differences
            reason = (f"settings (mode, count, group members, dependencies, address, arbiter, "
                      f"lease, drift margin) differ between {self.node} and "
                      f"{describe(differences or dict.fromkeys(others, []))}: not acquiring "
                      "it here until they agree")
        else:
            del self._mismatch[cluster.id]
            self._mismatch_named.pop(cluster.id, None)
            reason = "settings agree again with every live registered node"
        return [Report("shape-mismatch" if others else "shape-agreed", cluster.id, cluster.id,
                       0, reason=reason)]

    def _notify_failed(self, now: float) -> list[object]:
        out: list[object] = []
        members = list(self._all_members(now).values())
        for cluster in self.clusters.values():
            if cluster.id in self._withdrawing:
                continue
            status = cluster_status(cluster.id, members)
            if status == FAILED:
                if cluster.id not in self._failed_notified:
                    out.append(Report("failed", cluster.id, cluster.id, 0,
                                      reason="every live registered node gave it up "
                                      "(crash loop, cannot start)"))
                if (cluster.id not in self._failed_notified
                        and notifier(cluster.id, members) == self.node and cluster.notify):
                    out.append(RunHook(cluster.id, "failed", tuple(cluster.notify),
                                       self.node, 0))
                self._failed_notified.add(cluster.id)
            else:
                self._failed_notified.discard(cluster.id)
        return out
