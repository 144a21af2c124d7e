"""What the admin commands need from the rest of the daemon, as one interface.

The command shell is written against L{IAdminBackend} so that it does not
depend on how supervision, membership and ownership are built: the daemon
provides a backend that reads and drives those parts, tests provide
L{clsd.admin.fake.FakeBackend}. Every record the backend returns is a frozen
attrs class below; ``--json`` output is exactly these records as JSON.
"""

import attrs
from zope.interface import Interface, implementer


class AdminError(Exception):
    """An operation refused or failed.

    ``str()`` is the one-line reason the operator sees; the command exits
    non-zero. Raise it (or fail the returned Deferred with it) for every
    expected failure; any other exception is reported as an internal error
    and logged with its traceback.
    """


def not_available(what):
    """The L{AdminError} for an operation this build cannot perform yet."""
    return AdminError(f"not available: {what}")


def _tuple(value):
    return tuple(value)


@attrs.frozen
class MemberInfo:
    """One node as this node's membership view sees it."""

    name: str
    #: ``alive``, ``suspect``, ``dead``, ``left``, ... as membership reports it.
    state: str
    #: ``host:port`` of its peer listener.
    address: str
    #: Its CLSD version and protocol range C{(lowest, highest)} as it published them
    #: (None and () where unknown); state ``incompatible``: no protocol in common.
    version: str | None = None
    protocols: tuple = attrs.field(default=(), converter=_tuple)


@attrs.frozen
class ClusterInfo:
    """One cluster ID: who runs it now, under which fencing epoch."""

    id: str
    owners: tuple = attrs.field(converter=_tuple)
    #: The fencing epoch of the current lease; 0 before any lease.
    epoch: int
    #: This node's phase word as before (``running``, ``standing-by``, ``paused``, ...); kept
    #: for scripts. L{summary} and L{role_text} say it for a reader.
    state: str
    #: The floating addresses: C{(address, up here)} pairs (doc/address.md).
    addresses: tuple = attrs.field(default=(), converter=_tuple)
    #: An ordered group's members in start order: C{(service, state here)} pairs
    #: (doc/groups.md); empty for a cluster of one service.
    members: tuple = attrs.field(default=(), converter=_tuple)
    #: The cluster as it is, the same seen from any node (L{clsd.admin.ownership_status}):
    #: ``running``, ``moving``, ``starting``, ``failed``, ``unowned``, ``paused``, ...
    condition: str = ""
    #: The condition in words: ``running on beta``, ``moving beta -> alpha``.
    summary: str = ""
    #: While moving: C{(from, to)}, either None when not known.
    moving: tuple | None = None
    #: The eligible nodes that do not own it, the next owner first.
    standbys: tuple = attrs.field(default=(), converter=_tuple)
    #: This node's role: ``owner``, ``standby``, ``ineligible``, ``not-registered``, ...
    role: str = ""
    #: The role in words: ``owner``, ``standby #1``, ``ineligible: cooldown 4m``.
    role_text: str = ""
    #: A standby's place in line (1 = next).
    standby_rank: int | None = None
    #: Why this node may not own it now, else None.
    ineligible: str | None = None

    def with_view(self, view):
        """This record with the wording of L{clsd.admin.ownership_status.ClusterView} C{view}."""
        return attrs.evolve(self, **attrs.asdict(view, recurse=False))


@attrs.frozen
class ServiceInfo:
    """One supervised service on this node."""

    name: str
    state: str
    #: C{None} while no process runs.
    pid: int | None
    restarts: int
    #: simple, forking, lsb or ocf (doc/supervision.md, "Service types").
    type: str = "simple"
    #: Forking: the main process from the pidfile.
    main_pid: int | None = None
    #: Processes in its cgroup (None where unknown: process groups).
    processes: int | None = None
    #: LSB/OCF: the last action and its result ("monitor: success (rc 0)").
    last_action: str | None = None


@attrs.frozen
class QuorumInfo:
    voters: tuple = attrs.field(converter=_tuple)
    have_quorum: bool
    #: While the voters change: the set before the change (doc/operations.md).
    previous_voters: tuple = attrs.field(default=(), converter=_tuple)
    #: Live nodes whose voter set is two steps of a change away: nothing new is acquired.
    voters_apart: tuple = attrs.field(default=(), converter=_tuple)
    #: Why this node's voter grants nothing (its epoch floor cannot be
    #: stored), or None.
    voter_error: str | None = None


@attrs.frozen
class Status:
    """Everything ``status`` shows (and ``status --json`` returns)."""

    node: str
    members: tuple = attrs.field(converter=_tuple)
    clusters: tuple = attrs.field(converter=_tuple)
    services: tuple = attrs.field(converter=_tuple)
    quorum: QuorumInfo
    protocol: "ProtocolInfo | None" = None


@attrs.frozen
class ProtocolInfo:
    """The peer protocol the whole cluster speaks (doc/peer-protocol.md, "Versions")."""

    #: The highest version every live member speaks (None: none, or a member unknown).
    version: int | None
    #: Members whose protocol range keeps C{version} below what the others speak.
    held_back_by: tuple = attrs.field(converter=_tuple)


@attrs.frozen
class HistoryEvent:
    """One past event (start, stop, failover, membership change, admin action)."""

    #: Wall-clock POSIX time, for display only: no decision is ever made on it.
    time: float
    #: A short word: ``service-started``, ``member-dead``, ``lease-acquired``, ...
    kind: str
    detail: str
    #: Why it happened, oldest fact first (a cluster's move: who declared the
    #: previous owner dead, which lease expired, which hook ran, the new epoch).
    cause: tuple = ()


class IAdminBackend(Interface):
    """The daemon as the admin shell sees it.

    Every method may return its value directly or a Deferred that fires with
    it. Expected failures are L{AdminError}. Methods that change something
    return a one-line message saying what was done (``"node beta is now a
    standby"``). A backend that cannot do an operation yet raises
    ``not_available(...)``.
    """

    def status():
        """The node's whole state: a L{Status}."""

    def members():
        """Every member this node knows of, itself included: L{MemberInfo}s."""

    def clusters():
        """Every cluster ID this node takes part in: L{ClusterInfo}s."""

    def services():
        """Every service configured on this node: L{ServiceInfo}s."""

    def history(n):
        """The last C{n} events, oldest first: L{HistoryEvent}s."""

    def standby(node):
        """Make C{node} (this node when C{None}) give up what it runs and only stand by."""

    def unstandby(node):
        """Let C{node} (this node when C{None}) own clusters again."""

    def move(cluster, node, key=""):
        """Move cluster C{cluster} to member C{node}.

        C{key}: the admin key fingerprint of the session that asked; it goes
        with the request to the holder, which records it (``history``).
        """

    def pause(cluster):
        """Stop failing cluster C{cluster} over (and restarting it) until resumed."""

    def resume(cluster):
        """Undo L{pause}."""

    def reset(service):
        """Clear service C{service}'s failure state (crash loop, backoff) so it may start."""

    def leave():
        """Hand everything over and leave the membership gracefully."""

    def force_remove(node):
        """Declare C{node} gone for good (an operator's word for a dead machine)."""

    def reload():
        """Re-read the configuration; a bad file changes nothing and says why."""

    def manhole_namespace():
        """The dict of objects a manhole session starts with (not a Deferred)."""

    def subscribe(callback):
        """Call C{callback()} after every new event (not a Deferred); returns the function that
        stops it. For the live views (``--watch``); a backend without events returns a
        function that does nothing."""


@implementer(IAdminBackend)
class UnavailableBackend:
    """A backend that can do nothing yet: every operation says "not available".

    A base to subclass while the daemon's parts are wired one by one: each
    method overridden becomes a working command, the others keep refusing
    honestly instead of pretending.
    """

    def __init__(self, node):
        self.node = node

    def _refuse(self, command):
        raise not_available(f"'{command}' is not wired into this daemon yet")

    def status(self):
        self._refuse("status")

    def members(self):
        self._refuse("members")

    def clusters(self):
        self._refuse("clusters")

    def services(self):
        self._refuse("services")

    def history(self, n):
        self._refuse("history")

    def standby(self, node):
        self._refuse("standby")

    def unstandby(self, node):
        self._refuse("unstandby")

    def move(self, cluster, node, key=""):
        self._refuse("move")

    def pause(self, cluster):
        self._refuse("pause")

    def resume(self, cluster):
        self._refuse("resume")

    def reset(self, service):
        self._refuse("reset")

    def leave(self):
        self._refuse("leave")

    def force_remove(self, node):
        self._refuse("force-remove")

    def reload(self):
        self._refuse("reload")

    def manhole_namespace(self):
        return {"backend": self}

    def subscribe(self, callback):
        return lambda: None
