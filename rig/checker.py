"""Judge a run from its records: pure functions, no I/O, no clock.

The rules (doc/reliability.md explains them for people):

* An instance *runs* from its ``start`` record until its end: its ``stop``
  record (written as its very last act), else the ``exit`` the lifeline
  collector observed (never earlier than the real death), else it is
  *unbounded* and counts as running until the horizon. Its last heartbeat is
  never taken as its end: a killed process may have acted after it.
* **Overlap** (zero tolerance): at no instant may more instances of one cluster
  run than its capacity (1 for active-standby; N for n-active). Instances on
  the same node count too: two copies on one machine are two copies.
  An n-active cluster is also checked per slot (each slot is a lease of its
  own: at most one instance per slot) and per node (one slot per node).
* **Stale epoch**: a ``start`` or ``heartbeat`` stamped with an epoch lower
  than one whose ``start`` was already recorded for the same lease (the
  cluster, or one slot of an n-active cluster), anywhere.
* **Epoch reuse**: the same epoch of one lease started on two different nodes.
* **Unavailability**: a cluster is *covered* while some instance keeps
  recording at most C{max_gap} apart (a frozen or killed instance stops
  recording); every uncovered stretch longer than C{max_gap}, between the
  cluster's first record and the horizon, is a window. Here the optimistic
  end (last record) is the honest one, the opposite of the overlap rule.
* **Group order**: for an ordered group (members bottom first), a member
  starts on a node only while every member below it runs there under the
  same epoch (one tenure), and while no member above it runs there.
* **Failover**: for a fault at time f on some nodes, every instance running
  there at f that ended before the next fault on its node was interrupted by
  it; its failover time is from f to the start of the next instance of its
  cluster (on any node).
"""

import re

import attrs

from rig.recorder import Record, Records

#: Heartbeats come every 0.1 s; on a busy shared machine they can slip by a
#: few hundred ms without the service being down. Gaps up to this long are
#: not reported as unavailability (the reporting resolution).
DEFAULT_MAX_GAP = 0.5

ACTION_KINDS = ("start", "heartbeat")
OWN_KINDS = ("start", "heartbeat", "stop")


@attrs.frozen
class Interval:
    """When one instance ran."""

    instance: str
    node: str
    cluster: str
    epoch: int | None
    pid: int
    start: float
    #: Known end (stop or observed exit), or None when unbounded.
    end: float | None
    #: "stop", "exit" or "unknown".
    end_kind: str
    #: Time of the instance's own last record.
    last_seen: float
    lifeline: bool = False
    #: The n-active slot, or None.
    slot: int | None = None

    @property
    def resource(self):
        return self.cluster if self.slot is None else f"{self.cluster}/{self.slot}"

    def end_or(self, horizon):
        """The end for the overlap check: unbounded runs until the horizon."""
        if self.end is not None:
            return self.end
        return max(horizon, self.last_seen)

    def running_at(self, t, horizon):
        return self.start <= t < self.end_or(horizon)

    def describe(self):
        slot = "" if self.slot is None else f" slot={self.slot}"
        return (f"{self.node}/{self.cluster}{slot} epoch={self.epoch} pid={self.pid} "
                f"({self.instance})")


@attrs.frozen
class Overlap:
    #: The cluster, ``cluster/slot`` for one n-active slot, ``cluster@node`` for one node.
    cluster: str
    start: float
    end: float
    capacity: int
    instances: tuple[Interval, ...]

    @property
    def duration(self):
        return self.end - self.start

    @property
    def nodes(self):
        return tuple(sorted({i.node for i in self.instances}))

    @property
    def same_node(self):
        return len(self.nodes) < len(self.instances)

    def describe(self):
        who = ", ".join(i.describe() for i in self.instances)
        return (f"OVERLAP cluster {self.cluster}: {len(self.instances)} running "
                f"(capacity {self.capacity}) for {self.duration:.6f}s from t={self.start:.6f}: {who}")


@attrs.frozen
class StaleAction:
    record: Record
    newer_epoch: int
    newer_node: str
    newer_start: float

    def describe(self):
        r = self.record
        return (f"STALE EPOCH cluster {r.resource}: {r.kind} by {r.node} epoch={r.epoch} "
                f"at t={r.t:.6f}, after epoch {self.newer_epoch} started on "
                f"{self.newer_node} at t={self.newer_start:.6f}")


@attrs.frozen
class EpochReuse:
    cluster: str
    epoch: int
    first: Record
    second: Record

    def describe(self):
        return (f"EPOCH REUSE cluster {self.cluster}: epoch {self.epoch} started on "
                f"{self.first.node} (t={self.first.t:.6f}) and on {self.second.node} "
                f"(t={self.second.t:.6f})")


@attrs.frozen
class OutOfOrder:
    """A member of an ordered group that started out of order on its node."""

    group: str
    #: The member's instance that started.
    started: Interval
    #: Members below it that were not running there under its epoch when it started.
    missing_below: tuple[str, ...]
    #: Instances of members above it still running there when it started.
    alive_above: tuple[Interval, ...]

    def describe(self):
        s = self.started
        parts = []
        if self.missing_below:
            parts.append(f"{', '.join(self.missing_below)} below it not running there "
                         f"under epoch {s.epoch}")
        if self.alive_above:
            parts.append("above it still running: "
                         + ", ".join(i.describe() for i in self.alive_above))
        return (f"OUT OF ORDER group {self.group}: {s.cluster} started on {s.node} "
                f"epoch={s.epoch} pid={s.pid} at t={s.start:.6f} with "
                + "; ".join(parts))


@attrs.frozen
class Window:
    """A stretch with no instance of the cluster recording."""

    cluster: str
    start: float
    end: float
    #: Still down at the horizon.
    ongoing: bool = False

    @property
    def duration(self):
        return self.end - self.start


@attrs.frozen
class Fault:
    """A fault as the checker needs it: when, what, and which nodes it hit."""

    t: float
    kind: str
    nodes: tuple[str, ...]
    #: Limit to these clusters (empty: every cluster on those nodes).
    clusters: tuple[str, ...] = ()


@attrs.frozen
class MachinePause:
    """Every process of C{node} frozen from C{start} to C{end}: a paused machine.

    Its instances act in neither stretch nor between. On resume they may act
    for up to C{bound} seconds before the node learns that its lease is gone
    (doc/ownership.md, "A paused machine"): that stretch is reported
    (L{Report.after_pause}) instead of counting as overlap or stale epoch;
    running on past it is judged as usual.
    """

    node: str
    start: float
    end: float
    bound: float


@attrs.frozen
class AfterPause:
    """An instance that was running when its machine resumed, and for how long it went on."""

    pause: MachinePause
    interval: Interval
    #: Seconds it ran after the thaw (until its end, or the horizon).
    ran: float
    #: Seconds of those during which another instance of its cluster ran.
    overlapped: float

    def describe(self):
        return (f"after the pause of {self.pause.node} ({self.pause.end - self.pause.start:.3f}s): "
                f"{self.interval.describe()} ran {self.ran:.3f}s more, "
                f"{self.overlapped:.3f}s of it beside another instance (bound "
                f"{self.pause.bound:.3f}s)")


@attrs.frozen
class Failover:
    fault: Fault
    cluster: str
    interrupted: Interval
    #: The next instance of the cluster, or None when none started.
    successor: Interval | None

    @property
    def time(self):
        """From the fault to the successor's start (None: not recovered)."""
        return None if self.successor is None else self.successor.start - self.fault.t

    @property
    def gap(self):
        """From the interrupted instance's end to the successor's start."""
        if self.successor is None or self.interrupted.end is None:
            return None
        return self.successor.start - self.interrupted.end


@attrs.frozen
class Report:
    horizon: float
    intervals: tuple[Interval, ...]
    overlaps: tuple[Overlap, ...]
    stale_actions: tuple[StaleAction, ...]
    epoch_reuses: tuple[EpochReuse, ...]
    unavailability: tuple[Window, ...]
    failovers: tuple[Failover, ...]
    #: Unreadable record lines (reported, never silently dropped).
    problems: tuple[str, ...] = ()
    #: Instances that ran on after their machine's pause (L{MachinePause}).
    after_pause: tuple[AfterPause, ...] = ()
    #: Members of ordered groups that started out of order (L{group_order}).
    out_of_order: tuple[OutOfOrder, ...] = ()

    @property
    def unbounded(self):
        """Instances with no known end (no stop, no observed exit)."""
        return tuple(i for i in self.intervals if i.end is None)

    @property
    def violations(self):
        return (*self.overlaps, *self.stale_actions, *self.epoch_reuses, *self.out_of_order)

    @property
    def ok(self):
        return not self.violations


# -- intervals -----------------------------------------------------------------


def intervals(records):
    """One L{Interval} per instance that wrote a record of its own, by start."""
    own, exits = {}, {}
    for record in records:
        if record.kind == "exit":
            previous = exits.get(record.instance)
            # Several observers: the latest observation is the safe one.
            if previous is None or record.t > previous.t:
                exits[record.instance] = record
        elif record.kind in OWN_KINDS:
            own.setdefault(record.instance, []).append(record)
    result = []
    for instance, mine in own.items():
        mine.sort(key=lambda r: r.t)
        first = mine[0]
        stops = [r for r in mine if r.kind == "stop"]
        if stops:
            end, end_kind = stops[-1].t, "stop"
        elif instance in exits:
            end, end_kind = exits[instance].t, "exit"
        else:
            end, end_kind = None, "unknown"
        last_seen = mine[-1].t
        if end is not None:
            # A record after the end would be impossible; never let the
            # interval end before the instance's own last record.
            end = max(end, last_seen)
        result.append(Interval(
            instance=instance, node=first.node, cluster=first.cluster, epoch=first.epoch,
            pid=first.pid, start=first.t, end=end, end_kind=end_kind, last_seen=last_seen,
            lifeline=any(r.lifeline for r in mine if r.kind == "start"), slot=first.slot,
        ))
    result.sort(key=lambda i: (i.start, i.instance))
    return tuple(result)


# -- overlaps --------------------------------------------------------------------


def overlaps(intervals_, *, horizon, capacity=None):
    """Maximal stretches where a cluster has more instances running than allowed.

    @param capacity: C{{cluster: N}}; clusters not named have capacity 1.
        A cluster with capacity above 1 (n-active) is also held to one
        instance per slot (each slot is its own lease) and one per node.
    """
    capacity = capacity or {}
    found = list(_excess(intervals_, horizon, lambda i: i.cluster,
                         lambda cluster: capacity.get(cluster, 1)))
    slotted = [i for i in intervals_ if i.slot is not None]
    found += _excess(slotted, horizon, lambda i: i.resource, lambda key: 1)
    shared = [i for i in intervals_ if capacity.get(i.cluster, 1) > 1]
    found += _excess(shared, horizon, lambda i: f"{i.cluster}@{i.node}", lambda key: 1)
    # One instance can be counted by two rules (slot and node): report each stretch once.
    unique = {(o.cluster, o.start, o.end): o for o in found}
    return tuple(sorted(unique.values(), key=lambda o: (o.start, o.cluster)))


def _excess(intervals_, horizon, key, limit_of):
    by_key = {}
    for interval in intervals_:
        by_key.setdefault(key(interval), []).append(interval)
    found = []
    for cluster, members in sorted(by_key.items()):
        limit = limit_of(cluster)
        # Ends sort before starts at the same instant: touching is not overlap.
        events = []
        for interval in members:
            if interval.end_or(horizon) <= interval.start:
                continue  # ran for no time at all
            events.append((interval.start, 1, interval))
            events.append((interval.end_or(horizon), 0, interval))
        events.sort(key=lambda e: (e[0], e[1]))
        running = {}
        excess_since = None
        involved = {}
        for t, is_start, interval in events:
            if is_start:
                running[interval.instance] = interval
            else:
                running.pop(interval.instance, None)
            if len(running) > limit:
                if excess_since is None:
                    excess_since = t
                    involved = {}
                involved.update(running)
            elif excess_since is not None:
                if t > excess_since:
                    found.append(Overlap(
                        cluster=cluster, start=excess_since, end=t, capacity=limit,
                        instances=tuple(sorted(involved.values(), key=lambda i: (i.start, i.instance))),
                    ))
                excess_since = None
    return found


# -- epochs ----------------------------------------------------------------------


def epoch_line(record, capacity=None):
    """Whose epochs must grow together: the lease, and for a cluster of capacity 1 the cluster.

    A node restarted with another shape for an active-standby cluster
    (``n-active``, ``count = 1``) takes lease ``ID/0`` instead of ``ID``;
    its epochs continue the cluster's, never below them (issue 17).
    """
    if record.slot is not None and (capacity or {}).get(record.cluster, 1) == 1:
        return record.cluster
    return record.resource


def stale_actions(records, capacity=None):
    """Actions stamped with an epoch lower than one already started for the same lease.

    @param capacity: as for L{overlaps}: a cluster of capacity 1 is one
        line of epochs, whatever slot its records name (L{epoch_line}).
    """
    highest = {}  # epoch line -> (epoch, node, t) of the highest epoch started so far
    found = []
    for record in sorted(records, key=lambda r: r.t):
        if record.epoch is None or record.kind not in ACTION_KINDS:
            continue
        line = epoch_line(record, capacity)
        best = highest.get(line)
        if best is not None and record.epoch < best[0] and best[2] < record.t:
            found.append(StaleAction(
                record=record, newer_epoch=best[0], newer_node=best[1], newer_start=best[2],
            ))
        if record.kind == "start" and (best is None or record.epoch > best[0]):
            highest[line] = (record.epoch, record.node, record.t)
    return tuple(found)


def epoch_reuses(records):
    """The same epoch of a cluster started on two different nodes."""
    first = {}
    found = []
    reported = set()
    for record in sorted(records, key=lambda r: r.t):
        if record.kind != "start" or record.epoch is None:
            continue
        key = (record.resource, record.epoch)
        earlier = first.setdefault(key, record)
        if earlier.node != record.node and (key, record.node) not in reported:
            reported.add((key, record.node))
            found.append(EpochReuse(
                cluster=record.resource, epoch=record.epoch, first=earlier, second=record,
            ))
    return tuple(found)


# -- group order -----------------------------------------------------------------------


def group_order(intervals_, groups, *, horizon):
    """Members of ordered groups that started out of order on their node.

    @param groups: C{{group: (member resource, ...)}}, bottom member first,
        each resource the cluster its member's records name (``A.db``).
    @return: one L{OutOfOrder} per start of a member (a restart too) that
        found a member below it not running on its node under its epoch,
        or a member above it still running on its node. An instance with no
        known end counts as running until the horizon, so an unobserved
        death is never taken for a stop.
    """
    by_member = {}
    for interval in intervals_:
        by_member.setdefault(interval.cluster, []).append(interval)

    def running(member, node, t, epoch=None):
        return [i for i in by_member.get(member, ())
                if i.node == node and i.start < t < i.end_or(horizon)
                and (epoch is None or i.epoch == epoch)]
    found = []
    for group, members in sorted(groups.items()):
        for position, member in enumerate(members):
            for started in by_member.get(member, ()):
                t, node = started.start, started.node
                missing = tuple(m for m in members[:position]
                                if not running(m, node, t, started.epoch))
                above = tuple(i for m in members[position + 1:] for i in running(m, node, t))
                if missing or above:
                    found.append(OutOfOrder(group=group, started=started,
                                            missing_below=missing, alive_above=above))
    return tuple(sorted(found, key=lambda o: o.started.start))


# -- availability --------------------------------------------------------------------


def coverage(records, *, max_gap=DEFAULT_MAX_GAP):
    """C{{cluster: ((start, end), ...)}}: stretches where some instance was recording."""
    per_instance = {}
    for record in records:
        if record.kind in OWN_KINDS:
            per_instance.setdefault(record.instance, []).append(record)
    segments = {}
    for mine in per_instance.values():
        mine.sort(key=lambda r: r.t)
        cluster = mine[0].cluster
        begin = end = mine[0].t
        for record in mine[1:]:
            if record.t - end > max_gap:
                segments.setdefault(cluster, []).append((begin, end))
                begin = record.t
            end = record.t
        segments.setdefault(cluster, []).append((begin, end))
    merged = {}
    for cluster, spans in segments.items():
        spans.sort()
        out = [list(spans[0])]
        for begin, end in spans[1:]:
            if begin - out[-1][1] <= max_gap:
                out[-1][1] = max(out[-1][1], end)
            else:
                out.append([begin, end])
        merged[cluster] = tuple((a, b) for a, b in out)
    return merged


def unavailability(records, *, horizon, max_gap=DEFAULT_MAX_GAP):
    """Windows longer than C{max_gap} with no instance of a cluster recording."""
    windows = []
    for cluster, spans in sorted(coverage(records, max_gap=max_gap).items()):
        for (_, end), (begin, _) in zip(spans, spans[1:]):
            windows.append(Window(cluster=cluster, start=end, end=begin))
        last = spans[-1][1]
        if horizon - last > max_gap:
            windows.append(Window(cluster=cluster, start=last, end=horizon, ongoing=True))
    return tuple(windows)


def failovers(intervals_, faults, *, horizon):
    """What each fault interrupted, and how long until its cluster ran again."""
    ordered = sorted(faults, key=lambda f: f.t)
    found = []
    for index, fault in enumerate(ordered):
        for interval in intervals_:
            if interval.node not in fault.nodes:
                continue
            # Faults on other nodes may come meanwhile; only the next fault
            # on this node takes over the blame.
            until = next((later.t for later in ordered[index + 1:]
                          if interval.node in later.nodes), horizon)
            if fault.clusters and interval.cluster not in fault.clusters:
                continue
            if not (interval.start <= fault.t and interval.end is not None
                    and fault.t <= interval.end < until):
                continue
            successor = next(
                (other for other in intervals_
                 if other.cluster == interval.cluster and other.instance != interval.instance
                 and other.start > fault.t),
                None,
            )
            found.append(Failover(
                fault=fault, cluster=interval.cluster, interrupted=interval, successor=successor,
            ))
    return tuple(found)


# -- logs --------------------------------------------------------------------------------

#: Lines in a daemon log that mean something crashed or went unhandled.
LOG_PROBLEM = re.compile(r"Traceback \(most recent call last\)|Unhandled [Ee]rror|CRITICAL")


def log_problems(name, text):
    """C{["NAME:LINE: text", ...]} for every line of C{text} that shows a crash."""
    return [
        f"{name}:{number}: {line.strip()}"
        for number, line in enumerate(text.splitlines(), start=1)
        if LOG_PROBLEM.search(line)
    ]


# -- everything ------------------------------------------------------------------------------


def without_pauses(intervals_, pauses, horizon):
    """The stretches of C{intervals_} in which their instances could act, for the overlap rule.

    An instance on a paused machine does nothing from the pause's start to
    its end plus its bound (L{MachinePause}); its interval is cut there.
    """
    pieces = list(intervals_)
    for pause in pauses:
        resumed = pause.end + pause.bound
        cut = []
        for interval in pieces:
            end = interval.end_or(horizon)
            if interval.node != pause.node or end <= pause.start or interval.start >= resumed:
                cut.append(interval)
                continue
            if interval.start < pause.start:
                cut.append(attrs.evolve(interval, end=pause.start, end_kind="paused"))
            if end > resumed:
                cut.append(attrs.evolve(interval, start=resumed))
        pieces = cut
    return tuple(sorted(pieces, key=lambda i: (i.start, i.instance)))


def after_pauses(intervals_, pauses, horizon):
    """L{AfterPause} for every instance running on a paused machine when it resumed."""
    found = []
    for pause in pauses:
        for interval in intervals_:
            end = interval.end_or(horizon)
            if interval.node != pause.node or not interval.start <= pause.start < end:
                continue
            if end <= pause.end:
                continue  # killed while frozen (SIGKILL is delivered to frozen tasks)
            overlapped = 0.0
            for other in intervals_:
                if other.resource != interval.resource or other.instance == interval.instance:
                    continue
                lo = max(pause.end, other.start)
                hi = min(end, other.end_or(horizon))
                overlapped = max(overlapped, hi - lo)
            found.append(AfterPause(pause=pause, interval=interval, ran=end - pause.end,
                                    overlapped=max(0.0, overlapped)))
    return tuple(found)


def check(records, *, horizon=None, capacity=None, max_gap=DEFAULT_MAX_GAP, faults=(),
          pauses=(), groups=None):
    """Run every rule over C{records} (a L{Records} or a sequence of L{Record}).

    @param horizon: the end of the observation (monotonic); instances with no
        known end run until then. Default: the last record's time.
    @param pauses: L{MachinePause}s: whole machines frozen by the rig.
    @param groups: ordered groups whose start order to check (L{group_order}).
    """
    problems = ()
    if isinstance(records, Records):
        problems = records.problems
        records = records.records
    records = tuple(records)
    if horizon is None:
        horizon = max((r.t for r in records), default=0.0)
    spans = intervals(records)
    excused = [r for r in records if not any(
        r.node == p.node and p.end <= r.t < p.end + p.bound for p in pauses)]
    return Report(
        horizon=horizon,
        intervals=spans,
        overlaps=overlaps(without_pauses(spans, pauses, horizon), horizon=horizon,
                          capacity=capacity),
        stale_actions=stale_actions(excused, capacity),
        epoch_reuses=epoch_reuses(records),
        unavailability=unavailability(records, horizon=horizon, max_gap=max_gap),
        failovers=failovers(spans, faults, horizon=horizon),
        problems=tuple(problems),
        after_pause=after_pauses(spans, pauses, horizon),
        out_of_order=group_order(spans, groups or {}, horizon=horizon),
    )
