"""The escalation ladder after local restarts are exhausted; pure policy.

1. Supervision restarts the service locally with backoff (clsd.supervision).
2. Its crash-loop limit is reached: supervision reports the service FAILED.
3. This node gives the lease up and is *ineligible* for that cluster ID for
   C{cooldown} seconds (it publishes the ID in its ``failed`` set).
4. Placement, which skips ineligible nodes, picks the next candidate.
5. When every live registered candidate is ineligible the cluster is FAILED:
   the ``notify`` hook says so, once, from one node (the first by name among
   the registered live members, so the notification is not repeated by each).
6. When a cooldown ends the node is eligible again and placement retries.
"""

from collections.abc import Iterable

import attrs

from clsd.ownership.core.placement import MemberState

#: Default cooldown: long enough that a service that cannot start anywhere
#: does not bounce between nodes several times a minute, short enough that a
#: transient cause (a full disk, a missing mount) is retried without an operator.
DEFAULT_COOLDOWN = 300.0

RUNNING, FAILED = "running", "failed"


@attrs.define
class Escalation:
    """This node's ineligibility per cluster ID, with expiry times (local monotonic)."""

    _until: dict[str, float] = attrs.field(factory=dict)

    def gave_up(self, cluster: str, now: float, cooldown: float) -> float:
        """Supervision reported C{cluster}'s service FAILED: ineligible until C{now + cooldown}."""
        self._until[cluster] = now + cooldown
        return self._until[cluster]

    def clear(self, cluster: str) -> None:
        """An operator cleared the failure (e.g. after fixing the cause)."""
        self._until.pop(cluster, None)

    def ineligible(self, now: float) -> frozenset[str]:
        """The cluster IDs this node must not hold now."""
        self.expire(now)
        return frozenset(self._until)

    def expire(self, now: float) -> list[str]:
        """Drop ended cooldowns; returns the IDs that became eligible again."""
        ended = [c for c, until in self._until.items() if until <= now]
        for cluster in ended:
            del self._until[cluster]
        return ended

    def next_wakeup(self) -> float | None:
        return min(self._until.values()) if self._until else None


def cluster_status(cluster: str, members: Iterable[MemberState]) -> str:
    """RUNNING, or FAILED when every live registered non-standby member gave it up.

    A cluster whose members are all on standby is not FAILED: an operator
    moved it away on purpose.
    """
    registered = [m for m in members if cluster in m.registrations and not m.standby]
    if registered and all(cluster in m.failed for m in registered):
        return FAILED
    return RUNNING


def notifier(cluster: str, members: Iterable[MemberState]) -> str | None:
    """The one member that sends the cluster-wide FAILED notification."""
    registered = sorted(m.name for m in members if cluster in m.registrations)
    return registered[0] if registered else None
