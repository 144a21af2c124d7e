"""The monitoring overlay: K rings of hashes over the members (Rapid's K-ring topology).

On ring r every member sits at position hash(r, name). A member's observers
are its successors on the K rings, its subjects its predecessors: each node
watches at most K others and is watched by at most K, chosen the same way by
every node that has the same member list, whatever N is. Every ring is a
cycle through all members, so news flowing along the links reaches everyone.

Memory: a ring index is an immutable I{snapshot} (sorted positions, shared
between all nodes of a simulation that hold the same list) plus a small
private overlay of names added and removed since; L{Rings.compact} folds the
overlay into a new snapshot, through a L{SnapshotCache} so that nodes folding
the same changes into the same snapshot share the result.
"""

import hashlib
import itertools
import weakref
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Hashable, Iterable, Sequence
from functools import lru_cache
from typing import Self, TypeVar, cast

_MASK = (1 << 64) - 1
_serials = itertools.count(1)

_Snapshot = TypeVar("_Snapshot")

#: A name's observers on the rings, and on each ring the distance to the nearest.
_Neighbours = tuple[tuple[str, ...], tuple[int, ...]]


@lru_cache(maxsize=1 << 17)
def positions(name: str, k: int) -> tuple[int, ...]:
    """The K ring positions of C{name}: 64-bit, the same on every machine."""
    data = name.encode()
    return tuple(
        int.from_bytes(hashlib.blake2b(data, digest_size=8, salt=r.to_bytes(16, "big")).digest(), "big")
        for r in range(k)
    )


class SnapshotCache:
    """Shares immutable snapshots between the cores that build the same one.

    A private cache per core is correct; one cache shared by every core of a
    simulation (or of a many-nodes-in-one-process test) saves the memory of
    N identical member lists. Entries live as long as some core uses them.
    """

    def __init__(self) -> None:
        self._entries: weakref.WeakValueDictionary[Hashable, object] = (
            weakref.WeakValueDictionary())

    def get_or_build(self, key: Hashable, build: Callable[[], _Snapshot]) -> _Snapshot:
        # The key names the kind of snapshot ("members", "rings"): an entry
        # found under it was built by the same kind of build.
        snapshot = cast("_Snapshot | None", self._entries.get(key))
        if snapshot is None:
            snapshot = build()
            self._entries[key] = snapshot
        return snapshot


class RingSnapshot:
    __slots__ = ("serial", "k", "keys", "owners", "names", "__weakref__")

    def __init__(self, k: int, pairs_per_ring: Sequence[Sequence[tuple[int, str]]],
                 names: frozenset[str]) -> None:
        self.serial = next(_serials)
        self.k = k
        self.keys = [[p for p, _ in pairs] for pairs in pairs_per_ring]
        self.owners = [[n for _, n in pairs] for pairs in pairs_per_ring]
        self.names = names

    @classmethod
    def build(cls, k: int, names: Iterable[str]) -> Self:
        names = frozenset(names)
        rings = [sorted((positions(n, k)[r], n) for n in names) for r in range(k)]
        return cls(k, rings, names)

    def derive(self, added: frozenset[str], removed: frozenset[str]) -> "RingSnapshot":
        names = (self.names - removed) | added
        fresh = [(positions(n, self.k), n) for n in added]
        rings: list[list[tuple[int, str]]] = []
        for r in range(self.k):
            if removed:
                pairs = [(p, n) for p, n in zip(self.keys[r], self.owners[r]) if n not in removed]
            else:
                pairs = list(zip(self.keys[r], self.owners[r]))
            pairs.extend([(pos[r], n) for pos, n in fresh])
            pairs.sort()  # two sorted runs: linear for Timsort
            rings.append(pairs)
        return RingSnapshot(self.k, rings, names)


class Rings:
    def __init__(self, k: int, snapshot: RingSnapshot | None = None,
                 cache: SnapshotCache | None = None) -> None:
        self.k = k
        self._cache = cache if cache is not None else SnapshotCache()
        self._base = snapshot if snapshot is not None else RingSnapshot.build(k, ())
        if self._base.k != k:
            raise ValueError(f"ring snapshot has {self._base.k} rings, expected {k}")
        self._added: set[str] = set()
        self._removed: set[str] = set()
        self._added_keys: list[list[int]] = [[] for _ in range(k)]
        self._added_owners: list[list[str]] = [[] for _ in range(k)]
        #: name -> (tuple of its observers, reach), for names on the rings
        #: (the verdicts on suspects ask for their observers again and
        #: again); reach[r] is the distance to the observer on ring r. An
        #: entry is dropped exactly when it changes: when an added name lands
        #: within its reach on some ring, or a removed name was one of its
        #: observers. That test is K subtractions per cached entry, not the
        #: 2K ring searches that finding the added name's own neighbours
        #: takes (every member added during a mass join paid them while any
        #: member was suspect). Folding the overlay (L{compact}) changes no
        #: neighbour. Subjects are asked once per change at most: not cached.
        self._observers: dict[str, _Neighbours] = {}

    # -- membership of the rings ------------------------------------------

    def __contains__(self, name: object) -> bool:
        if name in self._added:
            return True
        return name in self._base.names and name not in self._removed

    def __len__(self) -> int:
        return len(self._base.names) - len(self._removed) + len(self._added)

    @property
    def overlay_size(self) -> int:
        return len(self._added) + len(self._removed)

    @property
    def snapshot(self) -> RingSnapshot:
        return self._base

    def add(self, name: str) -> bool:
        if name in self:
            return False
        if name in self._removed:
            self._removed.discard(name)
        else:
            self._added.add(name)
            for r, pos in enumerate(positions(name, self.k)):
                keys = self._added_keys[r]
                i = bisect_left(keys, pos)
                keys.insert(i, pos)
                self._added_owners[r].insert(i, name)
        if self._observers:
            self._forget_observers_reached_by(name)
        return True

    def remove(self, name: str) -> bool:
        if name not in self:
            return False
        cache = self._observers
        if cache:
            cache.pop(name, None)
            for other in [o for o, (found, _) in cache.items() if name in found]:
                del cache[other]
        if name in self._added:
            self._added.discard(name)
            for r in range(self.k):
                owners = self._added_owners[r]
                i = owners.index(name)
                del owners[i]
                del self._added_keys[r][i]
        else:
            self._removed.add(name)
        return True

    def compact(self) -> None:
        """Fold the overlay into a (possibly shared) new snapshot."""
        if not self._added and not self._removed:
            return
        added, removed = frozenset(self._added), frozenset(self._removed)
        base = self._base
        self._base = self._cache.get_or_build(
            ("rings", base.serial, added, removed), lambda: base.derive(added, removed))
        self._added.clear()
        self._removed.clear()
        self._added_keys = [[] for _ in range(self.k)]
        self._added_owners = [[] for _ in range(self.k)]

    # -- neighbours --------------------------------------------------------

    def observers(self, name: str) -> list[str]:
        """Distinct successors of C{name} over the K rings (excluding itself)."""
        return list(self.observers_tuple(name))

    def observers_tuple(self, name: str) -> tuple[str, ...]:
        """L{observers} as a tuple, cached for members on the rings."""
        cache = self._observers
        found = cache.get(name)
        if found is None:
            found = self._neighbours_and_reach(name, True)
            if name in self:
                cache[name] = found
        return found[0]

    def subjects(self, name: str) -> list[str]:
        """Distinct predecessors of C{name} over the K rings: whom it watches."""
        return self._neighbours(name, False)

    def forget_neighbours(self, name: str | None = None) -> None:
        """Empty the cache, or drop C{name}'s entry (nothing will be asked
        about it for a while, e.g. it is no longer suspect): every cached
        entry costs each later change of the rings a check."""
        if name is None:
            self._observers.clear()
        else:
            self._observers.pop(name, None)

    def _forget_observers_reached_by(self, name: str) -> None:
        """Drop the cached entries whose observers C{name}, just added, displaces."""
        added = positions(name, self.k)
        cache = self._observers
        stale: list[str] = []
        for other, (_, reach) in cache.items():
            for pos, own, limit in zip(added, positions(other, self.k), reach):
                # Ties (equal positions) are broken by name: drop to be safe.
                if (pos - own) & _MASK <= limit:
                    stale.append(other)
                    break
        for other in stale:
            del cache[other]

    def _neighbours(self, name: str, forward: bool) -> list[str]:
        return list(self._neighbours_and_reach(name, forward)[0])

    def _neighbours_and_reach(self, name: str, forward: bool) -> _Neighbours:
        """The distinct nearest others of C{name} over the K rings, and on
        each ring the distance to the nearest (past the whole ring when
        there is no other member)."""
        result: list[str] = []
        reach: list[int] = []
        for r, pos in enumerate(positions(name, self.k)):
            found, distance = self._nearest(r, pos, name, forward)
            reach.append(distance)
            if found is not None and found not in result:
                result.append(found)
        return tuple(result), tuple(reach)

    def _nearest(self, r: int, pos: int, exclude: str, forward: bool) -> tuple[str | None, int]:
        best: str | None = None
        best_distance = _MASK + 1  # read only once best is set
        removed = self._removed
        for keys, owners in ((self._base.keys[r], self._base.owners[r]),
                             (self._added_keys[r], self._added_owners[r])):
            n = len(keys)
            if not n:
                continue
            if forward:
                i = bisect_right(keys, pos)
                step = 1
            else:
                i = bisect_left(keys, pos) - 1
                step = -1
            for _ in range(n):
                i %= n
                owner = owners[i]
                if owner != exclude and (owners is self._added_owners[r] or owner not in removed):
                    distance = ((keys[i] - pos) if forward else (pos - keys[i])) & _MASK
                    if best is None or distance < best_distance or (
                            distance == best_distance and owner < best):
                        best, best_distance = owner, distance
                    break
                i += step
        if best is None:
            return None, _MASK + 1
        return best, best_distance


__all__ = ["RingSnapshot", "Rings", "SnapshotCache", "positions"]
