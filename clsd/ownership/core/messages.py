"""The lease protocol's messages: frozen attrs classes, to and from JSON-able dicts.

Every message names the *resource* it is about (a cluster ID, or
``ID/slot`` for one slot of an n-active cluster).  The sender of a message is
not a field: the peer layer knows it from the TLS certificate and passes it
alongside, so a peer cannot speak for another.

Every integer is within int64 (the peer protocol's integer), and a ballot
counter is not negative; a field out of range makes the message malformed
(the peer layer closes the connection).  Who may send what is not checked
here but in L{clsd.ownership.core.authority} and the voter.

Only durations travel (``duration``, ``remaining``), never timestamps: each
machine measures time on its own monotonic clock.
"""

import attrs

from clsd.ownership.core.ballot import Ballot


class WireError(ValueError):
    """A message dict that is not a valid lease message; says which field and why."""


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1


def _int64(value, what):
    if not INT64_MIN <= value <= INT64_MAX:
        raise WireError(f"{what} is out of range for a 64-bit integer")
    return value


_TYPES = {}


def _message(type_name):
    def register(cls):
        cls.TYPE = type_name
        #: The keys a message of this type may have: its attrs fields (the
        #: wire names are the field names) and the type.
        cls.FIELDS = frozenset(["type", *(field.name for field in attrs.fields(cls))])
        cls.from_wire = classmethod(_typed_from_wire)
        _TYPES[type_name] = cls
        return cls
    return register


def _typed_from_wire(cls, data):
    """C{Cls.from_wire(dict)}: like L{from_wire}, but the type must be this class's."""
    message = from_wire(data)
    if not isinstance(message, cls):
        raise WireError(f"expected a {cls.TYPE} message, got {data.get('type')!r}")
    return message


# -- field readers: each names the field and the message type on failure -------

def _field(data, name, kind, type_name, optional=False):
    if name not in data:
        if optional:
            return None
        raise WireError(f"{type_name}: missing field {name!r}")
    value = data[name]
    if value is None and optional:
        return None
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)
            ok = value == value and abs(value) != float("inf")
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
        if ok:
            _int64(value, f"{type_name}: field {name!r}")
    else:
        ok = isinstance(value, kind)
    if not ok:
        raise WireError(f"{type_name}: field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _ballot(data, name, type_name, optional=False):
    value = data.get(name)
    if value is None and optional:
        return None
    try:
        ballot = Ballot.from_wire(value)
    except (TypeError, ValueError) as e:
        raise WireError(f"{type_name}: field {name!r}: {e}") from None
    _int64(ballot.counter, f"{type_name}: field {name!r}: the counter")
    _int64(ballot.generation, f"{type_name}: field {name!r}: the generation")
    return ballot


def _owner(data, name, type_name):
    value = data.get(name)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
            or not isinstance(value[1], int) or isinstance(value[1], bool)):
        raise WireError(f"{type_name}: field {name!r} must be [node, generation], got {value!r}")
    _int64(value[1], f"{type_name}: field {name!r}: the generation")
    return (value[0], value[1])


# -- messages -------------------------------------------------------------------

class _ResourceBallot:
    """A message that is a resource and a ballot (its wire code)."""

    def to_wire(self):
        return {"type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire()}

    @classmethod
    def _from(cls, data):
        return cls(_field(data, "resource", str, cls.TYPE), _ballot(data, "ballot", cls.TYPE))


def _voters_tag(data, type_name):
    """The optional C{voters} field: the proposer's L{clsd.ownership.core.voterset.VoterSet.tag}."""
    value = _field(data, "voters", str, type_name, optional=True)
    if value is not None and not 0 < len(value) <= 64:
        raise WireError(f"{type_name}: field 'voters' must be 1 to 64 characters, got {value!r}")
    return value


@_message("lease.prepare")
@attrs.frozen
class Prepare(_ResourceBallot):
    """Phase 1: 'promise to ignore ballots below this one, and tell me who holds the lease'.

    C{voters}: the proposer's voter-set tag (None from older daemons).
    """

    resource: str
    ballot: Ballot
    voters: str | None = None

    def to_wire(self):
        wire = _ResourceBallot.to_wire(self)
        if self.voters is not None:
            wire["voters"] = self.voters
        return wire

    @classmethod
    def _from(cls, data):
        return cls(_field(data, "resource", str, cls.TYPE), _ballot(data, "ballot", cls.TYPE),
                   _voters_tag(data, cls.TYPE))


@_message("lease.promise")
@attrs.frozen
class Promise:
    """A voter's answer to L{Prepare}.

    C{ok} false: refused; C{reason} says why (``stale``: the ballot is not
    above C{promised}; ``quiet``: the voter restarted less than a lease ago;
    ``reserving``: the voter is persisting a higher epoch floor;
    ``not-registered``: the sender is not an admitted member registered for
    the resource's cluster; ``rate-limited``: the sender's request budget
    for the resource is spent; ``floor-unsaved``: the voter cannot store its
    epoch floor and grants nothing; ``counter-jump``: the counter is more
    than 2**32 above what the voter promised).
    C{holder}: the (node, generation) of an unexpired grant, with its C{epoch}
    and the C{remaining} seconds on the voter's clock.
    C{previous}: the node of the last grant that ended, C{previous_epoch}
    the epoch of that grant's tenure, and whether it ended by a release (no
    fence needed) or by expiry.  A voter may have missed later tenures, so
    the proposer believes the answer with the highest C{previous_epoch}.
    """

    resource: str
    ballot: Ballot
    ok: bool
    reason: str = ""
    promised: int = 0
    holder: tuple | None = None
    epoch: int = 0
    remaining: float = 0.0
    previous: str | None = None
    previous_released: bool = False
    previous_epoch: int = 0

    def to_wire(self):
        return {
            "type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire(),
            "ok": self.ok, "reason": self.reason, "promised": self.promised,
            "holder": list(self.holder) if self.holder else None,
            "epoch": self.epoch, "remaining": self.remaining,
            "previous": self.previous, "previous_released": self.previous_released,
            "previous_epoch": self.previous_epoch,
        }

    @classmethod
    def _from(cls, data):
        t = cls.TYPE
        return cls(
            resource=_field(data, "resource", str, t),
            ballot=_ballot(data, "ballot", t),
            ok=_field(data, "ok", bool, t),
            reason=_field(data, "reason", str, t, optional=True) or "",
            promised=_field(data, "promised", int, t, optional=True) or 0,
            holder=_owner(data, "holder", t),
            epoch=_field(data, "epoch", int, t, optional=True) or 0,
            remaining=_field(data, "remaining", float, t, optional=True) or 0.0,
            previous=_field(data, "previous", str, t, optional=True),
            previous_released=bool(_field(data, "previous_released", bool, t, optional=True)),
            previous_epoch=_field(data, "previous_epoch", int, t, optional=True) or 0,
        )


@_message("lease.propose")
@attrs.frozen
class Propose:
    """Phase 2 (and a renewal on its own): 'grant the ballot's proposer the lease for C{duration}'.

    C{epoch} is the fencing token of the proposer's tenure (the counter of
    the ballot that started it), reported to others who ask.  C{voters}: as
    in L{Prepare}.
    """

    resource: str
    ballot: Ballot
    duration: float
    epoch: int
    voters: str | None = None

    def to_wire(self):
        wire = {"type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire(),
                "duration": self.duration, "epoch": self.epoch}
        if self.voters is not None:
            wire["voters"] = self.voters
        return wire

    @classmethod
    def _from(cls, data):
        t = cls.TYPE
        duration = _field(data, "duration", float, t)
        if duration <= 0:
            raise WireError(f"{t}: field 'duration' must be positive, got {duration!r}")
        ballot, epoch = _ballot(data, "ballot", t), _field(data, "epoch", int, t)
        if not 0 <= epoch <= ballot.counter:
            # The epoch is the counter of the ballot that began the tenure.
            raise WireError(f"{t}: field 'epoch' must be in [0, the ballot's counter "
                            f"{ballot.counter}], got {epoch!r}")
        return cls(_field(data, "resource", str, t), ballot, duration, epoch,
                   _voters_tag(data, t))


@_message("lease.accepted")
@attrs.frozen
class Accepted:
    """A voter's answer to L{Propose}: C{ok} means granted, counted from its arrival.

    Refused ``held``: another owner holds an unexpired grant here; C{epoch} is
    that grant's tenure, C{remaining} its time left on the voter's clock.
    """

    resource: str
    ballot: Ballot
    ok: bool
    reason: str = ""
    promised: int = 0
    remaining: float = 0.0
    epoch: int = 0

    def to_wire(self):
        return {"type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire(),
                "ok": self.ok, "reason": self.reason, "promised": self.promised,
                "remaining": self.remaining, "epoch": self.epoch}

    @classmethod
    def _from(cls, data):
        t = cls.TYPE
        return cls(
            resource=_field(data, "resource", str, t),
            ballot=_ballot(data, "ballot", t),
            ok=_field(data, "ok", bool, t),
            reason=_field(data, "reason", str, t, optional=True) or "",
            promised=_field(data, "promised", int, t, optional=True) or 0,
            remaining=_field(data, "remaining", float, t, optional=True) or 0.0,
            epoch=_field(data, "epoch", int, t, optional=True) or 0,
        )


@_message("lease.release")
@attrs.frozen
class Release(_ResourceBallot):
    """'My service is stopped: forget my grant now' (graceful handover, no waiting for expiry)."""

    resource: str
    ballot: Ballot


@_message("cluster.handover")
@attrs.frozen
class Handover:
    """To the chosen successor: 'I released C{resource} for you, acquire it now'."""

    resource: str
    epoch: int

    def to_wire(self):
        return {"type": self.TYPE, "resource": self.resource, "epoch": self.epoch}

    @classmethod
    def _from(cls, data):
        return cls(_field(data, "resource", str, cls.TYPE), _field(data, "epoch", int, cls.TYPE))


@_message("cluster.move")
@attrs.frozen
class MoveRequest:
    """To the holder of C{cluster}: an operator asked to move it to C{target}.

    C{by}: the node where the operator ran the command (it must be the
    sender); C{key}: the fingerprint of the admin key of that session, or
    empty when the command did not come from an SSH session.
    """

    cluster: str
    target: str
    by: str = ""
    key: str = ""

    def to_wire(self):
        wire = {"type": self.TYPE, "cluster": self.cluster, "target": self.target}
        if self.by:
            wire["by"] = self.by
        if self.key:
            wire["key"] = self.key
        return wire

    @classmethod
    def _from(cls, data):
        t = cls.TYPE
        return cls(_field(data, "cluster", str, t), _field(data, "target", str, t),
                   _field(data, "by", str, t, optional=True) or "",
                   _field(data, "key", str, t, optional=True) or "")


LEASE_REQUESTS = (Prepare, Propose, Release)
LEASE_REPLIES = (Promise, Accepted)


def from_wire(data):
    """Build the message a dict describes; L{WireError} names what is wrong."""
    if not isinstance(data, dict):
        raise WireError(f"a message must be an object, got {type(data).__name__}")
    type_name = data.get("type")
    cls = _TYPES.get(type_name)
    if cls is None:
        raise WireError(f"unknown message type {type_name!r}")
    unknown = data.keys() - cls.FIELDS
    if unknown:
        # A message's fields are exactly its schema's (doc/peer-protocol.md).
        raise WireError(f"{type_name}: unknown field {min(unknown, key=str)!r}")
    return cls._from(data)


MESSAGE_TYPES = tuple(_TYPES)
