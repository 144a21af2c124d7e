"""The lifecycle of one supervised service, as a pure state machine.

Sans-IO in the manner of h11: L{ServicePolicy.handle} is fed an event (an
operator request, a process fact, a health result, a timer) together with
the current monotonic time, and returns the actions the caller must carry
out (spawn, signal the process group, set or cancel a timer, run a health
check, record an event). It never touches a process, a clock or a reactor,
so every rule below is tested with plain values: see
L{clsd.supervision.runner} for the Twisted shell that executes the actions.

States::

    stopped --start--> starting --spawned--> running         (starting waits
       ^                  |  ^                  |             for `rise` good
       |                  |  |                  |             checks when a
       |                  |  +--(restart now)---+ exited      check is set)
       |                  |           |         |
       |                  |        backoff <----+ (delay > 0)
       |                  |                     |
       +---- stopping <---+---------------------+ stop / health fall /
                 |                                leftover group members
                 +--> failed  (crash loop; sticky until reset)
                 +--> exited  (restart = never, or clean exit under on-failure)

Service types (doc/supervision.md, "Service types"): for ``forking`` the
spawned process is a start command; STARTING lasts until it succeeded and
the pidfile names the main process (L{MainPid}), whose end (L{Exited} with
C{what}) ends the instance. For ``lsb``/``ocf`` it is the agent's start
action; status/monitor and stop are L{RunAction}s whose results come back as
L{AgentResult}s, and a requested start probes first (a running system is
adopted).

Safety rule: C{Spawn} is only ever returned when no process of the
previous instance can be alive: the leader has been reaped and its whole
process group is gone (or was SIGKILLed and abandoned, see L{KILL_WAIT}).
"""

import collections
import enum
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import attrs

from clsd.supervision.core.backoff import restart_delay

if TYPE_CHECKING:
    from clsd.config.service import ServiceConfig
    from clsd.supervision.core.agents import Outcome

#: After SIGKILL, how long to wait for the process group to disappear before
#: giving up on it. SIGKILL cannot be caught, so a member still present
#: after this is stuck in the kernel (uninterruptible sleep) and can no
#: longer run code of its own; waiting for ever would leave the service down.
KILL_WAIT = 5.0

#: How often a start refused for a transient reason (L{SpawnFailed}) is tried again.
REFUSED_RETRY = 0.5

# Timer names (one of each at most is pending at any time).
TIMER_RESTART = "restart"
TIMER_KILL = "kill"
TIMER_ABANDON = "abandon"
TIMER_CHECK = "check"
#: Forking services: the start command and the main pid must be there by then.
TIMER_START = "start"
#: LSB and OCF services: the next status/monitor action.
TIMER_MONITOR = "monitor"
#: LSB and OCF services on a standby node: the next look for a rogue copy.
TIMER_ROGUE = "rogue"

#: The service types driven by an agent's actions (clsd.supervision.core.agents).
AGENT_TYPES = frozenset({"lsb", "ocf"})


class State(enum.Enum):
    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"
    STOPPING = "stopping"
    FAILED = "failed"
    EXITED = "exited"


#: States in which the service's process is (believed) up.
LIVE_STATES = frozenset({State.STARTING, State.RUNNING})
#: States in which nothing runs and nothing will run without a request.
RESTING_STATES = frozenset({State.STOPPED, State.FAILED, State.EXITED})


# -- events ----------------------------------------------------------------

@attrs.frozen
class StartRequested:
    """The operator (or the daemon at start-up) wants the service running."""


@attrs.frozen
class StopRequested:
    """The operator (or the daemon at shutdown) wants the service stopped.

    C{kill_after}: SIGKILL the group no later than this many seconds from
    now, even when ``stop_timeout`` is longer (lease ownership: the service
    must be gone by the lease deadline).  None: ``stop_timeout``.
    """

    kill_after: float | None = None


@attrs.frozen
class ResetRequested:
    """Forget past failures; revive a FAILED service."""


@attrs.frozen
class RetryRefused:
    """Whatever refused the last start (a L{SpawnFailed} marked transient) has passed.

    The refused start is tried at once instead of at its retry timer (an
    ordered group releases a member held until the members above it stopped).
    Nothing else changes: a real backoff is not cut short.
    """


@attrs.frozen
class Standby:
    """LSB/OCF under a lease: this node must (C{on}) or may again (off) not run the service.

    While on, the agent's status/monitor runs every ``monitor_interval``
    while the service rests here: a copy found running (started by hand,
    say) is a rogue copy, stopped with the stop action and reported.
    """

    on: bool


@attrs.frozen
class Spawned:
    """The process exists; its pid is also its process group id."""

    pid: int


@attrs.frozen
class SpawnFailed:
    """The process could not be created at all (no such program, ...).

    C{transient}: refused for a reason outside the service that will pass
    (a lease renewal that is late): retried every L{REFUSED_RETRY} seconds,
    not counted as a failure.
    """

    error: str
    transient: bool = False


@attrs.frozen
class Exited:
    """The group leader was reaped.

    @ivar group_alive: whether other members of its process group were
        still alive when it was reaped; the caller then reports
        L{GroupGone} when the last of them is gone.
    """

    code: int | None
    signal: int | None
    group_alive: bool = False
    #: Replaces the exit description (a forking service's main process,
    #: which is not our child: its status is unknown).
    what: str | None = None


@attrs.frozen
class GroupGone:
    """No live member is left in the service's process group."""


@attrs.frozen
class HealthResult:
    """The outcome of one health check of the instance with C{pid}."""

    ok: bool
    detail: str
    pid: int | None


@attrs.frozen
class TimerFired:
    name: str


@attrs.frozen
class MainPid:
    """Forking: the pidfile names C{pid}, a live process of the service."""

    pid: int


@attrs.frozen
class AgentResult:
    """LSB/OCF: the agent's C{action} (stop, monitor, status) ended.

    @ivar outcome: its L{clsd.supervision.core.agents.Outcome}.
    @ivar group_alive: whether the service's cgroup still had processes.
    """

    action: str
    outcome: "Outcome"
    group_alive: bool = False


@attrs.frozen
class StopCommandDone:
    """Forking: the ``stop_command`` ended (C{ok}: exit status 0)."""

    ok: bool
    detail: str


# -- actions ---------------------------------------------------------------

@attrs.frozen
class Spawn:
    """Start a new instance in a new process group; report L{Spawned} or L{SpawnFailed}."""


@attrs.frozen
class SignalGroup:
    """Send C{signum} to the whole process group C{pgid}.

    C{pgid} None: no process was spawned here (an agent's service found at
    its probe); the containment signals what is in its cgroup.
    """

    pgid: int | None
    signum: int


@attrs.frozen
class ScheduleTimer:
    """Fire L{TimerFired} C{name} after C{delay} seconds, replacing a pending one."""

    name: str
    delay: float


@attrs.frozen
class CancelTimer:
    name: str


@attrs.frozen
class RunCheck:
    """Run one health check; report a L{HealthResult} tagged with C{pid}."""

    pid: int | None


@attrs.frozen
class AwaitMainPid:
    """Forking: read the pidfile until it names a live process of the service; report L{MainPid}."""


@attrs.frozen
class WatchMain:
    """Forking: report L{Exited} (with C{what}) when the main process ends.

    C{pid} None: there is no pidfile, the cgroup is the service; report
    when it is empty.
    """

    pid: int | None


@attrs.frozen
class SignalMain:
    """Forking: send C{signum} to the main process C{pid} alone."""

    pid: int
    signum: int


@attrs.frozen
class RunAction:
    """LSB/OCF: run the agent's C{action} (bounded by its timeout); report L{AgentResult}."""

    action: str


@attrs.frozen
class RunStopCommand:
    """Forking: run the ``stop_command``; report L{StopCommandDone}."""


@attrs.frozen
class Record:
    """Something worth telling the operator: an event for the event log."""

    kind: str
    reason: str
    fields: dict[str, Any] = attrs.field(factory=dict, eq=True, hash=False)


# -- outcomes of an instance's end ------------------------------------------

@attrs.frozen
class _Restart:
    delay: float
    reason: str
    #: False when an operator asked for it (not counted in C{restarts}).
    automatic: bool = True


@attrs.frozen
class _Rest:
    """Go to a resting state (stopped, exited, failed) with C{reason}."""

    state: State
    reason: str
    fields: dict[str, Any] = attrs.field(factory=dict, hash=False)


#: What L{ServicePolicy.handle} is fed, and what it returns.
Event: TypeAlias = (
    StartRequested | StopRequested | ResetRequested | RetryRefused | Standby | Spawned | SpawnFailed | Exited
    | GroupGone | HealthResult | TimerFired | MainPid | AgentResult | StopCommandDone
)
Action: TypeAlias = (
    Spawn | SignalGroup | ScheduleTimer | CancelTimer | RunCheck | AwaitMainPid | WatchMain
    | SignalMain | RunAction | RunStopCommand | Record
)
_Actions: TypeAlias = list[Action]


def describe_exit(code: int | None, signum: int | None) -> str:
    """``exited code=1`` or ``killed by SIGKILL``: the reason strings of the event log."""
    if signum is not None:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"killed by {name}"
    return f"exited code={code}"


def _seconds(value: float) -> str:
    return f"{value:g}s"


class ServicePolicy:
    """Decides what one service's supervisor does next. Pure: no I/O, no clock.

    @param config: the service's L{clsd.config.ServiceConfig}.
    @param random: a callable returning a float in [0, 1), for backoff jitter.
    """

    def __init__(self, config: "ServiceConfig", random: Callable[[], float],
                 now: float = 0.0) -> None:
        self.config = config
        self._random = random
        self.state = State.STOPPED
        self.since = now
        self.last_reason = "not started"
        #: Leader pid (== process group id) of the current or last instance.
        self.pid: int | None = None
        self.leader_alive = False
        self.group_alive = False
        #: Automatic restarts performed so far.
        self.restarts = 0
        #: None when no check is configured; else whether rise was reached.
        self.healthy: bool | None = None
        self._wanted = False
        self._started_at = now
        self._consecutive = 0
        self._failures: collections.deque[float] = collections.deque()
        self._pending: _Restart | _Rest | None = None
        self._check_in_flight = False
        #: A probe fell due while the previous one was still out: run it when that one ends.
        self._check_due = False
        self._check_ok = 0
        self._check_bad = 0
        #: Names of the timers this policy has scheduled and not cancelled:
        #: a timer that fires without being pending here is stale.
        self._timers: set[str] = set()
        #: When the pending SIGKILL of a stop is due, and when its signal was sent.
        self._kill_due = now
        self._stop_sent = now
        #: Forking: the start command runs (it is the process in C{pid}).
        self._launching = False
        #: Forking: the start command succeeded; the pidfile is being read.
        self.awaiting_main = False
        #: Forking: the main process from the pidfile, once known.
        self.main_pid: int | None = None
        #: LSB/OCF: the last action's result, for status ("monitor: success (rc 0)").
        self.last_action: str | None = None
        self._start_overran = False
        self._stopping_action = False
        self._probing = False
        #: The pending restart retries a start refused for a transient reason.
        self._refused = False
        #: Whether a system found already running at a requested start is
        #: adopted as it is. A lease-guarded service clears it: a copy started
        #: outside CLSD is outside its containment, where the lease guard
        #: cannot stop it, so it is stopped and started again inside.
        self.adopt_running = True
        #: Lease standby (L{Standby}): rogue copies are looked for.
        self.standby = False
        #: The rogue look's agent action in flight ("monitor", "stop"), or None.
        self._rogue_action: str | None = None
        #: Rogue copies found on this node so far.
        self.rogue_found = 0

    @property
    def forking(self) -> bool:
        return self.config.type == "forking"

    @property
    def agent(self) -> bool:
        """Whether an LSB script or OCF agent drives it (its start is the spawned process)."""
        return self.config.type in AGENT_TYPES

    # -- queries -----------------------------------------------------------

    @property
    def process_alive(self) -> bool:
        """Whether any process of the current instance may still be alive."""
        return self.leader_alive or self.group_alive

    def recent_failures(self, now: float) -> int:
        """How many failures fall within the crash-loop window ending at C{now}."""
        self._prune(now)
        return len(self._failures)

    # -- the one entry point ------------------------------------------------

    def handle(self, event: Event, now: float) -> _Actions:
        """Feed one event that happened at monotonic time C{now}; return the actions."""
        method = getattr(self, "_on_" + type(event).__name__, None)
        if method is None:
            raise TypeError(f"not a policy event: {event!r}")
        actions: _Actions = []
        method(event, now, actions)
        for action in actions:
            if isinstance(action, ScheduleTimer):
                self._timers.add(action.name)
            elif isinstance(action, CancelTimer):
                self._timers.discard(action.name)
        return actions

    # -- operator requests --------------------------------------------------

    def _on_StartRequested(self, event: StartRequested, now: float, out: _Actions) -> None:
        if self.state is State.FAILED:
            out.append(Record("refused", "start refused: service is failed (reset it first)"))
            return
        self._wanted = True
        if self.state in (State.STOPPED, State.EXITED) and self.agent:
            self._consecutive = 0
            self._probe(now, out)
        elif self.state in (State.STOPPED, State.EXITED):
            self._consecutive = 0
            self._spawn(now, "start requested", out, automatic=False)
        elif self.state is State.BACKOFF:
            out.append(CancelTimer(TIMER_RESTART))
            self._spawn(now, "start requested", out, automatic=False)
        elif self.state is State.STOPPING and not self._pending_is_failed():
            self._pending = _Restart(0.0, "start requested", automatic=False)

    def _on_StopRequested(self, event: StopRequested, now: float, out: _Actions) -> None:
        self._wanted = False
        self._refused = False
        if self.state in LIVE_STATES:
            self._begin_stop(now, "stop requested", _Rest(State.STOPPED, "stopped"), out,
                             kill_after=event.kill_after)
        elif self.state is State.BACKOFF:
            out.append(CancelTimer(TIMER_RESTART))
            self._enter(State.STOPPED, now, "stop requested", out)
        elif self.state is State.STOPPING:
            if not self._pending_is_failed():
                self._pending = _Rest(State.STOPPED, "stopped")
            self._kill_sooner(now, event.kill_after, out)
        elif self.state is State.EXITED:
            self._enter(State.STOPPED, now, "stop requested", out)
        # STOPPED: nothing to do. FAILED: sticky until reset.

    def _on_ResetRequested(self, event: ResetRequested, now: float, out: _Actions) -> None:
        self._consecutive = 0
        self._failures.clear()
        out.append(Record("reset", "failure history cleared"))
        if self.state is State.FAILED:
            self._wanted = True
            self._spawn(now, "reset", out, automatic=False)
        elif self.state is State.BACKOFF:
            out.append(CancelTimer(TIMER_RESTART))
            self._spawn(now, "reset", out, automatic=False)
        elif self.state is State.STOPPING and self._pending_is_failed():
            self._wanted = True
            self._pending = _Restart(0.0, "reset", automatic=False)

    def _on_RetryRefused(self, event: RetryRefused, now: float, out: _Actions) -> None:
        if self.state is not State.BACKOFF or not self._refused or not self._wanted:
            return
        self._refused = False
        out.append(CancelTimer(TIMER_RESTART))
        self._spawn(now, "refused start released", out, automatic=False)

    # -- rogue copies (LSB/OCF under a lease) -------------------------------------

    def _on_Standby(self, event: Standby, now: float, out: _Actions) -> None:
        if not self.agent or event.on == self.standby:
            return
        self.standby = event.on
        if event.on:
            # The first look waits an interval: a start-up's leftovers are
            # emptied first, and a lease just lost has its stop to finish.
            out.append(ScheduleTimer(TIMER_ROGUE, self.config.monitor_interval))
        elif TIMER_ROGUE in self._timers:
            out.append(CancelTimer(TIMER_ROGUE))

    def _look_for_rogue(self, out: _Actions) -> None:
        from clsd.supervision.core.agents import MONITOR_ACTION

        out.append(ScheduleTimer(TIMER_ROGUE, self.config.monitor_interval))
        if self.state in RESTING_STATES and not self.process_alive \
                and self._rogue_action is None:
            self._rogue_action = MONITOR_ACTION[self.config.type]
            out.append(RunAction(self._rogue_action))

    def _rogue_result(self, event: AgentResult, now: float, out: _Actions) -> None:
        from clsd.supervision.core.agents import MONITOR_ACTION

        outcome = event.outcome
        probing = self._probing and self.state is State.STARTING
        if event.action == "stop":
            self._rogue_action = None
            if outcome.result == "ok":
                out.append(Record("rogue", f"the rogue copy is stopped ({outcome.detail})",
                                  {"stopped": True}))
            else:
                out.append(Record("rogue", f"the rogue copy could not be stopped "
                                           f"({outcome.detail}); it may still run",
                                  {"stopped": False}))
            if probing:  # a start came meanwhile: now its probe
                out.append(RunAction(MONITOR_ACTION[self.config.type]))
            return
        self._rogue_action = None
        if outcome.result == "ok" and self.state in RESTING_STATES and self.standby:
            self._rogue_action = "stop"
            self.rogue_found += 1
            out.append(Record("rogue", f"running on this node without the lease "
                                       f"({outcome.detail}): stopping it", {"stopped": False}))
            out.append(RunAction("stop"))

    # -- process facts ------------------------------------------------------

    def _on_Spawned(self, event: Spawned, now: float, out: _Actions) -> None:
        if self.state is not State.STARTING or self.leader_alive:
            raise ValueError(f"Spawned while {self.state.value}: the caller is confused")
        self.pid = event.pid
        self.leader_alive = True
        self.group_alive = True
        self._started_at = now
        out.append(Record("spawned", f"spawned pid={event.pid}", {"pid": event.pid}))
        if self.forking or self.agent:
            # The start command (or action), not yet the service: running
            # comes with its success (and, with a pidfile, a live main process).
            self._launching = True
            out.append(ScheduleTimer(TIMER_START, self.config.start_timeout))
            return
        self._up(now, f"spawned pid={event.pid}", out)

    def _up(self, now: float, reason: str, out: _Actions) -> None:
        """The instance is there: running now, or once its health check rises."""
        if self.config.check is None:
            self._enter(State.RUNNING, now, reason, out)
        else:
            self._check_ok = self._check_bad = 0
            self._check_in_flight = self._check_due = False
            self.healthy = False
            out.append(ScheduleTimer(TIMER_CHECK, self._check_period()))

    def _check_period(self) -> float:
        """Seconds to the next probe: ``startup_interval`` until the check first rises."""
        check = self.config.check
        assert check is not None  # asked only with a check
        if not self.healthy and check.startup_interval is not None:
            return check.startup_interval
        return check.interval

    def _on_SpawnFailed(self, event: SpawnFailed, now: float, out: _Actions) -> None:
        if self.state is not State.STARTING or self.leader_alive:
            raise ValueError(f"SpawnFailed while {self.state.value}: the caller is confused")
        reason = f"spawn failed: {event.error}"
        if event.transient:
            out.append(Record("spawn-refused", reason))
            self._refused = True
            self._enter(State.BACKOFF, now, f"{reason}; trying again", out)
            out.append(ScheduleTimer(TIMER_RESTART, REFUSED_RETRY))
            return
        self._started_at = now
        out.append(Record("spawn-failed", reason))
        self._apply(self._instance_ended(now, reason, failure=True), now, out)

    def _on_Exited(self, event: Exited, now: float, out: _Actions) -> None:
        if not self.leader_alive or self.awaiting_main:
            return
        if self._launching:
            self._start_command_exited(event, now, out)
            return
        self.leader_alive = False
        self.group_alive = event.group_alive
        reason = event.what or describe_exit(event.code, event.signal)
        uptime = now - self._started_at
        out.append(Record("exited", reason, {
            "pid": self.pid, "code": event.code, "signal": event.signal,
            "uptime": round(uptime, 6), "expected": self.state is State.STOPPING,
        }))
        if self.state is State.STOPPING:
            if not self.group_alive:
                self._group_gone(now, out)
            return
        # An exit nobody asked for.
        clean = event.code == 0 and event.signal is None
        self._end_unrequested(now, reason, failure=not clean, out=out)

    def _start_action_exited(self, event: Exited, now: float, out: _Actions) -> None:
        from clsd.supervision.core.agents import classify

        self._launching = False
        self.group_alive = event.group_alive
        outcome = classify(self.config.type, "start", event.code,
                           timed_out=self._start_overran, signum=event.signal)
        out.append(Record("agent", outcome.detail, {"action": "start", "result": outcome.result}))
        out.append(CancelTimer(TIMER_START))
        self.last_action = outcome.detail
        if self.state is State.STOPPING:
            # Stopped while starting: whatever the start did is undone by the stop action.
            self._stopping_action = True
            out.append(RunAction("stop"))
            return
        if outcome.result == "ok":
            self._up(now, "start succeeded", out)
            out.append(ScheduleTimer(TIMER_MONITOR, self.config.monitor_interval))
            return
        self._agent_failed(outcome, now, out)

    def _agent_failed(self, outcome: "Outcome", now: float, out: _Actions) -> None:
        """A failed start or monitor: stop it (the stop action), then restart or give up."""
        self._stop_checks(out)
        ending: _Restart | _Rest
        if outcome.gives_up:
            self._failures.append(now)
            ending = _Rest(State.FAILED, f"{outcome.detail}: giving up this node",
                           {"last": outcome.detail})
        else:
            ending = self._instance_ended(now, outcome.detail, failure=True)
        self._begin_stop(now, outcome.detail, ending, out)

    def _on_AgentResult(self, event: AgentResult, now: float, out: _Actions) -> None:
        outcome = event.outcome
        out.append(Record("agent", outcome.detail,
                          {"action": event.action, "result": outcome.result}))
        self.last_action = outcome.detail
        if self._rogue_action is not None and event.action == self._rogue_action:
            self._rogue_result(event, now, out)
            return
        if event.action == "stop":
            if self.state is not State.STOPPING or not self._stopping_action:
                return
            self._stopping_action = False
            self.leader_alive = False
            self.group_alive = event.group_alive
            if outcome.result != "ok":
                # It may still run: kill what is in its cgroup, and do not
                # pretend it is stopped.
                self._pending = _Rest(State.FAILED, f"{outcome.detail}: stop failed",
                                      {"last": outcome.detail})
                if self.group_alive:
                    self._kill_now(now, f"{outcome.detail}: SIGKILL to its cgroup", out)
                    return
            elif self.group_alive:
                self._kill_now(now, "stop succeeded but processes are left in its cgroup: "
                               "SIGKILL to its cgroup", out)
                return
            self._group_gone(now, out)
            return
        # status / monitor
        if self._probing and self.state is State.STARTING:
            self._probed(event, now, out)
            return
        if self.state is not State.RUNNING or not self.leader_alive:
            return  # a late answer
        self._check_in_flight = False
        if outcome.result != "ok":
            self._agent_failed(outcome, now, out)

    def _probe(self, now: float, out: _Actions) -> None:
        """Before a requested start, ask the agent: a running system is adopted, not started twice."""
        from clsd.supervision.core.agents import MONITOR_ACTION

        self.healthy = None
        self._launching = self.awaiting_main = self._stopping_action = False
        self._start_overran = False
        self._probing = True
        self.leader_alive = True  # it may be running: nothing is spawned until we know
        self.group_alive = False
        self._started_at = now
        self._enter(State.STARTING, now, "start requested: probing", out)
        if TIMER_ROGUE in self._timers:
            out.append(CancelTimer(TIMER_ROGUE))
        if self._rogue_action == "monitor":
            self._rogue_action = None  # its answer is the probe's
        elif self._rogue_action is None:
            out.append(RunAction(MONITOR_ACTION[self.config.type]))
        # A rogue copy's stop in flight: the probe runs once it has ended.

    def _probed(self, event: AgentResult, now: float, out: _Actions) -> None:
        self._probing = False
        outcome = event.outcome
        if outcome.result == "ok" and not self.adopt_running:
            self._begin_stop(
                now, f"already running ({outcome.detail}) outside CLSD's containment, where "
                     "the lease guard cannot reach it: stopping it to start it contained",
                _Restart(0.0, "start requested", automatic=False), out)
        elif outcome.result == "ok":
            out.append(Record("adopted", f"already running ({outcome.detail}): adopted, "
                                         "not started again"))
            self._up(now, "adopted", out)
            out.append(ScheduleTimer(TIMER_MONITOR, self.config.monitor_interval))
        elif outcome.result == "not-running" and not event.group_alive:
            self.leader_alive = False
            self._spawn(now, "start requested", out, automatic=False)
        else:
            # Neither cleanly running nor cleanly stopped: stop it first (as
            # Pacemaker recovers a failed probe), then start.
            self._begin_stop(now, f"probe: {outcome.detail}; stopping before the start",
                             _Restart(0.0, "start requested", automatic=False), out)

    def _start_command_exited(self, event: Exited, now: float, out: _Actions) -> None:
        if self.agent:
            self._start_action_exited(event, now, out)
            return
        self._launching = False
        self.group_alive = event.group_alive
        reason = "start command " + describe_exit(event.code, event.signal)
        clean = event.code == 0 and event.signal is None
        out.append(Record("exited", reason, {
            "pid": self.pid, "code": event.code, "signal": event.signal,
            "uptime": round(now - self._started_at, 6), "expected": clean,
        }))
        if self.state is State.STOPPING:
            self.leader_alive = False
            if not self.group_alive:
                self._group_gone(now, out)
            return
        if clean and self.config.pidfile is not None:
            self.awaiting_main = True  # leader_alive stays: the service may be up
            out.append(AwaitMainPid())
            return
        if clean and self.group_alive:
            self._main_up(None, now, out)
            return
        self.leader_alive = False
        out.append(CancelTimer(TIMER_START))
        if clean:
            reason = f"{reason}, and no process of the service is left"
        self._end_unrequested(now, reason, failure=True, out=out)

    def _on_MainPid(self, event: MainPid, now: float, out: _Actions) -> None:
        if not self.awaiting_main:
            return  # late: the start timed out
        self._main_up(event.pid, now, out)

    def _main_up(self, pid: int | None, now: float, out: _Actions) -> None:
        self.awaiting_main = False
        self.main_pid = pid
        self.leader_alive = True
        self.group_alive = True
        out.append(CancelTimer(TIMER_START))
        if pid is not None:
            self.pid = pid
            reason = f"main process pid={pid}"
        else:
            reason = "start command done; the cgroup is the service"
        out.append(Record("main", reason, {"pid": pid}))
        out.append(WatchMain(pid))
        if self.state is State.STOPPING:
            # A stop came while the pidfile was awaited: it is for this process too.
            if pid is not None and not self.config.stop_command:
                out.append(SignalMain(pid, self.config.stop_signum))
            return
        self._up(now, reason, out)

    def _on_StopCommandDone(self, event: StopCommandDone, now: float, out: _Actions) -> None:
        reason = f"stop command {event.detail}"
        out.append(Record("stop-command", reason, {"ok": event.ok}))
        if not event.ok and self.state is State.STOPPING and self.process_alive \
                and TIMER_KILL in self._timers:
            self._kill_now(now, f"{reason}: SIGKILL to the service", out)

    def _end_unrequested(self, now: float, reason: str, failure: bool,
                         out: _Actions) -> None:
        """An instance ended by itself: stop what is left of it, then the outcome."""
        self._stop_checks(out)
        outcome = self._instance_ended(now, reason, failure=failure)
        if self.group_alive:
            self._begin_stop(now, f"{reason}; stopping the rest of its process group",
                             outcome, out)
        else:
            self._apply(outcome, now, out)

    def _on_GroupGone(self, event: GroupGone, now: float, out: _Actions) -> None:
        if self.leader_alive or not self.group_alive:
            return
        self.group_alive = False
        if self.state is State.STOPPING:
            self._group_gone(now, out)

    # -- health ---------------------------------------------------------------

    def _on_HealthResult(self, event: HealthResult, now: float, out: _Actions) -> None:
        if event.pid != self.pid or self.state not in LIVE_STATES or not self.leader_alive:
            return  # a late answer about an instance that is gone
        self._check_in_flight = False
        check = self.config.check
        assert check is not None  # results come only from checks a configured check asked for
        if event.ok:
            self._check_bad = 0
            self._check_ok += 1
            if not self.healthy and self._check_ok >= check.rise:
                self.healthy = True
                reason = f"health rise {check.rise}/{check.rise}"
                out.append(Record("health", reason, {"detail": event.detail, "change": "rise"}))
                if self.state is State.STARTING:
                    self._enter(State.RUNNING, now, reason, out)
                if check.startup_interval is not None:
                    out.append(ScheduleTimer(TIMER_CHECK, check.interval))  # the steady pace
            self._run_due_check(out)
            return
        self._check_ok = 0
        if now - self._started_at < check.grace:
            self._run_due_check(out)
            return  # still starting up: failures do not count yet
        self._check_bad += 1
        if self.healthy and self._check_bad == 1:
            out.append(Record("health", f"health check failed: {event.detail}",
                              {"detail": event.detail}))
        if self._check_bad >= check.fall:
            self.healthy = False
            reason = f"health fall {check.fall}/{check.fall}"
            out.append(Record("health", reason, {"detail": event.detail, "change": "fall"}))
            self._stop_checks(out)
            outcome = self._instance_ended(now, reason, failure=True)
            self._begin_stop(now, reason, outcome, out)
            return
        self._run_due_check(out)

    def _run_due_check(self, out: _Actions) -> None:
        """The probe skipped while this one was out runs now, not an interval later."""
        if self._check_due:
            self._check_due = False
            self._check_in_flight = True
            out.append(RunCheck(self.pid))

    # -- timers ---------------------------------------------------------------

    def _on_TimerFired(self, event: TimerFired, now: float, out: _Actions) -> None:
        name = event.name
        if name not in self._timers:
            return  # cancelled, or never ours: stale
        self._timers.discard(name)
        if name == TIMER_RESTART and self.state is State.BACKOFF:
            refused, self._refused = self._refused, False
            # A retry of a refused start is not an automatic restart of the service.
            self._spawn(now, "backoff elapsed", out, automatic=not refused)
        elif name == TIMER_KILL and self.state is State.STOPPING and self.process_alive:
            self._kill_now(now, (
                f"still running {_seconds(round(now - self._stop_sent, 6))} after "
                f"SIG{self.config.stop_signal}: SIGKILL to process group {self.pid}"), out)
        elif name == TIMER_START and self.agent and self._launching:
            # The start action overran: kill it; its exit is then the failure.
            self._start_overran = True
            out.append(Record("kill", f"start action still running after "
                                      f"{_seconds(self.config.start_timeout)}: SIGKILL"))
            out.append(SignalGroup(self.pid, signal.SIGKILL))
        elif name == TIMER_START and self.state in (State.STARTING, State.STOPPING) \
                and (self._launching or self.awaiting_main):
            self._start_timed_out(now, out)
        elif name == TIMER_ROGUE and self.standby:
            self._look_for_rogue(out)
        elif name == TIMER_MONITOR and self.state is State.RUNNING and self.leader_alive:
            if not self._check_in_flight:
                self._check_in_flight = True
                from clsd.supervision.core.agents import MONITOR_ACTION

                out.append(RunAction(MONITOR_ACTION[self.config.type]))
            out.append(ScheduleTimer(TIMER_MONITOR, self.config.monitor_interval))
        elif name == TIMER_ABANDON and self.state is State.STOPPING and self.process_alive:
            out.append(Record(
                "abandoned",
                f"process group {self.pid} still present {_seconds(KILL_WAIT)} after "
                "SIGKILL (stuck in the kernel?); no longer waiting for it",
                {"pgid": self.pid},
            ))
            self.leader_alive = False
            self.group_alive = False
            self._group_gone(now, out)
        elif name == TIMER_CHECK and self.state in LIVE_STATES and self.leader_alive:
            if self._check_in_flight:
                self._check_due = True
            else:
                self._check_in_flight = True
                out.append(RunCheck(self.pid))
            out.append(ScheduleTimer(TIMER_CHECK, self._check_period()))

    def _start_timed_out(self, now: float, out: _Actions) -> None:
        if self._launching:
            reason = (f"start command still running after "
                      f"{_seconds(self.config.start_timeout)}")
        else:
            reason = (f"no live process in pidfile {self.config.pidfile} "
                      f"{_seconds(self.config.start_timeout)} after the start")
        self._launching = False
        if self.awaiting_main:
            # What the start left behind is the service's cgroup (or nothing).
            self.awaiting_main = False
            self.leader_alive = False
            self.group_alive = True
        out.append(Record("start-timeout", reason))
        if self.state is State.STOPPING:
            return  # the pending stop goes on; its SIGKILL covers what is left
        outcome = self._instance_ended(now, reason, failure=True)
        self._begin_stop(now, reason, outcome, out)

    # -- internals ------------------------------------------------------------

    def _kill_now(self, now: float, reason: str, out: _Actions) -> None:
        out.append(Record("kill", reason))
        if TIMER_KILL in self._timers:
            out.append(CancelTimer(TIMER_KILL))
        if self.main_pid is not None and self.leader_alive:
            out.append(SignalMain(self.main_pid, signal.SIGKILL))
        out.append(SignalGroup(self.pid, signal.SIGKILL))
        out.append(ScheduleTimer(TIMER_ABANDON, KILL_WAIT))

    def _enter(self, state: State, now: float, reason: str, out: _Actions,
               **fields: Any) -> None:
        previous = self.state
        self.state = state
        self.since = now
        self.last_reason = reason
        out.append(Record("state", reason, {"from": previous.value, "to": state.value,
                                            **fields}))

    def _spawn(self, now: float, reason: str, out: _Actions, automatic: bool = True) -> None:
        if self.process_alive:
            raise AssertionError("a spawn while the previous instance may be alive")
        fields: dict[str, Any] = {}
        if automatic:
            self.restarts += 1
            fields["restarts"] = self.restarts
        self.healthy = None
        self._launching = self.awaiting_main = False
        self._start_overran = self._stopping_action = self._probing = False
        self.main_pid = None
        self._enter(State.STARTING, now, reason, out, **fields)
        out.append(Spawn())

    def _begin_stop(self, now: float, reason: str, outcome: "_Restart | _Rest", out: _Actions,
                    kill_after: float | None = None) -> None:
        self._pending = outcome
        self._stop_checks(out)
        self._enter(State.STOPPING, now, reason, out)
        out.append(self._stop_action())
        delay = self.config.stop_timeout
        if kill_after is not None:
            delay = min(delay, max(kill_after, 0.0))
        self._kill_due = now + delay
        self._stop_sent = now
        out.append(ScheduleTimer(TIMER_KILL, delay))

    def _stop_action(self) -> Action:
        """What asks the service to stop: its stop signal, a stop command or action."""
        if self.agent and not self._launching:
            self._stopping_action = True
            return RunAction("stop")
        if self.forking and self.leader_alive and not self._launching \
                and not self.awaiting_main:
            if self.config.stop_command:
                return RunStopCommand()
            if self.main_pid is not None:
                return SignalMain(self.main_pid, self.config.stop_signum)
        return SignalGroup(self.pid, self.config.stop_signum)

    def _kill_sooner(self, now: float, kill_after: float | None, out: _Actions) -> None:
        """A stop with a deadline while stopping: bring the pending SIGKILL forward."""
        if kill_after is None or TIMER_KILL not in self._timers:
            return
        delay = max(kill_after, 0.0)
        if now + delay < self._kill_due:
            self._kill_due = now + delay
            out.append(ScheduleTimer(TIMER_KILL, delay))

    def _group_gone(self, now: float, out: _Actions) -> None:
        out.append(CancelTimer(TIMER_KILL))
        out.append(CancelTimer(TIMER_ABANDON))
        if TIMER_START in self._timers:
            out.append(CancelTimer(TIMER_START))
        outcome, self._pending = self._pending, None
        assert outcome is not None  # every stop is begun with what follows it
        self._apply(outcome, now, out)

    def _stop_checks(self, out: _Actions) -> None:
        if self.config.check is not None:
            out.append(CancelTimer(TIMER_CHECK))
            self._check_in_flight = self._check_due = False
        if self.agent:
            out.append(CancelTimer(TIMER_MONITOR))
            self._check_in_flight = False

    def _pending_is_failed(self) -> bool:
        return isinstance(self._pending, _Rest) and self._pending.state is State.FAILED

    def _prune(self, now: float) -> None:
        window = self.config.crash_loop.window
        while self._failures and self._failures[0] <= now - window:
            self._failures.popleft()

    def _instance_ended(self, now: float, reason: str, failure: bool) -> "_Restart | _Rest":
        """Count the end of an instance and decide what follows (not yet applied)."""
        if now - self._started_at >= self.config.stable_after:
            self._consecutive = 0  # it ran long enough: this is a fresh problem
        if failure:
            self._failures.append(now)
            self._prune(now)
        if not self._wanted:
            return _Rest(State.STOPPED, reason)
        restart = self.config.restart
        if restart == "never" or (restart == "on-failure" and not failure):
            return _Rest(State.EXITED, reason)
        crash_loop = self.config.crash_loop
        if failure and len(self._failures) >= crash_loop.max_failures:
            return _Rest(
                State.FAILED,
                f"crash-loop {len(self._failures)} in {_seconds(crash_loop.window)}",
                {"last": reason},
            )
        self._consecutive += 1
        delay = restart_delay(self._consecutive, self.config.backoff, self._random())
        return _Restart(delay, reason)

    def _apply(self, outcome: "_Restart | _Rest", now: float, out: _Actions) -> None:
        if isinstance(outcome, _Restart):
            if outcome.delay <= 0:
                self._spawn(now, outcome.reason, out, automatic=outcome.automatic)
            else:
                self._enter(State.BACKOFF, now, outcome.reason, out,
                            delay=round(outcome.delay, 6), failures=self._consecutive)
                out.append(ScheduleTimer(TIMER_RESTART, outcome.delay))
        else:
            self._enter(outcome.state, now, outcome.reason, out, **outcome.fields)
