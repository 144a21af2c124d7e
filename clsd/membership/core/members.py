"""Member records and the one rule that orders news about a member.

A member is named by its node name (the name in its certificate). Each start
of the daemon picks a new *generation*, so a restarted node is never confused
with its old self; within a generation the node alone raises its
*incarnation* to refute suspicion (SWIM). News about a member supersedes
older news by (generation, incarnation, state rank): the same total order on
every node, so views that see the same news end up equal whatever the order.
"""

import enum
import hashlib
import json
from functools import lru_cache
from typing import TYPE_CHECKING, TypedDict

import attrs

if TYPE_CHECKING:
    from typing_extensions import Unpack


class State(enum.Enum):
    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


#: At equal (generation, incarnation): suspicion beats alive, death beats
#: suspicion, and a graceful leave beats a death (it says "do not fail over
#: as if it crashed"). Only a higher incarnation (a refutation) beats them.
RANK = {State.ALIVE: 0, State.SUSPECT: 1, State.DEAD: 2, State.LEFT: 3}

#: States whose members sit on the monitoring rings (and are watched).
IN_RING = frozenset((State.ALIVE, State.SUSPECT))


class MemberChanges(TypedDict, total=False):
    """The fields L{Member.evolve} may replace."""

    name: str
    address: str
    generation: int
    incarnation: int
    state: State
    meta: str


@attrs.frozen(cache_hash=True)
class Member:
    """What the cluster agrees on about one node: immutable, shared freely."""

    name: str
    address: str
    generation: int
    incarnation: int
    state: State
    #: What the node publishes about itself (memberlist's node meta, Serf's
    #: tags): canonical JSON of an object, "" for none. A string so that
    #: the record stays immutable and hashable; see L{encode_meta}.
    meta: str = ""

    def evolve(self, **changes: "Unpack[MemberChanges]") -> "Member":
        return attrs.evolve(self, **changes)

    @property
    def in_ring(self) -> bool:
        return self.state in IN_RING

    @property
    def version(self) -> tuple[int, int]:
        """(generation, incarnation): which life and which refutation of it."""
        return (self.generation, self.incarnation)


def supersedes(new: Member, old: Member | None) -> bool:
    """Whether news C{new} about a member replaces what we knew (C{old}, or None)."""
    if old is None:
        return True
    if new.generation != old.generation:
        return new.generation > old.generation
    if new.incarnation != old.incarnation:
        return new.incarnation > old.incarnation
    return RANK[new.state] > RANK[old.state]


#: The largest metadata a member may publish, in bytes of canonical JSON.
#: Every record carries it, so it bounds messages: a full sync message (128
#: records of the longest names and addresses, each with this much meta)
#: stays under the peer layer's 256 KiB line limit (tested).
MAX_META = 1024


class MetaError(ValueError):
    """Metadata that is not a small JSON object."""


def encode_meta(meta: object) -> str:
    """Canonical JSON (sorted keys, no spaces) of C{meta}, a dict; "" for None or {}.

    @raise MetaError: not a JSON-able dict, or longer than L{MAX_META} bytes.
    """
    if meta is None or meta == {}:
        return ""
    if not isinstance(meta, dict):
        raise MetaError(f"member meta must be an object, got {type(meta).__name__}")
    try:
        text = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)
    except (TypeError, ValueError) as e:
        raise MetaError(f"member meta is not JSON: {e}") from None
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_META:
        raise MetaError(f"member meta is {size} bytes, more than {MAX_META}")
    return text


def decode_meta(text: str) -> dict[str, object]:
    """The dict of an encoded meta string ({} for "")."""
    return json.loads(text) if text else {}


@lru_cache(maxsize=1 << 17)
def record_hash(member: Member) -> int:
    """A 64-bit hash of a record, equal on every machine (anti-entropy digests)."""
    parts: tuple[str, ...] = (member.name, member.address, str(member.generation),
             str(member.incarnation), member.state.value)
    if member.meta:
        parts += (member.meta,)
    text = "\0".join(parts)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


@attrs.frozen
class MemberInfo:
    """A member as this node sees it, for the admin shell: record + local history."""

    member: Member
    #: Monotonic time of the last state change seen here (None: known since start).
    since: float | None
    reason: str
