"""Was each cluster running whenever the faults allowed it? Pure functions over a run.

The final heal proves a cluster comes back eventually; this proves more: that
*during* the run a cluster was never down much longer than its failover bound
while the faults of that moment left it a way to run.

**When a cluster must run** (conservatively; every doubt excuses it). The
run is cut into segments at every fault transition (an apply or a heal). In
a segment a node is

- *up* when it is a member (not a spare that has not joined, or has left
  again) and its daemon is neither killed nor gone in a ``leave``;
- *clean* when up and neither paused (``pause_daemon``), starved
  (``cpu_starve``) nor under packet ``loss``. A wall-clock jump and a hung
  service do not make a node unclean: the design promises that a jump
  changes nothing and that a health check replaces a hung service.

The partition must be one with clear sides: none, ``isolate`` or ``split``
(whose sides are cliques). During ``bridge`` or ``ring`` who holds what
depends on who gossips through whom, so no cluster is required to run. A
cluster with count N is *required* to run C{min(N, c)} copies when some side
holds more than half of the voters as clean nodes and C{c >= 1} clean
candidates of the cluster (the best such side counts).

**From when.** A requirement is checked only from C{bound} seconds after the
cluster's *clock start*: the latest transition that touched one of its
candidates (any fault on one, a join or leave of one), any change of the
partition or of loss, any join or leave, or a change of the required copies
(e.g. a voter healed and a majority is back). A fault on a voter that is not
a candidate and leaves the majority intact does not restart the clock.

**Measured.** Copies are counted from the records: an instance counts while
it keeps recording at most C{max_gap} apart (as for unavailability). Every
stretch past the bound where fewer copies ran than required is a
L{BoundExceeded}; for each cluster the worst *time to recover* (the
longest stretch with too few copies while they were required, counted from
the clock start at the earliest) is reported whether or not it exceeded
the bound.
"""

import attrs

from rig import checker

#: Faults whose target is not clean while they last.
UNCLEAN_KINDS = ("pause_daemon", "cpu_starve", "loss")
#: Faults whose target is not up while they last.
DOWN_KINDS = ("kill_daemon", "leave")
#: Partitions with no clear sides: nothing is required during them.
UNCLEAR_KINDS = ("bridge", "ring")
NETWORK_KINDS = ("isolate", "split", "bridge", "ring", "loss")
#: A daemon started again on a busy shared machine: Python, twistd, TLS, a
#: join through the seeds (a few seconds measured under load; doubled).
START_ALLOWANCE = 5.0


def bound_for(timing):
    """The failover bound of a scenario's L{rig.cluster.Timing}.

    Membership detection in the worst case (a member beyond a partition:
    failure_timeout plus one heartbeat, then the suspicion timeout), the
    ownership's own reacquire bound after that (a quiet voter, an old lease,
    a retry and a round), and a restarted daemon's start.
    """
    from clsd.config.membership import MembershipConfig
    from clsd.ownership.core.timing import DEFAULT_DRIFT_MARGIN, LeaseTiming

    m = attrs.evolve(MembershipConfig(), **{
        k: v for k, v in timing.membership.items()
        if k in ("failure_timeout", "heartbeat_interval", "suspicion_timeout")})
    lease = LeaseTiming(timing.lease_seconds,
                        DEFAULT_DRIFT_MARGIN if timing.drift_margin is None else timing.drift_margin)
    detection = m.failure_timeout + m.heartbeat_interval + m.suspicion_timeout
    return round(lease.reacquire_bound(detection) + START_ALLOWANCE, 2)


@attrs.frozen
class Change:
    """One applied fault as this check needs it (times are monotonic)."""

    kind: str
    targets: tuple
    params: dict
    applied: float
    #: When it was healed; None when instantaneous or never (a join that stays).
    healed: float | None

    def active(self, t):
        if self.kind == "join" and self.healed is None:
            return self.applied <= t
        return self.healed is not None and self.applied <= t < self.healed


@attrs.frozen
class Segment:
    start: float
    end: float
    #: C{{cluster: copies required}} (0: excused).
    required: dict
    #: Nodes a transition at C{start} touched; None: it touched everyone.
    touched: frozenset | None


@attrs.frozen
class BoundExceeded:
    cluster: str
    start: float
    end: float
    required: int
    running: int
    #: When the cluster's clock last started (the bound counts from there).
    since: float
    bound: float

    @property
    def duration(self):
        return self.end - self.start

    def describe(self, origin=0.0):
        return (f"BOUND EXCEEDED cluster {self.cluster}: {self.running} of {self.required} "
                f"required copies running from t={self.start - origin:.2f} to "
                f"t={self.end - origin:.2f}, {self.end - self.since:.2f}s after its last change "
                f"at t={self.since - origin:.2f} (bound {self.bound}s)")


@attrs.frozen
class Verdict:
    bound: float
    exceeded: tuple
    #: C{{cluster: seconds}}: the longest stretch with too few copies while they
    #: were required, counted from the cluster's clock start at the earliest.
    worst_recovery: dict
    #: C{{cluster: seconds}} during which the cluster was required to run.
    required_seconds: dict


def changes_of(run):
    """The runner's applied steps as L{Change}s."""
    return [Change(kind=s.event.kind, targets=tuple(s.event.targets), params=s.event.params,
                   applied=s.applied_at, healed=s.healed_at)
            for s in run.steps if s.applied_at is not None]


def segments(changes, layout, start, end):
    """Cut C{[start, end)} at every transition; what each cluster requires in each piece."""
    cuts = {start}
    touched_at = {}
    for change in changes:
        for t in (change.applied, change.healed):
            if t is not None and start < t < end:
                cuts.add(t)
                touched = touched_at.setdefault(t, set())
                if change.kind in NETWORK_KINDS or change.kind in ("join", "leave"):
                    touched_at[t] = None
                elif touched is not None:
                    touched.update(change.targets)
    cuts = sorted(cuts)
    result = []
    for a, b in zip(cuts, cuts[1:] + [end]):
        if b <= a:
            continue
        touched = touched_at.get(a, set())
        result.append(Segment(start=a, end=b, required=required(changes, layout, a),
                              touched=None if touched is None else frozenset(touched)))
    return result


def required(changes, layout, t):
    """C{{cluster: copies}} the faults active at C{t} leave room for."""
    active = [c for c in changes if c.active(t)]
    if any(c.kind in UNCLEAR_KINDS for c in active):
        return {cluster: 0 for cluster in layout.clusters}
    joined = {c.targets[0] for c in active if c.kind == "join"}
    members = [*layout.nodes, *sorted(joined)]
    down = {n for c in active if c.kind in DOWN_KINDS for n in c.targets}
    unclean = {n for c in active if c.kind in UNCLEAN_KINDS for n in c.targets}
    clean = [n for n in members if n not in down and n not in unclean]
    # A node with another shape for its clusters holds back their failover
    # (doc/ownership.md, "Settings every node must share"): excused.
    reshaped = {n for c in active if c.kind == "reshape" for n in c.targets}
    sides = [members]
    for c in active:
        if c.kind == "isolate":
            sides = [[c.targets[0]], [n for n in members if n != c.targets[0]]]
        elif c.kind == "split":
            sides = [list(g) for g in c.params["groups"]]
            placed = {n for g in sides for n in g}
            sides[-1] += [n for n in members if n not in placed]
    result = {}
    for cluster in layout.clusters:
        best = 0
        if reshaped & set(layout.clusters[cluster]):
            result[cluster] = 0
            continue
        for side in sides:
            voters = [n for n in side if n in clean and n in layout.voters]
            if 2 * len(voters) <= len(layout.voters):
                continue
            candidates = [n for n in side if n in clean and n in layout.clusters[cluster]]
            best = max(best, min(layout.count(cluster), len(candidates)))
        result[cluster] = best
    return result


def running_counts(records, cluster, max_gap=checker.DEFAULT_MAX_GAP):
    """C{[(t, copies)]}: how many instances of C{cluster} were recording, as a step function."""
    per_instance = {}
    for record in records:
        if record.cluster == cluster and record.kind in checker.OWN_KINDS:
            per_instance.setdefault(record.instance, []).append(record.t)
    deltas = []
    for times in per_instance.values():
        times.sort()
        begin = end = times[0]
        for t in times[1:]:
            if t - end > max_gap:
                deltas += [(begin, 1), (end + max_gap, -1)]
                begin = t
            end = t
        # Covered until its last record, plus the gap a heartbeat may take.
        deltas += [(begin, 1), (end + max_gap, -1)]
    deltas.sort()
    steps, level = [], 0
    for t, d in deltas:
        level += d
        if steps and steps[-1][0] == t:
            steps[-1] = (t, level)
        else:
            steps.append((t, level))
    return steps


def _level_at(steps, t):
    level = 0
    for when, value in steps:
        if when > t:
            break
        level = value
    return level


def _short_stretches(steps, need, begin, end):
    """C{[(from, to, lowest)]} within C{[begin, end)} where fewer than C{need} ran."""
    points = [begin] + [t for t, _ in steps if begin < t < end] + [end]
    found = []
    for a, b in zip(points, points[1:]):
        level = _level_at(steps, a)
        if level < need and b > a:
            if found and found[-1][1] == a:
                found[-1] = (found[-1][0], b, min(found[-1][2], level))
            else:
                found.append((a, b, level))
    return found


def judge(records, changes, layout, *, start, end, bound, max_gap=checker.DEFAULT_MAX_GAP):
    """The L{Verdict} for a run from C{start} (all clusters running) to C{end} (final heal)."""
    exceeded, worst, required_seconds = [], {}, {}
    pieces = segments(changes, layout, start, end)
    for cluster in layout.clusters:
        steps = running_counts(records, cluster, max_gap)
        candidates = set(layout.clusters[cluster])
        clock = start
        previous = None
        worst[cluster] = 0.0
        required_seconds[cluster] = 0.0
        short_since, short_until = None, None
        for piece in pieces:
            need = piece.required[cluster]
            if piece.start > start and (
                    piece.touched is None or piece.touched & candidates or need != previous):
                clock = piece.start
            previous = need
            if need == 0:
                continue
            required_seconds[cluster] += piece.end - piece.start
            for a, b, level in _short_stretches(steps, need, piece.start, piece.end):
                # Time to recover: from when it was short (or its last change, if later)
                # until enough ran again (or the next cut).
                if short_until != a:
                    short_since = a
                short_until = b
                worst[cluster] = max(worst[cluster], b - max(short_since, clock))
                late_from = max(a, clock + bound)
                if late_from < b:
                    exceeded.append(BoundExceeded(cluster=cluster, start=late_from, end=b,
                                                  required=need, running=level, since=clock,
                                                  bound=bound))
        worst[cluster] = round(worst[cluster], 3)
        required_seconds[cluster] = round(required_seconds[cluster], 3)
    exceeded = _merge(exceeded)
    return Verdict(bound=bound, exceeded=tuple(exceeded), worst_recovery=worst,
                   required_seconds=required_seconds)


def _merge(found):
    """Join stretches of one cluster that continue each other across segment cuts."""
    found.sort(key=lambda e: (e.cluster, e.start))
    merged = []
    for item in found:
        last = merged[-1] if merged else None
        if last is not None and last.cluster == item.cluster and last.end >= item.start:
            merged[-1] = attrs.evolve(last, end=max(last.end, item.end),
                                      running=min(last.running, item.running),
                                      required=max(last.required, item.required))
        else:
            merged.append(item)
    return merged
