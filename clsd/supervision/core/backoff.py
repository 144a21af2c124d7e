"""How long to wait before restarting a service that keeps dying: a pure function.

Kept apart from the lifecycle policy (like Twisted's ``backoffPolicy`` and
memberlist's timing helpers) so the formula can be read and table-tested on
its own.
"""

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from clsd.config.service import Backoff


def restart_delay(consecutive_failures: int, backoff: "Backoff", random01: float) -> float:
    """Seconds to wait before the restart that follows C{consecutive_failures}.

    The first restart is immediate: a single crash should cost as little
    downtime as possible. From the second consecutive failure on, the delay
    is ``initial * factor ** (n - 2)`` capped at ``max``, then spread by
    +/- ``jitter`` (a fraction) so that many services failing together do
    not restart in lock-step; the result never exceeds ``max`` nor drops
    below 0.

    @param consecutive_failures: failures since the service last ran for
        C{stable_after} seconds, counting the one that just happened (>= 1).
    @param backoff: a L{clsd.config.Backoff}.
    @param random01: a number in [0, 1); 0.5 means no jitter. Injected so
        that callers (and tests) control the randomness.
    """
    if consecutive_failures <= 1:
        return 0.0
    try:
        base = backoff.initial * math.pow(backoff.factor, consecutive_failures - 2)
    except OverflowError:
        base = backoff.max
    base = min(base, backoff.max)
    spread = backoff.jitter * (2.0 * random01 - 1.0)
    return min(max(base * (1.0 + spread), 0.0), backoff.max)
