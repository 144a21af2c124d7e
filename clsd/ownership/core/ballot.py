"""Ballots: totally ordered, unique per proposer incarnation, and the source of epochs.

A ballot is ``(counter, node, generation)``:

- ``counter`` orders ballots.  Voters accept a new ballot only if its counter
  is *strictly* above every counter they promised, so no two grants ever
  share a counter, and the counter of the ballot that starts a tenure is that
  tenure's epoch (fencing token).
- ``node`` and ``generation`` identify the proposer *incarnation*: the
  generation is chosen afresh each time a daemon starts (the shell uses its
  start time in nanoseconds or a random 63-bit number), so a restarted daemon
  never mistakes its previous life's grant, or a reply meant for it, for its
  own.  ``(node, generation)`` is called the *owner*.
"""

import attrs


@attrs.frozen(order=False)
class Ballot:
    counter: int
    node: str
    generation: int

    @property
    def owner(self) -> tuple[str, int]:
        """The proposer incarnation that made this ballot."""
        return (self.node, self.generation)

    def _key(self) -> tuple[int, str, int]:
        return (self.counter, self.node, self.generation)

    def __lt__(self, other: "Ballot") -> bool:
        return self._key() < other._key()

    def __le__(self, other: "Ballot") -> bool:
        return self._key() <= other._key()

    def __gt__(self, other: "Ballot") -> bool:
        return self._key() > other._key()

    def __ge__(self, other: "Ballot") -> bool:
        return self._key() >= other._key()

    def to_wire(self) -> list[int | str]:
        return [self.counter, self.node, self.generation]

    @classmethod
    def from_wire(cls, value: object) -> "Ballot":
        if not isinstance(value, list) or len(value) != 3:
            raise ValueError(f"a ballot is [counter, node, generation], got {value!r}")
        counter, node, generation = value
        for name, item, kind in (("counter", counter, int), ("node", node, str),
                                 ("generation", generation, int)):
            if not isinstance(item, kind) or isinstance(item, bool):
                raise ValueError(f"ballot {name} must be {kind.__name__}, got {item!r}")
        if counter < 0:
            raise ValueError(f"ballot counter must not be negative, got {counter!r}")
        return cls(counter, node, generation)
