"""The member list of one node: a shared immutable snapshot plus a private overlay.

Records are looked up in the overlay first, then in the snapshot. The table
also keeps the anti-entropy digest (per bucket of names, the XOR of the
records' hashes, updated in O(1) per change) and the ring index of the
members that are alive or suspect.

Why a snapshot and an overlay: 10,000 simulated nodes each holding 10,000
records would need gigabytes; nodes that agree share one snapshot and pay only
for what they have learnt since. A real node pays nothing for it: its
overlay is folded into a private snapshot from time to time.
"""

import enum
import functools
import hashlib
import itertools
import operator
from collections.abc import Collection, Iterator, Mapping
from functools import lru_cache

from clsd.membership.core.members import Member, record_hash
from clsd.membership.core.messages import SYNC_BUCKETS
from clsd.membership.core.rings import RingSnapshot, Rings, SnapshotCache

_serials = itertools.count(1)

#: Fold the overlay into a new snapshot once it has this many entries and the
#: list has been quiet for a while (then most nodes fold the same changes and
#: share the result) ...
COMPACT_MIN = 64
COMPACT_QUIET = 5.0
#: ... and in any case once it is as large as the snapshot (amortised O(1)
#: per change, e.g. while a joining node learns the whole list).
COMPACT_HARD_MIN = 256


@lru_cache(maxsize=1 << 17)
def bucket_of(name: str) -> int:
    digest = hashlib.blake2b(name.encode(), digest_size=8, person=b"clsd-bucket").digest()
    return int.from_bytes(digest, "big") % SYNC_BUCKETS


class MemberSnapshot:
    __slots__ = ("serial", "records", "bucket_xor", "bucket_names", "fingerprint", "__weakref__")

    def __init__(self, records: dict[str, Member]) -> None:
        self.serial = next(_serials)
        self.records = records
        xor = [0] * SYNC_BUCKETS
        names: list[list[str]] = [[] for _ in range(SYNC_BUCKETS)]
        for name, member in records.items():
            b = bucket_of(name)
            xor[b] ^= record_hash(member)
            names[b].append(name)
        self.bucket_xor = xor
        self.bucket_names = [tuple(n) for n in names]
        self.fingerprint = functools.reduce(operator.xor, xor, 0)

    def derive(self, overlay: Mapping[str, Member | None]) -> "MemberSnapshot":
        records = dict(self.records)
        for name, member in overlay.items():
            if member is None:
                records.pop(name, None)
            else:
                records[name] = member
        return MemberSnapshot(records)


def build_snapshots(members: Collection[Member], k: int) -> tuple[MemberSnapshot, RingSnapshot]:
    """A member snapshot and its ring snapshot, e.g. to start a simulation already joined."""
    records = {m.name: m for m in members}
    return MemberSnapshot(records), RingSnapshot.build(k, [m.name for m in members if m.in_ring])


class MemberTable:
    def __init__(self, k: int, snapshot: MemberSnapshot | None = None,
                 ring_snapshot: RingSnapshot | None = None,
                 cache: SnapshotCache | None = None) -> None:
        self._cache = cache if cache is not None else SnapshotCache()
        self._base = snapshot if snapshot is not None else MemberSnapshot({})
        self.rings = Rings(k, ring_snapshot, self._cache)
        self._overlay: dict[str, Member | None] = {}
        self._xor = [0] * SYNC_BUCKETS
        #: The whole list in 64 bits (the XOR of L{digests}), kept in O(1) per
        #: change; an attribute, read on every heartbeat received.
        self.fingerprint = self._base.fingerprint
        self._overlay_buckets: dict[int, dict[str, bool]] = {}
        self._size = len(self._base.records)
        self.last_change: float | None = None

    def get(self, name: str) -> Member | None:
        member = self._overlay.get(name, _ABSENT)
        if member is _ABSENT:
            return self._base.records.get(name)
        return member

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[Member]:
        """Every record (order unspecified)."""
        overlay = self._overlay
        member: Member | None
        for name, member in self._base.records.items():
            if name not in overlay:
                yield member
        for member in overlay.values():
            if member is not None:
                yield member

    def set(self, member: Member, now: float | None = None) -> None:
        """Store C{member} (the caller has checked that it supersedes) and index it."""
        self._replace(member.name, member, now)
        if member.in_ring:
            self.rings.add(member.name)
        else:
            self.rings.remove(member.name)

    def delete(self, name: str, now: float | None = None) -> None:
        if self.get(name) is not None:
            self._replace(name, None, now)
            self.rings.remove(name)

    def _replace(self, name: str, member: Member | None, now: float | None) -> None:
        old = self.get(name)
        b = bucket_of(name)
        change = (record_hash(old) if old is not None else 0) ^ (
            record_hash(member) if member is not None else 0)
        self._xor[b] ^= change
        self.fingerprint ^= change
        self._size += (member is not None) - (old is not None)
        self._overlay[name] = member
        self._overlay_buckets.setdefault(b, {})[name] = True
        self.last_change = now

    # -- anti-entropy ------------------------------------------------------

    def digests(self) -> tuple[int, ...]:
        return tuple(map(operator.xor, self._base.bucket_xor, self._xor))

    def records_in(self, bucket: int) -> list[Member]:
        overlay = self._overlay
        result = [self._base.records[n] for n in self._base.bucket_names[bucket]
                  if n not in overlay]
        for name in self._overlay_buckets.get(bucket, ()):
            member = overlay[name]
            if member is not None:
                result.append(member)
        return result

    # -- memory --------------------------------------------------------------

    @property
    def overlay_size(self) -> int:
        return len(self._overlay)

    def maybe_compact(self, now: float) -> None:
        size = len(self._overlay)
        quiet = self.last_change is None or now - self.last_change >= COMPACT_QUIET
        if (size >= COMPACT_MIN and quiet) or size >= max(COMPACT_HARD_MIN, len(self._base.records)):
            self.compact()

    def compact(self) -> None:
        if self._overlay:
            base = self._base
            overlay = dict(self._overlay)
            key = ("members", base.serial, frozenset(overlay.items()))
            self._base = self._cache.get_or_build(key, lambda: base.derive(overlay))
            self._overlay = {}
            self._xor = [0] * SYNC_BUCKETS
            self._overlay_buckets = {}
        self.rings.compact()


class _Absent(enum.Enum):
    """Not in the overlay (None there means deleted)."""

    ABSENT = enum.auto()


_ABSENT = _Absent.ABSENT
