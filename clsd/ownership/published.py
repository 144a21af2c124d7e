"""What a node publishes about its ownership role, as a JSON-able dict (membership carries it).

The core emits L{PublishState} with a L{MemberState}; membership gossips
L{state_to_wire}'s dict as this node's metadata, and hands every live
member's dict back through C{OwnershipService.members_changed}, where
L{state_from_wire} checks it.  The member's *name* never comes from the dict:
membership knows it from the peer's certificate.
"""

from clsd.ownership.messages import INT64_MAX, INT64_MIN, WireError
from clsd.ownership.placement import MemberState

#: Bumped when the dict changes incompatibly.
STATE_VERSION = 1


def state_to_wire(state):
    return {
        "v": STATE_VERSION,
        "registrations": dict(sorted(state.registrations.items())),
        "standby": bool(state.standby),
        "failed": sorted(state.failed),
        "holding": dict(sorted(state.holding.items())),
    }


def _str_int_map(data, key, name):
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


def state_from_wire(name, data):
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
    return MemberState(
        name=name,
        registrations=_str_int_map(data, "registrations", name),
        standby=standby,
        failed=frozenset(failed),
        holding=_str_int_map(data, "holding", name),
    )
