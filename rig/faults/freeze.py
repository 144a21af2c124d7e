"""A whole machine paused: every process of one node frozen, its lease clock stopped meanwhile.

A hypervisor that pauses (or live-migrates) a virtual machine stops all of
it, clocks included: on resume its monotonic clock reads as if no time had
passed, so a lease holder's deadline still lies ahead while another node has
taken over. The rig does the same to one node on loopback:

- every process of the node (the daemon and all its descendants: the lease
  guard, services, hooks) is frozen with ``cgroup.freeze`` of the cgroup v2
  hierarchy (found in ``/proc/self/mountinfo``), which stops them all at once
  (no SIGSTOP the processes could see): the daemon's own cgroups (its
  services under cgroup containment, with whatever escaped their process
  group) are frozen where they are, since moving a process out of its
  service's cgroup would tell the daemon the service stopped; every other
  process of the node is moved into a cgroup of our own, frozen, and moved
  back at the thaw;
- before the thaw, the time they spent frozen is added to the node's lease
  clock offset file (L{clsd.clock.OFFSET_ENV}, read by the daemon's and the
  guard's lease clock), so their lease clock has not moved across the pause.

The limit, stated where it matters (doc/ownership.md): only the *lease* clock
is wound back. The processes' CLOCK_MONOTONIC and wall clock keep the real
time, so the services' records stay comparable with everyone else's, and
libfaketime is not used: it cannot wind back a running process's monotonic
clock without also moving every clock the records are taken on.
"""

import itertools
import os
import threading
import time

from clsd.clock import raw_clock
from rig.faults.cleanup import default_cleanups, owned_name

#: How long the kernel may take to report a cgroup frozen.
FREEZE_TIMEOUT = 5.0

_serial = itertools.count(1)


class FreezeUnsupported(RuntimeError):
    """No cgroup v2 hierarchy with a freezer here (or not root)."""


def cgroup2_root(mountinfo="/proc/self/mountinfo"):
    """Where the cgroup v2 hierarchy is mounted (``/sys/fs/cgroup``, or ``.../unified``), or None."""
    try:
        with open(mountinfo) as f:
            lines = f.readlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        try:
            fstype = fields[fields.index("-") + 1]
        except (ValueError, IndexError):
            continue
        if fstype == "cgroup2":
            return fields[4]
    return None


def descendants(pid):
    """C{pid} and every process below it (by parent pid, from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, ()))
    return found


def _cgroup_of(pid, root):
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            hierarchy, _, path = line.rstrip("\n").split(":", 2)
            if hierarchy == "0":
                return os.path.join(root, path.lstrip("/"))
    raise FreezeUnsupported(f"pid {pid} has no cgroup v2 membership")


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def _move(pids, target):
    for pid in pids:
        try:
            _write(os.path.join(target, "cgroup.procs"), pid)
        except ProcessLookupError:
            pass  # it exited meanwhile


def _procs(path):
    try:
        with open(os.path.join(path, "cgroup.procs")) as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def _frozen(path):
    with open(os.path.join(path, "cgroup.events")) as f:
        return "frozen 1" in f.read().splitlines()


_offset_lock = threading.Lock()


def add_offset(path, seconds):
    """Add C{seconds} to the lease clock offset in C{path} (atomically: temp file, rename).

    Thread-safe: a clock running at another rate (L{rig.faults.rate})
    moves the same file from a thread while a pause winds it back.
    """
    with _offset_lock:
        return _add_offset(path, seconds)


def _add_offset(path, seconds):
    try:
        with open(path) as f:
            current = float(f.read().strip() or 0)
    except FileNotFoundError:
        current = 0.0
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{current + seconds:.9f}\n")
    os.replace(tmp, path)
    return current + seconds


class NodeFreeze:
    """Freeze the process tree under C{pid} now; L{thaw} winds its lease clock back and thaws it.

    C{frozen_at} and C{thawed_at} are this process's C{time.monotonic()} (the
    records' clock): from the kernel confirming every task frozen, to just
    before the thaw. C{paused}: the seconds added to the lease clock offset.
    """

    def __init__(self, pid, offset_path, *, cleanups=None, clock=time.monotonic,
                 contained=None):
        """
        @param contained: the directory of the daemon's own cgroups (its
            L{clsd.supervision.containment.CgroupTree}), frozen in place; None
            when its services are not in cgroups.
        """
        root = cgroup2_root()
        if root is None:
            raise FreezeUnsupported("no cgroup v2 hierarchy is mounted")
        self.offset_path = offset_path
        self.clock = clock
        self.paused = None
        self.thawed_at = None
        self.origin = _cgroup_of(pid, root)
        self.path = os.path.join(root, owned_name(f"freeze{next(_serial)}"))
        self.contained = contained if contained and os.path.isdir(contained) else None
        os.mkdir(self.path)
        self._cleanups = cleanups or default_cleanups
        self._token = self._cleanups.add(self._release, f"thaw and remove cgroup {self.path}")
        try:
            frozen = [self.path]
            if self.contained is not None:
                # Frozen first: nothing of a service can fork out of it meanwhile.
                _write(os.path.join(self.contained, "cgroup.freeze"), 1)
                frozen.append(self.contained)
            # Parents first (descendants() walks down), so a child forked
            # meanwhile is born inside; a second pass catches the rest.
            for _ in range(3):
                outside = [p for p in descendants(pid)
                           if p not in _procs(self.path) and not self._in_contained(p, root)]
                if not outside:
                    break
                _move(outside, self.path)
            _write(os.path.join(self.path, "cgroup.freeze"), 1)
            deadline = time.monotonic() + FREEZE_TIMEOUT
            while not all(_frozen(path) for path in frozen):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cgroups {frozen} did not freeze in {FREEZE_TIMEOUT}s")
                time.sleep(0.001)
        except BaseException:
            self._cleanups.run(self._token)
            self._token = None
            raise
        self.frozen_raw = raw_clock()
        self.frozen_at = clock()
        self.pids = _procs(self.path)

    def _in_contained(self, pid, root):
        if self.contained is None:
            return False
        try:
            path = _cgroup_of(pid, root)
        except (OSError, FreezeUnsupported):
            return False
        return path == self.contained or path.startswith(self.contained + os.sep)

    @property
    def active(self):
        return self._token is not None

    def thaw(self):
        """Wind the node's lease clock back by the time it was frozen, then let it run."""
        if self._token is None:
            return
        # Written while every task is still frozen: its first reading after
        # the thaw already has the new offset (the clock re-reads the file
        # when 10 ms have passed since its last reading).
        self.paused = raw_clock() - self.frozen_raw
        add_offset(self.offset_path, self.paused)
        self.thawed_at = self.clock()
        self._cleanups.run(self._token)
        self._token = None

    def _release(self):
        if self.contained is not None:
            try:
                _write(os.path.join(self.contained, "cgroup.freeze"), 0)
            except FileNotFoundError:
                pass  # the daemon removed it meanwhile (nothing frozen there any more)
        _write(os.path.join(self.path, "cgroup.freeze"), 0)
        _move(_procs(self.path), self.origin)
        try:
            os.rmdir(self.path)
        except OSError:
            pass  # a task that could not be moved back; cleanup-all removes it later


def remove_stale(*, force=False, alive=None):
    """Thaw and remove freeze cgroups a dead rig left behind (their tasks go to the root)."""
    from clsd.supervision.pgroups import pid_alive
    from rig.faults.cleanup import owner_of

    alive = alive or pid_alive
    root = cgroup2_root()
    if root is None:
        return []
    removed = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        owner = owner_of(name)
        if owner is None or "_freeze" not in name or not os.path.isdir(path):
            continue
        if alive(owner) and not force:
            continue
        _write(os.path.join(path, "cgroup.freeze"), 0)
        _move(_procs(path), root)
        os.rmdir(path)
        removed.append(f"cgroup {path}")
    return removed
