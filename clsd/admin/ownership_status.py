"""What the admin ``status`` shows of lease ownership: the clusters (id, owners, epoch, state)
and the quorum (voters, whether there is one), read from an
L{clsd.ownership.service.OwnershipService} and its core.

It reads and never changes; it lives on the admin side so that the ownership shell keeps
to running the core.
"""

from clsd.ownership.core.escalation import cluster_status
from clsd.ownership.core.voterset import VoterSet


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
        owners = {}
        for member in members:
            for resource, epoch in member.holding.items():
                if resource == cluster.id or resource.startswith(cluster.id + "/"):
                    owners[member.name] = max(epoch, owners.get(member.name, 0))
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
        result["clusters"].append({
            "id": cluster.id, "mode": cluster.mode, "count": cluster.count,
            "service": cluster.service, "owners": owners,
            "epoch": max(owners.values(), default=None), "state": state,
            "resources": {r: {"phase": p, "epoch": e} for r, (p, e) in mine.items()},
            "service_state": service.service_state(cluster.id),
            "shape_mismatch": manager.shape_mismatch(cluster.id),
            "addresses": service.address_status().get(cluster.id, {}),
            # An ordered group: its members in start order and their states here.
            "members": list(cluster.members),
            "member_states": service.member_states(cluster.id),
            "waiting_for": service.group_waiting_for(cluster.id),
            "waiting": waiting,
        })
    return result


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
