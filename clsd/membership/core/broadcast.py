"""A bounded queue of news to piggyback, each piece sent a limited number of times.

Modelled on memberlist's TransmitLimitedQueue: news is keyed (newer news about
the same thing replaces the older piece), the pieces sent least often go
first (newest first among equals), and a piece is dropped once it has been
sent C{limit} times. The queue is bounded: when full, the piece sent most
often is dropped (anti-entropy repairs whatever gossip loses).

A copy of a queued piece that arrives from someone else counts as one send
(L{heard}, up to a floor): the rumour mongering of Demers et al. that "loses interest" in
news the others already have. Without it every node forwards every piece
its whole limit, long after everyone has it: at 1024 nodes, nine of every
ten pieces a node received during a mass join were copies of what it had.
"""

from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar


class Piece(Protocol):
    """What the queue holds: news with a key naming what it is about."""

    @property
    def key(self) -> Hashable: ...


_Piece = TypeVar("_Piece", bound=Piece)

#: Sends of a piece that copies heard from others never take away (see
#: L{BroadcastQueue.heard}). Letting copies take all of them left, in
#: simulated joins, single members unknown at single nodes until the next
#: anti-entropy round; with two, joins converged as fast as without copies
#: counted, with nearly as few messages.
HEARD_KEEP = 2


class BroadcastQueue(Generic[_Piece]):
    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        #: _levels[t]: key -> item, for the pieces sent t times (dicts keep
        #: insertion order, so popitem() gives the newest).
        self._levels: list[dict[Hashable, _Piece]] = [{}]
        self._level_of: dict[Hashable, int] = {}
        #: Every level below this one is empty (a heartbeat's take then
        #: skips them); empty levels at the top are trimmed.
        self._low = 0

    def __len__(self) -> int:
        return len(self._level_of)

    def __bool__(self) -> bool:
        return bool(self._level_of)

    def put(self, item: _Piece) -> None:
        """Queue C{item} (with a C{key}); it replaces any queued piece with that key."""
        key = item.key
        level = self._level_of.pop(key, None)
        if level is not None:
            del self._levels[level][key]
        self._levels[0][key] = item
        self._level_of[key] = 0
        self._low = 0
        if len(self._level_of) > self.max_items:
            self._drop_most_sent()

    def get(self, key: Hashable) -> _Piece | None:
        """The queued piece with C{key}, or None."""
        level = self._level_of.get(key)
        return None if level is None else self._levels[level][key]

    def heard(self, key: Hashable, limit: int, keep: int = HEARD_KEEP) -> None:
        """Another node sent us the piece with C{key}: count it as sent once more.

        Copies never take away a piece's last C{keep} sends: a node that
        heard a piece from all around still passes it on itself.
        """
        level = self._level_of.get(key)
        if level is None or level + 1 > limit - keep:
            return
        levels = self._levels
        item = levels[level].pop(key)
        level += 1
        while len(levels) <= level:
            levels.append({})
        levels[level][key] = item
        self._level_of[key] = level

    def discard(self, key: Hashable) -> None:
        level = self._level_of.pop(key, None)
        if level is not None:
            del self._levels[level][key]

    def take(self, count: int, limit: int) -> list[_Piece]:
        """Up to C{count} pieces for one message; each counts as sent once more."""
        if len(self._level_of) <= count:
            return self._take_all(limit)
        taken: list[_Piece] = []
        moved: list[tuple[int, Hashable, _Piece]] = []
        levels = self._levels
        level = self._low
        top = len(levels)
        while level < top:
            items = levels[level]
            while items and len(taken) < count:
                key, item = items.popitem()
                taken.append(item)
                if level + 1 < limit:
                    moved.append((level + 1, key, item))
                else:
                    del self._level_of[key]
            if len(taken) >= count:
                break
            level += 1
        # Levels below `level` are drained now; the moved pieces go one up.
        self._low = min(level, moved[0][0]) if moved else level
        for level, key, item in moved:
            while len(levels) <= level:
                levels.append({})
            levels[level][key] = item
            self._level_of[key] = level
        while len(levels) > 1 and not levels[-1]:
            levels.pop()
        return taken

    def _take_all(self, limit: int) -> list[_Piece]:
        """take() when every piece fits in the message (the common case: a
        heartbeat carries up to 16): each level moves up one whole, in the
        order take() pops it (newest first), without per-piece bookkeeping
        beyond the level index."""
        taken: list[_Piece] = []
        levels: list[dict[Hashable, _Piece]] = [{}]
        level_of = self._level_of
        low = 0
        for level, items in enumerate(self._levels, start=1):
            if not items:
                levels.append(items)
                continue
            moved = dict(reversed(items.items()))
            taken.extend(moved.values())
            if level < limit:
                levels.append(moved)
                for key in moved:
                    level_of[key] = level
                low = low or level
            else:
                levels.append({})
                for key in moved:
                    del level_of[key]
        while len(levels) > 1 and not levels[-1]:
            levels.pop()
        self._levels = levels
        self._low = low
        return taken

    def _drop_most_sent(self) -> None:
        for items in reversed(self._levels):
            if items:
                key = next(iter(items))  # the oldest of the most sent
                del items[key]
                del self._level_of[key]
                return
