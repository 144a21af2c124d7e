"""Membership messages: frozen records that become plain JSON-able dicts and back.

Every message is a dict with a ``"type"`` so that the peer layer can carry it
as one line; ``from_wire`` checks every field and raises L{MessageError}
naming the field, so a bad peer costs us a closed connection, never a crash.
Sizes are bounded: a message never carries more than L{MAX_UPDATES} pieces
of gossip (each with at most L{MAX_REPORTERS} reporters; a report with its
signature and certificate of at most MAX_SIGNATURE and MAX_CERTIFICATE
characters, about 1.9 KiB at most) or L{MAX_SYNC_RECORDS} records, so that
even with the longest names (63 characters) and addresses (255) an encoded
message stays under 80 KiB without meta (tested) and under the peer layer's
256 KiB line with full meta; with ordinary names a full message is a few KiB
(a signed report about 0.9 KiB, a signed alive record about 0.2 KiB). A
message's keys are exactly its schema's: an unknown one is refused, named.
Fields are read with the peer protocol's schema (L{clsd.wire.core.schema}), so
a refusal reads ``m.heartbeat.updates[0].g: must be an integer, got a string``.
"""

from collections.abc import Callable, Mapping
from collections.abc import Set as AbstractSet
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar, Self, final

import attrs

from clsd.membership.core.members import Member, MetaError, State, decode_meta, encode_meta
from clsd.membership.core.notary import (
    FINGERPRINT_LENGTH, MAX_CERTIFICATE, MAX_SIGNATURE, Notary,
)
from clsd.wire.core import schema

MAX_UPDATES = 32
MAX_SYNC_RECORDS = 128
#: Signed records (graceful leaves, each with a signature and certificate)
#: in one list message at most: 128 records with full meta and 32 proofs
#: stay under the peer layer's 256 KiB line.
MAX_SYNC_PROOFS = 32
MAX_REPORTERS = 16
#: Certificates asked for or sent in one message: 128 of the longest stay
#: under the peer layer's 256 KiB line.
MAX_CERTIFICATES = 128
MAX_NAME = 63
MAX_ADDRESS = 255
#: Anti-entropy digests: the name space is cut into this many buckets.
#: A protocol constant: every node of a cluster must use the same value.
SYNC_BUCKETS = 64

_STATES = {state.value: state for state in State}
_UINT64_MAX = (1 << 64) - 1

#: A JSON object as it came off the wire: its fields not checked yet.
WireData = Mapping[str, Any]
#: A message or a piece of one as a JSON-able dict, for the encoder.
Wire = dict[str, object]
#: A member's own proof: C{(signature, certificate)} or C{(signature,
#: certificate fingerprint)}, or () for none.
Proof = tuple[()] | tuple[str, str]
#: A compiled field check (L{clsd.wire.core.schema.checker}).
_Check = Callable[[object], None]


class MessageError(ValueError):
    """A peer sent something that is not a valid membership message."""


# -- field readers: the peer protocol's schema, refusals as MessageError --------------

def _field(data: WireData, key: str, where: str) -> Any:
    """C{data[key]}, unchecked (the caller checks it)."""
    return schema.required(data, key, where, MessageError)


def _only(data: WireData, allowed: AbstractSet[str], where: str) -> None:
    """Refuse a key outside C{allowed}: a message's fields are exactly its schema's."""
    schema.only(data, allowed, where, MessageError)


def _int(data: WireData, key: str, where: str, minimum: int = 0,
         maximum: int = _UINT64_MAX) -> int:
    check = _UINT64 if minimum == 0 and maximum == _UINT64_MAX else _checks(
        schema.Int, minimum, maximum)
    value: int = schema.read(data, key, check, where, MessageError)
    return value


def _str(data: WireData, key: str, where: str, maxlen: int) -> str:
    check = _TEXT.get(maxlen) or _checks(schema.Text, maxlen)
    value: str = schema.read(data, key, check, where, MessageError)
    return value


def _list(data: WireData, key: str, where: str, maxlen: int) -> list[Any]:
    """A bounded list; its items unchecked (the caller checks each)."""
    items: list[Any] = schema.read(data, key, _checks(schema.Items, maxlen), where, MessageError)
    return items


def _number(data: WireData, key: str, where: str) -> float:
    return float(schema.read(data, key, _AGE, where, MessageError))


_CHECKS: dict[tuple[Callable[..., object], tuple[object, ...]], _Check] = {}


def _checks(kind: Callable[..., object], *bounds: object) -> _Check:
    """The check of C{kind(*bounds)}, built once."""
    check = _CHECKS.get((kind, bounds))
    if check is None:
        check = _CHECKS[kind, bounds] = schema.checker(kind(*bounds))
    return check


#: The checks every record uses, at hand (records are many).
_UINT64 = _checks(schema.Int, 0, _UINT64_MAX)
_TEXT = {n: _checks(schema.Text, n) for n in (16, MAX_NAME, MAX_ADDRESS, MAX_SIGNATURE,
                                               MAX_CERTIFICATE)}
#: An age in seconds.
_AGE = _checks(schema.Number, 0, 1e9)


def member_to_wire(member: Member) -> Wire:
    data: Wire = {
        "n": member.name, "a": member.address, "g": member.generation,
        "i": member.incarnation, "s": member.state.value,
    }
    if member.meta:
        data["d"] = _wire_meta(member.meta)
    return data


#: Records are sent many times: decode each meta string once (the dict is
#: only read by the JSON encoder).
_wire_meta = lru_cache(maxsize=4096)(decode_meta)


def _meta(data: WireData, where: str) -> str:
    if "d" not in data:
        return ""
    try:
        meta = encode_meta(data["d"])
    except MetaError as e:
        raise MessageError(f"{where}.d: {e}") from None
    return meta


def member_from_wire(data: WireData, where: str,
                     allowed: AbstractSet[str] | None = None) -> Member:
    """The L{Member} of a wire record; L{MessageError} names the bad field.

    The same records arrive again and again (gossip repeats each piece,
    anti-entropy resends lists): a record without meta is checked and built
    once, and its L{Member} shared, so that a node holding it already sees
    the very object it has. C{allowed}: the keys the record may have
    (default: a bare record's).
    """
    _only(data, _RECORD_FIELDS if allowed is None else allowed, where)
    if type(data) is dict and "d" not in data:
        try:
            return _plain_member(data["n"], data["a"], data["g"], data["i"], data["s"])
        except (KeyError, TypeError, MessageError):
            pass  # checked again below, for the error that names the field
    return _checked_member(data, where)


#: The keys of a member record, and of the pieces of gossip that carry one.
_RECORD_FIELDS = frozenset("nagisd")
_UPDATE_FIELDS = _RECORD_FIELDS | {"k", "age", "by", "p", "c", "f"}
_REPORT_FIELDS = frozenset(("k", "n", "g", "i", "o", "p", "c"))


@lru_cache(maxsize=1 << 16, typed=True)
def _plain_member(name: object, address: object, generation: object, incarnation: object,
                  state: object) -> Member:
    # typed: 1, 1.0 and True are different keys (only the first is valid).
    fields = {"n": name, "a": address, "g": generation, "i": incarnation, "s": state}
    return _checked_member(fields, "record")


def _checked_member(data: WireData, where: str) -> Member:
    state = _str(data, "s", where, 16)
    if state not in _STATES:
        raise MessageError(f"{where}.s: unknown state {state!r}")
    return Member(
        name=_str(data, "n", where, MAX_NAME),
        address=_str(data, "a", where, MAX_ADDRESS),
        generation=_int(data, "g", where),
        incarnation=_int(data, "i", where),
        state=_STATES[state],
        meta=_meta(data, where),
    )


# -- pieces of gossip ----------------------------------------------------

@attrs.frozen(cache_hash=True)
class MemberUpdate:
    """News about one member. C{age}: seconds since a death or leave (for reaping);
    C{reporters}: the observers whose reports made it dead (a claim: the
    evidence is their signed reports), or the node whose operator removed it;
    C{proof}: C{(signature, certificate)} of the member itself over
    L{record_statement}, which a graceful leave carries (L{signed});
    C{life}: C{(signature, certificate fingerprint)} of the member itself
    over L{record_statement}, which an alive record carries (its life
    statement: the certificate is exchanged once, see L{CertsWant})."""

    member: Member
    age: float = 0.0
    reporters: tuple[str, ...] = ()
    proof: Proof = ()
    life: Proof = ()

    @property
    def key(self) -> tuple[str, str]:
        return ("m", self.member.name)

    def signed(self, notary: Notary) -> "MemberUpdate":
        """This update with C{notary}'s proof (the notary of the member itself)."""
        return attrs.evolve(self, proof=notary.sign(record_statement(self.member)))

    def verified(self, notary: Notary) -> bool:
        """Whether it carries the member's own valid signature of its record."""
        if not self.proof:
            return False
        signature, certificate = self.proof
        return notary.verify(self.member.name, record_statement(self.member), signature,
                             certificate)

    def to_wire(self) -> Wire:
        """The wire dict; shared between calls for the same update: do not modify it."""
        return _update_to_wire(self)

    @classmethod
    def from_wire(cls, data: WireData, where: str = "update") -> Self:
        member = member_from_wire(data, where, _UPDATE_FIELDS)
        age = _number(data, "age", where) if "age" in data else 0.0
        reporters: tuple[str, ...] = ()
        if "by" in data:
            items = _list(data, "by", where, MAX_REPORTERS)
            reporters = tuple(
                _str({"by": item}, "by", f"{where}.by[{index}]", MAX_NAME)
                for index, item in enumerate(items)
            )
        proof: Proof = ()
        life: Proof = ()
        if "f" in data:
            if member.state is not State.ALIVE or "c" in data:
                raise MessageError(f"{where}.f: only an alive record carries a life signature")
            life = (_str(data, "p", where, MAX_SIGNATURE), _fingerprint(data, "f", where))
        elif "p" in data or "c" in data:
            proof = (_str(data, "p", where, MAX_SIGNATURE), _str(data, "c", where, MAX_CERTIFICATE))
        return cls(member=member, age=age, reporters=reporters, proof=proof, life=life)


def _fingerprint(data: WireData, key: str, where: str) -> str:
    value = _field(data, key, where)
    if not isinstance(value, str) or len(value) != FINGERPRINT_LENGTH:
        raise MessageError(f"{where}.{key}: must be a certificate fingerprint "
                           f"({FINGERPRINT_LENGTH} characters)")
    return value


def record_statement(member: Member) -> bytes:
    """What a member signs for its own record: tagged, every field."""
    return "\0".join((
        "clsd.membership.record", member.name, member.address, str(member.generation),
        str(member.incarnation), member.state.value, member.meta)).encode()


@lru_cache(maxsize=1 << 14)
def _update_to_wire(update: MemberUpdate) -> Wire:
    # One piece of news goes out many times (to each neighbour, on each
    # retransmission): build its dict once. The encoder only reads it.
    data = member_to_wire(update.member)
    data["k"] = "m"
    if update.age:
        data["age"] = round(update.age, 1)
    if update.reporters:
        data["by"] = list(update.reporters)
    if update.proof:
        data["p"], data["c"] = update.proof
    elif update.life:
        data["p"], data["f"] = update.life
    return data


@final
@attrs.frozen
class Report:
    """Observer C{observer} cannot reach C{subject} in its life (generation, incarnation).

    Reports are relayed by gossip, so they carry the observer's proof
    (L{clsd.membership.core.notary}): C{signature} over L{statement}, and the
    observer's C{certificate}. A report without a valid one is refused.
    """

    subject: str
    generation: int
    incarnation: int
    observer: str
    signature: str = ""
    certificate: str = attrs.field(default="", repr=False)

    @property
    def key(self) -> tuple[str, str, str]:
        return ("r", self.subject, self.observer)

    @property
    def statement(self) -> bytes:
        """The canonical bytes the observer signs (a domain tag, then the fields)."""
        return report_statement(self.subject, self.generation, self.incarnation, self.observer)

    def signed(self, notary: Notary) -> "Report":
        """This report with C{notary}'s proof (the notary of its observer)."""
        signature, certificate = notary.sign(self.statement)
        return attrs.evolve(self, signature=signature, certificate=certificate)

    def verified(self, notary: Notary) -> bool:
        """Whether the proof it carries shows its observer made it."""
        return notary.verify(self.observer, self.statement, self.signature, self.certificate)

    def to_wire(self) -> Wire:
        wire: Wire = {"k": "r", "n": self.subject, "g": self.generation,
                "i": self.incarnation, "o": self.observer}
        if self.signature:
            wire["p"] = self.signature
            wire["c"] = self.certificate
        return wire

    @classmethod
    def from_wire(cls, data: WireData, where: str = "update") -> Self:
        _only(data, _REPORT_FIELDS, where)
        signature = certificate = ""
        if "p" in data or "c" in data:
            signature = _str(data, "p", where, MAX_SIGNATURE)
            certificate = _str(data, "c", where, MAX_CERTIFICATE)
        return cls(
            subject=_str(data, "n", where, MAX_NAME),
            generation=_int(data, "g", where),
            incarnation=_int(data, "i", where),
            observer=_str(data, "o", where, MAX_NAME),
            signature=signature,
            certificate=certificate,
        )


def report_statement(subject: str, generation: int, incarnation: int, observer: str) -> bytes:
    """What an observer signs for a report: tagged, so that it means nothing else."""
    return f"clsd.membership.report\0{subject}\0{generation}\0{incarnation}\0{observer}".encode()


#: A piece of gossip.
Update = MemberUpdate | Report

_UPDATE_KINDS: dict[str, type[MemberUpdate] | type[Report]] = {"m": MemberUpdate, "r": Report}


def _updates_from_wire(data: WireData, where: str) -> tuple[Update, ...]:
    items = _list(data, "updates", where, MAX_UPDATES)
    result: list[Update] = []
    for index, item in enumerate(items):
        piece = _shared_piece(item)
        if piece is not None:
            result.append(piece)
            continue
        here = f"{where}.updates[{index}]"
        kind = _field(item, "k", here)
        if kind not in _UPDATE_KINDS:
            raise MessageError(f"{here}.k: unknown kind {kind!r}")
        result.append(_UPDATE_KINDS[kind].from_wire(item, here))
    return tuple(result)


def _record_from_wire(item: WireData, where: str, index: int) -> MemberUpdate:
    """One record of a list (anti-entropy, a join's push): shared like a gossip piece."""
    piece = _shared_piece(item)
    if type(piece) is MemberUpdate:
        return piece
    return MemberUpdate.from_wire(item, f"{where}.records[{index}]")


def _shared_piece(item: object) -> Update | None:
    """The shared object for a common piece (a plain record, a report), or None.

    The common pieces repeat across messages: each distinct one is checked
    and built once, and shared. None for anything else, and for a piece that
    fails the checks: the caller checks it again, for the error that names
    the field.
    """
    if type(item) is not dict:
        return None
    try:
        kind = item.get("k")
        if kind == "m" and len(item) == 6:  # k, n, a, g, i, s: no meta, age, reporters
            return _plain_update(item["n"], item["a"], item["g"], item["i"], item["s"])
        if kind == "m" and len(item) == 8:  # and p, f: a signed alive record without meta
            return _signed_update(item["n"], item["a"], item["g"], item["i"], item["s"],
                                  item["p"], item["f"])
        if kind == "r" and len(item) == 7:  # k, n, g, i, o, p, c
            return _report(item["n"], item["g"], item["i"], item["o"], item["p"], item["c"])
    except (KeyError, TypeError, MessageError):
        pass
    return None


@lru_cache(maxsize=1 << 16, typed=True)
def _plain_update(name: object, address: object, generation: object, incarnation: object,
                  state: object) -> MemberUpdate:
    return MemberUpdate(_plain_member(name, address, generation, incarnation, state))


@lru_cache(maxsize=1 << 16, typed=True)
def _signed_update(name: object, address: object, generation: object, incarnation: object,
                   state: object, signature: object, fingerprint: object) -> MemberUpdate:
    return MemberUpdate.from_wire({"k": "m", "n": name, "a": address, "g": generation,
                                   "i": incarnation, "s": state, "p": signature,
                                   "f": fingerprint})


@lru_cache(maxsize=1 << 12, typed=True)
def _report(subject: object, generation: object, incarnation: object, observer: object,
            signature: object, certificate: object) -> Report:
    return Report.from_wire({"n": subject, "g": generation, "i": incarnation, "o": observer,
                             "p": signature, "c": certificate})


# -- messages ------------------------------------------------------------

@attrs.frozen
class Heartbeat:
    """Subject to observer, every heartbeat interval: "I am alive (this life)".

    C{table}: the sender's L{MemberTable.fingerprint}, and C{size}: how
    many records its list holds (both optional on the wire): an observer
    whose own list differs, and has been quiet, or holds clearly fewer
    records, asks for the difference at once rather than at its next
    anti-entropy round.
    """

    TYPE = "m.heartbeat"
    generation: int
    incarnation: int
    updates: tuple[Update, ...] = ()
    table: int | None = None
    size: int | None = None

    def to_wire(self) -> Wire:
        wire: Wire = {"type": self.TYPE, "g": self.generation, "i": self.incarnation,
                "updates": [u.to_wire() for u in self.updates]}
        if self.table is not None:
            wire["t"] = self.table
        if self.size is not None:
            wire["n"] = self.size
        return wire

    FIELDS = frozenset(("type", "g", "i", "updates", "t", "n"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        table = _int(data, "t", cls.TYPE) if "t" in data else None
        size = _int(data, "n", cls.TYPE) if "n" in data else None
        return cls(_int(data, "g", cls.TYPE), _int(data, "i", cls.TYPE),
                   _updates_from_wire(data, cls.TYPE), table, size)


@attrs.frozen
class Gossip:
    """News pushed to a few neighbours as soon as it is learnt."""

    TYPE = "m.gossip"
    updates: tuple[Update, ...] = ()

    def to_wire(self) -> Wire:
        return {"type": self.TYPE, "updates": [u.to_wire() for u in self.updates]}

    FIELDS = frozenset(("type", "updates"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        return cls(_updates_from_wire(data, cls.TYPE))


class _NoFields:
    """A message that is only its type."""

    TYPE: ClassVar[str]

    def to_wire(self) -> Wire:
        return {"type": self.TYPE}

    FIELDS = frozenset(("type",))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        return cls()


class _OneMember:
    """A message carrying the sender's own record (``member``) and its proof.

    C{proof}: C{(signature, certificate)}: the sender's signature over its
    record and its whole certificate, so that the receiver can relay the
    record (and learns the certificate that later copies name by fingerprint).
    """

    TYPE: ClassVar[str]
    member: Member
    proof: Proof

    if TYPE_CHECKING:
        # Each subclass is an attrs class with these two fields (and maybe more).
        def __init__(self, member: Member, proof: Proof = ()) -> None: ...

    def to_wire(self) -> Wire:
        wire: Wire = {"type": self.TYPE, "member": member_to_wire(self.member)}
        if self.proof:
            wire["p"], wire["c"] = self.proof
        return wire

    FIELDS = frozenset(("type", "member", "p", "c"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        return cls(member_from_wire(_field(data, "member", cls.TYPE), f"{cls.TYPE}.member"),
                   _own_proof(data, cls.TYPE))


def _own_proof(data: WireData, where: str) -> Proof:
    if "p" in data or "c" in data:
        return (_str(data, "p", where, MAX_SIGNATURE), _str(data, "c", where, MAX_CERTIFICATE))
    return ()


@attrs.frozen
class Watch(_NoFields):
    """Observer to subject: "send me your heartbeats" (answered by one at once)."""

    TYPE = "m.watch"


@attrs.frozen
class Unwatch(_NoFields):
    """Observer to subject: "I no longer watch you" (the rings changed)."""

    TYPE = "m.unwatch"


@attrs.frozen
class Join(_OneMember):
    """A starting node to a seed: "here I am" (its own alive record)."""

    TYPE = "m.join"
    member: Member
    proof: Proof = ()


@attrs.frozen
class JoinAck(_OneMember):
    """The seed's answer: its own record, and how many records of its list follow.

    The seed pushes its list right after (C{listed} records in L{SyncRecords}
    messages), so that a joining node has it after one exchange rather than
    after a round trip per 128 records. C{listed} 0: nothing follows, pull it.
    """

    TYPE = "m.join-ack"
    member: Member
    listed: int = 0
    proof: Proof = ()

    def to_wire(self) -> Wire:
        wire = _OneMember.to_wire(self)
        wire["listed"] = self.listed
        return wire

    FIELDS = frozenset(("type", "member", "listed", "p", "c"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        member = member_from_wire(_field(data, "member", cls.TYPE), f"{cls.TYPE}.member")
        listed = _int(data, "listed", cls.TYPE, maximum=1 << 20) if "listed" in data else 0
        return cls(member, listed, _own_proof(data, cls.TYPE))


@attrs.frozen
class SyncDigest:
    """Anti-entropy, step 1: a hash of each bucket of my member list."""

    TYPE = "m.sync-digest"
    buckets: tuple[int, ...]
    round: int = 0

    def to_wire(self) -> Wire:
        return {"type": self.TYPE, "buckets": list(self.buckets), "round": self.round}

    FIELDS = frozenset(("type", "buckets", "round"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        buckets = _list(data, "buckets", cls.TYPE, SYNC_BUCKETS)
        if len(buckets) != SYNC_BUCKETS:
            raise MessageError(f"{cls.TYPE}.buckets: must have {SYNC_BUCKETS} items")
        values = tuple(
            _int({"b": b}, "b", f"{cls.TYPE}.buckets[{i}]") for i, b in enumerate(buckets)
        )
        return cls(values, _int(data, "round", cls.TYPE, maximum=1 << 16))


@attrs.frozen
class SyncRecords:
    """Anti-entropy, steps 2 and 3: my records in the buckets that differ.

    C{want}: buckets whose records the other side should send back;
    C{more}: I had more records than fit, ask again.
    """

    TYPE = "m.sync-records"
    records: tuple[MemberUpdate, ...]
    want: tuple[int, ...] = ()
    more: bool = False
    round: int = 0

    def to_wire(self) -> Wire:
        return {"type": self.TYPE, "records": [r.to_wire() for r in self.records],
                "want": list(self.want), "more": self.more, "round": self.round}

    FIELDS = frozenset(("type", "records", "want", "more", "round"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        items = _list(data, "records", cls.TYPE, MAX_SYNC_RECORDS)
        records = tuple(_record_from_wire(item, cls.TYPE, i) for i, item in enumerate(items))
        if sum(1 for r in records if r.proof) > MAX_SYNC_PROOFS:
            raise MessageError(
                f"{cls.TYPE}.records: more than {MAX_SYNC_PROOFS} signed records")
        want = tuple(
            _int({"w": w}, "w", f"{cls.TYPE}.want[{i}]", maximum=SYNC_BUCKETS - 1)
            for i, w in enumerate(_list(data, "want", cls.TYPE, SYNC_BUCKETS))
        )
        more = _field(data, "more", cls.TYPE)
        if not isinstance(more, bool):
            raise MessageError(f"{cls.TYPE}.more: must be true or false")
        return cls(records, want, more, _int(data, "round", cls.TYPE, maximum=1 << 16))


@attrs.frozen
class CertsWant:
    """"Send me these certificates": records named them by fingerprint, and this
    node does not know them (answered with L{Certs} by a node that does)."""

    TYPE = "m.certs-want"
    fingerprints: tuple[str, ...]

    def to_wire(self) -> Wire:
        return {"type": self.TYPE, "f": list(self.fingerprints)}

    FIELDS = frozenset(("type", "f"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        items = _list(data, "f", cls.TYPE, MAX_CERTIFICATES)
        return cls(tuple(_fingerprint({"f": item}, "f", f"{cls.TYPE}.f[{index}]")
                         for index, item in enumerate(items)))


@attrs.frozen
class Certs:
    """Certificates (base64 DER, as in a signed report) a peer asked for."""

    TYPE = "m.certs"
    certificates: tuple[str, ...]

    def to_wire(self) -> Wire:
        return {"type": self.TYPE, "c": list(self.certificates)}

    FIELDS = frozenset(("type", "c"))

    @classmethod
    def from_wire(cls, data: WireData) -> Self:
        _only(data, cls.FIELDS, cls.TYPE)
        items = _list(data, "c", cls.TYPE, MAX_CERTIFICATES)
        return cls(tuple(_str({"c": item}, "c", f"{cls.TYPE}.c[{index}]", MAX_CERTIFICATE)
                         for index, item in enumerate(items)))


#: A membership message.
Message = (Heartbeat | Gossip | Watch | Unwatch | Join | JoinAck | SyncDigest | SyncRecords
           | CertsWant | Certs)

MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (Heartbeat, Gossip, Watch, Unwatch, Join, JoinAck, SyncDigest, SyncRecords,
                CertsWant, Certs)
}


def from_wire(data: WireData) -> Message:
    """Decode one membership message dict; L{MessageError} if it is not valid."""
    kind = _field(data, "type", "message")
    if kind not in MESSAGE_TYPES:
        raise MessageError(f"message.type: unknown membership message {kind!r}")
    return MESSAGE_TYPES[kind].from_wire(data)
