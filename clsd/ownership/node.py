"""One node's ownership core: its voter (if it is one) and its cluster manager, routed.

Lease requests go to the voter, everything else to the manager.  Messages a
node sends to itself (its own voter) are delivered here at once, so the
shell only ever sees messages for other nodes.  A witness is a node with a
voter and no clusters.
"""

from clsd.ownership.actions import Send
from clsd.ownership.arbiter import QuorumArbiter
from clsd.ownership.manager import ClusterManager
from clsd.ownership.messages import LEASE_REQUESTS
from clsd.ownership.timing import LeaseTiming
from clsd.ownership.voter import DEFAULT_RESERVE_BLOCK, LeaseVoter
from clsd.ownership.voterset import VoterSet


class OwnershipNode:
    def __init__(self, name, voter, manager):
        self.name = name
        self.voter = voter        # LeaseVoter or None
        self.manager = manager    # ClusterManager (may have no clusters)

    @classmethod
    def from_config(cls, config, now, *, generation, rng, epoch_floor=0, settle_until=None):
        """Build this node's core from a L{clsd.config.Config} with a ``[quorum]``.

        C{generation}: fresh per daemon start; C{rng}: a C{random.Random};
        C{epoch_floor}: the last value this node's voter persisted (0 at first);
        C{settle_until}: see L{ClusterManager} (cold start).
        """
        quorum = config.quorum
        timing = LeaseTiming(lease=quorum.lease, drift_margin=quorum.drift_margin)
        name = config.node.name
        voter = None
        if quorum.arbiter == "etcd":
            from clsd.ownership.etcd.arbiter import EtcdArbiter

            arbiter = EtcdArbiter(name, generation, config.etcd.prefix, timing, rng)
        else:
            voter_set = VoterSet(quorum.voters, quorum.previous_voters)
            if name in voter_set.members:
                voter = LeaseVoter(name, timing, now, epoch_floor=epoch_floor,
                                   reserve_block=DEFAULT_RESERVE_BLOCK, voter_set=voter_set)
            arbiter = QuorumArbiter(name, generation, voter_set, timing, rng)
        manager = ClusterManager(name, config.clusters, arbiter, timing, now,
                                 voters=quorum.voters, settle_until=settle_until)
        return cls(name, voter, manager)

    def start(self, now):
        out = self.voter.start() if self.voter is not None else []
        return self._route(out + self.manager.start(now), now)

    def receive(self, sender, message, now):
        if isinstance(message, LEASE_REQUESTS):
            if self.voter is None:
                return []
            return self._route(self.voter.receive(sender, message, now), now)
        return self._route(self.manager.receive(sender, message, now), now)

    def tick(self, now):
        return self._route(self.manager.tick(now), now)

    def next_wakeup(self):
        return self.manager.next_wakeup()

    def call(self, method, *args, now):
        """Run a manager input (e.g. C{"service_stopped"}) and route its actions."""
        return self._route(getattr(self.manager, method)(*args, now=now), now)

    def _route(self, actions, now):
        out = []
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            if isinstance(action, Send) and action.to == self.name:
                pending += self._deliver_local(action.message, now)
            else:
                out.append(action)
        return out

    def _deliver_local(self, message, now):
        if isinstance(message, LEASE_REQUESTS):
            return self.voter.receive(self.name, message, now) if self.voter else []
        return self.manager.receive(self.name, message, now)
