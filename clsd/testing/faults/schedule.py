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

Membership changes (``join`` of a spare node, graceful ``leave`` of a node
that comes back later) come from a second random stream of the same seed,
at most one at a time, one every C{MEMBERSHIP_MIN_GAP}..C{MEMBERSHIP_MAX_GAP}
seconds, and only on a node no other process fault touches meanwhile. So
adding them left every other fault of a seed where it was in version 1.
"""

import json
import random

import attrs

SCHEDULE_VERSION = 3
#: Versions this rig replays (version 1: no membership changes, no spares;
#: version 2: no machine pauses).
READABLE_VERSIONS = (1, 2, 3)

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
#: stopped meanwhile: clsd.testing.faults.freeze), from a stream of its own.
PAUSE_KINDS = ("freeze_node",)
ALL_KINDS = NETWORK_KINDS + PROCESS_KINDS + MEMBERSHIP_KINDS + PAUSE_KINDS
#: The least number of nodes each kind needs to mean anything.
MIN_NODES = {"isolate": 2, "split": 3, "bridge": 3, "ring": 4, "loss": 2, "leave": 2}

#: Spare nodes (``j1``, ``j2``) a schedule with ``join`` may start: each joins once.
DEFAULT_SPARES = 2
#: Membership changes are rarer than faults: a node that comes and goes
#: every few seconds tests the churn limits of membership, not failover.
MEMBERSHIP_MIN_GAP = 10.0
MEMBERSHIP_MAX_GAP = 25.0


PAUSE_MIN_GAP = 15.0
PAUSE_MAX_GAP = 35.0


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
                       version=data["version"], spares=spares)
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
             spares=None):
    """A L{Schedule} of faults for C{nodes} over C{duration} seconds, from C{seed} alone.

    @param spares: names of nodes that may join; default C{DEFAULT_SPARES}
        names ``j1``... when ``join`` is among C{kinds}, else none.
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
                   and (k != "join" or spares) and k not in PAUSE_KINDS)
    if not usable and not set(kinds) & set(PAUSE_KINDS):
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
    events = sorted(events + membership + pauses, key=lambda e: e.at)
    return Schedule(seed=seed, nodes=nodes, duration=duration, lease=lease,
                    kinds=tuple(kinds), events=tuple(events), spares=spares)


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
