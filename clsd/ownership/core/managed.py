"""A service that runs only while this node holds its cluster's lease.

L{ManagedService} sits between the ownership core's actions and one
L{clsd.supervision.runner.ServiceRunner}:

- The runner does not start by itself (C{autostart} is off); the core's
  L{StartService} starts it, with ``CLSD_CLUSTER``, ``CLSD_EPOCH`` and
  ``CLSD_NODE`` added to the environment of every instance of that tenure
  (local restarts by the supervisor included).
- Every instance is spawned through L{ManagedService.wrap}: the spawn is
  refused unless the lease is held here, its deadline is still ahead and
  the lease guard runs; the new process group is armed in the guard with
  the lease deadline the moment it exists (C{after_spawn}), before the
  runner, the ownership core or the reactor hear of it.  Renewals re-arm it
  (L{KillAt}); a stop disarms it once the group is gone.
- L{StopService} stops it with TERM, then KILL no later than the core's
  deadline; C{service_stopped} is reported after every stop, also when the
  service was not running.  A service that ends here and will not be
  restarted (crash loop, ``restart`` policy, an operator's stop) gives the
  cluster up: C{service_failed}.
- Not holding the lease, the node is the service's standby: an LSB/OCF
  service's agent is asked now and then whether a copy runs here anyway
  (started by hand), and such a rogue copy is stopped and reported.  A copy
  found running when a tenure starts is not adopted but stopped and started
  again inside the service's containment, where the lease guard reaches it.
- A process group still present after SIGKILL (stuck in the kernel, see
  L{clsd.supervision.core.policy.KILL_WAIT}) is not stopped: C{service_stuck} is
  reported instead, the group stays armed, and the stop (or failure) is
  reported only once the group is really gone.
"""

from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Protocol

from clsd.ownership.core.errors import GuardUnavailable
from clsd.supervision.core.policy import RESTING_STATES, State

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred
    from twisted.python.failure import Failure

    from clsd.config.floating import FloatingAddress


class Runner(Protocol):
    """What a managed service uses of its L{clsd.supervision.runner.ServiceRunner}."""

    autostart: bool
    tenure: Callable[[], tuple[str, int | None]] | None

    @property
    def state(self) -> State: ...
    @property
    def process_alive(self) -> bool: ...
    @property
    def stuck_groups(self) -> Collection[int]: ...
    def guard_by_lease(self) -> None: ...
    def add_observer(self, observer: Callable[["Runner"], None]) -> None: ...
    def standby(self, on: bool) -> None: ...
    def start(self) -> None: ...
    def reset(self) -> None: ...
    def stop(self, kill_after: float | None = None) -> "Deferred[object]": ...


class Guard(Protocol):
    """What a managed service uses of the L{clsd.ownership.guard.GuardClient}."""

    @property
    def running(self) -> bool: ...
    def arm(self, pgid: int, deadline: float, label: str | None = None,
            cgroup: str | None = None) -> bool: ...
    def disarm(self, pgid: int) -> None: ...


class Keeper(Protocol):
    """What a managed service uses of its L{clsd.ownership.floating.AddressKeeper}."""

    floating: "FloatingAddress"

    def up(self, epoch: int, deadline: float | None) -> "Deferred[object]": ...
    def renew(self, deadline: float) -> None: ...
    def down(self) -> "Deferred[object]": ...
    def failed(self, reason: str) -> None: ...


#: C{base_spawn(protocol, extra_env=..., after_spawn=...)}: the runner's own spawn.
BaseSpawn = Callable[..., object]


class LeaseNotHeld(RuntimeError):
    """A managed service was asked to spawn without a lease to run under."""

    transient = False


class LeaseDeadlinePassed(LeaseNotHeld):
    """The tenure is still this node's but its deadline passed (a renewal is late).

    Transient: the core either renews (the start is then allowed) or stops
    the service. A start refused for it is tried again, not counted as the
    service's failure: counting it turned a late renewal into a crash loop
    that gave the cluster up here (soak seed 720029).
    """

    transient = True


def tenure_environment(cluster: str, epoch: int, node: str,
                       slot: int | None = None) -> dict[str, str]:
    """The ``CLSD_*`` variables of one tenure (strings, for the environment)."""
    env = {"CLSD_CLUSTER": cluster, "CLSD_EPOCH": str(epoch), "CLSD_NODE": node}
    if slot is not None:
        env["CLSD_SLOT"] = str(slot)
    return env


class ManagedService:
    """One cluster's service on this node, run under the lease.

    @param report: C{report(method, cluster)} with C{"service_stopped"} or
        C{"service_failed"}; called later, never from inside this object's
        own calls (the caller queues it).
    @param guard: a L{clsd.ownership.guard.GuardClient} (or a fake).
    @param keeper: the cluster's L{clsd.ownership.floating.AddressKeeper} when
        it has a floating address: brought up before the service starts (or
        once it runs, ``address_order = "after"``), taken down after it
        stopped (or before it stops); a stop or failure is reported only once
        the addresses are down, so the next owner never adds them beside ours.
    """

    def __init__(self, cluster: str, node: str, guard: Guard, *,
                 monotonic: Callable[[], float], report: Callable[[str, str], None],
                 n_active: bool = False, keeper: Keeper | None = None) -> None:
        self.cluster = cluster
        self.node = node
        self.guard = guard
        self._monotonic = monotonic
        self._report = report
        self._n_active = n_active
        self.runner: Runner | None = None
        #: The environment additions of the current tenure.
        self.env: dict[str, str] | None = None
        #: The lease deadline the guard enforces (monotonic), or None.
        self.deadline: float | None = None
        #: Between StartService and StopService (spawns are allowed).
        self.owned = False
        #: The process group armed in the guard, or None.
        self.pgid: int | None = None
        #: Why this service must not start here at all (e.g. leftovers), or None.
        self.blocked: str | None = None
        self._stopping = False
        #: The report held back while a stuck process group is still present.
        self._after_stuck: str | None = None
        self.keeper = keeper
        #: The epoch whose addresses were asked up (None: not asked in this tenure).
        self._addresses_asked: int | None = None
        self._epoch: int | None = None
        #: The stop under way gives the cluster up (reported as failed, not stopped).
        self._give_up = False

    @property
    def stopping(self) -> bool:
        """Whether a stop asked for by the core is still in progress."""
        return self._stopping

    # -- wiring --------------------------------------------------------------

    def wrap(self, base_spawn: BaseSpawn) -> Callable[[object], object]:
        """The runner's C{spawn(protocol)}, from C{base_spawn(protocol, extra_env, after_spawn)}."""

        def spawn(protocol: object) -> object:
            now = self._monotonic()
            if not self.owned:
                raise LeaseNotHeld(
                    f"cluster {self.cluster}: this node does not hold its lease "
                    "(lease ownership starts this service; use standby/move/pause)")
            if self.deadline is None or now >= self.deadline:
                raise LeaseDeadlinePassed(f"cluster {self.cluster}: the lease deadline has passed")
            if not self.guard.running:
                raise GuardUnavailable("the lease guard is not running")
            return base_spawn(protocol, extra_env=self.env, after_spawn=self._arm_new_group)

        return spawn

    def attach(self, runner: Runner) -> None:
        """Take over C{runner}: it no longer starts by itself."""
        self.runner = runner
        runner.autostart = False
        runner.tenure = self._tenure
        runner.guard_by_lease()
        runner.add_observer(self._observe)
        runner.standby(True)

    def _tenure(self) -> tuple[str, int | None]:
        """(cluster, epoch) of the current tenure, for the runner's start records."""
        epoch = self.env.get("CLSD_EPOCH") if self.env is not None else None
        return self.cluster, int(epoch) if epoch is not None else None

    def _arm_new_group(self, pgid: int) -> None:
        """Arm the new group; raising keeps its start gate shut (the program never runs)."""
        # The previous instance's group is gone (the runner spawns only then).
        if self.pgid is not None and self.pgid != pgid:
            self.guard.disarm(self.pgid)
        self.pgid = pgid
        deadline = self.deadline
        # Checked again here: the spawn itself (or a freeze during it) may
        # have outlasted the lease since wrap's check.
        if not self.owned or deadline is None or self._monotonic() >= deadline:
            raise LeaseNotHeld(f"cluster {self.cluster}: the lease deadline passed before "
                               "the start gate opened")
        if not self._arm(pgid, deadline):
            raise GuardUnavailable(
                f"cluster {self.cluster}: the arm line did not reach the lease guard "
                "(pipe full or broken); the start gate stays shut")

    # -- the core's actions ------------------------------------------------------

    def kill_at(self, deadline: float) -> None:
        """L{KillAt}: the service may run until C{deadline}; re-arm a running group."""
        self.deadline = deadline
        if self.pgid is not None:
            self._arm(self.pgid, deadline)
        if self.keeper is not None:
            self.keeper.renew(deadline)

    def _arm(self, pgid: int, deadline: float) -> bool:
        # Under cgroup containment the guard kills the runner's cgroup too.
        cgroup = getattr(self.runner, "cgroup", None)
        extra = {"cgroup": cgroup} if cgroup is not None else {}
        return self.guard.arm(pgid, deadline, label=self.cluster, **extra)

    def start(self, epoch: int, slot: int = 0) -> None:
        """L{StartService}: run the service for this tenure."""
        assert self.runner is not None  # attached before the core runs it
        self.env = tenure_environment(self.cluster, epoch, self.node,
                                      slot if self._n_active else None)
        self.runner.standby(False)  # before owned: its observers see a resting service
        self.owned = True
        self._epoch = epoch
        self._addresses_asked = None
        if self.blocked is not None:
            self.owned = False
            self._report("service_failed", self.cluster)
            return
        if self._addresses_first:
            self._addresses_asked = epoch
            assert self.keeper is not None  # _addresses_first
            self.keeper.up(epoch, self.deadline).addCallbacks(
                lambda _: self._start_runner(epoch), self._addresses_failed)
            return
        self._start_runner(epoch)

    @property
    def _addresses_first(self) -> bool:
        return self.keeper is not None and self.keeper.floating.order == "before"

    def _start_runner(self, epoch: int) -> None:
        if not self.owned or self._stopping or self._epoch != epoch:
            return  # the tenure ended while the addresses came up
        assert self.runner is not None
        if self.runner.state is State.FAILED:
            self.runner.reset()  # a new tenure: the old crash loop is history
        else:
            self.runner.start()

    def _addresses_failed(self, failure: "Failure") -> None:
        """The addresses could not come up: stop, and give the cluster up once all is down."""
        assert self.keeper is not None  # only its Deferreds call this
        self.keeper.failed(failure.getErrorMessage())
        if not self.owned or self._stopping:
            return  # a stop is under way; it takes the addresses down
        self._give_up = True
        self.stop(self.deadline)

    def stop(self, deadline: float | None) -> None:
        """L{StopService}: TERM now, KILL by C{deadline} (None: the service's stop_timeout)."""
        self.owned = False
        assert self.runner is not None
        kill_after = None if deadline is None else deadline - self._monotonic()
        if self._stopping:
            self.runner.stop(kill_after)  # only brings the KILL forward
            return
        self._stopping = True
        if self.keeper is not None and not self._addresses_first:
            # address_order = "after": the address goes first, then the service.
            def stop_runner(_: object) -> "Deferred[object]":
                left = None if deadline is None else deadline - self._monotonic()
                assert self.runner is not None
                return self.runner.stop(left)
            self.keeper.down().addBoth(stop_runner).addCallback(self._stopped)
            return
        self.runner.stop(kill_after).addCallback(self._stopped)

    def _stopped(self, _: object) -> None:
        self._stopping = False
        self.deadline = None
        assert self.runner is not None
        if not self.owned:
            self.runner.standby(True)
        self._disarm_if_gone()
        method = "service_failed" if self._give_up else "service_stopped"
        self._give_up = False
        if self.keeper is not None:
            self.keeper.down().addBoth(lambda _: self._report_gone(method))
            return
        self._report_gone(method)

    def _report_gone(self, method: str) -> None:
        """Report C{method} once no process group of the service is left (stuck ones included)."""
        assert self.runner is not None
        if self.runner.stuck_groups:
            if self._after_stuck is None:
                self._report("service_stuck", self.cluster)
            self._after_stuck = method
            return
        self._report(method, self.cluster)

    # -- what the runner tells us ------------------------------------------------------

    def _observe(self, runner: Runner) -> None:
        self._disarm_if_gone()
        if self._after_stuck is not None and not runner.stuck_groups:
            method, self._after_stuck = self._after_stuck, None
            self._report(method, self.cluster)
            return
        if (self.owned and not self._stopping and runner.state in RESTING_STATES
                and not runner.process_alive):
            # Not running, and the supervisor will not restart it: the next
            # candidate should have the cluster.
            self.owned = False
            runner.standby(True)
            if self.keeper is not None:
                self.keeper.down().addBoth(lambda _: self._report_gone("service_failed"))
                return
            self._report_gone("service_failed")
            return
        if (self.owned and not self._stopping and self.keeper is not None
                and self._addresses_asked != self._epoch and runner.state is State.RUNNING):
            # address_order = "after": the service runs, now its address.
            self._addresses_asked = self._epoch
            assert self._epoch is not None  # owned: set by start
            self.keeper.up(self._epoch, self.deadline).addErrback(self._addresses_failed)

    def _disarm_if_gone(self) -> None:
        """Disarm once nothing of the instance is left.

        Not when the runner's pid moves on: a forking service's pid becomes
        its main process once the start command has exited, and the armed
        group (with its cgroup) is still what the guard must kill. A new
        instance's spawn disarms the previous group (L{_arm_new_group}).
        """
        runner = self.runner
        assert runner is not None
        if self.pgid is None or self.pgid in runner.stuck_groups:
            return  # a stuck group stays armed: it is not gone
        if not runner.process_alive:
            self.guard.disarm(self.pgid)
            self.pgid = None
            self.pgid = None

    def status(self) -> dict[str, object]:
        return {"cluster": self.cluster, "owned": self.owned, "pgid": self.pgid,
                "deadline": self.deadline, "blocked": self.blocked,
                "stuck_groups": sorted(self.runner.stuck_groups) if self.runner else [],
                "state": self.runner.state.value if self.runner else None}
