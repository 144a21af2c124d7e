"""The Twisted shell of lease ownership: drives one node's core, carries out its actions.

L{OwnershipService} owns this node's L{OwnershipNode} (voter + cluster
manager), feeds it the time (an injected monotonic clock), messages, member
changes and process facts, wakes it at C{next_wakeup()}, and executes what it
returns, in order:

======================  ======================================================
action                  carried out by
======================  ======================================================
L{Send}                 the injected C{send(to, wire_dict)} (the peer network)
L{KillAt}               the cluster's L{ManagedService}: re-arm the lease guard
L{StartService}         the cluster's L{ManagedService}: start with CLSD_* env
L{StopService}          the cluster's L{ManagedService}: TERM, KILL by deadline
L{RunHook}              the L{HookRunner}; a fence's result goes back to the core
L{CancelFence}          the L{HookRunner}: kill an ended tenure's fence
L{PersistEpochFloor}    a durable write under data_dir, then C{voter.persisted}
L{PublishState}         the injected C{publish(wire_dict)} (membership gossips it)
L{ForgetCluster}        drop the cluster's L{ManagedService}, stop its runner
======================  ======================================================

Registrations change at runtime (reload): L{add_cluster} builds a cluster's
L{ManagedService} (the daemon then builds and L{attach}es its runner) and
L{register} tells the core; L{update_cluster} changes the in-place fields;
L{unregister} withdraws gracefully and fires once the core forgot the
cluster and its runner is gone.

It is a C{MultiService}: the managed services' runners are its children, so
that on shutdown it first hands its clusters over (standby: stop, release,
the successor acquires at once), then stops the runners, and only then the
lease guard.

The transport is injected, not built here (see L{connect}): the peer
network calls L{receive} with the authenticated sender, membership calls
L{members_changed} with every live member's published dict.

What the operator sees is elsewhere: the core's reports become event records
in L{clsd.ownership.reports}, and admin ``status`` is read by
L{clsd.admin.ownership_status}.
"""

import collections
import functools
import random as _random

from twisted.application.service import MultiService
from twisted.internet import defer, task
from twisted.logger import Logger

from clsd.clock import lease_clock
from clsd.wire.core.errors import Forged

from clsd.ownership.core.actions import (
    CancelFence, ForgetCluster, KillAt, PersistEpochFloor, PublishState, Report, RunHook, Send, StartService,
    StopService,
)
from clsd.ownership.core.cause import Departures
from clsd.ownership.core.managed import ManagedService
from clsd.ownership.core.manager import ManagerError
from clsd.ownership.core.messages import MESSAGE_TYPES, WireError, from_wire
from clsd.ownership.core.node import OwnershipNode
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.published import state_from_wire, state_to_wire
from clsd.ownership.floor import FloorError, read_floor, write_floor
from clsd.ownership.guard import GuardClient
from clsd.ownership.hooks import HookRunner
from clsd.ownership.floating import AddressKeeper
from clsd.ownership.managed_group import ManagedGroup
from clsd.supervision.spawn import service_spawner
from clsd.ownership.reports import ReportRecorder

#: A failed write of the epoch floor is retried this often (the voter
#: refuses ballots above its reserved floor meanwhile: safe, not live).
PERSIST_RETRY = 1.0

#: When the core's next wake-up is not later than the last tick, wait at
#: least this long (no busy loop on a core that keeps asking for "now").
MIN_TICK = 0.005

def cold_start_settle(config):
    """How long after a start a node waits, at most, for membership to settle.

    Until every live peer is seen with its registrations, a node does not take
    a cluster nobody holds: a better candidate started at the same moment may
    not be visible yet.  The bound (the lease, the drift margin and two join
    retries: 6.1 s with the defaults) keeps a node whose peers are all down
    from waiting for ever.  None for a node with no seeds: it is the cluster.
    """
    if not config.node.join:
        return None
    quorum = config.quorum
    return quorum.lease + quorum.drift_margin + 2 * config.membership.join_retry_interval


#: At shutdown, how long the graceful handover may take beyond the longest
#: ``stop_timeout`` of a managed service before the runners are stopped anyway.
SHUTDOWN_GRACE = 2.0


class OwnershipService(MultiService):
    """One node's lease ownership, on a reactor.

    @param config: the L{clsd.config.Config} (needs ``[quorum]``).
    @param events: the daemon's L{clsd.events.EventLog}.
    @param guard: a L{GuardClient} (default: a real one, when this node has
        clusters), or a fake.
    @param hooks: a L{HookRunner} (default: a real one).
    @param send: C{send(to_node, wire_dict)}; see L{connect}.
    @param publish: C{publish(wire_dict)}: this node's ownership metadata.
    @param generation: this daemon start's proposer generation (default:
        63 random bits, fresh at every start).
    @param rng: a C{random.Random} for the core's jitter.
    """

    log = Logger()

    def __init__(self, config, reactor, *, events, monotonic=lease_clock, guard=None,
                 hooks=None, send=None, publish=None, generation=None, rng=None,
                 arbiter_io=None, floor_writer=write_floor):
        """
        @param floor_writer: C{write(data_dir, value)} that stores the voter's
            epoch floor durably (a fault-injecting one in tests).
        """
        super().__init__()
        if config.quorum is None:
            raise ValueError("lease ownership needs a [quorum] in the configuration")
        self.setName("ownership")
        self.config = config
        self.node_name = config.node.name
        self.data_dir = config.node.data_dir
        self._reactor = reactor
        self._events = events
        self._monotonic = monotonic
        self._send = send
        self._publish = publish
        system = _random.SystemRandom()
        self.generation = generation if generation is not None else system.getrandbits(63)
        self._rng = rng if rng is not None else _random.Random(system.getrandbits(64))
        if guard is None and config.clusters:
            guard = GuardClient(reactor, events=events, monotonic=monotonic)
        self.guard = guard
        self.hooks = hooks if hooks is not None else HookRunner(
            reactor, events=events, monotonic=monotonic)
        #: (IAddressDriver, Announcer) once a cluster has a floating address.
        self._addresses = None
        self._announce_sender = None
        self._managed = {}           # cluster id -> ManagedService
        self._managed_by_service = {}
        self._specs = {}             # cluster id -> ClusterConfig, in registration order
        self._forgotten = {}         # cluster id -> Deferreds waiting for ForgetCluster
        self._running = {}           # cluster id -> last reported "its service runs here"
        for cluster in config.clusters:
            self._add_managed(cluster)
        #: The core, once L{activate} built it.
        self.node = None
        #: Why the core is not running (None when it is, or not yet tried).
        self.inactive_reason = None
        self.counters = collections.Counter()
        #: The latest dead/left declaration of each node (for cause chains).
        self.departures = Departures()
        self._report_listeners = []
        self._recorder = ReportRecorder(events, self.node_name, self.departures, self.log,
                                        monotonic)
        self._members = {}           # name -> MemberState (live peers)
        self._published = None
        self._queue = collections.deque()
        self._busy = False
        self._tick_call = None
        self._last_tick = None
        self._persist_call = None
        self._write_floor = floor_writer
        #: (value, error text, failed attempts) while the floor cannot be stored.
        self.floor_failure = None
        self._stopping = False
        self._stop_waiters = []
        self._closed = False
        #: The arbiter's own I/O (etcd's gateway client) when it is not the voters.
        self.arbiter_io = arbiter_io
        if arbiter_io is None and config.quorum.arbiter == "etcd":
            from clsd.ownership.etcd.service import etcd_driver

            self.arbiter_io = etcd_driver(config, reactor, self._arbiter_input, events,
                                          monotonic)

    # -- wiring (the daemon, the peer network, membership) ------------------------

    def _add_managed(self, cluster):
        if cluster.group:
            managed = ManagedGroup(cluster.id, self.node_name, self.guard, cluster.members,
                                   monotonic=self._monotonic, report=self._report_later,
                                   later=self._later, n_active=cluster.mode == "n-active",
                                   record=functools.partial(self._events.record, "group",
                                                            cluster.id),
                                   keeper=self._keeper(cluster))
            for index, name in enumerate(cluster.members):
                self._managed_by_service[name] = managed.member(index)
        else:
            managed = ManagedService(cluster.id, self.node_name, self.guard,
                                     monotonic=self._monotonic, report=self._report_later,
                                     n_active=cluster.mode == "n-active",
                                     keeper=self._keeper(cluster))
            self._managed_by_service[cluster.service] = managed
        self._managed[cluster.id] = managed
        self._specs[cluster.id] = cluster
        return managed

    def _later(self, f, *args):
        self._reactor.callLater(0, f, *args)

    def _keeper(self, cluster):
        """The L{AddressKeeper} of C{cluster}'s floating address, or None without one."""
        if cluster.floating is None:
            return None
        if self._addresses is None:
            from clsd.address.announce import Announcer, default_sender
            from clsd.address.driver import default_driver

            self._announce_sender = default_sender()
            self._addresses = (default_driver(self._reactor),
                               Announcer(self._reactor, self._announce_sender))
        driver, announcer = self._addresses
        return AddressKeeper(
            cluster.id, cluster.floating, driver=driver, guard=self.guard,
            announce=lambda interface, address, count, interval: announcer.announce(
                interface, [address], count, interval),
            events=self._events, monotonic=self._monotonic, reactor=self._reactor)

    def address_status(self):
        """C{{cluster: {address: up here}}} for the clusters with a floating address."""
        return {cid: m.keeper.status() for cid, m in sorted(self._managed.items())
                if m.keeper is not None}

    @defer.inlineCallbacks
    def remove_leftover_addresses(self):
        """At start, before any tenure: this node's clusters' addresses left on an interface."""
        for managed in list(self._managed.values()):
            if managed.keeper is not None:
                yield managed.keeper.remove_leftovers()

    # -- registrations at runtime (reload) ---------------------------------------------

    def add_cluster(self, cluster, blocked=None):
        """Prepare C{cluster}'s managed service (then build and L{attach} its runner, then
        L{register}).  Starts the lease guard if this node had no cluster until now."""
        if cluster.id in self._managed:
            raise ManagerError(f"cluster {cluster.id!r} is already managed here")
        if self.guard is None:
            self.guard = GuardClient(self._reactor, events=self._events,
                                     monotonic=self._monotonic)
            for managed in self._managed.values():
                managed.guard = self.guard
        self._add_managed(cluster).blocked = blocked

    def register(self, cluster):
        """Tell the core about C{cluster} (added by L{add_cluster}); a Deferred.

        It fires once the core has it (and the lease guard runs, so that a
        grant can start the service at once).
        """
        d = defer.succeed(None)
        if self.guard is not None and not self.guard.running:
            d = self.guard.start()
        d.addCallback(lambda _: self._admin("register", cluster))
        return d

    def update_cluster(self, cluster):
        """Change the in-place fields (priority, preempt, hooks, cooldown) of C{cluster}."""
        self._admin("register", cluster)
        self._specs[cluster.id] = cluster

    def unregister(self, cluster_id):
        """Withdraw from C{cluster_id} like standby does; a Deferred.

        It fires (with the runner, now stopped and detached) once the service
        is stopped, the lease released and the core has forgotten the cluster.
        """
        waiter = defer.Deferred()
        self._forgotten.setdefault(cluster_id, []).append(waiter)
        try:
            self._admin("unregister", cluster_id)
        except ManagerError:
            self._forgotten[cluster_id].remove(waiter)
            raise
        return waiter

    def _forget(self, cluster_id):
        managed = self._managed.pop(cluster_id, None)
        spec = self._specs.pop(cluster_id, None)
        if spec is not None:
            for name in spec.members:
                self._managed_by_service.pop(name, None)
        runners = _runners(managed) if managed is not None else []
        runner = managed.runner if isinstance(managed, ManagedService) else runners
        d = defer.DeferredList([defer.maybeDeferred(r.disownServiceParent)
                                for r in runners if r.parent is not None])
        self._events.record("ownership", cluster_id, "cluster unregistered here")
        waiters = self._forgotten.pop(cluster_id, [])
        d.addBoth(lambda _: [w.callback(runner) for w in waiters])

    def manages(self, service_name):
        """Whether C{[[service]]} C{service_name} runs under a lease here."""
        return service_name in self._managed_by_service

    def spawner(self, service, base_spawn=None):
        """The runner's C{spawn(protocol)} for managed C{service} (a ServiceConfig)."""
        if base_spawn is None:
            base_spawn = service_spawner(self._reactor, service)
        return self._managed_by_service[service.name].wrap(base_spawn)

    def attach(self, runner):
        """Adopt the L{ServiceRunner} of a managed service (it stops starting by itself)."""
        handle = self._managed_by_service[runner.service_name]
        handle.attach(runner)
        cluster_id = handle.cluster
        runner.add_observer(lambda _: self._check_running(cluster_id))

    def _check_running(self, cluster_id):
        """Tell the core when the cluster's service (a group: every member) starts or stops
        running here: it publishes it, for the clusters that follow this one (``after``)."""
        managed = self._managed.get(cluster_id)
        if managed is None:
            return
        if isinstance(managed, ManagedGroup):
            running = managed.owned and managed.service_state() == "running"
        else:
            running = managed.owned and managed.runner.state.value == "running"
        if running != self._running.get(cluster_id, False):
            self._running[cluster_id] = running
            self._report_later("service_running", cluster_id, running)

    def connect(self, send=None, publish=None):
        """Give the transport: C{send(to_node, wire_dict)}, C{publish(wire_dict)}.

        Until then messages are dropped (counted); the last published state
        is handed to C{publish} at once.
        """
        if send is not None:
            self._send = send
        if publish is not None:
            self._publish = publish
            if self._published is not None:
                self._do_publish(self._published)

    # -- IService -------------------------------------------------------------------

    def startService(self):
        super().startService()
        if self.guard is not None:
            d = self.guard.start()
            d.addCallback(lambda guard: self._events.record(
                "guard", "lease-guard", f"lease guard ready (pid {guard.pid}, started in "
                f"{guard.start_times[-1] * 1000:.1f} ms)"))

    def activate(self, stuck_services=()):
        """Build the core and start acting (after leftover process groups are reaped).

        C{stuck_services}: managed services whose leftover group could not be
        stopped; their clusters are given up here (C{service_failed}).
        """
        if self.node is not None:
            return
        for name in stuck_services:
            managed = self._managed_by_service.get(name)
            if managed is not None:
                managed.blocked = "a process group of its previous run is still present"
        try:
            floor = read_floor(self.data_dir)
        except FloorError as e:
            self.inactive_reason = str(e)
            self._events.record("ownership", self.node_name,
                                f"lease ownership not started: {e}")
            return
        now = self._monotonic()
        settle = cold_start_settle(self.config)
        self.node = OwnershipNode.from_config(
            self.config, now, generation=self.generation, rng=self._rng, epoch_floor=floor,
            settle_until=None if settle is None else now + settle)
        self._settled = settle is None
        self.inactive_reason = None
        self._events.record("ownership", self.node_name, "lease ownership started",
                            generation=self.generation, epoch_floor=floor,
                            voter=self.node.voter is not None)
        self._run(self.node.start)
        # Always, even with no member known yet: from now on the voter
        # answers only members registered for the cluster asked about.
        members = list(self._members.values())
        self._run(lambda now: self.node.members_changed(members, now))
        self._check_settled()

    def stopService(self):
        """Hand every cluster over, wait for the services, then stop runners, hooks, guard."""
        if self._closed:
            return defer.succeed(None)
        if self._stopping:
            waiter = defer.Deferred()
            self._stop_waiters.append(waiter)
            return waiter
        self._stopping = True
        if self.node is not None:
            self._run(lambda now: self.node.call("set_standby", True, now=now))
            # A cluster that others run with (``with``) stops after them.
            anchors = {a for spec in self._specs.values() for a in spec.with_}
            first = [m for cid, m in self._managed.items() if cid not in anchors]
            last = [m for cid, m in self._managed.items() if cid in anchors]
            d = self._stop_managed(first)
            d.addCallback(lambda _: self._stop_managed(last))
            longest = _longest_stop(first) + _longest_stop(last)
        else:
            d = defer.succeed(None)
            longest = _longest_stop(self._managed.values())
        # The floating addresses are down before the lease is released.
        d.addBoth(lambda _: defer.DeferredList(
            [m.keeper.down() for m in self._managed.values() if m.keeper is not None],
            consumeErrors=True))
        timeout = self._reactor.callLater(longest + SHUTDOWN_GRACE, d.cancel)
        # One more reactor turn: the core hears service_stopped and sends Release.
        d.addBoth(lambda _: task.deferLater(self._reactor, 0))
        if self.arbiter_io is not None:  # etcd: let the release calls finish
            d.addBoth(lambda _: self.arbiter_io.stop(SHUTDOWN_GRACE))
        d.addBoth(lambda _: timeout.cancel() if timeout.active() else None)
        d.addBoth(lambda _: super(OwnershipService, self).stopService())
        d.addBoth(lambda _: self.hooks.stop())
        d.addBoth(lambda _: self.guard.stop() if self.guard is not None else None)
        d.addBoth(lambda _: self._announce_sender.close()
                  if self._announce_sender is not None else None)
        d.addBoth(self._stopped)
        return d

    def _stop_managed(self, managed_services):
        """Stop these managed services (those the core is not stopping already) and wait."""
        waits = []
        for managed in managed_services:
            if isinstance(managed, ManagedGroup):
                if managed.alive and not managed.stopping:
                    managed.stop(None)  # e.g. paused: the core does not stop it
                # Its members stop one after the other, top down.
                waits.append(managed.when_stopped())
            elif managed.runner is not None and (
                    managed.runner.process_alive or managed.stopping):
                waits.append(managed.runner.stop())
        return defer.DeferredList(waits, consumeErrors=True)

    def _stopped(self, _):
        self._closed = True
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(None)
        for call in (self._tick_call, self._persist_call):
            if call is not None and call.active():
                call.cancel()
        self._events.record("ownership", self.node_name, "lease ownership stopped")

    # -- inputs -----------------------------------------------------------------------

    def receive(self, sender, wire):
        """A lease/cluster message from peer C{sender} (the name its certificate proves).

        Malformed messages are logged and counted (C{counters["bad_messages"]}),
        never raised.  A message whose claims are not the sender's own (the
        core's L{OwnershipNode.authorise}) raises L{Forged} at once, before
        anything is queued, so that the peer layer closes the connection.
        """
        try:
            if not isinstance(sender, str):
                raise WireError(f"sender must be a node name, got {sender!r}")
            if isinstance(wire, dict):
                message = from_wire(wire)
            elif getattr(type(wire), "TYPE", None) in MESSAGE_TYPES:
                message = wire  # parsed by the peer layer already
            else:
                raise WireError(f"not a lease message: {wire!r}")
        except WireError as e:
            self.counters["bad_messages"] += 1
            self.log.warn("ownership: bad message from {sender}: {error}",
                          sender=sender, error=str(e))
            return
        if self.node is None or self._closed:
            self.counters["early_messages" if self.node is None else "late_messages"] += 1
            return
        forgery = self.node.authorise(sender, message)
        if forgery is not None:
            self.counters["forged_messages"] += 1
            raise Forged(forgery.claimed, forgery.detail)
        self._run(lambda now: self.node.receive(sender, message, now))

    def _arbiter_input(self, message):
        """An answer for the arbiter from its own I/O (etcd's gateway client)."""
        if self.node is None or self._closed:
            return
        from clsd.ownership.etcd.core.actions import ETCD_SENDER

        self._run(lambda now: self.node.receive(ETCD_SENDER, message, now))

    def members_changed(self, members):
        """The live members and what each published: C{{name: wire_dict or None}}.

        This node itself may be included (it is ignored).  A member with no
        (or a malformed) published dict counts as registered for nothing.
        """
        states = {}
        for name, data in dict(members).items():
            if name == self.node_name:
                continue
            if isinstance(data, MemberState):
                states[name] = data
            elif data is None:
                states[name] = MemberState(name)
            else:
                try:
                    states[name] = state_from_wire(name, data)
                except WireError as e:
                    self.counters["bad_states"] += 1
                    self.log.warn("ownership: {error}", error=str(e))
                    states[name] = MemberState(name)
        self._members = states
        self._peers_published = bool(states) and all(
            data is not None for name, data in dict(members).items() if name != self.node_name)
        if self.node is not None and not self._closed:
            members_list = list(states.values())
            self._run(lambda now: self.node.members_changed(members_list, now))
            self._check_settled()

    _settled = False
    _peers_published = False

    def _check_settled(self):
        """Cold start: membership has settled once a peer is seen and every live one published."""
        if self._settled or not self._peers_published or self.node is None or self._closed:
            return
        self._settled = True
        self._events.record("ownership", self.node_name,
                            f"membership settled: {len(self._members)} peer(s) seen with "
                            "their registrations; clusters nobody holds may be taken now")
        self._run(lambda now: self.node.call("membership_settled", now=now))

    def member_event(self, record):
        """A membership event record (kind ``member``): remember departures for cause chains."""
        self.departures.member_changed(record)

    def add_report_listener(self, listener):
        """Call C{listener(report)} with every L{Report} of the core (metrics)."""
        self._report_listeners.append(listener)

    # -- admin operations ------------------------------------------------------------------

    def standby(self):
        """Move every cluster held here away gracefully; start nothing new here."""
        self._admin("set_standby", True)

    def unstandby(self):
        self._admin("set_standby", False)

    def move(self, cluster, node, *, key=""):
        """Move C{cluster} to C{node}; L{ManagerError} says why not.

        @param key: the admin key fingerprint of the session that asked; it
            travels with the request to the holder, which records it.
        """
        self._admin("move", cluster, node, key=key)

    def pause(self, cluster):
        self._admin("pause", cluster)

    def resume(self, cluster):
        self._admin("resume", cluster)

    def _admin(self, method, *args, key=None):
        if self.node is None:
            raise ManagerError("lease ownership is not running on this node"
                               + (f": {self.inactive_reason}" if self.inactive_reason else ""))
        now = self._monotonic()
        extra = {} if key is None else {"key": key}
        # ManagerError goes to the caller.
        actions = self.node.call(method, *args, now=now, **extra)
        by = f" (admin key {key})" if key else ""
        self._events.record("ownership", self.node_name,
                            f"admin: {method} {' '.join(map(str, args))}{by}", **extra)
        self._run(lambda now: actions)

    # -- what the admin side reads (L{clsd.admin.ownership_status}) -----------------------------

    def now(self):
        """The lease clock's current reading (monotonic)."""
        return self._monotonic()

    def live_members(self):
        """The live peers' published states: C{{name: L{MemberState}}}, this node excluded."""
        return dict(self._members)

    def clusters(self):
        """The cluster IDs managed here (L{ClusterConfig}s), in registration order."""
        return list(self._specs.values())

    def service_state(self, cluster_id):
        """The state of C{cluster_id}'s service runner here, or None when it has none.

        For an ordered group: the group's phase (L{clsd.ownership.core.group.Phase}).
        """
        managed = self._managed[cluster_id]
        if isinstance(managed, ManagedGroup):
            return managed.service_state() if managed.attached else None
        runner = managed.runner
        return runner.state.value if runner else None

    def member_states(self, cluster_id):
        """An ordered group's members here (C{[{"name", "state", "pid"}]}), or None."""
        managed = self._managed[cluster_id]
        return managed.member_states() if isinstance(managed, ManagedGroup) else None

    def group_waiting_for(self, cluster_id):
        """The member an ordered group here waits for to run (None: all run, or no group)."""
        managed = self._managed[cluster_id]
        return managed.core.waiting_for() if isinstance(managed, ManagedGroup) else None

    # -- running the core -------------------------------------------------------------------------

    def _report_later(self, method, *args):
        """A process fact for the core, delivered on the next reactor turn (never re-entrant)."""
        self._reactor.callLater(0, self._input, method, *args)

    def _input(self, method, *args):
        if self.node is None or self._closed:
            return
        self._run(lambda now: self.node.call(method, *args, now=now))

    def _run(self, step):
        """Run C{step(now) -> actions} and execute the actions; queued when already busy.

        Executing an action may produce an input (a stop completing at once),
        so inputs queue rather than interleave: the actions of one step run
        in order, then the next step.
        """
        self._queue.append(step)
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                step = self._queue.popleft()
                now = self._monotonic()
                try:
                    actions = step(now)
                except ManagerError as e:
                    self.log.warn("ownership: {error}", error=str(e))
                    continue
                except Exception:
                    self.counters["core_errors"] += 1
                    self.log.failure("ownership core failed on an input")
                    continue
                for action in actions:
                    try:
                        self._execute(action)
                    except Exception:
                        self.counters["action_errors"] += 1
                        self.log.failure("ownership: cannot carry out {action!r}", action=action)
        finally:
            self._busy = False
        self._schedule_tick()

    def _schedule_tick(self):
        if self.node is None or self._closed:
            return
        wake = self.node.next_wakeup()
        if self._tick_call is not None and self._tick_call.active():
            self._tick_call.cancel()
        self._tick_call = None
        if wake is None:
            return
        now = self._monotonic()
        delay = max(wake - now, 0.0)
        if self._last_tick is not None and wake <= self._last_tick:
            delay = max(delay, MIN_TICK)
        self._tick_call = self._reactor.callLater(delay, self._tick)

    def _tick(self):
        self._tick_call = None
        self._last_tick = self._monotonic()
        self._run(self.node.tick)

    # -- actions ------------------------------------------------------------------------

    def _execute(self, action):
        if isinstance(action, Send):
            self._do_send(action.to, action.message)
        elif isinstance(action, KillAt):
            self._managed_for(action.cluster).kill_at(action.deadline)
        elif isinstance(action, StartService):
            managed = self._managed_for(action.cluster)
            spec = self._specs.get(action.cluster)
            label = spec.label if spec is not None else action.service
            self._events.record("ownership", action.cluster,
                                f"starting {label} (epoch {action.epoch})",
                                epoch=action.epoch, slot=action.slot)
            if not _runners(managed) or (isinstance(managed, ManagedGroup)
                                         and not managed.attached):
                self._events.record("ownership", action.cluster,
                                    f"service {label} is not supervised here")
                self._report_later("service_failed", action.cluster)
                return
            managed.start(action.epoch, action.slot)
        elif isinstance(action, StopService):
            managed = self._managed_for(action.cluster)
            self._events.record("ownership", action.cluster, f"stopping: {action.reason}",
                                deadline=action.deadline)
            if not _runners(managed):
                self._report_later("service_stopped", action.cluster)
                return
            managed.stop(action.deadline)
        elif isinstance(action, RunHook):
            on_done = None
            if action.event == "fence":
                cluster, epoch = action.cluster, action.epoch

                def on_done(ok):
                    self._report_later("hook_done", cluster, "fence", epoch, ok)
            self.hooks.run(action, on_done)
        elif isinstance(action, CancelFence):
            self.hooks.cancel(action.cluster, "fence", action.epoch)
        elif isinstance(action, PersistEpochFloor):
            self._persist(action.value)
        elif isinstance(action, PublishState):
            self._published = action.state
            self._do_publish(action.state)
        elif isinstance(action, ForgetCluster):
            self._forget(action.cluster)
        elif isinstance(action, Report):
            self._reported(action)
        elif self.arbiter_io is not None and self.arbiter_io.handles(action):
            self.arbiter_io.execute(action)
        else:
            raise TypeError(f"unknown ownership action {action!r}")

    def _reported(self, report):
        """Record a lease fact (L{ReportRecorder}); tell the listeners."""
        self._recorder.record(report)
        for listener in self._report_listeners:
            try:
                listener(report)
            except Exception:
                self.log.failure("ownership: report listener failed")

    def _managed_for(self, cluster):
        try:
            return self._managed[cluster]
        except KeyError:
            raise KeyError(f"no managed service for cluster {cluster!r}") from None

    def _do_send(self, to, message):
        if self._send is None:
            self.counters["unsent"] += 1
            return
        try:
            self._send(to, message.to_wire())
        except Exception:
            self.counters["send_errors"] += 1
            self.log.failure("ownership: cannot send to {to}", to=to)

    def _do_publish(self, state):
        if self._publish is None:
            return
        try:
            self._publish(state_to_wire(state))
        except Exception:
            self.log.failure("ownership: cannot publish this node's state")

    def _persist(self, value):
        """Store the voter's epoch floor; on any failure the voter grants nothing until a
        retry (every L{PERSIST_RETRY} s) succeeds: said once at critical level, and
        once more when it works again."""
        if self._persist_call is not None and self._persist_call.active():
            # A retry is pending: write the higher value now, never the lower one later.
            self._persist_call.cancel()
            value = max(value, self.floor_failure[0]) if self.floor_failure else value
        self._persist_call = None
        voter = self.node.voter if self.node is not None else None
        try:
            self._write_floor(self.data_dir, value)
        except Exception as e:
            error = str(e) or type(e).__name__
            if self.floor_failure is None:
                self._events.record(
                    "voter", self.node_name,
                    f"cannot store the epoch floor {value}: {error}; this voter grants no "
                    f"lease until it can (retrying every {PERSIST_RETRY:g} s)",
                    what="floor-failed", value=value, error=error)
                self.floor_failure = (value, error, 1)
            else:
                self.floor_failure = (value, error, self.floor_failure[2] + 1)
            if voter is not None:
                voter.floor_failed(value, error)
            if not self._closed:
                self._persist_call = self._reactor.callLater(PERSIST_RETRY, self._persist, value)
            return
        if self.floor_failure is not None:
            self._events.record(
                "voter", self.node_name,
                f"stored the epoch floor {value} after {self.floor_failure[2]} failed "
                "attempts; this voter grants leases again",
                what="floor-stored", value=value, attempts=self.floor_failure[2])
            self.floor_failure = None
        if voter is not None:
            voter.persisted(value)



def _runners(managed):
    """The runners of a L{ManagedService} or L{ManagedGroup} (empty until attached)."""
    if isinstance(managed, ManagedGroup):
        return managed.runners
    return [managed.runner] if managed.runner is not None else []


def _longest_stop(managed_services):
    """The longest stop of these, run side by side (a group's members stop one by one)."""
    return max((m.stop_timeout if isinstance(m, ManagedGroup) else m.runner.config.stop_timeout
                for m in managed_services if _runners(m)), default=0.0)
