"""Run a fault schedule against a launcher's daemons, heal, wait for recovery, judge.

What a run needs from the product is a L{Scenario}: which configuration parts
the nodes get, each cluster's capacity, and which clusters must be running
once everything is healed. In L{SupervisedScenario} every
node supervises its own protected service (cluster ``<node>-solo``), so
process faults (kill -9, SIGSTOP, CPU, clock) are judged against
single-machine supervision; L{ClustersScenario} runs real shared cluster IDs
with a quorum and failover (rig.cluster), and the ``groups`` scenario
(rig.faults.groups) an ordered group and clusters that depend on it; the
runner is the same.
"""

import os
import re
import signal
import time

import attrs

from clsd.polling import WaitTimeout, wait_for
from rig import checker
from rig.faults import availability, topology
from rig.faults.clock import ClockJump
from rig.faults.cpu import CpuStarvation
from rig.faults.freeze import FreezeUnsupported, NodeFreeze
from rig.faults.process import Pause
from rig.faults.rate import RateDrift
from rig.launcher import health_checks_available, protected_service_part

#: After the final heal, every expected cluster must run again within this.
DEFAULT_RECOVERY_TIMEOUT = 60.0


class SupervisedScenario:
    """Each node supervises one protected service of its own; no shared clusters."""

    name = "supervised"

    def __init__(self, *, http_port="auto", health_check=None):
        """
        @param health_check: give each service an http health check, so a
            hung (SIGSTOPped) service is caught; default: when the daemon
            has health checks (L{health_checks_available}).
        """
        self.http_port = http_port
        self.health_check = health_checks_available() if health_check is None else health_check

    @property
    def description(self):
        return f"supervised (health checks {'on' if self.health_check else 'off'})"

    def template_parts(self):
        return [protected_service_part(cluster="{node}-solo", http_port=self.http_port,
                                       check=self.health_check)]

    def capacity(self, launcher):
        return {}

    def expected_clusters(self, launcher):
        spares = getattr(launcher, "spares", ())
        return [f"{name}-solo" for name in launcher.nodes if name not in spares]


class DaemonsScenario:
    """Daemons only, no services: what runs before supervision is wired into the daemon.

    Daemon-level faults (kill -9 and restart, SIGSTOP, CPU, clock, network)
    are judged by the daemons' logs and by their coming back.
    """

    name = "daemons"
    description = "daemons only, no services"

    def template_parts(self):
        return []

    def capacity(self, launcher):
        return {}

    def expected_clusters(self, launcher):
        return []


#: The membership service's log line for each change of a member's state.
MEMBER_STATE = re.compile(r"member (\S+) is (\w+)")
#: The launcher's line at each start of a daemon: a view is read from the last one on.
START_MARKER = "==== clsd-rig: start #"


#: What a view may say of a node that left for good: gone, one way or another
#: (a leave that no peer heard, under a partition, ends as a death).
GONE_STATES = ("left", "dead", "removed", None)


def view_disagreements(logs, departed=()):
    """Who does not see whom as expected, from each daemon's log since its last start.

    @param logs: C{{node: log text}} of every member at the end of the run.
    @param departed: names of nodes that ran during the run and left for good
        (a spare that joined and left again): no member may see them alive
        or suspect.
    @return: C{["n1 sees n2 suspect", "n3 sees n1 (nothing)", ...]}; empty when
        every member's last word on every other member is ``alive``.
    """
    problems = []
    for observer, text in sorted(logs.items()):
        since = max(0, text.rfind(START_MARKER))
        states = {}
        for match in MEMBER_STATE.finditer(text, since):
            states[match.group(1)] = match.group(2)
        for other in sorted(logs):
            if other != observer and states.get(other) != "alive":
                problems.append(f"{observer} sees {other} {states.get(other, '(nothing)')}")
        for other in sorted(departed):
            if states.get(other) not in GONE_STATES:
                problems.append(f"{observer} sees {other} {states[other]} after it left")
    return problems


class ClustersScenario:
    """Real failover: shared cluster IDs, a quorum with a witness, leases (rig.cluster).

    The layout is L{rig.cluster.ring_layout} of the run's nodes:
    every node but the last runs one active-standby cluster ID and stands by
    for its neighbour's; the last is a witness; an n-active cluster ``nx``
    with C{count = n_active} runs on the non-witness nodes; the schedule's
    spares stand by for one ring cluster and ``nx``. Every cluster must run
    again after the final heal (``nx`` with all its copies), an
    active-standby one never on two nodes at once, ``nx`` never more than
    its count, never two on one slot or one node.
    """

    name = "clusters"
    #: Every daemon's membership view must show every other node alive at the end.
    check_views = True
    #: Copies of the n-active cluster (two: the smallest count that is not active-standby).
    DEFAULT_N_ACTIVE = 2

    def __init__(self, *, timing=None, n_active=DEFAULT_N_ACTIVE, escaping=False):
        from rig.cluster import DEFAULT_TIMING

        self.timing = timing or DEFAULT_TIMING
        self.n_active = n_active
        self.escaping = escaping
        self._rig = None

    @property
    def description(self):
        extra = f", n-active nx count {self.n_active}" if self.n_active else ""
        escaping = ", services escape their process group" if self.escaping else ""
        return (f"clusters (ring of active-standby cluster IDs, witness{extra}; "
                f"{self.timing.name} timing{escaping})")

    def cluster_rig(self, launcher):
        """The L{ClusterRig}, made for the launcher's nodes the first time it is needed."""
        if self._rig is None:
            spares = tuple(getattr(launcher, "spares", ()))
            nodes = [name for name in launcher.nodes if name not in spares]
            self._rig = self.make_rig(nodes, spares)
        return self._rig

    def make_rig(self, nodes, spares):
        """The scenario's L{ClusterRig} over C{nodes} (workers) and C{spares}."""
        from rig.cluster import ClusterRig, ring_layout

        n_active = min(self.n_active, len(nodes) - 1) if len(nodes) >= 3 else 0
        return ClusterRig(ring_layout(nodes, spares=spares, n_active=n_active),
                          self.timing, escaping=self.escaping)

    def reshape(self, launcher, node, change):
        """Give C{node} another shape for one of its clusters (from its next start).

        C{change} ``mode``: its first active-standby cluster becomes
        ``n-active`` with ``count = 1``; ``count``: the n-active cluster's
        count grows by one (``mode`` when the node has no n-active cluster).
        @return: C{(cluster, settings, undo)}; C{undo()} gives the node the
            layout's settings again, from its next start.
        @raise ValueError: the node runs no cluster.
        """
        rig = self.cluster_rig(launcher)
        layout = rig.layout
        mine = layout.clusters_of(node)
        if not mine:
            raise ValueError(f"{node} runs no cluster")
        shared = [c for c in mine if layout.count(c) > 1]
        if change == "count" and shared:
            cluster = shared[0]
            settings = {**layout.cluster_settings[cluster], "count": layout.count(cluster) + 1}
        else:
            single = [c for c in mine if layout.count(c) == 1]
            if not single:
                raise ValueError(f"{node} runs no active-standby cluster")
            cluster = single[0]
            settings = {**layout.cluster_settings.get(cluster, {}), "mode": "n-active",
                        "count": 1}
        rig.reshaped[node, cluster] = settings
        return cluster, settings, lambda: rig.reshaped.pop((node, cluster), None)

    def template_parts(self):
        def part(name):
            return lambda node, launcher: getattr(self.cluster_rig(launcher), name)(node, launcher)
        return [part("peers_part"), part("tls_part"), part("quorum_part"), part("clusters_part")]

    def capacity(self, launcher):
        layout = self.cluster_rig(launcher).layout
        return {c: layout.count(c) for c in layout.clusters if layout.count(c) > 1}

    def expected_clusters(self, launcher):
        return list(self.cluster_rig(launcher).layout.clusters)

    def layout(self, launcher):
        return self.cluster_rig(launcher).layout


def groups_scenario(**kwargs):
    """The ``groups`` scenario (rig.faults.groups, which builds on L{ClustersScenario})."""
    from rig.faults.groups import GroupsScenario

    return GroupsScenario(**kwargs)


SCENARIOS = {"supervised": SupervisedScenario, "daemons": DaemonsScenario,
             "clusters": ClustersScenario, "groups": groups_scenario}


@attrs.define
class Step:
    """What became of one scheduled event."""

    index: int
    event: object
    applied_at: float | None = None
    healed_at: float | None = None
    outcome: str = "pending"


@attrs.define
class RunLog:
    started_at: float
    steps: list
    ended_at: float | None = None
    healed_at: float | None = None
    recovered_at: float | None = None
    recovery_error: str | None = None
    #: When every view showed every node alive (scenarios with check_views).
    converged_at: float | None = None
    views_error: str | None = None


class ScheduleRunner:
    """Apply each event at its time (relative to the start), heal it at its end."""

    def __init__(self, schedule, launcher, scenario, *, firewall=None, cleanups=None,
                 clock=time.monotonic, sleep=time.sleep, log=None,
                 recovery_timeout=DEFAULT_RECOVERY_TIMEOUT):
        self.schedule = schedule
        self.launcher = launcher
        self.scenario = scenario
        self.firewall = firewall
        self.cleanups = cleanups
        self.clock = clock
        self.sleep = sleep
        self.say = log or (lambda line: None)
        self.recovery_timeout = recovery_timeout
        self._undo = {}
        self._start = None
        spares = set(getattr(launcher, "spares", ()))
        #: Nodes that should be running at the end (joins add, a joiner's leave removes).
        self.members = {name for name in launcher.nodes if name not in spares}
        #: Every node started during the run.
        self.started = set(self.members)
        #: C{(node, NodeFreeze)} of every machine pause applied.
        self.freezes = []

    # -- timeline ------------------------------------------------------------------

    def actions(self):
        """C{[(time, phase, index)]}: heals (phase 0) before applies (phase 1) at one time."""
        timeline = []
        for index, event in enumerate(self.schedule.events):
            timeline.append((event.at, 1, index))
            if event.heal_at is not None:
                timeline.append((event.heal_at, 0, index))
        return sorted(timeline)

    def run(self):
        start = self._start = self.clock()
        steps = [Step(index=i, event=e) for i, e in enumerate(self.schedule.events)]
        run = RunLog(started_at=start, steps=steps)
        for at, phase, index in self.actions():
            self._sleep_until(start + at)
            step = steps[index]
            if phase == 1:
                self._apply(step)
            else:
                self._heal(step)
        self._sleep_until(start + self.schedule.duration)
        run.ended_at = self.clock()
        for index in sorted(self._undo, reverse=True):
            self._heal(steps[index])
        run.healed_at = self.clock()
        self._recover(run)
        return run

    def _sleep_until(self, deadline):
        remaining = deadline - self.clock()
        if remaining > 0:
            self.sleep(remaining)

    # -- applying and healing ------------------------------------------------------------

    def _apply(self, step):
        event = step.event
        # The fault starts when we start applying it (a restart takes a while).
        began = self.clock()
        try:
            undo = getattr(self, f"_apply_{event.kind}")(event)
        except _Skip as e:
            step.outcome = f"skipped: {e}"
            self.say(f"t={self.clock() - self._start:7.2f} skip  {event.describe()}: {e}")
            return
        except Exception as e:
            step.outcome = f"error: {e}"
            self.say(f"t={self.clock() - self._start:7.2f} ERROR {event.describe()}: {e}")
            return
        step.applied_at = began
        step.outcome = "applied"
        self.say(f"t={step.applied_at - self._start:7.2f} apply {event.describe()}")
        if undo is not None:
            self._undo[step.index] = undo

    def _heal(self, step):
        undo = self._undo.pop(step.index, None)
        if undo is None:
            return
        try:
            undo()
            step.healed_at = self.clock()
            self.say(f"t={step.healed_at - self._start:7.2f} heal  {step.event.describe()}")
        except Exception as e:
            step.outcome = f"heal error: {e}"
            self.say(f"heal of {step.event.describe()} failed: {e}")

    def _recover(self, run):
        for name in sorted(self.members):
            if not self.launcher.node(name).running:
                self.launcher.start(name)
        capacity = self.scenario.capacity(self.launcher)
        try:
            for cluster in self.scenario.expected_clusters(self.launcher):
                remaining = max(0.1, run.healed_at + self.recovery_timeout - self.clock())
                self.wait_copies(cluster, capacity.get(cluster, 1), remaining)
            run.recovered_at = self.clock()
        except WaitTimeout as e:
            run.recovery_error = str(e)
            return
        if getattr(self.scenario, "check_views", False):
            self._converge(run)

    def wait_copies(self, cluster, count, timeout):
        """Until C{count} instances of C{cluster} run, each on its own slot and node."""
        if count == 1:
            self.launcher.wait_running(cluster=cluster, timeout=timeout)
            return

        def enough():
            running = self.launcher.running_instances(cluster=cluster)
            return (len({i.slot for i in running}) >= count
                    and len({i.node for i in running}) >= count)
        wait_for(enough, timeout, what=f"{count} running instances of cluster {cluster}")

    def _converge(self, run):
        """Wait, within the recovery bound, until every view shows every member alive."""
        deadline = run.healed_at + self.recovery_timeout
        departed = sorted(self.started - self.members)
        while True:
            problems = view_disagreements(
                {name: self.launcher.log_text(name) for name in sorted(self.members)},
                departed=departed)
            if not problems:
                run.converged_at = self.clock()
                return
            if self.clock() >= deadline:
                run.views_error = "; ".join(problems)
                return
            self.sleep(0.2)

    # -- faults (each returns its undo, or None) ----------------------------------------

    def _daemon_pid(self, name):
        node = self.launcher.node(name)
        if not node.running:
            raise _Skip(f"daemon {name} is not running")
        return node.pid

    def service_hit(self, event):
        """The service instance a C{kill_service} or C{pause_service} event hits.

        The newest running on its node, unless the scenario chooses
        (C{service_to_hit(running, event)}: the groups scenario hits members too).
        """
        name = event.targets[0]
        running = self.launcher.running_instances(name)
        if not running:
            raise _Skip(f"no service runs on {name}")
        choose = getattr(self.scenario, "service_to_hit", None)
        return running[-1] if choose is None else choose(running, event)

    def _apply_kill_daemon(self, event):
        name = event.targets[0]
        self._daemon_pid(name)
        self.launcher.kill(name)
        return lambda: self.launcher.start(name)

    def _apply_restart_daemon(self, event):
        name = event.targets[0]
        self._daemon_pid(name)
        self.launcher.restart(name)

    def _apply_pause_daemon(self, event):
        name = event.targets[0]
        self._daemon_pid(name)
        self.launcher.pause(name)
        return lambda: self.launcher.resume(name)

    def _apply_kill_service(self, event):
        instance = self.service_hit(event)
        os.kill(instance.pid, signal.SIGKILL)

    def _apply_pause_service(self, event):
        instance = self.service_hit(event)
        return Pause(instance.pid, cleanups=self.cleanups).resume

    def _apply_cpu_starve(self, event):
        pid = self._daemon_pid(event.targets[0])
        return CpuStarvation(pid, event.params["share"], cleanups=self.cleanups).heal

    def _apply_clock_jump(self, event):
        name = event.targets[0]
        try:
            clock = self.launcher.clock_of(name)
        except ValueError as e:
            raise _Skip(str(e)) from None
        return ClockJump(clock, event.params["seconds"], cleanups=self.cleanups).heal

    def _apply_freeze_node(self, event):
        name = event.targets[0]
        pid = self._daemon_pid(name)
        try:
            frozen = NodeFreeze(pid, self.launcher.lease_clock_offset_path(name),
                                cleanups=self.cleanups,
                                contained=self.launcher.service_cgroups(name))
        except FreezeUnsupported as e:
            raise _Skip(str(e)) from None
        self.freezes.append((name, frozen))
        return frozen.thaw

    def _apply_clock_rate(self, event):
        name = event.targets[0]
        drift = RateDrift(self.launcher.lease_clock_offset_path(name), event.params["rate"],
                          cleanups=self.cleanups)
        return drift.heal

    def _apply_reshape(self, event):
        name = event.targets[0]
        self._daemon_pid(name)
        reshape = getattr(self.scenario, "reshape", None)
        if reshape is None:
            raise _Skip(f"scenario {self.scenario.name} has no cluster shapes")
        try:
            cluster, settings, undo = reshape(self.launcher, name, event.params["change"])
        except ValueError as e:
            raise _Skip(str(e)) from None
        self.say(f"reshape: {name} restarts with {cluster} "
                 + " ".join(f"{k}={v}" for k, v in sorted(settings.items())))
        try:
            self.launcher.restart(name)
        except BaseException:
            undo()
            raise

        def back():
            undo()
            if self.launcher.node(name).running:
                self.launcher.restart(name)
            # Not running (killed meanwhile): its next start has the old shape.
        return back

    def machine_pauses(self, bound, cut_off_bound=None, steps=(), lease=None):
        """The checker's L{checker.MachinePause} of every node frozen and thawed in the run.

        A node that a network fault cut off at any time during its pause, or
        that was paused for longer than a lease (its peers have declared it
        failed and closed its connections by then), may resume cut off, or
        with its peer connections still to re-establish: no voter's refusal
        reaches it at once, and its service may run to its old deadline
        (C{cut_off_bound}, T - m; doc/ownership.md, "A paused machine").
        """
        pauses = []
        for name, frozen in self.freezes:
            if frozen.thawed_at is None:
                continue
            limit = bound
            long_pause = lease is not None and frozen.thawed_at - frozen.frozen_at >= lease
            if cut_off_bound is not None and (long_pause or any(
                    _cut_off(step, name, frozen.frozen_at, frozen.thawed_at) for step in steps)):
                limit = max(bound, cut_off_bound)
            pauses.append(checker.MachinePause(name, frozen.frozen_at, frozen.thawed_at, limit))
        return pauses

    def _network(self, pairs):
        if self.firewall is None:
            raise _Skip("no firewall (run as root with nft or iptables)")
        token = self.firewall.block(pairs)
        return lambda: self.firewall.lift(token)

    def _addresses(self, names):
        return [self.launcher.address(name) for name in names]

    def _apply_isolate(self, event):
        everyone = self._addresses(self.launcher.nodes)
        return self._network(topology.isolate(self.launcher.address(event.targets[0]), everyone))

    def _apply_split(self, event):
        groups = [list(g) for g in event.params["groups"]]
        # Spares that joined are on the majority side (the schedule did not know them).
        placed = {n for g in groups for n in g}
        groups[-1] += sorted(n for n in self.members if n not in placed)
        return self._network(topology.split(*(self._addresses(g) for g in groups)))

    def _apply_bridge(self, event):
        a, b = (self._addresses(side) for side in event.params["sides"])
        return self._network(topology.bridge(a, b, self.launcher.address(event.params["bridge"])))

    def _apply_ring(self, event):
        return self._network(topology.ring(self._addresses(event.params["order"])))

    def _apply_loss(self, event):
        if self.firewall is None:
            raise _Skip("no firewall (run as root with nft or iptables)")
        token = self.firewall.loss(self.launcher.address(event.targets[0]),
                                   event.params["fraction"])
        return lambda: self.firewall.lift(token)


    def _apply_join(self, event):
        name = event.targets[0]
        if self.launcher.node(name).running:
            raise _Skip(f"{name} is already running")
        self.members.add(name)
        self.started.add(name)
        self.launcher.start(name)
        if event.lasts is None:
            return None

        def leave():
            self.members.discard(name)
            self.launcher.stop(name)
        return leave

    def _apply_leave(self, event):
        name = event.targets[0]
        self._daemon_pid(name)
        # SIGTERM: ownership hands its clusters over, then membership announces the leave.
        self.launcher.stop(name)
        return lambda: self.launcher.start(name)


class _Skip(Exception):
    """The event cannot apply now (its target is down); recorded, not an error."""


def _cut_off(step, node, start, end):
    """Whether network fault C{step} involved C{node} at some time between C{start} and C{end}."""
    from rig.faults.schedule import NETWORK_KINDS

    if step.event.kind not in NETWORK_KINDS or step.applied_at is None:
        return False
    healed = step.healed_at if step.healed_at is not None else float("inf")
    return step.applied_at <= end and healed >= start and node in _named(step.event)


def _named(event):
    """Every node name an event names (targets, groups, sides, the bridge, a ring's order)."""
    names = set(event.targets)

    def walk(value):
        if isinstance(value, str):
            names.add(value)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)
    for value in event.params.values():
        walk(value)
    return names


def cut_off_bound(timing):
    """How long a resumed machine cut off from the voters may run: to its old deadline, T - m."""
    from clsd.ownership.core.timing import DEFAULT_DRIFT_MARGIN, LeaseTiming

    margin = DEFAULT_DRIFT_MARGIN if timing.drift_margin is None else timing.drift_margin
    lease = LeaseTiming(lease=timing.lease_seconds, drift_margin=margin)
    return lease.lease - lease.drift_margin


def pause_bound(timing):
    """How long a resumed paused machine's service may go on (doc/ownership.md, "A paused machine").

    Its lease clock did not move, so its next renewal comes when due (at most
    T/3 away), is refused by a voter that granted the lease to someone else
    within a round (T/8, the round timeout), and the service is killed at
    once (inside the drift margin m, as every kill).
    """
    from clsd.ownership.core.timing import DEFAULT_DRIFT_MARGIN, LeaseTiming

    margin = DEFAULT_DRIFT_MARGIN if timing.drift_margin is None else timing.drift_margin
    lease = LeaseTiming(lease=timing.lease_seconds, drift_margin=margin)
    return lease.renew_after + lease.round_timeout + lease.drift_margin


def checker_faults(run):
    """The applied events as the checker's L{checker.Fault}s."""
    faults = []
    for step in run.steps:
        if step.applied_at is None:
            continue
        # The nodes a fault is blamed for: its targets (the isolated node,
        # the bridge, every node of a ring), for a split the minority side.
        nodes = step.event.targets
        if step.event.kind == "split":
            nodes = tuple(step.event.params["groups"][0])
        faults.append(checker.Fault(t=step.applied_at, kind=step.event.kind, nodes=tuple(nodes)))
    return faults


def execute(schedule, directory, scenario, *, cleanups=None, say=None, replay="",
            recovery_timeout=DEFAULT_RECOVERY_TIMEOUT, settle_timeout=60.0, firewall=None):
    """Launch the nodes, run C{schedule}, tear everything down; return the report dict.

    @param firewall: a L{Firewall} for network faults, or None to skip them.
    """
    from rig.faults import report as reporting
    from rig.launcher import ConfigTemplate, Launcher

    say = say or (lambda line: None)
    if getattr(schedule, "escaping", False) and hasattr(scenario, "escaping"):
        scenario.escaping = True
    template = ConfigTemplate()
    for part in scenario.template_parts():
        template = template.with_part(part)
    faketime = schedule.nodes if "clock_jump" in schedule.kinds else ()
    spares = tuple(getattr(schedule, "spares", ()))
    launcher = Launcher(os.path.join(directory, "rig"), list(schedule.nodes), template=template,
                        faketime=(*faketime, *spares) if faketime else (),
                        cleanups=cleanups, spares=spares)
    try:
        launcher.start_all()
        say(f"started {len(schedule.nodes)} daemons: " + ", ".join(
            f"{n}@{launcher.address(n)}" for n in schedule.nodes))
        runner = ScheduleRunner(schedule, launcher, scenario, firewall=firewall,
                                cleanups=cleanups, log=say, recovery_timeout=recovery_timeout)
        capacity = scenario.capacity(launcher)
        settled_by = time.monotonic() + settle_timeout
        for cluster in scenario.expected_clusters(launcher):
            runner.wait_copies(cluster, capacity.get(cluster, 1),
                                max(0.1, settled_by - time.monotonic()))
        run = runner.run()
        recovered = run.recovered_at or time.monotonic()
    finally:
        if firewall is not None:
            firewall.heal()
        launcher.teardown()
    records = launcher.records()
    timing = getattr(scenario, "timing", None)
    pauses = runner.machine_pauses(
        pause_bound(timing) if timing is not None else 0.0,
        cut_off_bound(timing) if timing is not None else None, run.steps,
        timing.lease_seconds if timing is not None else None)
    groups = scenario.groups(launcher) if hasattr(scenario, "groups") else {}
    during = checker.check(
        [r for r in records.records if r.t <= recovered], horizon=recovered,
        capacity=scenario.capacity(launcher), faults=checker_faults(run), pauses=pauses,
        groups=groups,
    )
    final = checker.check(records, capacity=scenario.capacity(launcher), pauses=pauses,
                          groups=groups)
    bound = None
    if hasattr(scenario, "layout"):
        bound = availability.judge(
            [r for r in records.records if r.t <= run.ended_at], availability.changes_of(run),
            scenario.layout(launcher), start=run.started_at, end=run.ended_at,
            bound=availability.bound_for(scenario.timing))
    return reporting.build(schedule=schedule, run=run, scenario=scenario, final=final,
                           during=during, log_problems=launcher.log_problems(), replay=replay,
                           bound=bound, groups=groups)
