"""Partitions as sets of blocked (source, destination) address pairs: pure functions.

A partition is nothing but the pairs of node addresses that cannot reach each
other; the firewall drops exactly those packets. Every shape below is
symmetric (if a cannot reach b, b cannot reach a), and nothing blocks a node
from itself.
"""

import ipaddress
import itertools

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class TopologyError(ValueError):
    """A partition that cannot be built as asked."""


def check_loopback(address):
    """Refuse anything outside 127.0.0.0/8: the rig never touches real networks."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        raise TopologyError(f"{address!r} is not an IPv4 address") from None
    if parsed.version != 4 or parsed not in LOOPBACK:
        raise TopologyError(f"{address} is outside 127.0.0.0/8; the rig only uses loopback")
    return str(parsed)


def _both_ways(pairs):
    result = set()
    for a, b in pairs:
        if a != b:
            result.add((check_loopback(a), check_loopback(b)))
            result.add((check_loopback(b), check_loopback(a)))
    return frozenset(result)


def split(*groups):
    """Every group reaches only itself: block each pair across two groups."""
    seen = set()
    for group in groups:
        for address in group:
            if address in seen:
                raise TopologyError(f"{address} is in more than one group")
            seen.add(address)
    return _both_ways(
        (a, b)
        for left, right in itertools.combinations(groups, 2)
        for a in left for b in right
    )


def isolate(address, others):
    """One node cut off from all the others."""
    return split([address], [o for o in others if o != address])


def bridge(side_a, side_b, middle):
    """Two sides that cannot reach each other, and one node that reaches both."""
    if middle in side_a or middle in side_b:
        raise TopologyError(f"the bridge {middle} must not be on either side")
    return split(side_a, side_b)


def ring(addresses, reach=1):
    """Each node reaches only its C{reach} nearest neighbours each way round a ring.

    With five nodes and reach 1 every node sees a majority (itself and two
    neighbours) but no two nodes see the same majority: Jepsen's
    "majorities ring", a hard case for quorum protocols.
    """
    n = len(addresses)
    if n < 4:
        raise TopologyError(f"a ring needs at least 4 nodes to block anything, got {n}")
    if not 1 <= reach < n // 2:
        raise TopologyError(f"reach must be between 1 and {n // 2 - 1} for {n} nodes, got {reach}")
    blocked = []
    for i, j in itertools.combinations(range(n), 2):
        distance = min(j - i, n - (j - i))
        if distance > reach:
            blocked.append((addresses[i], addresses[j]))
    return _both_ways(blocked)


def reachable(pairs, source, destination):
    """Whether a packet from C{source} to C{destination} passes C{pairs}."""
    return (source, destination) not in pairs
