"""Placement: which node should hold each slot of a cluster ID; a pure function.

Placement only decides who *tries*; the lease decides who *holds*.  Two nodes
with different views may both try, and the voters let one win, so placement
needs no agreement to be safe.

Rule: among members registered for the ID, alive, not on standby and not
failed for it, the highest priority wins, then the smaller name; a
candidate shunned for the cluster's ``not_with`` rules comes after all the
others (doc/groups.md).  A current
holder keeps its slot (stickiness) unless C{preempt} is set and a strictly
better candidate has been eligible for C{preempt_delay} seconds.  An
n-active cluster spreads its C{count} slots over distinct nodes.
"""

from collections.abc import Iterable
from typing import cast

import attrs


@attrs.frozen
class MemberState:
    """What each node publishes about itself (membership metadata carries it)."""

    name: str
    #: cluster ID -> priority, from this node's ``[[cluster]]`` tables.
    registrations: dict[str, int] = attrs.field(factory=dict)
    standby: bool = False
    #: cluster IDs this node gave up after a crash loop (cooling down).
    failed: frozenset[str] = frozenset()
    #: resource -> epoch for every lease this node holds.
    holding: dict[str, int] = attrs.field(factory=dict)
    #: cluster ID -> fingerprint of its lease-relevant settings (L{clsd.ownership.core.shape}).
    shapes: dict[str, str] = attrs.field(factory=dict)
    #: Its voter-set tag (L{clsd.ownership.core.voterset.VoterSet.tag}); None if unknown.
    voters: str | None = None
    #: cluster IDs whose service (every member of a group) runs on this node now.
    running: frozenset[str] = frozenset()
    #: cluster ID -> the cluster IDs it follows (``after``), for its registrations.
    follows: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    #: cluster ID -> the cluster IDs it is ``not_with``, for its registrations.
    avoids: dict[str, tuple[str, ...]] = attrs.field(factory=dict)


@attrs.frozen
class Candidate:
    name: str
    priority: int
    #: Since when (local monotonic time) it has been alive and eligible.
    eligible_since: float
    #: The slot it holds now, or None.
    slot: int | None = None
    #: Ranked after every other candidate: it holds (or is chosen for) a
    #: cluster that is ``not_with`` this one.
    shunned: bool = False


@attrs.frozen
class Placement:
    #: slot -> the node that should hold it (None: nobody eligible).
    targets: tuple[str | None, ...]
    #: slot -> the node that should take over if the target's lease lapses.
    successors: tuple[str | None, ...]

    def role(self, node: str) -> tuple[str, int] | tuple[None, None]:
        """('target', slot), ('successor', slot) or (None, None) for C{node}."""
        for slot, name in enumerate(self.targets):
            if name == node:
                return "target", slot
        for slot, name in enumerate(self.successors):
            if name == node:
                return "successor", slot
        return None, None


def is_eligible(member: MemberState, cluster_id: str) -> bool:
    return (cluster_id in member.registrations and not member.standby
            and cluster_id not in member.failed)


def _rank(candidate: Candidate) -> tuple[bool, int, str]:
    return (candidate.shunned, -candidate.priority, candidate.name)


def place(candidates: Iterable[Candidate], count: int, *, preempt: bool = False,
          preempt_delay: float = 0.0, now: float = 0.0) -> Placement:
    """Assign C{count} slots to distinct eligible C{candidates}; see the module doc.

    C{candidates} are the eligible nodes only (use L{is_eligible}).
    """
    ranked = sorted(candidates, key=_rank)
    targets: list[Candidate | None] = [None] * count
    used = set()
    # Stickiness: current holders keep their slots (one slot per node).
    for candidate in ranked:
        slot = candidate.slot
        if (slot is not None and 0 <= slot < count and targets[slot] is None
                and candidate.name not in used):
            targets[slot] = candidate
            used.add(candidate.name)
    # Empty slots go to the best unused candidates, in slot order.
    spare = [c for c in ranked if c.name not in used]
    for slot in range(count):
        if targets[slot] is None and spare:
            targets[slot] = chosen = spare.pop(0)
            used.add(chosen.name)
    # Preemption: a strictly better spare, eligible long enough, replaces the worst holder.
    if preempt:
        ready = [c for c in spare if now - c.eligible_since >= preempt_delay]
        # A candidate is ready only when one is spare, so every slot is filled.
        held = cast("list[Candidate]", targets)
        while ready:
            worst_slot = max(range(count), key=lambda s: _rank(held[s]))
            if ready[0].shunned or ready[0].priority <= held[worst_slot].priority:
                break  # only a strictly higher priority preempts, never a shunned node
            better = ready.pop(0)
            spare.remove(better)
            spare.append(held[worst_slot])
            spare.sort(key=_rank)
            held[worst_slot] = better
    successors: list[Candidate | None] = [None] * count
    for slot in range(count):
        if spare:
            successors[slot] = spare.pop(0)
    return Placement(
        targets=tuple(c.name if c else None for c in targets),
        successors=tuple(c.name if c else None for c in successors),
    )
