"""The lease protocol's messages: frozen attrs classes, to and from JSON-able dicts.

Every message names the *resource* it is about (a cluster ID, or
``ID/slot`` for one slot of an n-active cluster).  The sender of a message is
not a field: the peer layer knows it from the TLS certificate and passes it
alongside, so a peer cannot speak for another.

Every integer is within int64 (the peer protocol's integer), and a ballot
counter is not negative; a field out of range makes the message malformed
(the peer layer closes the connection).  Fields are read with the peer
protocol's schema (L{clsd.wire.core.schema}), so a refusal reads
``lease.propose.duration: must be a number, got a string``.  Who may send what is not checked
here but in L{clsd.ownership.core.authority} and the voter.

Only durations travel (``duration``, ``remaining``), never timestamps: each
machine measures time on its own monotonic clock.
"""

from collections.abc import Callable, Mapping
from typing import (
    TYPE_CHECKING, ClassVar, Literal, Protocol, Self, TypedDict, TypeVar, overload,
)

import attrs
from attrs import AttrsInstance

from clsd.ownership.core.ballot import Ballot
from clsd.wire.core import schema


class WireError(ValueError):
    """A message dict that is not a valid lease message; says which field and why."""


INT64_MIN, INT64_MAX = schema.INT64_MIN, schema.INT64_MAX


def _int64(value: int, type_name: str, path: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        raise WireError(schema.refusal(type_name, path, "is out of range for a 64-bit integer"))
    return value


class _MessageClass(AttrsInstance, Protocol):
    """What L{_message} registers: a message class with its wire type and fields."""

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> "Message": ...


_M = TypeVar("_M", bound=_MessageClass)
_TYPES: dict[str, type[_MessageClass]] = {}


def _message(type_name: str) -> Callable[[type[_M]], type[_M]]:
    def register(cls: type[_M]) -> type[_M]:
        cls.TYPE = type_name
        #: The keys a message of this type may have: its attrs fields (the
        #: wire names are the field names) and the type.
        cls.FIELDS = frozenset(["type", *(field.name for field in attrs.fields(cls))])
        cls.from_wire = classmethod(_typed_from_wire)  # type: ignore[attr-defined]
        _TYPES[type_name] = cls
        return cls
    return register


def _typed_from_wire(cls: type[_M], data: object) -> _M:
    """C{Cls.from_wire(dict)}: like L{from_wire}, but the type must be this class's."""
    message = from_wire(data)
    assert isinstance(data, dict)  # from_wire refuses anything else
    if not isinstance(message, cls):
        raise WireError(f"expected a {cls.TYPE} message, got {data.get('type')!r}")
    return message


# -- field readers: each names the message type and the field on failure ----------

_Kind = TypeVar("_Kind", str, int, float, bool)


@overload
def _field(data: Mapping[str, object], name: str, kind: type[_Kind], type_name: str,
           optional: Literal[False] = False) -> _Kind: ...


@overload
def _field(data: Mapping[str, object], name: str, kind: type[_Kind], type_name: str,
           optional: Literal[True]) -> _Kind | None: ...


def _field(data: Mapping[str, object], name: str, kind: type[_Kind], type_name: str,
           optional: bool = False) -> _Kind | None:
    """C{data[name]} checked as C{kind} (str, int, float, bool); optional: absent or null is None."""
    value: _Kind | None = schema.field(data, name, kind, type_name, WireError, optional=optional)
    if kind is float and value is not None:
        try:
            value = kind(value)
        except OverflowError:
            raise WireError(schema.refusal(type_name, name, "is out of range for a number")) \
                from None
    return value


@overload
def _ballot(data: Mapping[str, object], name: str, type_name: str,
            optional: Literal[False] = False) -> Ballot: ...


@overload
def _ballot(data: Mapping[str, object], name: str, type_name: str,
            optional: Literal[True]) -> Ballot | None: ...


def _ballot(data: Mapping[str, object], name: str, type_name: str,
            optional: bool = False) -> Ballot | None:
    value = data.get(name)
    if value is None and optional:
        return None
    try:
        ballot = Ballot.from_wire(value)
    except (TypeError, ValueError) as e:
        raise WireError(schema.refusal(type_name, name, str(e))) from None
    _int64(ballot.counter, type_name, f"{name}[0]")
    _int64(ballot.generation, type_name, f"{name}[2]")
    return ballot


def _owner(data: Mapping[str, object], name: str, type_name: str) -> tuple[str, int] | None:
    value = data.get(name)
    if value is None:
        return None
    if (not isinstance(value, list) or len(value) != 2 or not isinstance(value[0], str)
            or not isinstance(value[1], int) or isinstance(value[1], bool)):
        raise WireError(schema.refusal(type_name, name,
                                       f"must be [node, generation], got {value!r}"))
    _int64(value[1], type_name, f"{name}[1]")
    return (value[0], value[1])


# -- messages -------------------------------------------------------------------

class _ResourceBallot:
    """A message that is a resource and a ballot (its wire code)."""

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]
    if TYPE_CHECKING:
        resource: str
        ballot: Ballot

        def __init__(self, resource: str, ballot: Ballot) -> None: ...

    def to_wire(self) -> dict[str, object]:
        return {"type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire()}

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
        return cls(_field(data, "resource", str, cls.TYPE), _ballot(data, "ballot", cls.TYPE))


def _voters_tag(data: Mapping[str, object], type_name: str) -> str | None:
    """The optional C{voters} field: the proposer's L{clsd.ownership.core.voterset.VoterSet.tag}."""
    value = _field(data, "voters", str, type_name, optional=True)
    if value is not None and not 0 < len(value) <= 64:
        raise WireError(schema.refusal(type_name, "voters",
                                       f"must be 1 to 64 characters, got {value!r}"))
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

    def to_wire(self) -> dict[str, object]:
        wire = _ResourceBallot.to_wire(self)
        if self.voters is not None:
            wire["voters"] = self.voters
        return wire

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
        return cls(_field(data, "resource", str, cls.TYPE), _ballot(data, "ballot", cls.TYPE),
                   _voters_tag(data, cls.TYPE))


@attrs.frozen
class _VoterAnswer:
    """What every voter's answer says: about C{resource} and C{ballot}, granted (C{ok}) or
    refused for C{reason}; the highest counter the voter C{promised}; the C{epoch} of a
    grant it knows and the C{remaining} seconds of it on the voter's clock.

    L{Promise} (to L{Prepare}) adds what the voter knows of holders; L{Accepted} (to
    L{Propose}) is just this.
    """

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]

    resource: str
    ballot: Ballot
    ok: bool
    reason: str = ""
    promised: int = 0
    epoch: int = 0
    remaining: float = 0.0

    def to_wire(self) -> dict[str, object]:
        return {"type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire(),
                "ok": self.ok, "reason": self.reason, "promised": self.promised,
                "epoch": self.epoch, "remaining": self.remaining}

    @classmethod
    def _answer(cls, data: Mapping[str, object]) -> "_AnswerFields":
        """The shared fields of an answer, as keyword arguments."""
        t = cls.TYPE
        return {
            "resource": _field(data, "resource", str, t),
            "ballot": _ballot(data, "ballot", t),
            "ok": _field(data, "ok", bool, t),
            "reason": _field(data, "reason", str, t, optional=True) or "",
            "promised": _field(data, "promised", int, t, optional=True) or 0,
            "epoch": _field(data, "epoch", int, t, optional=True) or 0,
            "remaining": _field(data, "remaining", float, t, optional=True) or 0.0,
        }

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
        return cls(**cls._answer(data))


@_message("lease.promise")
@attrs.frozen
class Promise(_VoterAnswer):
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

    holder: tuple[str, int] | None = None
    previous: str | None = None
    previous_released: bool = False
    previous_epoch: int = 0

    def to_wire(self) -> dict[str, object]:
        wire = _VoterAnswer.to_wire(self)
        wire.update(holder=list(self.holder) if self.holder else None,
                    previous=self.previous, previous_released=self.previous_released,
                    previous_epoch=self.previous_epoch)
        return wire

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
        t = cls.TYPE
        return cls(
            **cls._answer(data),
            holder=_owner(data, "holder", t),
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

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {
            "type": self.TYPE, "resource": self.resource, "ballot": self.ballot.to_wire(),
            "duration": self.duration, "epoch": self.epoch}
        if self.voters is not None:
            wire["voters"] = self.voters
        return wire

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
        t = cls.TYPE
        duration = _field(data, "duration", float, t)
        if duration <= 0:
            raise WireError(schema.refusal(t, "duration", f"must be positive, got {duration!r}"))
        ballot, epoch = _ballot(data, "ballot", t), _field(data, "epoch", int, t)
        if not 0 <= epoch <= ballot.counter:
            # The epoch is the counter of the ballot that began the tenure.
            raise WireError(schema.refusal(t, "epoch", f"must be in [0, the ballot's counter "
                                                       f"{ballot.counter}], got {epoch!r}"))
        return cls(_field(data, "resource", str, t), ballot, duration, epoch,
                   _voters_tag(data, t))


@_message("lease.accepted")
@attrs.frozen
class Accepted(_VoterAnswer):
    """A voter's answer to L{Propose}: C{ok} means granted, counted from its arrival.

    Refused ``held``: another owner holds an unexpired grant here; C{epoch} is
    that grant's tenure, C{remaining} its time left on the voter's clock.
    """


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

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]

    def to_wire(self) -> dict[str, object]:
        return {"type": self.TYPE, "resource": self.resource, "epoch": self.epoch}

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
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

    TYPE: ClassVar[str]
    FIELDS: ClassVar[frozenset[str]]

    def to_wire(self) -> dict[str, object]:
        wire: dict[str, object] = {"type": self.TYPE, "cluster": self.cluster,
                                   "target": self.target}
        if self.by:
            wire["by"] = self.by
        if self.key:
            wire["key"] = self.key
        return wire

    @classmethod
    def _from(cls, data: Mapping[str, object]) -> Self:
        t = cls.TYPE
        return cls(_field(data, "cluster", str, t), _field(data, "target", str, t),
                   _field(data, "by", str, t, optional=True) or "",
                   _field(data, "key", str, t, optional=True) or "")


LEASE_REQUESTS = (Prepare, Propose, Release)
LEASE_REPLIES = (Promise, Accepted)


Message = Prepare | Promise | Propose | Accepted | Release | Handover | MoveRequest


class _AnswerFields(TypedDict):
    """The fields every voter's answer has (L{_VoterAnswer._answer})."""

    resource: str
    ballot: Ballot
    ok: bool
    reason: str
    promised: int
    epoch: int
    remaining: float


def from_wire(data: object) -> Message:
    """Build the message a dict describes; L{WireError} names what is wrong."""
    data = schema.an_object(data, "lease message", WireError)
    type_name = data.get("type")
    cls = _TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise WireError(f"unknown message type {type_name!r}")
    # A message's fields are exactly its schema's (doc/peer-protocol.md).
    schema.only(data, cls.FIELDS, cls.TYPE, WireError)
    return cls._from(data)


MESSAGE_TYPES = tuple(_TYPES)
