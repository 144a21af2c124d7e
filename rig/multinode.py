"""Many real cluster nodes in one process: for scale tests and the membership benchmark.

Each hosted node is what a daemon runs for membership, nothing faked: its
own loopback address (127.0.1.1, 127.0.1.2, ... then 127.0.2.x: never
outside 127.0.0.0/8), its own certificate from one cluster CA, its own
L{PeerNetwork} (a mutual-TLS listener and dialers bound to its address) and
L{MembershipService}, all on the one reactor given, signing its reports and
leave with its own key (the daemon's L{X509Notary}). Only three things differ
from a daemon, all to keep N nodes in one process from paying N times for
what N processes would each pay once:

 - the member-list snapshots are shared through one L{SnapshotCache}
   (nodes that agree hold one copy, as in the simulator);
 - the notaries share one L{VerifiedCache}: each certificate and signed
   statement is verified once per process, not once per hosted node;
 - each node's event log is a L{ViewTracker} entry, which keeps every
   node's view of every other node (for the measurements) instead of
   formatting and logging each of the N * N membership events.

Issuing certificates is cheap (about 0.2 ms each for ECDSA P-256 here, 1024
in a fraction of a second), so they are made in memory for each run.

L{HostedNode.crash} is a crash as the peers see it: the listener stops, every
connection is aborted (the kernel closes the sockets; no bye, no leave) and
the node's timers stop, like a C{kill -9} of its daemon.
"""

import collections
import ipaddress
import itertools
import resource
import time

from twisted.internet import defer, task
from twisted.logger import Logger

from clsd.certs.authority import create_authority, issue_node_certificate
from clsd.certs.identity import NodeIdentity
from clsd.config.membership import MembershipConfig
from clsd.layers import node_registry
from clsd.membership.core.notary import VerifiedCache, X509Notary
from clsd.membership.core.rings import SnapshotCache
from clsd.membership.service import MembershipService
from clsd.wire.core.lag import ReactorLag
from clsd.wire.network import PeerNetwork
from clsd.wire.router import Router
from clsd.wire.tls import PeerTLS
from rig.faults.topology import check_loopback

#: The first hosted node's address: away from 127.0.0.x, where the default
#: source address (127.0.0.1) and the other rigs' address pool live.
FIRST_ADDRESS = "127.0.1.1"
#: Hosts per /24 used (.1 to .250), like the rig pool.
PER_BLOCK = 250
#: File descriptors per hosted node: its listener, and both ends (both in
#: this process) of up to about 2K connections, with room to spare.
FDS_PER_NODE = 40


def loopback_addresses(count, first=FIRST_ADDRESS):
    """C{count} addresses from C{first}: .1-.250 of each /24, then the next /24.

    @raise ValueError: if they would leave 127.0.0.0/8.
    """
    start = ipaddress.ip_address(check_loopback(first))
    third, last = start.packed[2], start.packed[3]
    if not 1 <= last <= PER_BLOCK:
        raise ValueError(f"{first}: the last octet must be 1-{PER_BLOCK}")
    second = start.packed[1]
    room = ((255 - second) * 256 + (255 - third)) * PER_BLOCK + (PER_BLOCK - last + 1)
    if count > room:
        raise ValueError(f"{count} addresses from {first} do not fit in 127.0.0.0/8")
    addresses = []
    for _ in range(count):
        addresses.append(check_loopback(f"127.{second}.{third}.{last}"))
        last += 1
        if last > PER_BLOCK:
            last = 1
            third += 1
            if third > 255:
                third, second = 0, second + 1
    return addresses


def raise_file_limit(needed):
    """Raise RLIMIT_NOFILE to at least C{needed} if allowed; return the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY or hard >= needed else None
    if target is None:
        try:  # root may raise the hard limit too
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
        except (ValueError, OSError):
            target = hard
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def node_name(index, total):
    """The name of node C{index} of C{total}: n0000, n0001, ... (wider past 9999)."""
    return f"n{index:0{max(4, len(str(total - 1)))}d}"


def address_of(index, first=FIRST_ADDRESS):
    """The loopback address of node C{index} when nodes are numbered from C{first}.

    Hosts in several processes give each a contiguous run of indexes and
    start it at C{address_of(first_index)}, so that every node in the
    cluster keeps an address of its own.
    """
    return loopback_addresses(index + 1, first)[-1]


class Identities:
    """One cluster CA and a node identity per name, made in memory.

    @param authority: the CA to issue from (a L{KeyAndCertificate}); by
        default a new one. Hosts in several processes share one CA so that
        their nodes accept each other.
    """

    def __init__(self, authority=None):
        self.authority = authority if authority is not None else create_authority(None)

    def identity(self, name):
        pair = issue_node_certificate(self.authority, name)
        return NodeIdentity(name=name, key=pair.key, certificate=pair.certificate,
                            ca_certificates=(self.authority.certificate,))


class ViewTracker:
    """Every hosted node's view of every other node, fed by their membership events.

    Kept incrementally (O(1) per event), so that "has every node seen all N
    alive" and "has every live node declared X dead" are cheap to ask, and
    the moment each became true is known to the event, not to a poll.
    """

    def __init__(self, monotonic):
        self._monotonic = monotonic
        self.views = {}          # observer -> {subject: state}
        self.alive_counts = {}   # observer -> members it sees alive, itself included
        self.changed_at = {}     # (observer, subject) -> (state, time)
        self.joined_at = {}      # observer -> time it joined
        self.events = 0
        self._watches = []

    def log_for(self, observer):
        self.views[observer] = {}
        self.alive_counts[observer] = 1
        return _NodeEvents(self, observer)

    def forget(self, observer):
        """A crashed node's view no longer counts."""
        self.views.pop(observer, None)
        self.alive_counts.pop(observer, None)

    def state(self, observer, subject):
        return self.views.get(observer, {}).get(subject)

    def _member(self, observer, subject, state, reason=None):
        view = self.views.get(observer)
        if view is None:
            return
        self.events += 1
        old = view.get(subject)
        view[subject] = state
        if old == "alive":
            self.alive_counts[observer] -= 1
        if state == "alive":
            self.alive_counts[observer] += 1
        self.changed_at[(observer, subject)] = (state, self._monotonic())

    def min_alive(self):
        return min(self.alive_counts.values()) if self.alive_counts else 0

    def declared(self, subject, states=("dead", "removed", "left")):
        """Live observers (other than C{subject}) that see C{subject} in C{states}."""
        return [o for o, view in self.views.items()
                if o != subject and view.get(subject) in states]


class _NodeEvents:
    """A node's event log, as far as the membership service uses one."""

    def __init__(self, tracker, observer):
        self._tracker = tracker
        self._observer = observer

    def record(self, kind, subject, reason, **fields):
        if kind == "member":
            self._tracker._member(self._observer, subject, fields.get("state"), reason)
        elif kind == "membership" and reason == "joined the cluster":
            self._tracker.joined_at[self._observer] = self._tracker._monotonic()


class _Quiet(Logger):
    """A logger that drops its events: N nodes' N * N member changes are counted instead."""

    def emit(self, level, format=None, **kwargs):
        pass


class HostedNode:
    """One node's peer network and membership; built by L{MultiNodeHost}."""

    def __init__(self, host, name, address, seeds):
        self.name = name
        self.address = address
        self.router = Router()
        self.identity = host.identities.identity(name)
        self.network = PeerNetwork(
            reactor=host.reactor, tls=PeerTLS(self.identity), name=name,
            listen=(address, 0), handler=self.router, registry=host.registry,
            settings=host.settings, monotonic=host.monotonic, join=(), lag=host.lag)
        self.events = host.tracker.log_for(name)
        self._host = host
        #: Hosted nodes (their address once listening) or C{(host, port)}
        #: addresses of nodes elsewhere (another process).
        self._seeds = seeds
        self.membership = None
        self.crashed = False

    def start(self):
        """Listen (synchronously: a port in use raises here), then join."""
        host = self._host
        self.network.startService()
        seeds = [seed.network.advertise if isinstance(seed, HostedNode) else tuple(seed)
                 for seed in self._seeds]
        self.membership = MembershipService(
            name=self.name, config=host.config, network=self.network, router=self.router,
            reactor=host.reactor, events=self.events, seeds=seeds, monotonic=host.monotonic,
            cache=host.cache,
            notary=X509Notary(self.identity, host.verified))
        if host.quiet:
            self.membership.log = _Quiet()
        self.membership.startService()

    @property
    def core(self):
        return self.membership.core if self.membership is not None else None

    def crash(self):
        """Die as a killed process does: sockets closed, nothing said, nothing more done."""
        if self.crashed:
            return
        self.crashed = True
        self._host.tracker.forget(self.name)
        membership = self.membership
        if membership is not None:
            membership._cancel_timers()
            membership.core = None  # events that still arrive are ignored
        network = self.network
        network.running = False  # a killed process arms no timer any more (refusal summaries)
        summary, network._summary_call = network._summary_call, None
        if summary is not None and summary.active():
            summary.cancel()
        port, network._port = network._port, None
        if port is not None:
            port.stopListening()
        for protocol in network.connections():
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        # The dialers would redial after their backoff: stop them. Their
        # connections are already aborted, so nothing more is written.
        for dialer in list(network._dialers.values()):
            dialer.current = None
            dialer.service.stopService()
        network._dialers.clear()

    def stop(self):
        """A graceful stop: leave, then close with a bye."""
        d = defer.maybeDeferred(self.membership.stopService)
        d.addCallback(lambda _: self.network.stopService())
        return d


class MultiNodeHost:
    """N real nodes on one reactor; node 0 forms the cluster, the others join through it.

    @param monotonic: the membership clock (time.monotonic for real sockets).
    @param quiet: drop the per-member-change log lines (see L{_Quiet}).
    @param seeds: how many of the first hosted nodes the others join through.
    @param seed_addresses: C{(host, port)} of nodes in another process to
        join through instead; then every hosted node joins through them.
    @param first_index: the number in the first node's name: hosts in
        several processes number their nodes apart (n0000-n0127, n0128-...).
    @param total: the whole cluster's size, for the width of the names.
    @param authority: the cluster CA (shared by hosts in several processes).
    @param tracker: the L{ViewTracker} to feed (default: a plain one).
    """

    def __init__(self, reactor, count, *, config=None, first_address=FIRST_ADDRESS,
                 monotonic=time.monotonic, settings=None, quiet=True, seeds=1,
                 seed_addresses=(), first_index=0, total=None, authority=None,
                 tracker=None):
        self.reactor = reactor
        self.config = config if config is not None else MembershipConfig()
        self.monotonic = monotonic
        self.settings = settings if settings is not None else {"bench": "multinode"}
        self.quiet = quiet
        self.registry = node_registry()
        self.cache = SnapshotCache()
        #: Every node signs with its own key (the real notary); verdicts on
        #: certificates and signed reports are shared, as a verdict does not
        #: depend on who asks: each is checked once per process.
        self.verified = VerifiedCache()
        self.identities = Identities(authority)
        self.tracker = tracker if tracker is not None else ViewTracker(monotonic)
        #: One lag monitor for the process: every hosted node's handshakes
        #: are forgiven the process's own stalls (clsd.wire.core.lag).
        self.lag = ReactorLag(reactor, monotonic)
        total = max(total or 0, first_index + count)
        self.file_limit = raise_file_limit(FDS_PER_NODE * count + 256)
        addresses = loopback_addresses(count, first_address)
        self.nodes = []
        seed_addresses = tuple(tuple(a) for a in seed_addresses)
        for i, address in enumerate(addresses):
            seeds_here = seed_addresses or tuple(self.nodes[:min(i, seeds)])
            node = HostedNode(self, node_name(first_index + i, total), address, seeds_here)
            self.nodes.append(node)

    def __len__(self):
        return len(self.nodes)

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def live(self):
        return [n for n in self.nodes if not n.crashed]

    def join_through(self, addresses):
        """Join every hosted node through these C{(host, port)} addresses (another process's nodes)."""
        addresses = tuple(tuple(a) for a in addresses)
        for node in self.nodes:
            if node.membership is not None:
                raise ValueError(f"{node.name} has started already")
            node._seeds = addresses

    def start(self, batch=None, pause=0.0):
        """Start every node; a Deferred that fires when all are started.

        @param batch: start this many per reactor turn (default: all at
            once), so that connections already made are served meanwhile.
        """
        nodes = list(self.nodes)
        batch = batch or len(nodes)
        self.lag.start()
        first = self.monotonic()
        steps = itertools.count(1)

        def step():
            chunk = nodes[:batch]
            del nodes[:batch]
            for node in chunk:
                node.start()
            if nodes:
                # Batch k is due k pauses after the first, however late this
                # one ran: machines that boot do not wait for each other, and
                # a pause counted from the last batch made a saturated worker
                # start nodes at half the pace asked for.
                due = first + next(steps) * pause
                return task.deferLater(self.reactor, max(0.0, due - self.monotonic()), step)
            return None

        return defer.maybeDeferred(step)

    def all_joined(self):
        """Every live node sees every live node alive (itself included)."""
        return self.tracker.min_alive() >= len(self.live())

    def declared_dead_by_all(self, name):
        return len(self.tracker.declared(name)) >= len(self.live()) - (
            0 if self.node(name).crashed else 1)

    def peer_totals(self):
        """Sum of every live node's peer counters (messages and bytes, in and out)."""
        totals = {"messages_in": 0, "messages_out": 0, "bytes_in": 0, "bytes_out": 0,
                  "connections": 0, "established": 0}
        closed = collections.Counter()
        for node in self.live():
            stats = node.network.stats
            for key in totals:
                totals[key] += getattr(stats, key)
            closed.update(stats.closed)
        totals["closed"] = dict(closed)
        return totals

    def connection_count(self):
        return sum(len(n.network.connections()) for n in self.live())

    def shutdown(self):
        """Crash every node (fast, no leave), then let the reactor see the sockets close.

        Fires once every connection of every node has ended, so that a test's
        reactor is clean.
        """
        self.lag.stop()
        for node in self.nodes:
            node.crash()

        def settled():
            return all(not n.network.connections() for n in self.nodes)

        def wait(remaining):
            if settled() or remaining <= 0:
                return None
            return task.deferLater(self.reactor, 0.01, wait, remaining - 1)

        return defer.maybeDeferred(wait, 500)
