"""Timing formulas as pure functions (table-tested in tests/membership/test_timing.py).

All times are seconds on the local monotonic clock; no value here is ever
compared with another machine's clock.
"""

import math


def retransmit_limit(mult: int, n: int) -> int:
    """How many times one node forwards one piece of news: mult * ceil(log10(n + 1)).

    Infection-style dissemination reaches all n nodes with high probability
    when each node forwards O(log n) times (memberlist's formula).
    """
    return mult * max(1, math.ceil(math.log10(n + 1)))


#: Up to this many members a sync comes every sync_interval (memberlist's
#: pushPullScaleThreshold).
SYNC_SCALE_FROM = 32


def sync_period(sync_interval: float, n: int) -> float:
    """How often a node starts a plain anti-entropy sync in a list of C{n} members.

    memberlist's pushPullScale: one more C{sync_interval} for each doubling
    of the cluster beyond 32 members. Every sync costs up to two lists of
    128 records; while members join, lists differ in every bucket, so a
    fixed period made 512 real nodes exchange about 13,000 records a second
    that gossip was bringing anyway. Gossip carries the news; syncs repair
    what it missed, and a list that differs while quiet is synced at once
    anyway (heartbeats carry the list's fingerprint).
    """
    if n <= SYNC_SCALE_FROM:
        return sync_interval
    return sync_interval * (math.ceil(math.log2(n) - math.log2(SYNC_SCALE_FROM)) + 1)


def scaled_timeout(base: float, health_score: int) -> float:
    """Lifeguard: a node with local health score s waits (s + 1) times longer."""
    return base * (health_score + 1)


#: Lifeguard's dynamic suspicion: a suspicion with one reporter waits this
#: many times the minimum; each further independent reporter brings the wait
#: down towards the minimum (memberlist uses 6; 4 keeps a partial partition's
#: flap period moderate).
SUSPICION_MAX_MULT = 4


def suspicion_timeout(base: float, members: int, reporters: int, expected: int) -> float:
    """How long the slow path waits before a suspect that did not refute is dead.

    memberlist and Lifeguard, adapted: the minimum grows with log10 of the
    cluster size (news and refutations take more hops to get round), and a
    suspicion starts at C{SUSPICION_MAX_MULT} times the minimum, falling on a
    log scale as independent reporters confirm it, down to the minimum once
    C{expected} confirmations (reporters after the first) arrived. One
    observer's report alone therefore waits longest: on a loaded machine a
    node may need many seconds to hear of a suspicion and refute it, and a
    single report is the weakest evidence.
    """
    minimum = base * max(1.0, math.log10(max(members, 1)))
    maximum = SUSPICION_MAX_MULT * minimum
    confirmations = max(0, reporters - 1)
    if expected < 1 or confirmations >= expected:
        return minimum
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(minimum, maximum - (maximum - minimum) * fraction)


def lateness(now: float, due: float) -> float:
    """How late a timer fired: the time this process could not run (never negative)."""
    return max(0.0, now - due)


def tolerated_pause(failure_timeout: float, heartbeat_interval: float,
                    max_latency: float) -> float:
    """The longest pause of a node that its observers never notice.

    The last heartbeat before the pause may leave up to one interval before it,
    and the first one after it needs max_latency to arrive.
    """
    return failure_timeout - heartbeat_interval - max_latency


def backoff(attempt: int, initial: float, maximum: float, factor: float = 2.0) -> float:
    """Delay before retry number C{attempt} (0-based): exponential, capped."""
    return min(maximum, initial * factor ** attempt)


def quorum_for(observers: int, quorum: int) -> int:
    """Reports needed to declare a node failed when it has C{observers} distinct observers.

    Small clusters have fewer distinct observers than rings; then all of them
    must agree.
    """
    return max(1, min(quorum, observers))


def expected_detection(link_down_grace: float, gossip_interval: float, hops: int) -> float:
    """Crash detection when the crashed node's connections close (kill, reboot).

    Observers see the link drop at once, report after the grace, and the
    reports travel C{hops} gossip rounds.
    """
    return link_down_grace + hops * gossip_interval


def gossip_hops(n: int, fanout: int) -> int:
    """Rounds for news to reach n nodes when each node tells C{fanout} others per round."""
    if n <= 1:
        return 0
    return math.ceil(math.log(n) / math.log(fanout + 1))
