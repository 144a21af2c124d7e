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


def cluster_protocol(ranges: Mapping[str, ProtocolRange | None]) -> ClusterProtocol:
    """The effective protocol version of a cluster whose live members speak C{ranges}.

    C{ranges}: member name to the range it publishes, C{None} when it publishes none
    (yet): such a member could speak anything, so nothing needs-everyone turns on
    (C{version} is C{None}) and it is named as holding the cluster back.
    """
    known = {name: r for name, r in ranges.items() if r is not None}
    unknown = sorted(name for name, r in ranges.items() if r is None)
    if not known:
        return ClusterProtocol(None, tuple(unknown))
    high = min(r.high for r in known.values())
    low = max(r.low for r in known.values())
    newest = max(r.high for r in known.values())
    behind = sorted(unknown + [name for name, r in known.items() if r.high < newest])
    version = high if high >= low and not unknown else None
    return ClusterProtocol(version, tuple(behind))


def publication(software: str, protocols: ProtocolRange) -> dict[str, object]:
    """What a node adds to its membership metadata so that every member knows its version."""
    return {"software": software, "protocols": [protocols.low, protocols.high]}


def published(meta: Mapping[str, object] | None) -> tuple[str | None, ProtocolRange | None]:
    """The software version and protocol range in a member's metadata (C{None} where
    absent or malformed: metadata is a peer's word, read defensively)."""
    if not isinstance(meta, Mapping):
        return None, None
    software = meta.get("software")
    if not isinstance(software, str) or not 0 < len(software) <= 64:
        software = None
    value = meta.get("protocols")
    protocols = None
    if (isinstance(value, list) and len(value) == 2
            and all(type(v) is int and 0 < v < 2 ** 31 for v in value)
            and value[0] <= value[1]):
        protocols = ProtocolRange(value[0], value[1])
    return software, protocols


def enabled(since: int, cluster: ClusterProtocol) -> bool:
    """Whether a behaviour added in protocol C{since} may be used: every member speaks it."""
    return cluster.version is not None and cluster.version >= since
