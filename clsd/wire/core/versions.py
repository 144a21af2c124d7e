"""Protocol versions: what two peers speak together, and what a whole cluster speaks.

Each hello offers a range of protocol versions (L{ProtocolRange}); the two ends of a
connection use the highest version both speak (L{negotiate}) or refuse each other with one
line naming both ranges (L{incompatibility}).  Corosync and Consul keep a cluster running
across a rolling upgrade the same way: a release speaks its predecessor's protocol, so old
and new nodes talk until the last one is upgraded.

A behaviour that needs every node to understand it (a new lease rule, say) must wait until
every member speaks its version: L{cluster_protocol} gives the version the whole cluster
speaks and the members that hold it back, and L{enabled} says whether a feature of a given
version may be used.
"""

from collections.abc import Mapping

import attrs


@attrs.frozen(order=True)
class ProtocolRange:
    """The protocol versions one node speaks, C{low} to C{high} inclusive."""

    low: int
    high: int

    def __attrs_post_init__(self) -> None:
        if self.low > self.high:
            raise ValueError(f"protocol range {self.low} to {self.high} is empty")

    def __contains__(self, version: object) -> bool:
        return isinstance(version, int) and self.low <= version <= self.high

    def __str__(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low} to {self.high}"


def negotiate(ours: ProtocolRange, theirs: ProtocolRange) -> int | None:
    """The highest version both ranges contain, or C{None} when they do not overlap."""
    high = min(ours.high, theirs.high)
    return high if high >= max(ours.low, theirs.low) else None


def incompatibility(peer: str, peer_software: str | None, theirs: ProtocolRange,
                    our_software: str, ours: ProtocolRange) -> str:
    """The one line that says why two nodes cannot talk (both ranges, both versions)."""
    peer_version = peer_software or "a release before versioned protocols"
    return (f"peer {peer!r} (clsd {peer_version}) speaks protocol {theirs}, this node "
            f"(clsd {our_software}) speaks {ours}: no common protocol version; upgrade one "
            "release at a time (doc/operations.md, \"Upgrade one node at a time\")")


@attrs.frozen
class ClusterProtocol:
    """What the live members speak together (see L{cluster_protocol})."""

    #: The highest version every member speaks (C{None}: there is none).
    version: int | None
    #: Members whose newest version is below some other member's: upgrading them raises
    #: C{version}.
    held_back_by: tuple[str, ...]


def cluster_protocol(ranges: Mapping[str, ProtocolRange]) -> ClusterProtocol:
    """The effective protocol version of a cluster whose live members speak C{ranges}.

    C{ranges}: member name to the range it offers (members that publish none are left
    out by the caller; they are older than versioned protocols and cannot be connected).
    """
    if not ranges:
        return ClusterProtocol(None, ())
    high = min(r.high for r in ranges.values())
    low = max(r.low for r in ranges.values())
    newest = max(r.high for r in ranges.values())
    behind = tuple(sorted(name for name, r in ranges.items() if r.high < newest))
    return ClusterProtocol(high if high >= low else None, behind)


def enabled(since: int, cluster: ClusterProtocol) -> bool:
    """Whether a behaviour added in protocol C{since} may be used: every member speaks it."""
    return cluster.version is not None and cluster.version >= since
