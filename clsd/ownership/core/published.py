"""What a node publishes about its ownership role, as a JSON-able dict (membership carries it).

The core emits L{PublishState} with a L{MemberState}; membership gossips
L{state_to_wire}'s dict as this node's metadata, and hands every live
member's dict back through C{OwnershipService.members_changed}, where
L{state_from_wire} checks it.  The member's *name* never comes from the dict:
membership knows it from the peer's certificate.
"""

from collections.abc import Mapping

from clsd.ownership.core.messages import INT64_MAX, INT64_MIN, WireError
from clsd.ownership.core.placement import MemberState

#: Bumped when the dict changes incompatibly.
STATE_VERSION = 1
#: Longest cluster fingerprint or voter-set tag accepted from a peer (ours: 12 and 25).
MAX_FINGERPRINT = 64
#: Most cluster IDs one cluster may follow (or be ``not_with``), as a peer publishes it.
MAX_FOLLOWED = 64


def state_to_wire(state: MemberState) -> dict[str, object]:
    wire: dict[str, object] = {
        "v": STATE_VERSION,
        "registrations": dict(sorted(state.registrations.items())),
        "standby": bool(state.standby),
        "failed": sorted(state.failed),
        "holding": dict(sorted(state.holding.items())),
    }
    if state.shapes:  # optional: older daemons neither send nor expect it
        wire["shapes"] = dict(sorted(state.shapes.items()))
    if state.voters is not None:  # optional, likewise
        wire["voters"] = state.voters
    if state.running:  # optional (doc/groups.md: "after")
        wire["running"] = sorted(state.running)
    if state.follows:  # optional, likewise
        wire["after"] = {c: list(ids) for c, ids in sorted(state.follows.items())}
    if state.avoids:  # optional, likewise (a daemon older than it ignores it)
        wire["not_with"] = {c: list(ids) for c, ids in sorted(state.avoids.items())}
    return wire


def _str_int_map(data: Mapping[str, object], key: str, name: str) -> dict[str, int]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise WireError(f"ownership state of {name}: {key!r} must be an object, got {value!r}")
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, int) or isinstance(v, bool):
            raise WireError(f"ownership state of {name}: {key!r} must map names to "
                            f"integers, got {k!r}: {v!r}")
        if not INT64_MIN <= v <= INT64_MAX:
            raise WireError(f"ownership state of {name}: {key!r}: {k!r} is out of range "
                            "for a 64-bit integer")
    return dict(value)


def state_from_wire(name: str, data: object) -> MemberState:
    """The L{MemberState} of node C{name} from its published dict; L{WireError} if malformed."""
    if not isinstance(data, dict):
        raise WireError(f"ownership state of {name}: must be an object, got {type(data).__name__}")
    version = data.get("v")
    if version != STATE_VERSION:
        raise WireError(f"ownership state of {name}: unsupported version {version!r} "
                        f"(this node speaks {STATE_VERSION})")
    standby = data.get("standby", False)
    if not isinstance(standby, bool):
        raise WireError(f"ownership state of {name}: 'standby' must be true or false, "
                        f"got {standby!r}")
    failed = data.get("failed", [])
    if not isinstance(failed, list) or not all(isinstance(c, str) for c in failed):
        raise WireError(f"ownership state of {name}: 'failed' must be a list of cluster IDs, "
                        f"got {failed!r}")
    registrations = _str_int_map(data, "registrations", name)
    return MemberState(
        name=name,
        registrations=registrations,
        standby=standby,
        failed=frozenset(failed),
        holding=_str_int_map(data, "holding", name),
        shapes=_shapes(data, name, registrations),
        voters=_voters(data, name),
        running=_running(data, name, registrations),
        follows=_cluster_lists(data, "after", name, registrations),
        avoids=_cluster_lists(data, "not_with", name, registrations),
    )


def _running(data: Mapping[str, object], name: str,
             registrations: Mapping[str, int]) -> frozenset[str]:
    """C{"running"}: the registered clusters whose service runs there (optional)."""
    value = data.get("running", [])
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise WireError(f"ownership state of {name}: 'running' must be a list of cluster IDs, "
                        f"got {value!r}")
    unknown = sorted(set(value) - set(registrations))
    if unknown:
        raise WireError(f"ownership state of {name}: 'running' names {unknown[0]!r}, which "
                        "it is not registered for")
    return frozenset(value)


def _cluster_lists(data: Mapping[str, object], key: str, name: str,
                   registrations: Mapping[str, int]) -> dict[str, tuple[str, ...]]:
    """C{key} (``after``, ``not_with``): cluster ID -> cluster IDs, for registered clusters
    (optional)."""
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise WireError(f"ownership state of {name}: {key!r} must be an object, got {value!r}")
    result: dict[str, tuple[str, ...]] = {}
    for cluster, ids in value.items():
        if cluster not in registrations:
            raise WireError(f"ownership state of {name}: {key!r} names {cluster!r}, which it "
                            "is not registered for")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) \
                or len(ids) > MAX_FOLLOWED:
            raise WireError(f"ownership state of {name}: {key!r} of {cluster!r} must be a list "
                            f"of at most {MAX_FOLLOWED} cluster IDs, got {ids!r}")
        result[cluster] = tuple(ids)
    return result


def _voters(data: Mapping[str, object], name: str) -> str | None:
    value = data.get("voters")
    if value is not None and (not isinstance(value, str)
                              or not 0 < len(value) <= MAX_FINGERPRINT):
        raise WireError(f"ownership state of {name}: 'voters' must be a string of 1 to "
                        f"{MAX_FINGERPRINT} characters, got {value!r}")
    return value


def _shapes(data: Mapping[str, object], name: str,
            registrations: Mapping[str, int]) -> dict[str, str]:
    """C{"shapes"}: cluster ID -> fingerprint, at most one per registered cluster.

    Optional (a daemon older than the shape rule sends none); bounded by the
    registrations, so a peer cannot make us keep more than it registered.
    """
    value = data.get("shapes", {})
    if not isinstance(value, dict):
        raise WireError(f"ownership state of {name}: 'shapes' must be an object, got {value!r}")
    for cluster, print_ in value.items():
        if cluster not in registrations:
            raise WireError(f"ownership state of {name}: 'shapes' names {cluster!r}, "
                            "which it is not registered for")
        if not isinstance(print_, str) or not 0 < len(print_) <= MAX_FINGERPRINT:
            raise WireError(f"ownership state of {name}: 'shapes' of {cluster!r} must be a "
                            f"string of 1 to {MAX_FINGERPRINT} characters, got {print_!r}")
    return dict(value)
