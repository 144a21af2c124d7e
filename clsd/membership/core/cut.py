"""Deciding that a node has failed: several of its observers must agree.

Rapid's multi-process cut detection, reduced to what a gossip cluster without
consensus needs: a node is declared failed when at least H of its distinct
observers that are themselves healthy report it (H capped at the number of
observers in small clusters), or when every one of its healthy observers has
reported it (its other observers are suspect or gone, e.g. on the far side of
a partition) and they are at least two, unless the subject has only one
observer at all. One flaky observer can therefore never evict anyone: not
even while the others are merely suspect, as many are while a large cluster
joins (before this bound, one report in "1 of 8 observers" caused most of
the false deaths of a loaded 64-node join). The suspicion timeout remains
the slow path for a subject with a single healthy observer left.
Reports belong to one life of the subject (generation, incarnation): when the
subject refutes, they are all void.
"""

from collections.abc import Collection, Sequence

from clsd.membership.core.timing import quorum_for

#: One life of a subject: (generation, incarnation).
Version = tuple[int, int]


def is_failed(observers: Sequence[str], reporters: Collection[str],
              healthy: Collection[str], quorum: int) -> bool:
    """The detection rule.

    @param observers: the subject's distinct observers in this node's view.
    @param reporters: who reported the subject (non-observers do not count).
    @param healthy: names of members currently alive (not suspect or gone).
        Only healthy observers' reports count: right after a partition heals,
        reports from the far side (suspect or dead here) must not evict a
        node that our own side still hears.
    """
    watching = [name for name in observers if name in healthy]
    reporting = sum(1 for name in watching if name in reporters)
    if reporting == 0:
        return False
    if reporting >= quorum_for(len(observers), quorum):
        return True
    return reporting == len(watching) and reporting >= min(2, len(observers))


class Reports:
    """The reports this node knows of, per subject, for the subject's current life."""

    def __init__(self) -> None:
        self._by_subject: dict[str, tuple[Version, set[str]]] = {}

    def add(self, subject: str, version: Version, observer: str) -> bool:
        """Record a report; True if it is new. Reports of another life replace the set."""
        current = self._by_subject.get(subject)
        if current is None or current[0] != version:
            if current is not None and current[0] > version:
                return False
            current = (version, set())
            self._by_subject[subject] = current
        if observer in current[1]:
            return False
        current[1].add(observer)
        return True

    def reporters(self, subject: str, version: Version) -> frozenset[str]:
        current = self._by_subject.get(subject)
        if current is None or current[0] != version:
            return frozenset()
        return frozenset(current[1])

    def clear(self, subject: str) -> None:
        self._by_subject.pop(subject, None)

    def __contains__(self, subject: object) -> bool:
        return subject in self._by_subject
