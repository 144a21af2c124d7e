"""The ``[quorum]`` table: who grants leases, and how long a lease lasts.

Every node must have the same lease (the peer layer compares it when nodes
connect) and drift margin (each cluster's fingerprint includes it,
L{clsd.ownership.core.shape}).  The voters may differ by one step of a change
(``previous_voters``, L{clsd.ownership.core.voterset}): the voters check it on
every request, and a node does not acquire beside a member two steps away.
"""


import attrs

from clsd.config.reader import NAME_PATTERN
from clsd.ownership.core.timing import (
    DEFAULT_DRIFT_MARGIN, DEFAULT_LEASE, KILL_LATENCY, MAX_DRIFT_RATE, minimum_drift_margin,
)


#: Shortest lease accepted: below it a renewal (a round trip and a little
#: scheduling) cannot be retried several times inside T/3.
MIN_LEASE = 0.2
#: Longest lease accepted: failover takes about one lease; beyond a minute
#: the cluster is not highly available any more.
MAX_LEASE = 60.0

VOTER_COUNTS = (1, 2, 3, 5)

#: Who grants leases: the built-in voters (the default) or an etcd cluster.
ARBITERS = ("voters", "etcd")


@attrs.frozen
class QuorumConfig:
    #: The built-in voters' names; empty when etcd arbitrates.
    voters: tuple
    lease: float = DEFAULT_LEASE
    drift_margin: float = DEFAULT_DRIFT_MARGIN
    #: ``"voters"`` or ``"etcd"`` (then the ``[etcd]`` table says where it is).
    arbiter: str = "voters"
    #: While the voters change: the set before the change (a lease then needs
    #: a majority of both sets); empty otherwise.  See doc/operations.md.
    previous_voters: tuple = ()

    @property
    def majority(self):
        return len(self.voters) // 2 + 1


def parse_quorum(table):
    arbiter = table.choice("arbiter", ARBITERS, "voters")
    if arbiter == "etcd":
        if "voters" in table:
            raise table.error(
                "voters",
                'cannot be set together with quorum.arbiter = "etcd": leases come either '
                "from the built-in voters or from etcd, never both (remove quorum.voters, "
                "or remove quorum.arbiter and [etcd])")
        voters = ()
    else:
        voters = _parse_voters(table)
    previous_voters = _parse_previous_voters(table, arbiter, voters)
    lease = table.number("lease", DEFAULT_LEASE, minimum=MIN_LEASE, maximum=MAX_LEASE)
    if arbiter == "etcd" and (lease != int(lease) or lease < 1):
        raise table.error(
            "lease", f'must be a whole number of seconds with quorum.arbiter = "etcd" '
                     f"(etcd lease TTLs are whole seconds), got {lease:g}")
    drift_margin = _parse_drift_margin(table, lease)
    table.finish()
    return QuorumConfig(voters=voters, lease=lease, drift_margin=drift_margin,
                        arbiter=arbiter, previous_voters=previous_voters)


def _parse_previous_voters(table, arbiter, voters):
    if "previous_voters" not in table:
        return ()
    if arbiter == "etcd":
        raise table.error("previous_voters", 'has no meaning with quorum.arbiter = "etcd"')
    previous = _parse_voters(table, "previous_voters")
    if set(previous) == set(voters):
        raise table.error(
            "previous_voters",
            "names the same nodes as quorum.voters: remove it (it is only set while the "
            "voters change, see doc/operations.md)")
    return previous


def _parse_voters(table, key="voters"):
    voters = table.string_list(key, nonempty=True)
    for index, name in enumerate(voters):
        if not NAME_PATTERN.match(name):
            raise table.error(f"{key}[{index}]", f"{name!r} is not a valid node name")
    seen = set()
    for index, name in enumerate(voters):
        if name in seen:
            raise table.error(f"{key}[{index}]", f"{name!r} is listed twice")
        seen.add(name)
    count = len(voters)
    if count not in VOTER_COUNTS:
        if count % 2 == 0:
            why = (f"a lease needs a majority ({count // 2 + 1} of {count}), so {count} voters "
                   f"survive no more failures than {count - 1} would")
        else:
            why = "more than 5 voters make every lease slower and survive little more"
        raise table.error(
            key,
            f"must name 1, 3 or 5 nodes (or 2 with a fence command on every cluster), "
            f"got {count}: {why}",
        )
    return voters


def _parse_drift_margin(table, lease):
    drift_margin = table.number("drift_margin", DEFAULT_DRIFT_MARGIN, minimum=0.0)
    floor = minimum_drift_margin(lease)
    if drift_margin < floor:
        raise table.error(
            "drift_margin",
            f"must be at least {floor:.4g} s for lease = {lease:g}: clocks may drift "
            f"{MAX_DRIFT_RATE * 1e6:g} ppm each way, the lease guard's kill needs "
            f"{KILL_LATENCY:g} s, and the holder must stop before any voter could grant the "
            f"lease to another node, got {drift_margin!r}",
        )
    if drift_margin >= lease / 4:
        raise table.error(
            "drift_margin",
            f"must be less than lease/4 ({lease / 4:g} s) so that a renewal and a stop "
            f"still fit in the lease, got {drift_margin!r}",
        )
    return drift_margin
