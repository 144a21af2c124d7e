"""What "the service" is on this machine: every process it ever started, wherever it moved.

A supervisor must be able to signal, wait for and kill *all* of a service's
processes, also those that left its process group (``setsid``, a double
fork into the background). L{IContainment} is that ability; two providers:

- L{CgroupContainment} (Linux, cgroup v2): the service runs in a cgroup of
  its own. The child is moved into it while it waits at the start gate,
  before it executes the program, so nothing it ever forks is born outside.
  It is stopped when the cgroup is empty (``populated 0`` in
  ``cgroup.events``, watched with inotify); ``cgroup.kill`` ends it whatever
  it did. Escape-proof for anyone short of root.
- L{ProcessGroupContainment} (portable): the service's process group. A
  process that calls ``setsid`` or ``setpgid`` is lost to it: unsafe
  against escapes, see doc/supervision.md.

(Solaris process contracts, ``ctrun``/libcontract, would be a third
provider: a contract holds every descendant, and its empty event is
"stopped". Not implemented.)

L{CgroupTree} is where one daemon's cgroups live and L{choose} decides,
purely, which provider a service gets.
"""

import errno
import hashlib
import os
import signal

from twisted.logger import Logger
from zope.interface import Attribute, Interface, implementer

from clsd.supervision import cgroupfs
from clsd.supervision.pgroups import OSProcessGroups

#: The providers, as ``[[service]] containment`` names them (the third
#: value, "auto", is resolved by L{choose}; clsd.config.service checks it).
CGROUP, PROCESS_GROUP = "cgroup", "process-group"

#: Service types whose processes leave the process group by design (their
#: start command returns while the system runs on in the background); see
#: the refusal rule in L{choose}.
ESCAPING_TYPES = frozenset({"forking", "lsb", "ocf"})

#: The directory under the cgroup v2 root that holds every CLSD daemon's cgroups.
CLSD_PARENT = "clsd"


class ContainmentError(Exception):
    """A service cannot be contained as configured; the message says why."""


class IContainment(Interface):
    """How one service's processes are held together, found and ended.

    The supervisor's process facts go through it: C{pgid} is the group the
    current instance's leader leads (pid == pgid); a provider may ignore it.
    """

    kind = Attribute("What ``containment`` names it: 'cgroup' or 'process-group'.")
    escape_proof = Attribute(
        "True when a process that leaves the process group is still signalled, "
        "waited for and killed.")
    cgroup = Attribute("The cgroup directory (for the lease guard and status), or None.")
    needs_placement = Attribute(
        "True when each new child must be L{place}d before it executes the program "
        "(the spawner then holds it at the start gate).")

    def ensure():
        """Make sure a helper command (an agent's action) can be placed, even before a start."""

    def prepare():
        """Before a spawn: make an empty container ready.

        @raise ContainmentError: why no instance may start now (a process of
            an earlier one is still inside, the cgroup cannot be made).
        """

    def place(pid):
        """Put child C{pid}, still held at the start gate, into the container."""

    def signal(pgid, signum):
        """Send C{signum} to the instance: SIGKILL reaches every process of it."""

    def alive(pgid):
        """Whether any process of the instance is alive (zombies do not count)."""

    def watch_empty(pgid, callback):
        """Call C{callback()} once the instance is empty.

        @return: a C{cancel()} callable, or None when this provider cannot
            watch (the caller then polls L{alive}).
        """

    def count(pgid):
        """How many processes the instance has, or None where unknown."""

    def contains(pid):
        """Whether process C{pid} belongs to the service (True where it cannot be told)."""

    def release():
        """The service is stopped for good (daemon stop, removed): tidy up.

        @return: None, or a Deferred that fires when it is done.
        """


@implementer(IContainment)
class ProcessGroupContainment:
    """The service is its process group (portable; escapes are lost)."""

    kind = PROCESS_GROUP
    escape_proof = False
    cgroup = None
    needs_placement = False

    def __init__(self, groups=None):
        self._groups = groups if groups is not None else OSProcessGroups()

    def prepare(self):
        pass

    def ensure(self):
        pass

    def place(self, pid):
        pass

    def signal(self, pgid, signum):
        if pgid is not None:  # None: no process was started yet
            self._groups.signal(pgid, signum)

    def alive(self, pgid):
        return pgid is not None and self._groups.alive(pgid)

    def watch_empty(self, pgid, callback):
        return None

    def count(self, pgid):
        return None

    def contains(self, pid):
        """Whether C{pid} may be this service's (a process group cannot tell)."""
        return True

    def release(self):
        pass


@implementer(IContainment)
class CgroupContainment:
    """The service is its cgroup (Linux cgroup v2).

    Stop signals: the configured ``stop_signal`` goes to the leader's
    process group (as with process groups, so a program's own graceful-stop
    signal reaches it and its workers), and SIGTERM, the one signal every
    program takes as "terminate", to every other process of the cgroup
    (those that escaped the group: another signal may mean "reload" to
    them). SIGKILL is ``cgroup.kill``.

    @param watcher: a L{CgroupWatcher}, or None to make the runner poll.
    @param reserve: a L{clsd.supervision.spawn.GateReserve}, or None: the
        spawner keeps the next instance's start gate warm in it.
    @param fs: the L{clsd.supervision.cgroupfs} functions (tests pass a fake).
    """

    kind = CGROUP
    escape_proof = True
    needs_placement = True

    def __init__(self, path, *, watcher=None, groups=None, fs=cgroupfs,
                 kill=os.kill, getpgid=os.getpgid, reserve=None):
        self.cgroup = path
        self.reserve = reserve
        self._watcher = watcher
        self._groups = groups if groups is not None else OSProcessGroups()
        self._fs = fs
        self._kill = kill
        self._getpgid = getpgid
        self._made = False

    def prepare(self):
        try:
            if not self._made:  # once: a restart is on the latency path
                os.makedirs(self.cgroup, exist_ok=True)
                self._made = True
            try:
                busy = self._fs.populated(self.cgroup)
            except FileNotFoundError:  # removed behind our back: make it again
                os.makedirs(self.cgroup, exist_ok=True)
                busy = self._fs.populated(self.cgroup)
        except OSError as e:
            raise ContainmentError(f"cannot use cgroup {self.cgroup}: {e.strerror or e}") \
                from None
        if busy:
            raise ContainmentError(
                f"cgroup {self.cgroup} still has processes {self._fs.pids(self.cgroup)}")

    def ensure(self):
        """Make the cgroup if it is not there (a helper command may run before any start)."""
        if not self._made:
            try:
                os.makedirs(self.cgroup, exist_ok=True)
            except OSError as e:
                raise ContainmentError(f"cannot make cgroup {self.cgroup}: "
                                       f"{e.strerror or e}") from None
            self._made = True

    def place(self, pid):
        self._fs.place(self.cgroup, pid)

    def signal(self, pgid, signum):
        if signum == signal.SIGKILL:
            if pgid is not None:
                self._groups.signal(pgid, signum)
            self._fs.kill_all(self.cgroup)
            return
        if pgid is not None:
            self._groups.signal(pgid, signum)
        for pid in self._fs.pids_below(self.cgroup):
            if self._pgid_of(pid) == pgid:
                continue  # it had the group's signal
            try:
                self._kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _pgid_of(self, pid):
        try:
            return self._getpgid(pid)
        except OSError:
            return None

    def alive(self, pgid):
        try:
            return self._fs.populated(self.cgroup)
        except FileNotFoundError:
            return False

    def watch_empty(self, pgid, callback):
        if self._watcher is None:
            return None
        return self._watcher.watch(self.cgroup,
                                   lambda: None if self.alive(pgid) else callback())

    def count(self, pgid):
        return len(self._fs.pids_below(self.cgroup))

    def contains(self, pid):
        """Whether C{pid} is in the service's cgroup (a stale pidfile's pid is not)."""
        try:
            return pid in self._fs.pids_below(self.cgroup)
        except OSError:
            return False

    def release(self):
        if self._watcher is not None:
            self._watcher.forget(self.cgroup)
        self._made = False
        remove_cgroup(self.cgroup)
        if self.reserve is not None:
            return self.reserve.close()
        return None


def remove_cgroup(path):
    """rmdir an empty cgroup; False when it still has processes (or children)."""
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as e:
        if e.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


class CgroupWatcher:
    """One inotify descriptor for the whole daemon, watching ``cgroup.events`` files.

    The kernel signals a modification of ``cgroup.events`` whenever
    ``populated`` (or ``frozen``) changes; the callback re-reads the file.
    """

    log = Logger()

    def __init__(self, reactor, inotify=None):
        from twisted.python.filepath import FilePath

        self._FilePath = FilePath
        self._reactor = reactor
        #: Made at the first watch: a daemon that never waits for a cgroup has none.
        self._notifier = inotify
        self._broken = False
        self._callbacks = {}   # cgroup path -> callback
        self._watched = set()

    def _inotify(self):
        if self._notifier is None and not self._broken:
            from twisted.internet import inotify

            try:
                self._notifier = inotify.INotify(self._reactor)
                self._notifier.startReading()
            except Exception:
                self._broken = True
                self.log.failure("no inotify for cgroup.events; polling instead")
        return self._notifier

    def watch(self, cgroup, callback):
        """Call C{callback()} after each change of C{cgroup}'s events; once at once too.

        @return: C{cancel()}, or None when inotify is unavailable (then poll).
        """
        from twisted.internet.inotify import IN_MODIFY

        notifier = self._inotify()
        if notifier is None:
            return None
        if cgroup not in self._watched:
            events = self._FilePath(os.path.join(cgroup, "cgroup.events"))
            try:
                notifier.watch(events, mask=IN_MODIFY,
                               callbacks=[lambda _, path, mask, c=cgroup: self._changed(c)])
            except Exception:  # gone, or out of watches: the caller polls
                self.log.failure("cannot watch {path}", path=events.path)
                return None
            self._watched.add(cgroup)
        self._callbacks[cgroup] = callback
        # The cgroup may have emptied before the watch existed.
        self._changed(cgroup)

        def cancel():
            if self._callbacks.get(cgroup) is callback:
                del self._callbacks[cgroup]
        return cancel

    def _changed(self, cgroup):
        callback = self._callbacks.get(cgroup)
        if callback is not None:
            callback()

    def forget(self, cgroup):
        """Stop watching C{cgroup} (before it is removed)."""
        self._callbacks.pop(cgroup, None)
        if cgroup in self._watched:
            self._watched.discard(cgroup)
            try:
                self._notifier.ignore(self._FilePath(os.path.join(cgroup, "cgroup.events")))
            except KeyError:
                pass

    def close(self):
        if self._notifier is not None:
            self._notifier.loseConnection()
            self._notifier = None


# -- where a daemon's cgroups live --------------------------------------------------

def daemon_directory_name(node, data_dir):
    """``<node>-<8 hex>``: the node name, and a digest of the data directory.

    The digest keeps two daemons with one node name on one host (test rigs,
    a copied configuration) from adopting or killing each other's services;
    it is stable across restarts of one daemon, which adoption needs.
    """
    digest = hashlib.sha256(os.path.realpath(data_dir).encode("utf-8")).hexdigest()[:8]
    return f"{node}-{digest}"


class CgroupTree:
    """This daemon's part of the cgroup v2 hierarchy: ``<root>/clsd/<node>-<digest>/<service>``."""

    def __init__(self, root, node, data_dir):
        self.root = root
        self.directory = os.path.join(root, CLSD_PARENT, daemon_directory_name(node, data_dir))

    def path(self, service):
        return os.path.join(self.directory, service)

    def services(self):
        """The service cgroups present now (leftovers of a previous run included)."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        return [name for name in names
                if os.path.isfile(os.path.join(self.directory, name, "cgroup.procs"))]

    def remove_if_empty(self):
        """rmdir the daemon's directory when no service cgroup is left in it."""
        return remove_cgroup(self.directory)


def read_text(path):
    with open(path) as f:
        return f.read()


def _favors_dynamic_changes():
    try:
        return cgroupfs.favors_dynamic_changes(read_text("/proc/self/mountinfo"))
    except OSError:
        return False


def find_tree(node, data_dir, *, read=read_text, makedirs=os.makedirs, access=os.access):
    """This daemon's L{CgroupTree}; or C{(None, why not)}.

    Usable means: a cgroup v2 hierarchy is mounted, the shared ``clsd``
    cgroup exists or could be created, and it and its ``cgroup.procs`` are
    writable (processes move through it). No controller is needed: placing,
    listing, freezing and ``cgroup.kill`` are core cgroup v2 files. The
    daemon's own directory below it is made at the first spawn.

    @return: C{(tree, None)} or C{(None, reason)}.
    """
    try:
        mount = cgroupfs.find_v2_mount(read("/proc/self/mountinfo"))
    except OSError as e:
        return None, f"cannot read /proc/self/mountinfo: {e.strerror or e}"
    if mount is None:
        return None, "no cgroup v2 hierarchy is mounted"
    tree = CgroupTree(mount[0], node, data_dir)
    shared = os.path.dirname(tree.directory)
    try:
        makedirs(shared, exist_ok=True)
    except OSError as e:
        return None, f"cannot create {shared}: {e.strerror or e}"
    for path in (shared, os.path.join(shared, "cgroup.procs")):
        if not access(path, os.W_OK):
            return None, f"{path} is not writable"
    return tree, None


def remove_daemon_cgroups(node, data_dir, *, read=read_text, wait=2.0):
    """Empty and remove every cgroup of the daemon C{node} with C{data_dir}.

    For what a daemon killed with SIGKILL leaves behind when it is not
    started again (test rigs, a decommissioned node): its service cgroups,
    emptied by the lease guard or not, and its directory.

    @return: False when something could not be removed (still populated
        C{wait} seconds after the kill, or no permission).
    """
    import time

    try:
        mount = cgroupfs.find_v2_mount(read("/proc/self/mountinfo"))
    except OSError:
        return True
    if mount is None:
        return True
    tree = CgroupTree(mount[0], node, data_dir)
    removed = True
    try:
        for service in tree.services():
            path = tree.path(service)
            cgroupfs.kill_all(path)
            deadline = time.monotonic() + wait
            while cgroupfs.populated(path) and time.monotonic() < deadline:
                time.sleep(0.01)
            removed = remove_cgroup(path) and removed
        return tree.remove_if_empty() and removed
    except OSError:
        return False


# -- the decision ----------------------------------------------------------------------

def choose(service, setting, *, cgroups_reason, in_cluster, service_type="simple"):
    """Which containment C{service} gets: L{CGROUP} or L{PROCESS_GROUP}.

    @param setting: the service's ``containment`` (auto, cgroup, process-group).
    @param cgroups_reason: None when writable cgroups are here, else why not.
    @param in_cluster: whether the service runs a ``[[cluster]]``'s system.
    @raise ContainmentError: naming the service and why it cannot run.
    """
    if setting == PROCESS_GROUP:
        return PROCESS_GROUP
    if cgroups_reason is None:
        return CGROUP
    if setting == CGROUP:
        raise ContainmentError(
            f"service {service!r}: containment = \"cgroup\", but no cgroup v2 is writable "
            f"here ({cgroups_reason})")
    if service_type in ESCAPING_TYPES and in_cluster:
        raise ContainmentError(
            f"service {service!r}: type {service_type!r} starts processes that leave their "
            f"process group, and without cgroups ({cgroups_reason}) CLSD cannot stop them "
            "when the lease ends; set containment = \"process-group\" to accept that risk "
            "(see doc/supervision.md)")
    return PROCESS_GROUP


class Containments:
    """Every service's containment on one daemon, and the one watcher they share.

    @param tree: this daemon's L{CgroupTree}, or None when cgroups cannot be
        used here (C{reason} says why).
    """

    def __init__(self, reactor, *, tree=None, reason="not looked for", groups=None,
                 watcher_factory=CgroupWatcher):
        self._reactor = reactor
        self.tree = tree
        self.reason = None if tree is not None else reason
        self._groups = groups if groups is not None else OSProcessGroups()
        self._watcher_factory = watcher_factory
        self._watcher = None

    @classmethod
    def detect(cls, reactor, node, data_dir, groups=None):
        """Use a writable cgroup v2 hierarchy when there is one."""
        tree, reason = find_tree(node, data_dir)
        if tree is not None and not _favors_dynamic_changes():
            Logger().warn(
                "cgroup v2 is mounted without favordynmods: placing a service in its "
                "cgroup may wait for an RCU grace period (10-20 ms) at every start; "
                "see doc/supervision.md")
        return cls(reactor, tree=tree, reason=reason, groups=groups)

    @classmethod
    def process_groups_only(cls, reactor, groups=None, reason="cgroups not used"):
        return cls(reactor, tree=None, reason=reason, groups=groups)

    def for_service(self, service, in_cluster):
        """The L{IContainment} of C{service} (a ServiceConfig).

        @raise ContainmentError: naming the service and why (L{choose}).
        """
        kind = choose(service.name, service.containment, cgroups_reason=self.reason,
                      in_cluster=in_cluster, service_type=service.type)
        if kind == PROCESS_GROUP and service.type == "forking" \
                and getattr(service, "pidfile", None) is None:
            raise ContainmentError(
                f"service {service.name!r}: type \"forking\" without a pidfile is watched "
                f"through its cgroup, and it has none here "
                f"({self.reason or 'containment = process-group'}); set pidfile")
        if kind == PROCESS_GROUP:
            return ProcessGroupContainment(self._groups)
        from clsd.supervision.spawn import GateReserve

        if self._watcher is None:
            self._watcher = self._watcher_factory(self._reactor)
        return CgroupContainment(self.tree.path(service.name), watcher=self._watcher,
                                 groups=self._groups, reserve=GateReserve(self._reactor))

    def close(self):
        """The daemon stopped: close the watcher, remove its cgroup directory if empty."""
        if self._watcher is not None:
            self._watcher.close()
            self._watcher = None
        if self.tree is not None:
            try:
                self.tree.remove_if_empty()
            except OSError:
                pass
