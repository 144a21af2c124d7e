"""One node's ownership core: its voter (if it is one) and its cluster manager, routed.

Lease requests go to the voter, everything else to the manager.  Messages a
node sends to itself (its own voter) are delivered here at once, so the
shell only ever sees messages for other nodes.  A witness is a node with a
voter and no clusters.

Every message from a peer is first checked by L{authorise} (its claims are
its sender's own, L{clsd.ownership.core.authority}); the shell calls it before it
queues the message and raises L{clsd.wire.core.errors.Forged} on a forgery, and
L{receive} drops a forgery too.  The voter is told which cluster IDs every
live member registered for (L{members_changed}), so that it answers only
members registered for the cluster a request is about.
"""

import random
from collections.abc import Collection, Iterable, Sequence
from typing import TYPE_CHECKING

from clsd.ownership.core.actions import Send
from clsd.ownership.core.arbiter import IArbiter, QuorumArbiter
from clsd.ownership.core.authority import Forgery, forgery
from clsd.ownership.core.manager import ClusterManager
from clsd.ownership.core.messages import LEASE_REQUESTS, Handover, Prepare, Propose, Release
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.shape import cluster_of
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voter import DEFAULT_RESERVE_BLOCK, LeaseVoter, VoterAction
from clsd.ownership.core.voterset import VoterSet

if TYPE_CHECKING:
    from clsd.config.model import Config


class OwnershipNode:
    def __init__(self, name: str, voter: LeaseVoter | None, manager: ClusterManager, *,
                 voters: Iterable[str] | None = None) -> None:
        """@param voters: the configured voters (default: the manager's)."""
        self.name = name
        self.voter = voter        # LeaseVoter or None
        self.manager = manager    # ClusterManager (may have no clusters)
        self.voters = tuple(manager.voters if voters is None else voters)
        #: Live member -> the cluster IDs it registered for or holds; None
        #: until membership first reports (a core driven without membership).
        self.registrations: dict[str, frozenset[str]] | None = None

    @classmethod
    def from_config(cls, config: "Config", now: float, *, generation: int, rng: random.Random,
                    epoch_floor: int = 0, settle_until: float | None = None) -> "OwnershipNode":
        """Build this node's core from a L{clsd.config.Config} with a ``[quorum]``.

        C{generation}: fresh per daemon start; C{rng}: a C{random.Random};
        C{epoch_floor}: the last value this node's voter persisted (0 at first);
        C{settle_until}: see L{ClusterManager} (cold start).
        """
        quorum = config.quorum
        assert quorum is not None  # ownership runs only with a [quorum] (clsd.daemon)
        timing = LeaseTiming(lease=quorum.lease, drift_margin=quorum.drift_margin)
        name = config.node.name
        voter = None
        arbiter: IArbiter
        if quorum.arbiter == "etcd":
            from clsd.ownership.etcd.core.arbiter import EtcdArbiter

            assert config.etcd is not None  # arbiter = "etcd" requires [etcd]
            arbiter = EtcdArbiter(name, generation, config.etcd.prefix, timing, rng)
        else:
            voter_set = VoterSet(quorum.voters, quorum.previous_voters)
            if name in voter_set.members:
                voter = LeaseVoter(name, timing, now, epoch_floor=epoch_floor,
                                   reserve_block=DEFAULT_RESERVE_BLOCK, voter_set=voter_set)
            arbiter = QuorumArbiter(name, generation, voter_set, timing, rng)
        manager = ClusterManager(name, config.clusters, arbiter, timing, now,
                                 voters=quorum.voters, settle_until=settle_until)
        # Promises count from the voters of every set in use (both while they change).
        voters = voter_set.members if quorum.arbiter != "etcd" else ()
        return cls(name, voter, manager, voters=voters)

    def start(self, now: float) -> list[object]:
        out = self.voter.start() if self.voter is not None else []
        return self._route(out + self.manager.start(now), now)

    def authorise(self, sender: str, message: object) -> Forgery | None:
        """The L{clsd.ownership.core.authority.Forgery} in C{message} from peer C{sender}, or None."""
        holders: Collection[str] = ()
        if isinstance(message, Handover):
            holders = self.manager.known_holders(message.resource)
        return forgery(sender, message, node=self.name, voters=self.voters, holders=holders)

    def members_changed(self, members: Collection[MemberState], now: float) -> list[object]:
        """The live members' L{MemberState}s (from membership): tell the voter and the manager."""
        self.registrations = {
            m.name: frozenset(m.registrations) | {cluster_of(r) for r in m.holding}
            for m in members if m.name != self.name}
        return self.call("members_changed", members, now=now)

    def receive(self, sender: str, message: object, now: float) -> list[object]:
        if self.authorise(sender, message) is not None:
            return []  # the shell raised Forged already; never acted on
        if isinstance(message, LEASE_REQUESTS):
            return self._route(self._vote(sender, message, now), now)
        return self._route(self.manager.receive(sender, message, now), now)

    def _vote(self, sender: str, message: Prepare | Propose | Release,
              now: float) -> list[VoterAction]:
        if self.voter is None:
            return []
        return self.voter.receive(sender, message, now,
                                  registered=self._registered(sender, message.resource))

    def _registered(self, sender: str, resource: str) -> bool | None:
        """Whether C{sender} may ask this voter about C{resource} (None: not checked)."""
        cluster = cluster_of(resource)
        if sender == self.name:
            return cluster in self.manager.clusters
        if self.registrations is None:
            return None
        return cluster in self.registrations.get(sender, ())

    def tick(self, now: float) -> list[object]:
        if self.voter is not None:
            self.voter.forget_budgets(now)
        return self._route(self.manager.tick(now), now)

    def next_wakeup(self) -> float | None:
        return self.manager.next_wakeup()

    def call(self, method: str, *args: object, now: float, **kwargs: object) -> list[object]:
        """Run a manager input (e.g. C{"service_stopped"}) and route its actions."""
        return self._route(getattr(self.manager, method)(*args, now=now, **kwargs), now)

    def _route(self, actions: Iterable[object], now: float) -> list[object]:
        out = []
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Send) and action.to == self.name:
                pending += self._deliver_local(action.message, now)
            else:
                out.append(action)
        return out

    def _deliver_local(self, message: object, now: float) -> Sequence[object]:
        if isinstance(message, LEASE_REQUESTS):
            return self._vote(self.name, message, now)
        return self.manager.receive(self.name, message, now)
