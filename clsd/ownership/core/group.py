"""The order of an ordered group: which member may start, which must stop, when the group is done.

A cluster may be run by several services in a fixed order (``services =
[...]``: a data volume, then the database, then its exporter).  This core
decides, for one node's copy of such a group, what happens next; the shell
(L{clsd.ownership.managed_group}) runs one
L{clsd.ownership.core.managed.ManagedService} per member and carries out
the actions.  It does no I/O and reads no clock: it is fed what the members'
supervisors report and returns what to do.

The rules (Pacemaker's group semantics):

- A member is started only once every member below it runs (its health
  check or ``monitor`` passing where it has one), and no member above it is
  alive: L{GroupSequencer.may_spawn} is asked before every spawn of a
  member, the supervisor's own restarts included, and a refused spawn is
  held (L{GroupSequencer.spawn_held}) until L{ReleaseMember} lets it go.
- When a member stops running (it crashed, its check fell), every member
  above it is stopped, the highest first, each only after the one above it
  has stopped; then the member restarts (its supervisor's backoff applies)
  and the members above it start again, in order.
- A member that gives up (crash-loop limit, an address that cannot come up)
  gives the whole group up: every member is stopped, highest first, and the
  group reports C{service_failed}, so that the cluster moves to the next
  node as a single service would.
- A stop of the group (the lease ends, a move, standby) stops every member,
  highest first, each after the one above it has stopped; the group reports
  C{service_stopped} once no member is left alive.
"""

import enum

import attrs


class Phase(enum.Enum):
    IDLE = "idle"              # nothing asked (before a tenure, after a stop)
    STARTING = "starting"      # members are being started, bottom up
    RUNNING = "running"        # every member runs
    RECOVERING = "recovering"  # a member stopped running: above it stopped, then restarted
    STOPPING = "stopping"      # the group is being stopped, top down
    FAILING = "failing"        # a member gave up: the group is stopped, then reported failed


#: Phases in which members are wanted running.
RUN_PHASES = frozenset({Phase.STARTING, Phase.RUNNING, Phase.RECOVERING})


@attrs.frozen
class StartMember:
    """Start member C{index} (under the group's tenure)."""

    index: int


@attrs.frozen
class StopMember:
    """Stop member C{index}; report L{GroupSequencer.member_stopped} when it is gone."""

    index: int


@attrs.frozen
class ReleaseMember:
    """The start member C{index} was refused may go ahead now."""

    index: int


@attrs.frozen
class ReportGroup:
    """Tell lease ownership about the whole group: C{service_stopped}, C{_failed} or C{_stuck}."""

    method: str
    reason: str = ""


GroupAction = StartMember | StopMember | ReleaseMember | ReportGroup


@attrs.define
class MemberView:
    """What the group knows of one member."""

    name: str
    #: Its supervisor's state is ``running`` (started and healthy).
    running: bool = False
    #: Some process of it may be alive.
    alive: bool = False
    #: The group wants it to run (asked to start, not asked to stop since).
    wanted: bool = False
    #: A start of it was refused by L{GroupSequencer.may_spawn} and waits.
    held: bool = False


class GroupSequencer:
    """One node's copy of an ordered group: members started in order, stopped in reverse."""

    def __init__(self, members: tuple[str, ...] | list[str]) -> None:
        if not members:
            raise ValueError("a group needs at least one member")
        self.members = [MemberView(name) for name in members]
        self.phase = Phase.IDLE
        #: The member a stop was asked of and whose end is awaited, or None.
        self.stopping: int | None = None
        #: Why the group gives up (FAILING), for the report.
        self.failure = ""
        self._stuck_reported = False

    # -- queries -----------------------------------------------------------------

    def may_spawn(self, index: int) -> str | None:
        """None if member C{index} may start a process now, else why it must wait."""
        member = self.members[index]
        if self.phase not in RUN_PHASES or not member.wanted:
            return f"the group does not want {member.name} running"
        for below in self.members[:index]:
            if not below.running:
                return f"waiting for {below.name} (before it in the group) to run"
        for above in self.members[index + 1:]:
            if above.alive:
                return f"waiting for {above.name} (after it in the group) to stop"
        return None

    def waiting_for(self) -> str | None:
        """The first member the group waits for to run, or None when all run or none is wanted."""
        if self.phase not in RUN_PHASES:
            return None
        for member in self.members:
            if not member.running:
                return member.name
        return None

    def any_alive(self) -> bool:
        return any(m.alive for m in self.members)

    # -- inputs --------------------------------------------------------------------

    def start(self) -> list[GroupAction]:
        """A tenure begins: start the members bottom up."""
        if self.phase not in (Phase.IDLE,):
            return []
        for member in self.members:
            member.wanted = member.held = False
        self.phase = Phase.STARTING
        self.failure = ""
        self._stuck_reported = False
        return self._advance()

    def stop(self) -> list[GroupAction]:
        """The tenure ends (or the group is moved away): stop every member, top down."""
        if self.phase in (Phase.STOPPING, Phase.FAILING):
            return []  # already stopping (a new deadline is the shell's business)
        self.phase = Phase.STOPPING
        self._stuck_reported = False
        for member in self.members:
            member.held = False
        return self._advance()

    def observed(self, index: int, *, running: bool, alive: bool) -> list[GroupAction]:
        """Member C{index}'s supervisor changed: whether it runs, whether anything of it lives."""
        member = self.members[index]
        member.running = running
        member.alive = alive
        if running:
            member.held = False
        return self._advance()

    def spawn_held(self, index: int) -> None:
        """A spawn of member C{index} was refused (L{may_spawn}); it waits for L{ReleaseMember}."""
        self.members[index].held = True

    def member_stopped(self, index: int) -> list[GroupAction]:
        """A stop asked by L{StopMember} is complete: nothing of member C{index} is left."""
        member = self.members[index]
        member.alive = member.running = member.wanted = member.held = False
        if self.stopping == index:
            self.stopping = None
        return self._advance()

    def member_failed(self, index: int, reason: str = "") -> list[GroupAction]:
        """Member C{index} gave up here (crash loop, ...): the group gives up and moves."""
        member = self.members[index]
        member.alive = member.running = member.wanted = member.held = False
        if self.stopping == index:
            self.stopping = None
        if self.phase in RUN_PHASES:
            self.phase = Phase.FAILING
            self.failure = reason or f"member {member.name} failed"
        return self._advance()

    def member_stuck(self, index: int) -> list[GroupAction]:
        """A process group of member C{index} survives SIGKILL: keep the lease (said once)."""
        if self._stuck_reported:
            return []
        self._stuck_reported = True
        return [ReportGroup("service_stuck", f"member {self.members[index].name} is stuck")]

    # -- deciding ---------------------------------------------------------------------

    def _advance(self) -> list[GroupAction]:
        if self.phase in RUN_PHASES:
            return self._advance_running()
        if self.phase in (Phase.STOPPING, Phase.FAILING):
            return self._advance_stopping()
        return []

    def _advance_running(self) -> list[GroupAction]:
        if self.stopping is not None:
            return []  # one stop at a time, top down
        members = self.members
        lowest = next((i for i, m in enumerate(members) if not m.running), len(members))
        above = [i for i in range(lowest + 1, len(members))
                 if members[i].wanted or members[i].alive]
        if above:
            top = above[-1]
            if not members[top].wanted:
                return []  # it is ending on its own; its observation comes
            self.phase = Phase.RECOVERING
            self.stopping = top
            members[top].wanted = False
            return [StopMember(top)]
        if lowest == len(members):
            self.phase = Phase.RUNNING
            return []
        member = members[lowest]
        if self.phase is Phase.RUNNING:
            self.phase = Phase.RECOVERING
        if not member.wanted:
            member.wanted = True
            return [StartMember(lowest)]
        if member.held:
            member.held = False
            return [ReleaseMember(lowest)]
        return []  # starting, or in its own backoff

    def _advance_stopping(self) -> list[GroupAction]:
        if self.stopping is not None:
            return []
        for index in range(len(self.members) - 1, -1, -1):
            member = self.members[index]
            if member.wanted or member.alive:
                member.wanted = False
                self.stopping = index
                return [StopMember(index)]
        if self.phase is Phase.FAILING:
            self.phase = Phase.IDLE
            return [ReportGroup("service_failed", self.failure)]
        self.phase = Phase.IDLE
        return [ReportGroup("service_stopped")]
