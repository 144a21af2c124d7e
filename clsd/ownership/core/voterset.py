"""Who grants leases, also while the voters change: joint majorities of the old and new set.

Changing the voters one node at a time is unsafe with plain majorities:
from ``[a, b, c]`` to ``[a, b, c, d, e]``, ``{b, c}`` is a majority of the old
set and ``{a, d, e}`` one of the new, and they share no voter.  So a change
goes through a *joint* step (``[quorum] previous_voters``): a node in it
needs a majority of the new set **and** a majority of the previous one.

The procedure (doc/operations.md, "Changing the voters") has three steps,
and every node is in one of them::

    O  voters = old                              (before)
    J  voters = new, previous_voters = old       (joint)
    N  voters = new                              (after)

Any two of O+O, O+J, J+J, J+N, N+N majorities share a voter; only O and N
do not.  Two rules keep an O holder and an N holder from existing at once:

- *At the voters*, every Prepare and Propose carries the proposer's
  L{VoterSet.tag}.  A voter grants only to proposers whose current set is
  its own or who are in transition *from* its current set
  (L{VoterSet.admits}).  So once a voter is in J or N it refuses O
  proposers, and an O voter refuses N proposers: an O holder's majority is
  made of O voters only, an N holder's of J and N voters only.
- *Between nodes*, every node publishes its tag; a node does not acquire
  while a live member's set is not adjacent to its own (O beside N:
  L{compatible}), and the procedure moves to N only once every node is in J
  (then no majority of the old set grants O proposers any more).
"""

import hashlib
from collections.abc import Iterable, Sized

import attrs


def set_id(names: Iterable[str]) -> str:
    """A short digest of a voter set (order does not matter)."""
    joined = ",".join(sorted(names))
    return hashlib.sha256(joined.encode("utf-8")).hexdigest()[:12]


def _majority(names: Sized) -> int:
    return len(names) // 2 + 1


@attrs.frozen
class VoterSet:
    """The voters a node asks, and which answers make a lease."""

    voters: tuple[str, ...]
    #: The set before the change, during the joint step; empty otherwise.
    previous: tuple[str, ...] = ()

    @property
    def in_transition(self) -> bool:
        return bool(self.previous)

    @property
    def members(self) -> tuple[str, ...]:
        """Every voter to ask: the new set, then the previous set's others."""
        return tuple(self.voters) + tuple(v for v in self.previous if v not in self.voters)

    def granted_by(self, names: Iterable[str]) -> bool:
        """Whether the voters C{names} make a lease: a majority of each set."""
        names = set(names)
        if len(names & set(self.voters)) < _majority(self.voters):
            return False
        return not self.previous or len(names & set(self.previous)) >= _majority(self.previous)

    def hopeless(self, refused: Iterable[str]) -> bool:
        """Whether the voters C{refused} leave no way to L{granted_by}."""
        refused = set(refused)
        sets = [self.voters] + ([self.previous] if self.previous else [])
        return any(len(refused & set(s)) > len(s) - _majority(s) for s in sets)

    @property
    def tag(self) -> str:
        """``ID`` of the current set, or ``ID<PREVIOUS`` in the joint step; travels in requests."""
        tag = set_id(self.voters)
        return f"{tag}<{set_id(self.previous)}" if self.previous else tag

    def admits(self, tag: str | None) -> bool:
        """Whether this node's voter may grant to a proposer with C{tag} (see the module doc).

        An untagged request (a daemon older than this rule) is admitted only
        by a voter that is not in transition.
        """
        if tag is None:
            return not self.previous
        current, _, previous = tag.partition("<")
        mine = set_id(self.voters)
        return current == mine or previous == mine


def compatible(tag_a: str, tag_b: str) -> bool:
    """Whether nodes with voter tags C{tag_a} and C{tag_b} are at most one step apart."""
    a_current, _, a_previous = tag_a.partition("<")
    b_current, _, b_previous = tag_b.partition("<")
    return a_current == b_current or a_previous == b_current or b_previous == a_current
