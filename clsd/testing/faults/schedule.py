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
"""

import json
import random

import attrs

SCHEDULE_VERSION = 1

#: Leave the cluster this long to settle before the first fault.
DEFAULT_SETTLE = 5.0
DEFAULT_MIN_GAP = 5.0
DEFAULT_MAX_GAP = 15.0
#: The lease the faults are sized against (issue 5's default).
DEFAULT_LEASE = 2.0

NETWORK_KINDS = ("isolate", "split", "bridge", "ring", "loss")
PROCESS_KINDS = ("kill_daemon", "restart_daemon", "pause_daemon", "kill_service",
                 "pause_service", "cpu_starve", "clock_jump")
ALL_KINDS = NETWORK_KINDS + PROCESS_KINDS
#: The least number of nodes each kind needs to mean anything.
MIN_NODES = {"isolate": 2, "split": 3, "bridge": 3, "ring": 4, "loss": 2}


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

    def to_json(self):
        return json.dumps(attrs.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text, source="<schedule>"):
        try:
            data = json.loads(text)
            if data.get("version") != SCHEDULE_VERSION:
                raise ScheduleError(
                    f"{source}: schedule version {data.get('version')!r}, "
                    f"this rig reads {SCHEDULE_VERSION}")
            events = tuple(
                FaultEvent(at=e["at"], kind=e["kind"], targets=tuple(e["targets"]),
                           lasts=e["lasts"], params=dict(e["params"]))
                for e in data["events"]
            )
            for event in events:
                if event.kind not in ALL_KINDS:
                    raise ScheduleError(f"{source}: unknown fault kind {event.kind!r}")
            return cls(seed=data["seed"], nodes=tuple(data["nodes"]), duration=data["duration"],
                       lease=data["lease"], kinds=tuple(data["kinds"]), events=events)
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
             settle=DEFAULT_SETTLE, min_gap=DEFAULT_MIN_GAP, max_gap=DEFAULT_MAX_GAP):
    """A L{Schedule} of faults for C{nodes} over C{duration} seconds, from C{seed} alone."""
    nodes = tuple(nodes)
    duration = float(duration)
    if len(set(nodes)) != len(nodes) or not nodes:
        raise ScheduleError(f"nodes must be distinct names, got {list(nodes)}")
    unknown = [k for k in kinds if k not in ALL_KINDS]
    if unknown:
        raise ScheduleError(f"unknown fault kinds {unknown}; known: {', '.join(ALL_KINDS)}")
    if not 0 < min_gap <= max_gap:
        raise ScheduleError(f"need 0 < min_gap <= max_gap, got {min_gap}, {max_gap}")
    usable = tuple(k for k in kinds if len(nodes) >= MIN_NODES.get(k, 1))
    if not usable:
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
        if not eligible:
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
    return Schedule(seed=seed, nodes=nodes, duration=duration, lease=lease,
                    kinds=tuple(kinds), events=tuple(events))
