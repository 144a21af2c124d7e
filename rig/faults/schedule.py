"""Seeded fault schedules: the same seed gives the same schedule, byte for byte.

A schedule is a list of events (when, what, on which nodes, with which
parameters, for how long), generated from C{random.Random(seed)} alone, so a
failing run is replayed by its seed, or exactly from its printed JSON. It
knows node names only; the runner maps them to processes and addresses.

Generation rules: one event every C{min_gap}..C{max_gap} seconds after a
settling period; at most one network fault at a time (so each partition is a
shape one can name); at most one process-level fault per node at a time (a
paused daemon is not also killed); a kind whose preconditions fail (a ring
needs four nodes) is never drawn.

Machine pauses (``freeze_node``) come from a third stream of the seed, one
every C{PAUSE_MIN_GAP}..C{PAUSE_MAX_GAP} seconds, on a node no other process
fault or membership change touches meanwhile (version 3; the other events of
a seed are as in version 2).

Version 4 adds three more streams of the seed, each leaving every earlier
event of a seed where it was in version 3: a node restarted with another
shape for one of its clusters (``reshape``, stream ``reshape-S``), a node's
lease clock running up to 2 % fast or slow (``clock_rate``, stream
``rate-S``), and whether the run's protected services escape their process
group (C{escaping}, stream ``escape-S``: half the seeds).

Membership changes (``join`` of a spare node, graceful ``leave`` of a node
that comes back later) come from a second random stream of the same seed,
at most one at a time, one every C{MEMBERSHIP_MIN_GAP}..C{MEMBERSHIP_MAX_GAP}
seconds, and only on a node no other process fault touches meanwhile. So
adding them left every other fault of a seed where it was in version 1.
"""

import json
import random

import attrs

SCHEDULE_VERSION = 4
#: Versions this rig replays (version 1: no membership changes, no spares;
#: version 2: no machine pauses; version 3: no reshapes, clock rates or
#: escaping services).
READABLE_VERSIONS = (1, 2, 3, 4)

#: Leave the cluster this long to settle before the first fault.
DEFAULT_SETTLE = 5.0
DEFAULT_MIN_GAP = 5.0
DEFAULT_MAX_GAP = 15.0
#: The lease the faults are sized against (issue 5's default).
DEFAULT_LEASE = 2.0

NETWORK_KINDS = ("isolate", "split", "bridge", "ring", "loss")
PROCESS_KINDS = ("kill_daemon", "restart_daemon", "pause_daemon", "kill_service",
                 "pause_service", "cpu_starve", "clock_jump")
#: Membership changes: a spare joins (and stays, or leaves gracefully at its
#: heal); a node leaves gracefully (SIGTERM: its clusters are handed over,
#: the leave announced) and comes back at its heal.
MEMBERSHIP_KINDS = ("join", "leave")
#: A whole machine paused (every process of a node frozen, its lease clock
#: stopped meanwhile: rig.faults.freeze), from a stream of its own.
PAUSE_KINDS = ("freeze_node",)
#: A node restarted with another ``mode``/``count`` for one of its clusters
#: (and restarted with its own again at the heal); a node's lease clock
#: running at another rate. Each from a stream of its own.
RESHAPE_KINDS = ("reshape",)
RATE_KINDS = ("clock_rate",)
STREAM_KINDS = PAUSE_KINDS + RESHAPE_KINDS + RATE_KINDS
ALL_KINDS = NETWORK_KINDS + PROCESS_KINDS + MEMBERSHIP_KINDS + STREAM_KINDS
#: The least number of nodes each kind needs to mean anything (a reshape
#: needs a node that runs clusters beside the witness and a second candidate).
MIN_NODES = {"isolate": 2, "split": 3, "bridge": 3, "ring": 4, "loss": 2, "leave": 2,
             "reshape": 3}

#: Spare nodes (``j1``, ``j2``) a schedule with ``join`` may start: each joins once.
DEFAULT_SPARES = 2
#: Membership changes are rarer than faults: a node that comes and goes
#: every few seconds tests the churn limits of membership, not failover.
MEMBERSHIP_MIN_GAP = 10.0
MEMBERSHIP_MAX_GAP = 25.0


PAUSE_MIN_GAP = 15.0
PAUSE_MAX_GAP = 35.0

RESHAPE_MIN_GAP = 20.0
RESHAPE_MAX_GAP = 40.0
#: What a reshape changes: an active-standby cluster of the node becomes
#: ``n-active`` with ``count = 1`` (lease ``ID/0`` beside ``ID``), or the
#: n-active cluster's count grows by one.
RESHAPE_CHANGES = ("mode", "count")

RATE_MIN_GAP = 15.0
RATE_MAX_GAP = 35.0
#: How far a lease clock's rate is off: 0.5-2 % fast or slow. Inside what the
#: default drift margin covers (m = 0.1 s of T = 2 s less the kill latency:
#: a holder slow by r believes (T - m) / (1 - r) = 1.94 s at 2 %), so no
#: overlap is allowed (doc/reliability.md, "Clock rates").
RATE_MIN = 0.005
RATE_MAX = 0.02


class ScheduleError(ValueError):
    """A schedule that cannot be generated or read."""


@attrs.frozen
class FaultEvent:
    at: float
    kind: str
    targets: tuple[str, ...]
    #: Seconds until it is healed; None for instantaneous faults.
    lasts: float | None = None
    params: dict = attrs.field(factory=dict, hash=False)

    @property
    def heal_at(self):
        return None if self.lasts is None else round(self.at + self.lasts, 2)

    def describe(self):
        extra = " ".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        lasting = f" for {self.lasts:.2f}s" if self.lasts is not None else ""
        return f"{self.kind} {','.join(self.targets)}{lasting}" + (f" ({extra})" if extra else "")


@attrs.frozen
class Schedule:
    seed: int
    nodes: tuple[str, ...]
    duration: float
    lease: float
    kinds: tuple[str, ...]
    events: tuple[FaultEvent, ...]
    version: int = SCHEDULE_VERSION
    #: Nodes not started at first, that ``join`` events start.
    spares: tuple[str, ...] = ()
    #: The protected services double-fork and setsid: the recording copy
    #: leaves its process group (version 4).
    escaping: bool = False

    def to_json(self):
        return json.dumps(attrs.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text, source="<schedule>"):
        try:
            data = json.loads(text)
            if data.get("version") not in READABLE_VERSIONS:
                raise ScheduleError(
                    f"{source}: schedule version {data.get('version')!r}, "
                    f"this rig reads {', '.join(map(str, READABLE_VERSIONS))}")
            events = tuple(
                FaultEvent(at=e["at"], kind=e["kind"], targets=tuple(e["targets"]),
                           lasts=e["lasts"], params=dict(e["params"]))
                for e in data["events"]
            )
            for event in events:
                if event.kind not in ALL_KINDS:
                    raise ScheduleError(f"{source}: unknown fault kind {event.kind!r}")
            spares = tuple(data.get("spares", ()))
            for event in events:
                if event.kind == "join" and event.targets[0] not in spares:
                    raise ScheduleError(
                        f"{source}: join of {event.targets[0]!r}, not a spare "
                        f"(spares: {', '.join(spares) or 'none'})")
            return cls(seed=data["seed"], nodes=tuple(data["nodes"]), duration=data["duration"],
                       lease=data["lease"], kinds=tuple(data["kinds"]), events=events,
                       version=data["version"], spares=spares,
                       escaping=bool(data.get("escaping", False)))
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            if isinstance(e, ScheduleError):
                raise
            raise ScheduleError(f"{source}: not a schedule: {e!r}") from None


def _round(x):
    return round(x, 2)


def _pick_event(rnd, kind, nodes, lease, free):
    """Parameters for one event of C{kind}; C{free} are the nodes without a process fault."""
    n = len(nodes)
    if kind == "isolate":
        return (rnd.choice(nodes),), _round(rnd.uniform(3, 10)), {}
    if kind == "split":
        shuffled = rnd.sample(nodes, n)
        minority = shuffled[: (n - 1) // 2]
        return tuple(sorted(minority)), _round(rnd.uniform(3, 10)), {
            "groups": [sorted(minority), sorted(shuffled[len(minority):])]}
    if kind == "bridge":
        shuffled = rnd.sample(nodes, n)
        middle, rest = shuffled[0], shuffled[1:]
        half = len(rest) // 2
        return (middle,), _round(rnd.uniform(3, 10)), {
            "bridge": middle, "sides": [sorted(rest[:half]), sorted(rest[half:])]}
    if kind == "ring":
        order = rnd.sample(nodes, n)
        return tuple(order), _round(rnd.uniform(3, 10)), {"order": order}
    if kind == "loss":
        return (rnd.choice(nodes),), _round(rnd.uniform(3, 10)), {
            "fraction": _round(rnd.uniform(0.1, 0.5))}
    target = (rnd.choice(free),)
    if kind in ("kill_service", "restart_daemon"):
        return target, None, {}
    if kind == "kill_daemon":
        return target, _round(rnd.uniform(1, 8)), {}
    if kind == "pause_daemon":
        long = rnd.random() < 0.5
        # Shorter than the lease: nothing may move. Longer: the service must
        # be killed at the deadline and the cluster fail over.
        lasts = rnd.uniform(1.5 * lease, 3 * lease) if long else rnd.uniform(0.2 * lease, 0.6 * lease)
        return target, _round(lasts), {"long": long}
    if kind == "pause_service":
        return target, _round(rnd.uniform(2, 8)), {}
    if kind == "cpu_starve":
        return target, _round(rnd.uniform(3, 8)), {"share": _round(rnd.uniform(0.02, 0.1))}
    if kind == "clock_jump":
        return target, _round(rnd.uniform(5, 15)), {"seconds": rnd.choice((-300, 300))}
    raise ScheduleError(f"unknown fault kind {kind!r}")


def generate(seed, nodes, duration, *, kinds=ALL_KINDS, lease=DEFAULT_LEASE,
             settle=DEFAULT_SETTLE, min_gap=DEFAULT_MIN_GAP, max_gap=DEFAULT_MAX_GAP,
             spares=None, escaping=None):
    """A L{Schedule} of faults for C{nodes} over C{duration} seconds, from C{seed} alone.

    @param spares: names of nodes that may join; default C{DEFAULT_SPARES}
        names ``j1``... when ``join`` is among C{kinds}, else none.
    @param escaping: whether the services escape their process group; None:
        drawn from the seed (half the seeds).
    """
    nodes = tuple(nodes)
    duration = float(duration)
    if len(set(nodes)) != len(nodes) or not nodes:
        raise ScheduleError(f"nodes must be distinct names, got {list(nodes)}")
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise ScheduleError(f"unknown fault kinds {unknown}; known: {', '.join(ALL_KINDS)}")
    if not 0 < min_gap <= max_gap:
        raise ScheduleError(f"need 0 < min_gap <= max_gap, got {min_gap}, {max_gap}")
    if spares is None:
        spares = tuple(f"j{i}" for i in range(1, DEFAULT_SPARES + 1)) if "join" in kinds else ()
    spares = tuple(spares)
    if set(spares) & set(nodes) or len(set(spares)) != len(spares):
        raise ScheduleError(f"spares {list(spares)} must be distinct and not among the nodes")
    usable = tuple(k for k in kinds if len(nodes) >= MIN_NODES.get(k, 1)
                   and (k != "join" or spares) and k not in STREAM_KINDS)
    streamed = [k for k in kinds if k in STREAM_KINDS and len(nodes) >= MIN_NODES.get(k, 1)]
    if not usable and not streamed:
        raise ScheduleError(f"no fault kind among {list(kinds)} works with {len(nodes)} nodes")
    rnd = random.Random(seed)
    events = []
    network_busy_until = 0.0
    node_busy_until = {name: 0.0 for name in nodes}
    t = settle
    while True:
        t = _round(t + rnd.uniform(min_gap, max_gap))
        if t >= duration:
            break
        free = [name for name in nodes if node_busy_until[name] <= t]
        eligible = [
            k for k in usable
            if (k in NETWORK_KINDS and network_busy_until <= t)
            or (k in PROCESS_KINDS and free)
        ]
        if not eligible or not usable:
            continue
        kind = rnd.choice(eligible)
        targets, lasts, params = _pick_event(rnd, kind, nodes, lease, free)
        if lasts is not None:
            lasts = min(lasts, _round(duration - t))
        end = t + (lasts or 0.0)
        if kind in NETWORK_KINDS:
            network_busy_until = end
        else:
            node_busy_until[targets[0]] = end
        events.append(FaultEvent(at=t, kind=kind, targets=targets, lasts=lasts, params=params))
    membership = _membership_events(seed, nodes, spares, duration, usable, events, settle)
    pauses = []
    if "freeze_node" in kinds:
        pauses = _pause_events(seed, nodes, duration, lease, events + membership, settle)
    reshapes = []
    if "reshape" in streamed:
        reshapes = _reshape_events(seed, nodes, duration, events + membership + pauses)
    rates = _rate_events(seed, nodes, duration) if "clock_rate" in streamed else []
    if escaping is None:
        escaping = random.Random(f"escape-{seed}").random() < 0.5
    events = sorted(events + membership + pauses + reshapes + rates, key=lambda e: e.at)
    return Schedule(seed=seed, nodes=nodes, duration=duration, lease=lease,
                    kinds=tuple(kinds), events=tuple(events), spares=spares,
                    escaping=bool(escaping))


def _membership_events(seed, nodes, spares, duration, usable, faults, settle):
    """Joins and leaves from their own stream of C{seed}, clear of C{faults} on their node."""
    kinds = [k for k in MEMBERSHIP_KINDS if k in usable]
    if not kinds:
        return []
    rnd = random.Random(f"membership-{seed}")
    busy = {}  # node -> [(from, to)] of process faults
    for event in faults:
        if event.kind in PROCESS_KINDS:
            busy.setdefault(event.targets[0], []).append((event.at, event.heal_at or event.at))

    def clear(node, begin, end):
        # A small margin: a fault right after a node comes back would find it starting.
        return all(to < begin - 1.0 or start > end + 2.0 for start, to in busy.get(node, ()))

    unused = list(spares)
    events = []
    t = settle
    while True:
        t = _round(t + rnd.uniform(MEMBERSHIP_MIN_GAP, MEMBERSHIP_MAX_GAP))
        if t >= duration:
            break
        kind = rnd.choice(kinds)
        if kind == "join":
            if not unused:
                continue
            spare = unused.pop(0)
            stays = rnd.random() < 0.5
            lasts = None if stays else _round(min(rnd.uniform(8, 20), duration - t))
            events.append(FaultEvent(at=t, kind="join", targets=(spare,), lasts=lasts,
                                     params={"stays": stays}))
            end = duration if stays else t + lasts
        else:
            lasts = _round(min(rnd.uniform(3, 12), duration - t))
            candidates = [n for n in nodes if clear(n, t, t + lasts)]
            if not candidates:
                continue
            node = rnd.choice(candidates)
            events.append(FaultEvent(at=t, kind="leave", targets=(node,), lasts=lasts))
            end = t + lasts
        # One membership change at a time: the next comes after this one is over.
        t = max(t, _round(end))
    return events


def _busy_nodes(others, duration):
    """C{{node: [(from, to)]}} of the process faults, membership changes and pauses in C{others}."""
    busy = {}
    for event in others:
        if event.kind in NETWORK_KINDS:
            continue
        end = event.heal_at if event.heal_at is not None else (
            duration if event.kind == "join" else event.at)
        busy.setdefault(event.targets[0], []).append((event.at, end))
    return busy


def _reshape_events(seed, nodes, duration, others):
    """Restarts with another shape, one at a time, on a node nothing else touches meanwhile.

    The last node is left out: in the clusters scenario it is the witness
    and runs no cluster.
    """
    rnd = random.Random(f"reshape-{seed}")
    busy = _busy_nodes(others, duration)
    events = []
    t = DEFAULT_SETTLE
    while True:
        t = _round(t + rnd.uniform(RESHAPE_MIN_GAP, RESHAPE_MAX_GAP))
        if t >= duration:
            break
        lasts = _round(min(rnd.uniform(5, 15), duration - t))
        change = rnd.choice(RESHAPE_CHANGES)
        candidates = [n for n in nodes[:-1] if all(
            to < t - 1.0 or start > t + lasts + 2.0 for start, to in busy.get(n, ()))]
        if not candidates:
            continue
        node = rnd.choice(candidates)
        events.append(FaultEvent(at=t, kind="reshape", targets=(node,), lasts=lasts,
                                 params={"change": change}))
        t = max(t, _round(t + lasts))
    return events


def _rate_events(seed, nodes, duration):
    """One node's lease clock off its rate at a time; nothing else needs to stay clear of it."""
    rnd = random.Random(f"rate-{seed}")
    events = []
    t = DEFAULT_SETTLE
    while True:
        t = _round(t + rnd.uniform(RATE_MIN_GAP, RATE_MAX_GAP))
        if t >= duration:
            break
        lasts = _round(min(rnd.uniform(8, 20), duration - t))
        rate = round(rnd.choice((-1, 1)) * rnd.uniform(RATE_MIN, RATE_MAX), 4)
        node = rnd.choice(nodes)
        events.append(FaultEvent(at=t, kind="clock_rate", targets=(node,), lasts=lasts,
                                 params={"rate": rate}))
        t = max(t, _round(t + lasts))
    return events


def _pause_events(seed, nodes, duration, lease, others, settle):
    """Machine pauses from their own stream of C{seed}, clear of C{others} on their node."""
    rnd = random.Random(f"pause-{seed}")
    busy = {}
    for event in others:
        if event.kind in PROCESS_KINDS or event.kind in MEMBERSHIP_KINDS:
            end = event.heal_at if event.heal_at is not None else (
                duration if event.kind == "join" else event.at)
            busy.setdefault(event.targets[0], []).append((event.at, end))
    events = []
    t = settle
    while True:
        t = _round(t + rnd.uniform(PAUSE_MIN_GAP, PAUSE_MAX_GAP))
        if t >= duration:
            break
        # Shorter than the lease: nothing may move. Longer: the others take
        # over, and the resumed node must stop at its first refused renewal.
        long = rnd.random() < 0.7
        lasts = rnd.uniform(1.5 * lease, 3 * lease) if long else rnd.uniform(0.2 * lease, 0.6 * lease)
        lasts = _round(min(lasts, duration - t))
        candidates = [n for n in nodes if all(
            to < t - 1.0 or start > t + lasts + 2.0 for start, to in busy.get(n, ()))]
        if not candidates:
            continue
        node = rnd.choice(candidates)
        busy.setdefault(node, []).append((t, t + lasts))
        events.append(FaultEvent(at=t, kind="freeze_node", targets=(node,), lasts=lasts,
                                 params={"long": long}))
    return events
