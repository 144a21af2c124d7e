"""Lifeguard's local health: a node that is itself slow widens its own timeouts.

The score (0 = healthy) rises when this process shows signs of not keeping up
(its timers fire late, it had to refute a suspicion about itself) and falls
with every on-time tick. Timeouts are multiplied by (score + 1), so a starved
or paused node blames its own slowness before blaming its subjects.
"""

from clsd.membership.core.timing import scaled_timeout


class Awareness:
    def __init__(self, max_multiplier: int = 8) -> None:
        self.max_multiplier = max_multiplier
        self.score = 0

    def apply(self, delta: int) -> None:
        self.score = min(self.max_multiplier - 1, max(0, self.score + delta))

    def scale(self, timeout: float) -> float:
        return scaled_timeout(timeout, self.score)

    def tick(self, late: float, interval: float) -> None:
        """Account one tick that fired C{late} seconds after it was due."""
        if late > interval / 2:
            # Each whole interval we missed is one step worse.
            self.apply(max(1, int(late // interval)))
        else:
            self.apply(-1)

    def refuted(self) -> None:
        """We had to refute a suspicion: our messages are not getting through in time."""
        self.apply(1)
