"""The lease arbiter interface, and the built-in voter-quorum arbiter.

Placement and the cluster manager talk only to L{IArbiter}: "get me this
resource and keep it", "I have stopped, give it back", and the events of
L{clsd.ownership.core.arbiter_events}.  The embedded voter quorum below is the
default; an etcd v3 lease arbiter (later issue) implements the same interface
with its own I/O actions, and nothing above it changes.

Every method takes the current monotonic time and returns a list that mixes
arbiter events (for the manager) and actions (for the shell, e.g. L{Send}).
"""

import random
from collections.abc import Iterable, Sequence
from typing import Any

from zope.interface import Attribute, Interface, implementer

from clsd.ownership.core.messages import LEASE_REPLIES, Accepted, Promise
from clsd.ownership.core.proposer import LeaseProposer, ProposerOutput
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voterset import VoterSet


class IArbiter(Interface):
    """Grants exclusive, expiring, epoch-numbered leases on named resources."""

    node = Attribute("This node's name.")

    def acquire(resource: str, now: float) -> Sequence[object]:
        """Start (or keep) trying to hold C{resource}; renew it while held."""

    def hurry(resource: str, now: float) -> Sequence[object]:
        """Try to acquire C{resource} right now (a handover was announced)."""

    def abandon(resource: str, now: float) -> Sequence[object]:
        """Stop trying to acquire C{resource}; a held lease keeps being renewed."""

    def release(resource: str, now: float) -> Sequence[object]:
        """The service of C{resource} is stopped: give the lease back now."""

    def holding(resource: str, now: float) -> tuple[int, float] | None:
        """C{(epoch, expiry)} while this node holds C{resource}, else None."""

    # Any: each arbiter takes its own kinds of message (those it accepts).
    def receive(sender: str, message: Any, now: float) -> Sequence[object]:
        """Feed a message from node C{sender} that L{accepts} said is ours."""

    def accepts(message: object) -> bool:
        """True for the messages this arbiter consumes."""

    def tick(now: float) -> Sequence[object]:
        """Timers: call at or after L{next_wakeup}."""

    def next_wakeup() -> float | None:
        """The next time L{tick} has work, or None."""

    def silent_voters(resource: str, now: float, longer_than: float) -> tuple[str, ...]:
        """Voters silent for C{longer_than} s while we wanted C{resource} (two-voter mode)."""

    def assume_granted(resource: str, voter: str) -> None:
        """Count C{voter} as granting C{resource} (two-voter mode, after fencing it)."""


@implementer(IArbiter)
class QuorumArbiter:
    """Leases granted by a majority of the configured voters (PaxosLease, diskless)."""

    def __init__(self, node: str, generation: int, voters: VoterSet | Iterable[str],
                 timing: LeaseTiming, rng: random.Random) -> None:
        """C{voters}: a L{VoterSet} (joint majorities while the voters change) or names."""
        self.node = node
        self.generation = generation
        self._voter_spec = voters
        self.voters = voters.members if isinstance(voters, VoterSet) else tuple(voters)
        self.timing = timing
        self.rng = rng
        self._proposers: dict[str, LeaseProposer] = {}
        self._last_heard: dict[str, float] = {}  # voter -> last answer from it, for any resource

    @property
    def voter_tag(self) -> str | None:
        """Our L{VoterSet.tag} (published, so that peers two steps apart see it), or None."""
        spec = self._voter_spec
        return spec.tag if isinstance(spec, VoterSet) else None

    def proposer(self, resource: str) -> LeaseProposer:
        proposer = self._proposers.get(resource)
        if proposer is None:
            proposer = LeaseProposer(resource, self.node, self.generation, self._voter_spec,
                                     self.timing, self.rng)
            self._proposers[resource] = proposer
        return proposer

    def acquire(self, resource: str, now: float) -> list[ProposerOutput]:
        return self.proposer(resource).acquire(now)

    def hurry(self, resource: str, now: float) -> list[ProposerOutput]:
        return self.proposer(resource).hurry(now)

    def abandon(self, resource: str, now: float) -> list[ProposerOutput]:
        if resource not in self._proposers:
            return []
        return self._proposers[resource].abandon(now)

    def release(self, resource: str, now: float) -> list[ProposerOutput]:
        if resource not in self._proposers:
            return []
        return self._proposers[resource].release(now)

    def holding(self, resource: str, now: float) -> tuple[int, float] | None:
        proposer = self._proposers.get(resource)
        return proposer.holding(now) if proposer is not None else None

    def tenure(self, resource: str, now: float) -> tuple[int, float] | None:
        """See L{LeaseProposer.tenure} (status and simulation checks)."""
        proposer = self._proposers.get(resource)
        return proposer.tenure(now) if proposer is not None else None

    def accepts(self, message: object) -> bool:
        return isinstance(message, LEASE_REPLIES)

    def receive(self, sender: str, message: Promise | Accepted,
                now: float) -> list[ProposerOutput]:
        if sender in self.voters:
            self._last_heard[sender] = now
        proposer = self._proposers.get(message.resource)
        if proposer is None:
            return []
        return proposer.receive(sender, message, now)

    def tick(self, now: float) -> list[ProposerOutput]:
        out: list[ProposerOutput] = []
        for proposer in list(self._proposers.values()):
            wake = proposer.next_wakeup()
            if wake is not None and wake <= now:
                out += proposer.tick(now)
        return out

    def next_wakeup(self) -> float | None:
        times = [w for w in (p.next_wakeup() for p in self._proposers.values())
                 if w is not None]
        return min(times) if times else None

    # -- two-voter mode ----------------------------------------------------

    def silent_voters(self, resource: str, now: float, longer_than: float) -> tuple[str, ...]:
        """Voters we heard from once, but not for C{longer_than} s while we wanted C{resource}.

        A voter never heard from since this daemon started is *not* silent
        ("wait for all", as corosync's two-node mode): a node that boots while
        its peer is unreachable must not fence a peer that may be running
        fine, which would also let a rebooted, fenced node fence the survivor
        in turn.  It also keeps epochs growing: having heard the peer's voter,
        our ballots are above every counter it promised.
        """
        proposer = self._proposers.get(resource)
        if proposer is None or not proposer.wanted:
            return ()
        assert proposer.wanted_since is not None  # set with wanted
        silent: list[str] = []
        for voter in self.voters:
            heard = self._last_heard.get(voter)
            if heard is None:
                continue
            if now - max(heard, proposer.wanted_since) > longer_than:
                silent.append(voter)
        return tuple(silent)

    def assume_granted(self, resource: str, voter: str) -> None:
        """See L{LeaseProposer.assume_granted}: only after a fence succeeded against C{voter}."""
        self.proposer(resource).assume_granted(voter)
