"""The Twisted shell of membership: drives one node's L{Core} on a reactor.

L{MembershipService} feeds the core the peer layer's events (links up and
down, messages, through the L{clsd.wire.router.Router}) and its own timers,
with the injected monotonic clock, and carries out the core's actions:

===================  ==========================================================
action               carried out by
===================  ==========================================================
C{Connect}           C{network.connect((host, port))}: kept, redialled with backoff
C{Disconnect}        C{network.disconnect((host, port))}
C{Send}              C{network.send_to(name, message)} (dropped if not connected)
C{SetTimer}          one C{callLater} per timer name, replaced when set again
C{CancelTimer}       cancels that C{callLater}
C{MemberChanged}     the event log (with the core's reason) and the log
C{MetaChanged}       listeners (see below)
C{Joined}            the event log; listeners
C{LeaveDone}         the Deferred of L{stopService} fires
===================  ==========================================================

Listeners (L{add_listener}) receive C{{name: meta_dict_or_None}} of every live
member but this node (alive or suspect: a suspect may still refute) whenever
that changes: that is how ownership learns who is up and what it holds. The
view is kept up to date from the core's C{MemberChanged} and C{MetaChanged}
actions (O(1) per change); it is copied only when there is a listener to tell.
"""

import time

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from clsd.config.address import format_host_port
from clsd.layers import MEMBERSHIP_TYPES, membership_message
from clsd.membership.core.members import IN_RING, decode_meta
from clsd.membership.core.messages import Heartbeat
from clsd.membership.core.node import (
    CancelTimer, Connect, Core, Disconnect, Expel, ForceRemove, Joined, JoinRequested, LeaveDone,
    LeaveRequested, LinkDown, LinkUp, MemberChanged, MembershipError, MetaChanged, Send,
    SetTimer, TimerFired,
)

#: How much longer than the core's own leave_timeout a graceful leave may
#: take at shutdown before the daemon stops anyway (a reactor busy with the
#: rest of the shutdown may fire the leave timer late).
LEAVE_GRACE = 2.0


def split_address(address):
    """``host:port`` (IPv6 in brackets) into C{(host, port)}; ValueError if not one."""
    host, sep, port = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"not a host:port address: {address!r}")
    return (host, int(port))


class MembershipService(Service):
    """One node's membership (see the module docstring).

    @param network: the L{clsd.wire.network.PeerNetwork} (C{connect},
        C{disconnect}, C{send_to}, C{advertise}, C{listen_address}).
    @param router: the network's L{clsd.wire.router.Router}; membership
        registers its message types and link events there.
    @param seeds: C{(host, port)} addresses to join through.
    @param generation: this start's generation (default: the network's,
        nanoseconds of wall time at start-up: larger after every restart).
    @param cache: a L{clsd.membership.core.rings.SnapshotCache} shared by the
        nodes of one process (L{rig.multinode}); default: private.
    @param notary: signs this node's reports and checks others'
        (L{clsd.membership.core.notary.X509Notary} from the node's TLS identity;
        the daemon always gives one). A message whose proof fails raises
        L{clsd.wire.core.errors.Forged} out of the router's call, which closes
        the connection as C{forged}.
    """

    log = Logger()

    def __init__(self, *, name, config, network, router, reactor, events, seeds=(),
                 monotonic=time.monotonic, generation=None, rng=None, cache=None,
                 notary=None):
        self.setName("membership")
        self.node_name = name
        self.config = config
        self.network = network
        self.reactor = reactor
        self.events = events
        self.seeds = tuple(format_host_port(s) for s in seeds)
        self._monotonic = monotonic
        self._generation = generation
        self._rng = rng
        self._cache = cache
        self._notary = notary
        self.core = None
        self._timers = {}
        self._listeners = []
        self._change_listeners = []
        #: The live members but this node: name -> decoded meta (None if none).
        self._live = {}
        #: Whether listeners have not yet been told the current view.
        self._live_changed = True
        self._leave_waiters = []
        self._left = False
        self._beat_wire = None
        router.route([t.name for t in MEMBERSHIP_TYPES], self._received)
        router.watch(self._link_up, self._link_down)

    # -- what others use ----------------------------------------------------------

    def add_listener(self, listener):
        """Call C{listener({name: meta_or_None})} on every change of the live members."""
        self._listeners.append(listener)
        if self.core is not None:
            listener(self.live_members())

    def live_members(self):
        """C{{name: meta dict or None}} of the live members other than this node."""
        return dict(self._live)

    def _track_live(self, member, removed=False):
        """Keep L{live_members} up to date with one changed record."""
        name = member.name
        if name == self.node_name:
            return
        if removed or member.state not in IN_RING:
            if self._live.pop(name, _ABSENT) is not _ABSENT:
                self._live_changed = True
            return
        meta = decode_meta(member.meta) if member.meta else None
        if self._live.get(name, _ABSENT) != meta:
            self._live[name] = meta
            self._live_changed = True

    def set_meta(self, meta):
        """Publish C{meta} (a small JSON-able dict) about this node; MetaError if unfit."""
        if self.core is None:
            self._pending_meta = meta
            return
        self._execute(self.core.set_meta(meta, self._monotonic()))

    _pending_meta = None

    def refused(self):
        """News refused for want of proof or as impossible, by reason (counts since start)."""
        return dict(self.core.refused) if self.core is not None else {}

    def members(self):
        """The core's L{MemberInfo}s (this node included), or () before start."""
        return self.core.members() if self.core is not None else ()

    def leave(self):
        """Start a graceful leave; a Deferred that fires when it is announced."""
        waiter = defer.Deferred()
        if self._left:
            waiter.callback(None)
            return waiter
        self._leave_waiters.append(waiter)
        self._handle(LeaveRequested())
        return waiter

    def force_remove(self, name):
        """Declare dead member C{name} gone; L{MembershipError} says why not."""
        if self.core is None:
            raise MembershipError("membership is not running")
        self._execute(self.core.handle(ForceRemove(name), self._monotonic()))

    def expel(self, name, reason):
        """Declare member C{name} gone at once: this node no longer admits it (L{Expel})."""
        if self.core is not None:
            self._execute(self.core.handle(Expel(name, reason), self._monotonic()))

    # -- IService -----------------------------------------------------------------

    def startService(self):
        super().startService()
        generation = self._generation
        if generation is None:
            generation = getattr(self.network, "generation", None) or time.time_ns()
        advertise = self.network.advertise or self.network.listen_address
        self.core = Core(self.node_name, format_host_port(advertise), generation,
                         self.config, rng=self._rng, cache=self._cache, notary=self._notary)
        for info in self.core.members():
            self._track_live(info.member)
        if self._pending_meta is not None:
            self.core.set_meta(self._pending_meta, self._monotonic())
        self.events.record("membership", self.node_name, "joining",
                           generation=generation, seeds=list(self.seeds))
        self._handle(JoinRequested(self.seeds))

    def stopService(self):
        """Leave gracefully: wait (bounded) until the leave is announced, then stop timers."""
        super().stopService()
        if self.core is None:
            return defer.succeed(None)
        d = self.leave()
        bound = self.config.leave_timeout + LEAVE_GRACE
        timeout = self.reactor.callLater(bound, d.cancel)
        d.addErrback(lambda f: f.trap(defer.CancelledError) and self.events.record(
            "membership", self.node_name, f"leave not announced within {bound:g} s"))
        d.addBoth(lambda _: timeout.cancel() if timeout.active() else None)
        d.addBoth(lambda _: self._cancel_timers())
        return d

    def _cancel_timers(self):
        for call in self._timers.values():
            if call.active():
                call.cancel()
        self._timers.clear()

    # -- events in ------------------------------------------------------------------

    def _handle(self, event):
        if self.core is None:
            return
        self._execute(self.core.handle(event, self._monotonic()))

    def _received(self, peer, message):
        if self.core is None:
            return
        self._execute(self.core.receive(peer.name, message.parsed, self._monotonic()))

    def _link_up(self, peer):
        address = None
        if peer.initiator and peer.address is not None:
            address = format_host_port(peer.address)
        self._handle(LinkUp(peer.name, address))

    def _link_down(self, peer, reason):
        self._handle(LinkDown(peer.name))

    def _fire(self, name):
        self._timers.pop(name, None)
        self._handle(TimerFired(name))

    # -- actions out --------------------------------------------------------------------

    def _execute(self, actions):
        members_changed = False
        for action in actions:
            kind = type(action)
            if kind is Send:
                self.network.send_to(action.to, self._wire(action.message))
            elif kind is SetTimer:
                old = self._timers.pop(action.name, None)
                if old is not None and old.active():
                    old.cancel()
                delay = max(0.0, action.at - self._monotonic())
                self._timers[action.name] = self.reactor.callLater(delay, self._fire, action.name)
            elif kind is CancelTimer:
                old = self._timers.pop(action.name, None)
                if old is not None and old.active():
                    old.cancel()
            elif kind is Connect:
                try:
                    self.network.connect(split_address(action.address))
                except ValueError as e:
                    self.log.warn("membership: cannot connect to {name}: {error}",
                                  name=action.name, error=str(e))
            elif kind is Disconnect:
                try:
                    self.network.disconnect(split_address(action.address))
                except ValueError:
                    pass
            elif kind is MemberChanged:
                self._member_changed(action)
                self._track_live(action.member, action.removed)
                members_changed = True
            elif kind is MetaChanged:
                self._track_live(action.member)
                members_changed = True
            elif kind is Joined:
                self.events.record("membership", self.node_name, "joined the cluster",
                                   members=len(self.core))
                members_changed = True
            elif kind is LeaveDone:
                self._left = True
                self.events.record("membership", self.node_name, "left the cluster")
                waiters, self._leave_waiters = self._leave_waiters, []
                for waiter in waiters:
                    waiter.callback(None)
        if members_changed:
            self._notify()

    def _wire(self, message):
        """The peer-layer message for C{message}; a plain heartbeat is built once.

        The core hands out the same heartbeat object to every watcher, tick
        after tick, until our record changes: one wire message for it lets
        each connection's codec reuse the line it encoded last time.
        """
        if type(message) is Heartbeat and not message.updates:
            cached = self._beat_wire
            if cached is None or cached[0] is not message:
                cached = self._beat_wire = (message, membership_message(message))
            return cached[1]
        return membership_message(message)

    def _member_changed(self, action):
        member = action.member
        previous = action.previous.state.value if action.previous is not None else None
        state = "removed" if action.removed else member.state.value
        # Logged as member.* (clsd.named_events); ownership keeps the
        # departures for its cause chains ("why did A move").
        record = self.events.record("member", member.name, action.reason, state=state,
                                    previous=previous, address=member.address,
                                    generation=member.generation,
                                    incarnation=member.incarnation,
                                    reporters=list(action.reporters))
        # Test rigs read "member NAME is STATE" from the text log (rig/failover.py).
        self.log.info("member {name} is {state}: {reason}", name=member.name, state=state,
                      reason=action.reason)
        for listener in self._change_listeners:
            try:
                listener(record)
            except Exception:
                self.log.failure("membership change listener {listener} failed",
                                 listener=listener)

    def add_change_listener(self, listener):
        """Call C{listener(record)} with the event record of every member change."""
        self._change_listeners.append(listener)

    def _notify(self):
        if not self._live_changed:
            return
        self._live_changed = False
        if not self._listeners:
            return  # a listener added later is given the view at once
        live = self.live_members()
        for listener in self._listeners:
            try:
                listener(live)
            except Exception:
                self.log.failure("membership listener {listener} failed", listener=listener)


_ABSENT = object()
