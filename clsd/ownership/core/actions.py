"""What the ownership cores ask their shell to do: frozen attrs classes, no behaviour.

Deadlines are the node's own ``time.monotonic()`` values (never sent to
another machine).
"""

import attrs


@attrs.frozen
class Send:
    """Send C{message} (a L{clsd.ownership.core.messages} class) to node C{to}."""

    to: str
    message: object


@attrs.frozen
class KillAt:
    """Tell the lease guard: C{cluster}'s service may run until C{deadline}, no later.

    Emitted before L{StartService} and after every renewal.  The guard is a
    separate process so that it kills the service even while this daemon is
    frozen (SIGSTOP, swap storm, VM pause).
    """

    cluster: str
    deadline: float


@attrs.frozen
class StartService:
    """Start C{service} for C{cluster}; its environment gets CLSD_CLUSTER, CLSD_EPOCH, CLSD_NODE."""

    cluster: str
    service: str
    epoch: int
    slot: int = 0


@attrs.frozen
class StopService:
    """Stop C{cluster}'s service: TERM now, KILL at C{deadline}.

    C{deadline} None: a graceful stop bounded by the service's own
    ``stop_timeout`` (the lease is still renewed meanwhile).  Otherwise the
    lease could not be renewed and the service must be gone by C{deadline}.
    """

    cluster: str
    deadline: float | None
    reason: str


@attrs.frozen
class RunHook:
    """Run C{argv} (placeholders {node} {cluster} {epoch} filled) for C{event}.

    Hooks of one cluster run one at a time, in order.  A ``fence`` hook's
    result must be reported back with C{ClusterManager.hook_done}; other
    hooks are fire-and-forget (logged, retried by the runner).
    """

    cluster: str
    event: str
    argv: tuple[str, ...]
    node: str
    epoch: int


@attrs.frozen
class CancelFence:
    """The tenure C{epoch} of C{cluster} ended while it was fencing: its fence is not wanted.

    Drop that tenure's queued fence runs and SIGKILL a running one (its
    process group); its result must not reach the core.
    """

    cluster: str
    epoch: int


@attrs.frozen
class PublishState:
    """What this node tells every member (via membership metadata) about its ownership role."""

    state: object  # clsd.ownership.core.placement.MemberState


@attrs.frozen
class PersistEpochFloor:
    """Voter: durably write C{value} as the epoch floor, then call C{LeaseVoter.persisted(value)}."""

    value: int


@attrs.frozen
class ForgetCluster:
    """C{cluster} was unregistered and its service is stopped, its lease released.

    The core has dropped it; the shell may now remove the cluster's managed
    service and its runner.  Emitted once, after the last L{StopService} of
    that cluster has completed (never while a copy could still run here).
    """

    cluster: str


@attrs.frozen
class Report:
    """A lease fact for the operator (log, history, metrics); nothing to carry out.

    C{what}: ``acquired`` (a new tenure; C{previous} held it before),
    ``renewed`` (C{round_trip}: seconds from sending the renewal to the
    majority's grant), ``lost`` (the tenure ended without renewal),
    ``released`` (given up: C{reason}), ``moved`` (the service started here
    after another node held it: C{previous}, C{previous_epoch},
    C{previous_released}, C{handed_over}, C{fenced} say how), ``failed``
    (the cluster can run nowhere: C{reason}), ``move-asked`` (a member asked
    this node to move the cluster to C{target}: C{by}, and C{key} the admin
    key of the session that ran the command), ``move-refused`` (the same
    asked by a node that is no member, or a move that cannot be done:
    C{reason}), ``stalled`` (C{target} was placed but did not take the
    cluster in time: skipped for C{reason}), ``waiting`` (the cluster runs
    nowhere and waits here for its dependencies: C{reason}, e.g. ``after DB
    (no owner)``) and ``waited`` (it no longer does).
    """

    what: str
    cluster: str
    resource: str
    epoch: int
    previous: str | None = None
    previous_epoch: int | None = None
    previous_released: bool = False
    handed_over: bool = False
    fenced: bool = False
    round_trip: float | None = None
    reason: str = ""
    target: str | None = None
    by: str | None = None
    key: str = ""


#: Any of the above.
Action = (Send | KillAt | StartService | StopService | RunHook | CancelFence | PublishState
          | PersistEpochFloor | ForgetCluster | Report)
