"""A deterministic simulation of many nodes' ownership cores, with faults and real clocks.

The simulation keeps *true* time.  Each node has its own monotonic clock,
``local = offset + rate * true`` with ``rate`` within ``1 +- drift`` and a new
offset after every restart, and its core only ever sees local time.  Faults:
crashes and restarts (a restarted node forgets everything, as a diskless
voter does), pauses (SIGSTOP: the core sees nothing, its lease guard still
kills at the deadline), partitions (any set of blocked links), message loss
and delay, service failures.

Membership is an oracle standing in for clsd.membership: node X sees node Y
once "Y is up, running and reachable from X" has held for C{detection}
seconds (and stops seeing it after the opposite held as long).  Published
member states travel with it.  A started service reports itself running
(C{service_running}) C{start_time} later, and no longer running when it is
asked to stop or ends: what clusters that follow it (``after``) or run with
it (``with``) wait for.

What is recorded, on the true time line, for the checks:

- every *service interval*: from StartService until the service is really
  gone (graceful exit, the lease guard's KILL at the deadline plus the kill
  latency, or the daemon's death plus the kill latency, since the guard sees
  its pipe close);
- every *tenure* ("belief") interval: from a lease grant until the true
  instant at which the holder's own clock reaches its margined expiry, cut
  short by a release or a crash.

L{LeaseSim.check_safety} fails when two nodes' intervals of one
active-standby cluster overlap, when a service runs outside its own node's
tenure (beyond the kill latency), or when a later tenure has a smaller epoch.
"""

import heapq
import itertools
import json
import random

import attrs

from clsd.ownership.core.actions import (
    CancelFence, ForgetCluster, KillAt, PersistEpochFloor, PublishState, Report, RunHook, Send,
    StartService, StopService,
)
from clsd.ownership.core.arbiter import QuorumArbiter
from clsd.ownership.core.manager import ClusterManager, ManagerError, resource_name
from clsd.ownership.core.messages import from_wire
from clsd.ownership.core.node import OwnershipNode
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.shape import cluster_of
from clsd.ownership.core.voter import DEFAULT_RESERVE_BLOCK, LeaseVoter

INF = float("inf")


class SafetyViolation(AssertionError):
    """Two nodes ran (or believed they held) one active-standby cluster at once."""


@attrs.define
class DriftClock:
    """A node's monotonic clock as a function of true time."""

    offset: float
    rate: float

    def local(self, true_time):
        return self.offset + self.rate * true_time

    def true(self, local_time):
        return (local_time - self.offset) / self.rate


@attrs.define
class Interval:
    node: str
    key: str
    epoch: int
    start: float
    end: float = INF


@attrs.define
class _Service:
    interval: Interval
    guard_deadline: float | None  # local time
    stopping: bool = False
    killed: bool = False
    token: int = 0


@attrs.define
class _Node:
    name: str
    clusters: tuple
    clock: DriftClock
    core: object = None
    up: bool = True
    paused: bool = False
    incarnation: int = 0
    wake_at: float | None = None
    clock_floor: float = float("-inf")  # local time never goes below a fired wake-up
    inbox: list = attrs.field(factory=list)   # inputs held while paused
    published: MemberState | None = None
    view: frozenset = frozenset()
    view_states: tuple = ()


class LeaseSim:
    """Many OwnershipNodes on one true clock, over a lossy, partitionable network."""

    def __init__(self, nodes, voters, timing, *, seed=0, drift=0.01, rates=None,
                 delay=(0.0005, 0.003), loss=0.0, detection=0.6, kill_latency=0.005,
                 stop_time=(0.01, 0.2), start_time=0.01, hook_time=0.05,
                 voter_factory=None, membership_period=0.1, slew=None, lease_clock="raw",
                 voter_sets=None):
        """C{nodes}: name -> tuple of ClusterConfig (empty for a witness).

        C{rates}: name -> fixed clock rate (overrides the random drift).
        C{slew}: name -> the rate a time daemon (NTP, chrony) gives that node's
        CLOCK_MONOTONIC on top of its crystal's; C{lease_clock} says which clock
        the node times its leases (core and guard) on: ``"raw"``
        (CLOCK_MONOTONIC_RAW, what clsd.clock uses: the slew does not reach it)
        or ``"monotonic"`` (the slewed clock, as before clsd.clock).
        C{stop_time}: (lo, hi) seconds a service takes to exit after TERM, or
        None for a service that ignores TERM and dies only by KILL.
        C{voter_factory(name, timing, now, floor)}: build a voter (to test broken
        ones); C{floor} is the epoch floor it persisted before (0 at first).
        """
        self.rng = random.Random(seed)
        self._guard_deadlines = {}    # (node, cluster) -> local deadline from KillAt
        self._tokens = itertools.count(1)  # unique per service instance and kill order
        self.timing = timing
        self.voters = tuple(voters)
        self.drift = drift
        self.rates = dict(rates or {})
        self.delay = delay
        self.loss = loss
        self.detection = detection
        self.kill_latency = kill_latency
        self.stop_time = stop_time
        self.start_time = start_time
        self.hook_time = hook_time
        self.voter_factory = voter_factory or default_voter
        self.membership_period = membership_period
        if lease_clock not in ("raw", "monotonic"):
            raise ValueError(f"lease_clock must be 'raw' or 'monotonic', got {lease_clock!r}")
        self.slew = dict(slew or {}) if lease_clock == "monotonic" else {}
        self.now = 0.0
        self._queue = []
        self._seq = 0
        self.blocked = set()          # frozenset({a, b}) pairs that cannot talk
        self.nodes = {}
        for name, clusters in nodes.items():
            self.nodes[name] = _Node(name, tuple(clusters), self._new_clock(name))
        self.services = {}            # (node, cluster) -> _Service
        self.service_log = {}         # cluster -> [Interval]
        self.beliefs = {}             # (node, resource, epoch) -> Interval
        self.hooks = []               # (true time, node, RunHook)
        self.reports = []             # (true time, node, Report)
        self.persisted = {}           # voter -> epoch floor
        self.faults = []              # (true time, description)
        self._truth_since = {}        # (x, y) -> (truth, since)
        self.messages_sent = 0
        self.operator_errors = []     # (true time, node, message) of refused maintenance ops
        #: name -> VoterSet of a node configured apart from C{voters} (a change of
        #: voters in progress); takes effect at the node's next (re)start.
        self.voter_sets = dict(voter_sets or {})
        for name in self.nodes:
            self._boot(name)
        self._schedule(self.membership_period, "membership", None)

    # -- construction ----------------------------------------------------------------

    def _new_clock(self, name):
        rate = self.rates.get(name)
        if rate is None:
            rate = 1.0 + self.rng.uniform(-self.drift, self.drift)
        return DriftClock(offset=self.rng.uniform(0, 1000), rate=rate * self.slew.get(name, 1.0))

    def _boot(self, name):
        node = self.nodes[name]
        node.incarnation += 1
        node.up, node.paused, node.inbox = True, False, []
        node.published, node.view, node.view_states = None, frozenset(), ()
        node.clock = self._new_clock(name)
        node.clock_floor = float("-inf")
        local = node.clock.local(self.now)
        voter = None
        voter_set = self.voter_sets.get(name)
        if name in (voter_set.members if voter_set is not None else self.voters):
            voter = self.voter_factory(name, self.timing, local, self.persisted.get(name, 0))
            voter.voter_set = voter_set
        arbiter = QuorumArbiter(name, node.incarnation, voter_set or self.voters, self.timing,
                                random.Random(self.rng.random()))
        manager = ClusterManager(name, node.clusters, arbiter, self.timing, local,
                                 voters=voter_set.voters if voter_set else self.voters)
        node.core = OwnershipNode(name, voter, manager)
        self._run(node, node.core.start(local))

    # -- the event loop ----------------------------------------------------------------

    def _schedule(self, at, kind, payload):
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def at(self, true_time, fn, description=""):
        """Run C{fn(sim)} at C{true_time} (a fault, a check, an operator command)."""
        self._schedule(true_time, "call", (fn, description))

    def run_until(self, true_time):
        while self._queue and self._queue[0][0] <= true_time:
            at, _, kind, payload = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            getattr(self, "_on_" + kind)(payload)
        self.now = max(self.now, true_time)

    def local(self, name):
        return self.nodes[name].clock.local(self.now)

    # -- event handlers ---------------------------------------------------------------

    def _on_call(self, payload):
        fn, description = payload
        if description:
            self.faults.append((self.now, description))
        fn(self)

    def _on_deliver(self, payload):
        sender, to, wire = payload
        if frozenset((sender, to)) in self.blocked:
            return
        node = self.nodes[to]
        if not node.up:
            return
        message = from_wire(json.loads(wire))
        self._input(node, ("receive", sender, message))

    def _on_wake(self, payload):
        name, incarnation, at = payload
        node = self.nodes[name]
        if not node.up or node.incarnation != incarnation or node.wake_at != at:
            return
        node.wake_at = None
        # Converting true -> local time may land a hair before the deadline.
        node.clock_floor = at
        self._input(node, ("tick",))

    def _on_service_exit(self, payload):
        name, cluster, token = payload
        service = self.services.get((name, cluster))
        if service is None or service.token != token:
            return
        self._end_service(name, cluster)
        node = self.nodes[name]
        if node.up:
            self._input(node, ("call", "service_running", cluster, False))
            self._input(node, ("call", "service_stopped", cluster))

    def _on_service_up(self, payload):
        name, cluster, token = payload
        service = self.services.get((name, cluster))
        if (service is None or service.token != token or service.stopping
                or not self.nodes[name].up):
            return
        self._input(self.nodes[name], ("call", "service_running", cluster, True))

    def _on_service_down(self, payload):
        name, cluster = payload
        if self.nodes[name].up:
            self._input(self.nodes[name], ("call", "service_running", cluster, False))

    def _on_guard(self, payload):
        name, cluster, token = payload
        service = self.services.get((name, cluster))
        if service is None or service.token != token:
            return
        node = self.nodes[name]
        if service.killed:
            return  # a SIGKILL is already on its way
        if service.guard_deadline is not None and node.clock.local(self.now) >= service.guard_deadline - 1e-9:
            # KILL lands after the kill latency.
            service.killed = True
            service.token = next(self._tokens)
            self._schedule(self.now + self.kill_latency, "service_exit",
                           (name, cluster, service.token))

    def _on_fence(self, payload):
        name, incarnation, hook = payload
        # A fence powers the subject off: a crash.  The command reports success
        # only once the machine is off, i.e. after its services are dead.
        if self.nodes[hook.node].up:
            self.crash(hook.node, reason=f"fenced by {name}")
        self._schedule(self.now + self.kill_latency, "hook_done", payload)

    def _on_hook_done(self, payload):
        name, incarnation, hook = payload
        node = self.nodes[name]
        if node.up and node.incarnation == incarnation:
            self._input(node, ("call", "hook_done", hook.cluster, hook.event, hook.epoch,
                                True))

    def _on_membership(self, _):
        self._update_membership()
        self._schedule(self.now + self.membership_period, "membership", None)

    # -- inputs to a node's core -------------------------------------------------------

    def _input(self, node, item):
        if node.paused:
            node.inbox.append(item)
            return
        core = node.core
        local = max(node.clock.local(self.now), node.clock_floor)
        kind = item[0]
        if kind == "receive":
            actions = core.receive(item[1], item[2], local)
        elif kind == "tick":
            actions = core.tick(local)
        elif kind == "members":
            actions = core.members_changed(item[1], local)
        elif kind == "call":
            try:
                actions = core.call(item[1], *item[2:], now=local)
            except ManagerError as e:
                self.operator_errors.append((self.now, node.name, str(e)))
                actions = []
        else:
            raise AssertionError(kind)
        self._run(node, actions)

    def _run(self, node, actions):
        local = max(node.clock.local(self.now), node.clock_floor)
        for action in actions:
            self._execute(node, action, local)
        self._record_beliefs(node, local)
        self._reschedule(node)

    def _reschedule(self, node):
        wake = node.core.next_wakeup()
        if wake is None:
            node.wake_at = None
            return
        if node.wake_at is not None and node.wake_at <= wake:
            return
        node.wake_at = wake
        at = max(self.now, node.clock.true(wake))
        self._schedule(at, "wake", (node.name, node.incarnation, wake))

    def _record_beliefs(self, node, local):
        manager = node.core.manager
        for resource in manager._res:
            held = manager.arbiter.tenure(resource, local)
            if held is None:
                # Released or given up: the belief ends now (if it had not already).
                for (name, res, _), interval in self.beliefs.items():
                    if name == node.name and res == resource and interval.end > self.now:
                        interval.end = self.now
                continue
            epoch, expiry = held
            key = (node.name, resource, epoch)
            interval = self.beliefs.get(key)
            end = node.clock.true(expiry)
            if interval is None:
                self.beliefs[key] = Interval(node.name, resource, epoch, self.now, end)
            else:
                interval.end = max(interval.end, end)

    def _execute(self, node, action, local):
        if isinstance(action, Send):
            self.messages_sent += 1
            if self.loss and self.rng.random() < self.loss:
                return
            if frozenset((node.name, action.to)) in self.blocked:
                return
            wire = json.dumps(action.message.to_wire())
            delay = self.rng.uniform(*self.delay)
            self._schedule(self.now + delay, "deliver", (node.name, action.to, wire))
        elif isinstance(action, KillAt):
            service = self.services.get((node.name, action.cluster))
            self._guard_deadlines[(node.name, action.cluster)] = action.deadline
            if service is not None:
                service.guard_deadline = action.deadline
                self._schedule(max(self.now, node.clock.true(action.deadline)), "guard",
                               (node.name, action.cluster, service.token))
        elif isinstance(action, StartService):
            key = (node.name, action.cluster)
            assert key not in self.services, f"{key} started twice"
            spec = next(c for c in node.clusters if c.id == action.cluster)
            resource = resource_name(spec.id, action.slot, spec.mode)
            interval = Interval(node.name, resource, action.epoch, self.now)
            self.service_log.setdefault(resource, []).append(interval)
            deadline = self._guard_deadlines.get(key)
            assert deadline is not None, "StartService without a KillAt before it"
            service = _Service(interval, deadline, token=next(self._tokens))
            self.services[key] = service
            self._schedule(max(self.now, node.clock.true(deadline)), "guard",
                           (node.name, action.cluster, service.token))
            # Running once started: what after/with of other clusters wait for.
            self._schedule(self.now + self.start_time, "service_up",
                           (node.name, action.cluster, service.token))
        elif isinstance(action, StopService):
            service = self.services.get((node.name, action.cluster))
            if service is None:
                # Already gone (e.g. killed by the guard): confirm at once.
                self._schedule(self.now, "service_exit_confirm", (node.name, action.cluster))
                return
            if action.deadline is not None:
                service.guard_deadline = (action.deadline if service.guard_deadline is None
                                          else min(service.guard_deadline, action.deadline))
                self._schedule(max(self.now, node.clock.true(service.guard_deadline)), "guard",
                               (node.name, action.cluster, service.token))
            if not service.stopping:
                self._schedule(self.now, "service_down", (node.name, action.cluster))
            if not service.stopping and self.stop_time is not None:
                service.stopping = True
                self._schedule(self.now + self.rng.uniform(*self.stop_time), "service_exit",
                               (node.name, action.cluster, service.token))
        elif isinstance(action, RunHook):
            self.hooks.append((self.now, node.name, action))
            if action.event == "fence":
                self._schedule(self.now + self.hook_time, "fence",
                               (node.name, node.incarnation, action))
        elif isinstance(action, CancelFence):
            pass  # a simulated fence powers its subject off at once; a late result is ignored
        elif isinstance(action, PublishState):
            node.published = action.state
        elif isinstance(action, Report):
            self.reports.append((self.now, node.name, action))
        elif isinstance(action, PersistEpochFloor):
            self.persisted[node.name] = action.value
            node.core.voter.persisted(action.value)
        elif isinstance(action, ForgetCluster):
            pass  # the service already stopped; L{reconfigure} swaps the specs
        else:
            raise AssertionError(f"unknown action {action!r}")

    def _on_service_exit_confirm(self, payload):
        name, cluster = payload
        node = self.nodes[name]
        if node.up and (name, cluster) not in self.services:
            self._input(node, ("call", "service_stopped", cluster))

    def _end_service(self, name, cluster):
        service = self.services.pop((name, cluster), None)
        if service is not None:
            service.interval.end = self.now
        self._guard_deadlines.pop((name, cluster), None)

    # -- membership oracle ---------------------------------------------------------------

    def _visible(self, x, y):
        if x == y:
            return True
        ny = self.nodes[y]
        return ny.up and not ny.paused and frozenset((x, y)) not in self.blocked

    def _update_membership(self):
        for x, nx in self.nodes.items():
            if not nx.up:
                continue
            view = set(nx.view) | {x}
            for y in self.nodes:
                truth = self._visible(x, y)
                last = self._truth_since.get((x, y))
                if last is None or last[0] != truth:
                    self._truth_since[(x, y)] = (truth, self.now)
                    last = (truth, self.now)
                if (y in view) != truth and self.now - last[1] >= self.detection:
                    if truth:
                        view.add(y)
                    else:
                        view.discard(y)
            view = frozenset(view)
            states = tuple(sorted(
                (self.nodes[y].published for y in view
                 if y != x and self.nodes[y].published is not None),
                key=lambda s: s.name))
            if view != nx.view or states != nx.view_states:
                nx.view, nx.view_states = view, states
                self._input(nx, ("members", list(states)))

    # -- faults -----------------------------------------------------------------------------

    def crash(self, name, reason="crash"):
        """kill -9 of the daemon: its guard sees the pipe close and kills its services."""
        node = self.nodes[name]
        if not node.up:
            return
        node.up = False
        node.incarnation += 1
        node.wake_at = None
        # Its last published state stays in the others' views until the
        # membership oracle notices the crash (after `detection`).
        for (owner, cluster), service in list(self.services.items()):
            if owner == name and not service.killed:
                service.killed = True
                service.token = next(self._tokens)
                self._schedule(self.now + self.kill_latency, "service_exit",
                               (name, cluster, service.token))
        for key, interval in self.beliefs.items():
            if key[0] == name and interval.end > self.now:
                interval.end = self.now
        self.faults.append((self.now, f"{reason} {name}"))

    def restart_with(self, name, clusters):
        """Restart node C{name} with other C{clusters} (a config changed behind a restart)."""
        self.nodes[name].clusters = tuple(clusters)
        self.crash(name, "restart with new settings")
        self.at(self.now + 0.05, lambda s: s.restart(name))

    def restart(self, name):
        if self.nodes[name].up:
            return
        self.faults.append((self.now, f"restart {name}"))
        self._boot(name)

    def pause(self, name):
        node = self.nodes[name]
        if node.up and not node.paused:
            node.paused = True
            self.faults.append((self.now, f"pause {name}"))

    def resume(self, name):
        node = self.nodes[name]
        if not node.up or not node.paused:
            return
        self.faults.append((self.now, f"resume {name}"))
        node.paused = False
        inbox, node.inbox = node.inbox, []
        for item in inbox:
            if node.up and not node.paused:
                self._input(node, item)
        self._input(node, ("tick",))

    def block(self, a, b):
        self.blocked.add(frozenset((a, b)))

    def unblock(self, a, b):
        self.blocked.discard(frozenset((a, b)))

    def isolate(self, name):
        for other in self.nodes:
            if other != name:
                self.block(name, other)
        self.faults.append((self.now, f"isolate {name}"))

    def split(self, group):
        """Cut every link between C{group} and the rest."""
        group = set(group)
        for a in group:
            for b in self.nodes:
                if b not in group:
                    self.block(a, b)
        self.faults.append((self.now, f"split {sorted(group)}"))

    def bridge(self, middle, group):
        """Split C{group} from the rest, except C{middle}, which still reaches both sides."""
        self.split(group)
        for other in self.nodes:
            self.unblock(middle, other)
        self.faults.append((self.now, f"bridge via {middle}"))

    def heal(self):
        self.blocked.clear()
        self.faults.append((self.now, "heal"))

    def fail_service(self, name, cluster):
        """The service crash-looped: supervision gave up on it."""
        node = self.nodes[name]
        if (name, cluster) in self.services:
            self._end_service(name, cluster)
        if node.up:
            self._input(node, ("call", "service_failed", cluster))

    def reconfigure(self, name, clusters):
        """A reload of node C{name} with new C{clusters}: each changed one is
        unregistered (gracefully), then registered again once it is forgotten."""
        node = self.nodes[name]
        old = {c.id: c for c in node.clusters}
        node.clusters = tuple(clusters)
        changed = [c for c in clusters if c.id in old and old[c.id] != c]
        for spec in changed:
            self._input(node, ("call", "unregister", spec.id))

        def register_when_forgotten(sim):
            manager = node.core.manager
            waiting = [c for c in changed if c.id in manager.clusters]
            if waiting:
                sim.at(sim.now + 0.05, register_when_forgotten)
                return
            for spec in changed:
                sim._input(node, ("call", "register", spec))
        self.at(self.now, register_when_forgotten, f"reload {name}")

    def operator(self, name, method, *args):
        """Run a maintenance op (set_standby, move, pause, resume) on node C{name}'s core."""
        node = self.nodes[name]
        if node.up:
            self._input(node, ("call", method, *args))

    # -- checks -----------------------------------------------------------------------------

    def active_standby_clusters(self):
        found = set()
        for node in self.nodes.values():
            for cluster in node.clusters:
                if cluster.mode == "active-standby":
                    found.add(cluster.id)
        return found

    def _service_groups(self):
        """Service intervals by what must not overlap: an ID that any node runs
        active-standby is one group whatever lease names (``A``, ``A/k``) it ran under."""
        active_standby = self.active_standby_clusters()
        groups = {}
        for resource, intervals in self.service_log.items():
            key = cluster_of(resource)
            if key not in active_standby:
                key = resource
            groups.setdefault(key, []).extend(intervals)
        return groups

    def overlaps(self):
        """Every pair of different nodes' overlapping intervals (services and beliefs)."""
        found = []
        groups = {}
        active_standby = self.active_standby_clusters()
        for cluster, intervals in self._service_groups().items():
            if cluster in active_standby:
                groups[("service", cluster)] = intervals
        for (_name, resource, _epoch), interval in self.beliefs.items():
            groups.setdefault(("belief", resource), []).append(interval)
        for (kind, key), intervals in groups.items():
            ordered = sorted(intervals, key=lambda i: i.start)
            for i, first in enumerate(ordered):
                for second in ordered[i + 1:]:
                    if second.start >= first.end:
                        continue
                    if second.node != first.node:
                        found.append((kind, key, first, second))
        return found

    def services_outside_tenure(self):
        """Service intervals not inside a lease tenure of the same node, resource and epoch.

        The service may outlive the tenure only by the kill latency (the
        guard's SIGKILL at the deadline, or at the daemon's death).
        """
        found = []
        for resource, intervals in self.service_log.items():
            for service in intervals:
                tenure = self.beliefs.get((service.node, resource, service.epoch))
                end = min(service.end, self.now)  # still running: checked up to now
                if (tenure is None or service.start < tenure.start
                        or end > tenure.end + self.kill_latency + 1e-9):
                    found.append((resource, service, tenure))
        return found

    def epoch_regressions(self):
        """Tenures whose epoch is not above the previous one's, per resource (fencing tokens grow)."""
        found = []
        for cluster, intervals in self._service_groups().items():
            ordered = sorted(intervals, key=lambda i: i.start)
            for earlier, later in zip(ordered, ordered[1:]):
                if later.epoch <= earlier.epoch:
                    found.append((cluster, earlier, later))
        return found

    def check_safety(self):
        problems = self.overlaps()
        if problems:
            kind, key, a, b = problems[0]
            raise SafetyViolation(
                f"{kind} overlap on {key}: {a.node} epoch {a.epoch} [{a.start:.4f}, {a.end:.4f}] "
                f"and {b.node} epoch {b.epoch} [{b.start:.4f}, {b.end:.4f}]; "
                f"faults: {self.faults}")
        outside = self.services_outside_tenure()
        if outside:
            resource, service, tenure = outside[0]
            raise SafetyViolation(
                f"service of {resource} on {service.node} epoch {service.epoch} ran "
                f"[{service.start:.4f}, {service.end:.4f}] outside its lease tenure {tenure}; "
                f"faults: {self.faults}")
        regressions = self.epoch_regressions()
        if regressions:
            cluster, a, b = regressions[0]
            raise SafetyViolation(
                f"epoch did not grow on {cluster}: {a.node} had {a.epoch}, then {b.node} "
                f"got {b.epoch}; faults: {self.faults}")

    def running(self, cluster):
        """The nodes running C{cluster}'s service now."""
        return sorted(name for (name, cid) in self.services if cid == cluster)

    def owned_since(self, cluster):
        """Since when C{cluster} has been running without a gap, or None if not running now."""
        intervals = sorted(self.service_log.get(cluster, ()), key=lambda i: i.start)
        since = None
        for interval in intervals:
            if interval.end >= self.now and interval.start <= self.now:
                since = interval.start if since is None else min(since, interval.start)
        return since


def default_voter(name, timing, now, floor):
    """A voter as the daemon builds it: quiet after start, epoch floor persisted."""
    return LeaseVoter(name, timing, now, epoch_floor=floor, reserve_block=DEFAULT_RESERVE_BLOCK)


def resource_of(cluster, slot=0):
    return resource_name(cluster.id, slot, cluster.mode)
