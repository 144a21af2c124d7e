"""The lease arbiter interface, and the built-in voter-quorum arbiter.

Placement and the cluster manager talk only to L{IArbiter}: "get me this
resource and keep it", "I have stopped, give it back", and the events of
L{clsd.ownership.core.arbiter_events}.  The embedded voter quorum below is the
default; an etcd v3 lease arbiter (later issue) implements the same interface
with its own I/O actions, and nothing above it changes.

Every method takes the current monotonic time and returns a list that mixes
arbiter events (for the manager) and actions (for the shell, e.g. L{Send}).
"""

from zope.interface import Attribute, Interface, implementer

from clsd.ownership.core.messages import LEASE_REPLIES
from clsd.ownership.core.proposer import LeaseProposer
from clsd.ownership.core.voterset import VoterSet


class IArbiter(Interface):
    """Grants exclusive, expiring, epoch-numbered leases on named resources."""

    node = Attribute("This node's name.")

    def acquire(resource, now):
        """Start (or keep) trying to hold C{resource}; renew it while held."""

    def hurry(resource, now):
        """Try to acquire C{resource} right now (a handover was announced)."""

    def abandon(resource, now):
        """Stop trying to acquire C{resource}; a held lease keeps being renewed."""

    def release(resource, now):
        """The service of C{resource} is stopped: give the lease back now."""

    def holding(resource, now):
        """C{(epoch, expiry)} while this node holds C{resource}, else None."""

    def receive(sender, message, now):
        """Feed a message from node C{sender} that L{accepts} said is ours."""

    def accepts(message):
        """True for the messages this arbiter consumes."""

    def tick(now):
        """Timers: call at or after L{next_wakeup}."""

    def next_wakeup():
        """The next time L{tick} has work, or None."""


@implementer(IArbiter)
class QuorumArbiter:
    """Leases granted by a majority of the configured voters (PaxosLease, diskless)."""

    def __init__(self, node, generation, voters, timing, rng):
        """C{voters}: a L{VoterSet} (joint majorities while the voters change) or names."""
        self.node = node
        self.generation = generation
        self._voter_spec = voters
        self.voters = voters.members if isinstance(voters, VoterSet) else tuple(voters)
        self.timing = timing
        self.rng = rng
        self._proposers = {}
        self._last_heard = {}  # voter -> last answer from it, for any resource

    @property
    def voter_tag(self):
        """Our L{VoterSet.tag} (published, so that peers two steps apart see it), or None."""
        spec = self._voter_spec
        return spec.tag if isinstance(spec, VoterSet) else None

    def proposer(self, resource):
        proposer = self._proposers.get(resource)
        if proposer is None:
            proposer = LeaseProposer(resource, self.node, self.generation, self._voter_spec,
                                     self.timing, self.rng)
            self._proposers[resource] = proposer
        return proposer

    def acquire(self, resource, now):
        return self.proposer(resource).acquire(now)

    def hurry(self, resource, now):
        return self.proposer(resource).hurry(now)

    def abandon(self, resource, now):
        if resource not in self._proposers:
            return []
        return self._proposers[resource].abandon(now)

    def release(self, resource, now):
        if resource not in self._proposers:
            return []
        return self._proposers[resource].release(now)

    def holding(self, resource, now):
        proposer = self._proposers.get(resource)
        return proposer.holding(now) if proposer is not None else None

    def tenure(self, resource, now):
        """See L{LeaseProposer.tenure} (status and simulation checks)."""
        proposer = self._proposers.get(resource)
        return proposer.tenure(now) if proposer is not None else None

    def accepts(self, message):
        return isinstance(message, LEASE_REPLIES)

    def receive(self, sender, message, now):
        if sender in self.voters:
            self._last_heard[sender] = now
        proposer = self._proposers.get(message.resource)
        if proposer is None:
            return []
        return proposer.receive(sender, message, now)

    def tick(self, now):
        out = []
        for proposer in list(self._proposers.values()):
            wake = proposer.next_wakeup()
            if wake is not None and wake <= now:
                out += proposer.tick(now)
        return out

    def next_wakeup(self):
        times = [w for w in (p.next_wakeup() for p in self._proposers.values())
                 if w is not None]
        return min(times) if times else None

    # -- two-voter mode ----------------------------------------------------

    def silent_voters(self, resource, now, longer_than):
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
        silent = []
        for voter in self.voters:
            heard = self._last_heard.get(voter)
            if heard is None:
                continue
            if now - max(heard, proposer.wanted_since) > longer_than:
                silent.append(voter)
        return tuple(silent)

    def assume_granted(self, resource, voter):
        """See L{LeaseProposer.assume_granted}: only after a fence succeeded against C{voter}."""
        self.proposer(resource).assume_granted(voter)
