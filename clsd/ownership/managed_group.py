"""An ordered group of services that runs one cluster here, under its lease.

L{ManagedGroup} takes the place of a single L{ManagedService} for a cluster
with ``services = [...]``.  Lease ownership talks to it exactly as to one
service (L{start}, L{stop}, L{kill_at}; it reports C{service_stopped},
C{service_failed} and C{service_stuck} for the whole group); inside, each
member is a L{ManagedService} of its own (its runner, its process group and
cgroup armed in the lease guard, the tenure's ``CLSD_*`` environment, which
is the group's), and the pure L{GroupSequencer} decides the order:

- members start bottom up, each once the one below it runs, and stop top
  down, each once the one above it is gone;
- every spawn of a member (its supervisor's own restarts too) is checked
  against the order first: a member whose spawn comes too early (a member
  below it is not running, or one above it is still alive) is refused as a
  transient refusal, held, and released by the group the moment the order
  allows it;
- a member that gives up gives the whole group up (stopped top down, then
  C{service_failed}: the cluster moves).

A floating address belongs to the group: with ``address_order = "before"``
it is the first member's (up before anything starts, down after the last
member is gone), with ``"after"`` the last member's (up once every member
runs, down before anything stops).
"""

import functools

from twisted.internet import defer

from clsd.ownership.core.group import (
    GroupSequencer, Phase, ReleaseMember, ReportGroup, StartMember, StopMember,
)
from clsd.ownership.core.managed import ManagedService
from clsd.supervision.core.policy import State


class MemberWaits(RuntimeError):
    """A member's start comes before the group's order allows it: held, not failed."""

    transient = True


class ManagedGroup:
    """One cluster's ordered group on this node, run under the lease.

    @param members: the member service names, in start order.
    @param report: C{report(method, cluster)} as for L{ManagedService}.
    @param later: C{later(f, *args)} calls C{f} on a later reactor turn (the
        members' reports are handled outside their own calls).
    @param record: C{record(reason, **fields)} puts a step of the group in the
        event history (kind ``group``, subject the cluster).
    """

    def __init__(self, cluster, node, guard, members, *, monotonic, report, later,
                 record=None, n_active=False, keeper=None):
        self.cluster = cluster
        self._record = record if record is not None else (lambda reason, **fields: None)
        self.node = node
        self.names = tuple(members)
        self._report = report
        self._later = later
        self.core = GroupSequencer(self.names)
        self.keeper = keeper
        order = keeper.floating.order if keeper is not None else None
        last = len(self.names) - 1
        self.members = [
            ManagedService(cluster, node, guard, monotonic=monotonic,
                           report=functools.partial(self._member_reported, index),
                           n_active=n_active,
                           keeper=keeper if (order == "before" and index == 0)
                           or (order == "after" and index == last) else None)
            for index in range(len(self.names))]
        #: The lease deadline of the current tenure (None: no tenure).
        self.deadline = None
        self.owned = False
        self._epoch = None
        self._slot = 0
        #: The deadline of the group's stop under way (None: the members' stop_timeout).
        self._stop_deadline = None
        self._stopped_waiters = []
        #: Per member, C{warm(extra_env)} of its spawner, or None (see L{_warm_next}).
        self._warmers = [None] * len(self.names)

    # -- the face L{clsd.ownership.service.OwnershipService} uses ------------------

    @property
    def guard(self):
        return self.members[0].guard

    @guard.setter
    def guard(self, guard):
        for member in self.members:
            member.guard = guard

    @property
    def blocked(self):
        return next((m.blocked for m in self.members if m.blocked is not None), None)

    @blocked.setter
    def blocked(self, reason):
        self.members[0].blocked = reason

    @property
    def attached(self):
        """Whether every member has its runner (the daemon supervises each member here)."""
        return all(m.runner is not None for m in self.members)

    @property
    def runners(self):
        return [m.runner for m in self.members if m.runner is not None]

    @property
    def stopping(self):
        return self.core.phase in (Phase.STOPPING, Phase.FAILING)

    @property
    def alive(self):
        return any(r.process_alive for r in self.runners)

    @property
    def stop_timeout(self):
        """The longest a stop of the whole group may take: its members one after the other."""
        return sum(r.config.stop_timeout for r in self.runners)

    def member(self, index):
        """The handle through which member C{index}'s runner is wired (spawn, attach)."""
        return GroupMember(self, index)

    def wrap(self, index, base_spawn):
        """Member C{index}'s C{spawn(protocol)}: the lease's checks, and the group's order first."""
        inner = self.members[index].wrap(base_spawn)
        self._warmers[index] = getattr(base_spawn, "warm", None)

        def spawn(protocol):
            if self.members[index].owned:
                reason = self.core.may_spawn(index)
                if reason is not None:
                    self.core.spawn_held(index)
                    raise MemberWaits(f"cluster {self.cluster}: {reason}")
            return inner(protocol)

        return spawn

    def attach(self, index, runner):
        self.members[index].attach(runner)
        runner.add_observer(functools.partial(self._observe, index))

    def when_stopped(self):
        """A Deferred that fires once the group's stop is complete (at once if nothing runs)."""
        if not self.stopping and not self.alive:
            return defer.succeed(None)
        waiter = defer.Deferred()
        self._stopped_waiters.append(waiter)
        return waiter

    # -- the core's actions ----------------------------------------------------------

    def kill_at(self, deadline):
        """L{KillAt}: every member in the tenure (or still alive) may run until C{deadline}."""
        self.deadline = deadline
        for member in self.members:
            if member.owned or member.pgid is not None:
                member.kill_at(deadline)

    def start(self, epoch, slot=0):
        """L{StartService}: run the group for this tenure, bottom up."""
        self.owned = True
        self._epoch = epoch
        self._slot = slot
        self._stop_deadline = None
        self._step(self.core.start)

    def stop(self, deadline):
        """L{StopService}: stop the group top down; KILL each member no later than C{deadline}."""
        self.owned = False
        self._stop_deadline = deadline
        if self.core.stopping is not None:
            # A member's stop is under way: its KILL comes no later than the new deadline.
            self.members[self.core.stopping].stop(deadline)
        self._step(self.core.stop)

    def _step(self, decide, *args, **kwargs):
        """Run one input through the core; record what changed; carry out its actions."""
        before = self.core.phase
        actions = decide(*args, **kwargs)
        after = self.core.phase
        if after is not before:
            if after is Phase.RUNNING:
                self._record(f"all {len(self.names)} members run", phase=after.value)
            elif after is Phase.FAILING:
                self._record(f"{self.core.failure}: the group gives the cluster up here",
                             phase=after.value)
        for action in actions:
            if isinstance(action, StartMember):
                self._record(f"starting member {self._which(action.index)}",
                             member=self.names[action.index], action="start")
                member = self.members[action.index]
                member.kill_at(self.deadline)
                member.start(self._epoch, self._slot)
                self._warm_next(action.index)
            elif isinstance(action, StopMember):
                why = ""
                if self.core.phase is Phase.RECOVERING:
                    why = f": {self.core.waiting_for()} below it is not running"
                self._record(f"stopping member {self._which(action.index)}{why}",
                             member=self.names[action.index], action="stop")
                self.members[action.index].stop(
                    self._stop_deadline if self.stopping else None)
            elif isinstance(action, ReleaseMember):
                self._record(f"member {self._which(action.index)} may start: every member "
                             "after it has stopped", member=self.names[action.index],
                             action="release")
                self.members[action.index].runner.retry_refused()
            elif isinstance(action, ReportGroup):
                self._group_reported(action)

    def _warm_next(self, index):
        """While member C{index} starts, have the next member's start gate ready.

        Its spawn, once C{index} runs, is then a placement, an arm and a
        "go", not a shell start (the failover of a group pays it per member).
        The gate runs nothing until claimed; the next member's tenure
        environment is this member's (the group's).
        """
        following = index + 1
        member = self.members[index]
        if following >= len(self.names) or self.core.members[following].wanted:
            return  # no next member, or it started already (this one ran at once)
        warm = self._warmers[following]
        if warm is not None and member.owned and member.env is not None:
            warm(member.env)

    def _which(self, index):
        return f"{self.names[index]} ({index + 1} of {len(self.names)})"

    def _group_reported(self, action):
        if action.method != "service_stuck":
            self.owned = False
            self.deadline = None
            waiters, self._stopped_waiters = self._stopped_waiters, []
            for waiter in waiters:
                waiter.callback(None)
        self._report(action.method, self.cluster)

    # -- what the members tell us ------------------------------------------------------

    def _observe(self, index, runner):
        # An agent's system may run with no process of it left: its state says so.
        alive = runner.process_alive or runner.state in (
            State.STARTING, State.RUNNING, State.STOPPING)
        self._step(self.core.observed, index, running=runner.state is State.RUNNING,
                   alive=alive)

    def _member_reported(self, index, method, _cluster):
        self._later(self._member_event, index, method)

    def _member_event(self, index, method):
        if method == "service_stopped":
            self._step(self.core.member_stopped, index)
        elif method == "service_failed":
            runner = self.members[index].runner
            why = runner.status()["last_reason"] if runner is not None else "failed"
            self._step(self.core.member_failed, index, f"member {self.names[index]}: {why}")
        elif method == "service_stuck":
            self._step(self.core.member_stuck, index)
        else:
            raise ValueError(f"unknown member report {method!r}")

    # -- what the admin side reads -------------------------------------------------------

    def service_state(self):
        """One word for the group: its phase, or ``failed`` when a member gave up here."""
        if any(r.state is State.FAILED for r in self.runners) and not self.owned:
            return "failed"
        return self.core.phase.value

    def member_states(self):
        """C{[{"name", "state", "pid"}]} in start order."""
        result = []
        for name, member in zip(self.names, self.members):
            runner = member.runner
            result.append({"name": name,
                           "state": runner.state.value if runner is not None else None,
                           "pid": runner.pid if runner is not None and runner.process_alive
                           else None})
        return result

    def status(self):
        return {"cluster": self.cluster, "owned": self.owned, "deadline": self.deadline,
                "phase": self.core.phase.value, "waiting_for": self.core.waiting_for(),
                "blocked": self.blocked, "members": self.member_states(),
                "state": self.service_state()}


class GroupMember:
    """One member's wiring: what the shell hands the member's runner, like a L{ManagedService}."""

    def __init__(self, group, index):
        self.group = group
        self.index = index

    @property
    def cluster(self):
        return self.group.cluster

    def wrap(self, base_spawn):
        return self.group.wrap(self.index, base_spawn)

    def attach(self, runner):
        self.group.attach(self.index, runner)

    @property
    def blocked(self):
        return self.group.members[self.index].blocked

    @blocked.setter
    def blocked(self, reason):
        self.group.members[self.index].blocked = reason
