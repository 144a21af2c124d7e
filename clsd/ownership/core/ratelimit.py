"""A token bucket per (sender, resource): how often a voter answers one proposer about one lease.

An honest proposer sends few requests per lease period T: a holder renews
every T/3 (3 per T) and retries a failed renewal every T/12; an acquirer
outbid by a rival retries after T/100 to T/25, a few times.  The bucket
allows L{RATE_PER_LEASE} requests per T on average and bursts of L{BURST},
several times the honest peak, so only a storm is refused.  Each sender has
its own bucket: a storm empties the stormer's bucket, never the holder's.

Pure: the caller passes the time; buckets that are full again are dropped,
so memory follows the active senders, not every sender ever seen.
"""

#: Requests per lease period allowed on average, per sender and resource.
RATE_PER_LEASE = 16
#: Requests allowed at once (a full bucket).
BURST = 32

#: A bucket's key: (sender, resource).
BudgetKey = tuple[str, str]


class RequestBudget:
    """Token buckets keyed by C{(sender, resource)}, refilled at C{rate} per second."""

    def __init__(self, rate: float, burst: int = BURST) -> None:
        if not rate > 0 or burst < 1:
            raise ValueError(f"a request budget needs rate > 0 and burst >= 1, got {rate!r}, "
                             f"{burst!r}")
        self.rate = rate
        self.burst = burst
        self._buckets: dict[BudgetKey, tuple[float, float]] = {}   # key -> (tokens, time)

    @classmethod
    def for_lease(cls, lease: float) -> "RequestBudget":
        """The budget for a lease of C{lease} seconds (L{RATE_PER_LEASE} per lease)."""
        return cls(RATE_PER_LEASE / lease)

    def take(self, key: BudgetKey, now: float) -> bool:
        """Spend one token of C{key}'s bucket; False (nothing spent) when it is empty."""
        tokens, then = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + max(0.0, now - then) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        return True

    def prune(self, now: float) -> None:
        """Forget the buckets that have refilled completely (they hold no information)."""
        for key, (tokens, then) in list(self._buckets.items()):
            if tokens + (now - then) * self.rate >= self.burst:
                del self._buckets[key]

    def __len__(self) -> int:
        return len(self._buckets)
