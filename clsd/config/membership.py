"""The ``[membership]`` table: who may join, failure detection and gossip timing, K and H.

Defaults are for a LAN (sub-millisecond round trips, rare loss); each one
says why it is what it is.
"""

import fnmatch
import re
from collections.abc import Iterable

import attrs

#: What a pattern of ``allow`` may hold: the characters of a node name and
#: the glob operators ``*``, ``?``, ``[...]`` and ``[!...]``.
_PATTERN_CHARACTERS = re.compile(r"^[A-Za-z0-9_.*?!\[\]-]+$")


def pattern_problem(pattern):
    """C{None} when C{pattern} is a usable ``allow`` glob, else a sentence saying why not.

    C{fnmatch} accepts any string, reading a lone ``[`` as a literal; here a
    pattern that could never match a node name, or whose brackets do not
    pair, is a mistake to report rather than a silent "admit nobody".
    """
    if not pattern:
        return "is empty"
    if not _PATTERN_CHARACTERS.match(pattern):
        return ("may hold only the characters of node names (letters, digits, '_', '.', "
                "'-') and the glob operators '*', '?', '[...]', '[!...]'")
    i = 0
    while i < len(pattern):
        c = pattern[i]
        if c == "]":
            return f"has a ']' without '[' (at {i + 1})"
        if c == "!":
            return f"has a '!' outside '[...]' (at {i + 1}); '[!...]' excludes characters"
        if c == "[":
            start = i
            i += 1
            if i < len(pattern) and pattern[i] == "!":
                i += 1
            if i < len(pattern) and pattern[i] == "]":
                i += 1  # a leading ']' is a member of the set, as in fnmatch
            while i < len(pattern) and pattern[i] != "]":
                if pattern[i] in "[*?!":
                    return f"has {pattern[i]!r} inside '[...]' (at {i + 1})"
                i += 1
            if i >= len(pattern):
                return f"has a '[' that is never closed (at {start + 1})"
        i += 1
    return None


def allows(patterns: Iterable[str] | None, name: str) -> bool:
    """Whether node C{name} is admitted by C{patterns} (C{None}: every name)."""
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


@attrs.frozen
class MembershipConfig:
    #: Glob patterns (C{fnmatch.fnmatchcase}) of the node names this node
    #: accepts as peers, by the name in their certificate. C{None} (the
    #: default) admits every name the cluster CA signed: the CA is trusted
    #: completely. Re-read on ``reload``.
    allow: tuple | None = None
    #: Each subject sends one heartbeat per second to each of its K observers:
    #: K messages per node per second whatever N is (8 at the default K).
    heartbeat_interval: float = 1.0
    #: A subject silent this long (about 4 lost heartbeats in a row) is
    #: reported by its observer. Pauses up to failure_timeout -
    #: heartbeat_interval - latency (about 3 s) go unnoticed.
    failure_timeout: float = 4.0
    #: A closed connection that stays closed this long is a report: a killed
    #: process closes its sockets, so crashes are seen in about 1 s, while a
    #: reconnect (which takes milliseconds) is forgiven.
    link_down_grace: float = 1.0
    #: K: observers per node (Rapid uses 10; 8 keeps 8 messages/node/s and
    #: still tolerates two flaky observers with H = 6).
    observers: int = 8
    #: H: reports needed to declare a node failed (or all of its healthy
    #: observers). One flaky observer, or up to K - H, can never evict anyone.
    quorum: int = 6
    #: The slow path: a member suspected this long without refuting is
    #: declared dead even without H reports (SWIM's suspicion timeout). A
    #: responsive member refutes within a second or two; this only finishes
    #: cases where too few healthy observers can see the member, e.g. the
    #: far side of a partition. It is the minimum for up to 10 members;
    #: larger clusters and fewer reporters wait longer (Lifeguard; see
    #: membership.timing.suspicion_timeout).
    suspicion_timeout: float = 10.0
    #: News learnt is pushed to gossip_fanout neighbours this often until
    #: each piece has been sent retransmit_mult * ceil(log10(N + 1)) times
    #: (memberlist's LAN values: 200 ms, 3 nodes, 4).
    gossip_interval: float = 0.2
    gossip_fanout: int = 3
    retransmit_mult: int = 4
    #: At most this many pieces of news ride on one message (bounds its size).
    max_piggyback: int = 16
    #: Anti-entropy with one neighbour: a 64-bucket digest every 10 s is
    #: about 0.1 message/node/s; lists that differ are repaired bucket by bucket.
    sync_interval: float = 10.0
    #: Every 30 s, try to reach one member believed dead, which heals a
    #: partition once it ends (one TLS handshake per node per 30 s, like Serf).
    reconnect_interval: float = 30.0
    #: Dead and left members are forgotten after a day (Serf's reconnect and
    #: tombstone timeout); a restart under the same name replaces its old
    #: record at once, so only retired machines wait this long.
    reap_after: float = 86400.0
    #: Lifeguard: a node that is itself slow may widen its timeouts up to
    #: this factor (memberlist's value).
    awareness_max: int = 8
    #: A seed that answers the connection but not the join is asked again.
    join_retry_interval: float = 2.0
    #: After announcing a graceful leave, keep gossiping this long before
    #: saying "done", so that the announcement gets out.
    leave_timeout: float = 1.0


def parse_membership(table, node_name=None):
    """Build a L{MembershipConfig} from the ``[membership]`` L{Table} (or None).

    @param node_name: this node's name: C{allow} must admit it. Every node
        of a cluster normally shares one list, so a list that leaves out its
        own node's name (a typo) would have every other node refuse this one.
    """
    if table is None:
        return MembershipConfig()
    d = MembershipConfig()
    allow = _parse_allow(table, node_name)
    heartbeat = table.number("heartbeat_interval", d.heartbeat_interval, minimum=0.01,
                             maximum=60.0)
    timeout = table.number("failure_timeout", d.failure_timeout, positive=True,
                           maximum=600.0)
    if timeout < 2 * heartbeat:
        raise table.error(
            "failure_timeout",
            f"must be at least twice heartbeat_interval ({2 * heartbeat!r}), got {timeout!r}",
        )
    grace = table.number("link_down_grace", d.link_down_grace, minimum=0.0, maximum=600.0)
    suspicion = table.number("suspicion_timeout", d.suspicion_timeout, positive=True,
                             maximum=3600.0)
    observers = table.integer("observers", d.observers, minimum=1, maximum=16)
    quorum = table.integer("quorum", d.quorum, minimum=1)
    if quorum > observers:
        raise table.error("quorum", f"must not exceed observers ({observers}), got {quorum}")
    gossip_interval = table.number("gossip_interval", d.gossip_interval, minimum=0.01,
                                   maximum=60.0)
    fanout = table.integer("gossip_fanout", d.gossip_fanout, minimum=1, maximum=32)
    mult = table.integer("retransmit_mult", d.retransmit_mult, minimum=1, maximum=32)
    piggyback = table.integer("max_piggyback", d.max_piggyback, minimum=1, maximum=32)
    sync = table.number("sync_interval", d.sync_interval, minimum=0.1, maximum=3600.0)
    reconnect = table.number("reconnect_interval", d.reconnect_interval, minimum=0.1,
                             maximum=86400.0)
    reap = table.number("reap_after", d.reap_after, minimum=1.0)
    awareness = table.integer("awareness_max", d.awareness_max, minimum=1, maximum=64)
    join_retry = table.number("join_retry_interval", d.join_retry_interval, minimum=0.01,
                              maximum=3600.0)
    leave = table.number("leave_timeout", d.leave_timeout, minimum=0.0, maximum=600.0)
    table.finish()
    return MembershipConfig(
        allow=allow, heartbeat_interval=heartbeat, failure_timeout=timeout, link_down_grace=grace,
        suspicion_timeout=suspicion, observers=observers, quorum=quorum, gossip_interval=gossip_interval,
        gossip_fanout=fanout, retransmit_mult=mult, max_piggyback=piggyback,
        sync_interval=sync, reconnect_interval=reconnect, reap_after=reap,
        awareness_max=awareness, join_retry_interval=join_retry, leave_timeout=leave,
    )


def _parse_allow(table, node_name):
    if "allow" not in table:
        return None
    patterns = table.string_list("allow")
    if not patterns:
        raise table.error(
            "allow", "must not be empty (leave it out to admit every node the cluster CA signed)")
    for index, pattern in enumerate(patterns):
        problem = pattern_problem(pattern)
        if problem is not None:
            raise table.error(f"allow[{index}]", f"the pattern {pattern!r} {problem}")
    if node_name is not None and not allows(patterns, node_name):
        raise table.error(
            "allow",
            f"does not admit this node's own name {node_name!r}: the other nodes, sharing "
            "this list, would refuse it (add the name or a pattern that matches it)")
    return tuple(patterns)
