"""CPU starvation of one process: a cgroup CPU quota, or competing busy processes.

The quota is precise and costs nothing (the starved process simply gets
C{share} of one CPU); it needs Linux cgroups (v2 ``cpu.max`` or v1
``cpu.cfs_quota_us``) and root. Elsewhere busy processes compete with the
target, pinned to the same CPU where affinity is supported: cruder, and
they burn a CPU while they run, so keep such faults short.

Children the starved process forks meanwhile share its cgroup; healing moves
every task back to where the target came from and removes the cgroup.
"""

import itertools
import os
import signal
import subprocess
import sys

from rig.faults.cleanup import OWNER_ENV, default_cleanups, owned_name

#: CFS accounting period. 100 ms is the kernel default; the quota is a
#: share of it.
PERIOD_US = 100_000
#: The kernel refuses quotas under 1 ms.
MIN_QUOTA_US = 1_000
#: Never start more busy processes than this, whatever share is asked.
MAX_HOGS = 8

_serial = itertools.count(1)


class CpuFaultUnsupported(RuntimeError):
    """No way to starve a process's CPU here."""


def _mounts():
    try:
        with open("/proc/self/mounts") as f:
            return [line.split() for line in f]
    except OSError:
        return []


def _proc_cgroups(pid):
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            return [line.rstrip("\n").split(":", 2) for line in f if line.strip()]
    except OSError:
        return []


def _write(path, value):
    with open(path, "w") as f:
        f.write(str(value))


def _move_all(source_dir, target_dir):
    try:
        with open(os.path.join(source_dir, "cgroup.procs")) as f:
            pids = [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return
    for pid in pids:
        try:
            _write(os.path.join(target_dir, "cgroup.procs"), pid)
        except ProcessLookupError:
            pass  # it exited meanwhile


class CgroupV2Quota:
    """``cpu.max`` in a cgroup of our own under the cgroup2 root."""

    name = "cgroup2"

    @staticmethod
    def root():
        for fields in _mounts():
            if len(fields) > 2 and fields[2] == "cgroup2":
                try:
                    with open(os.path.join(fields[1], "cgroup.controllers")) as f:
                        if "cpu" in f.read().split():
                            return fields[1]
                except OSError:
                    pass
        return None

    def __init__(self, pid, share):
        root = self.root()
        if root is None:
            raise CpuFaultUnsupported("no cgroup2 hierarchy with the cpu controller")
        relative = next((p for h, c, p in _proc_cgroups(pid) if h == "0"), None)
        if relative is None:
            raise CpuFaultUnsupported(f"pid {pid} has no cgroup2 membership")
        self.origin = os.path.join(root, relative.lstrip("/"))
        with open(os.path.join(root, "cgroup.subtree_control")) as f:
            if "cpu" not in f.read().split():
                _write(os.path.join(root, "cgroup.subtree_control"), "+cpu")
        self.path = os.path.join(root, owned_name(f"cpu{next(_serial)}"))
        os.mkdir(self.path)
        quota = max(MIN_QUOTA_US, int(share * PERIOD_US))
        _write(os.path.join(self.path, "cpu.max"), f"{quota} {PERIOD_US}")
        _write(os.path.join(self.path, "cgroup.procs"), pid)

    def heal(self):
        _move_all(self.path, self.origin)
        os.rmdir(self.path)


class CgroupV1Quota:
    """``cpu.cfs_quota_us`` in a cgroup of our own under the v1 cpu hierarchy."""

    name = "cgroup1"

    @staticmethod
    def root():
        for fields in _mounts():
            if len(fields) > 3 and fields[2] == "cgroup" and "cpu" in fields[3].split(","):
                return fields[1]
        return None

    def __init__(self, pid, share):
        root = self.root()
        if root is None:
            raise CpuFaultUnsupported("no cgroup v1 cpu hierarchy mounted")
        relative = next(
            (p for h, c, p in _proc_cgroups(pid) if "cpu" in c.split(",")), None
        )
        if relative is None:
            raise CpuFaultUnsupported(f"pid {pid} is in no v1 cpu cgroup")
        self.origin = os.path.join(root, relative.lstrip("/"))
        self.path = os.path.join(root, owned_name(f"cpu{next(_serial)}"))
        os.mkdir(self.path)
        try:
            _write(os.path.join(self.path, "cpu.cfs_period_us"), PERIOD_US)
            _write(os.path.join(self.path, "cpu.cfs_quota_us"),
                   max(MIN_QUOTA_US, int(share * PERIOD_US)))
            _write(os.path.join(self.path, "cgroup.procs"), pid)
        except BaseException:
            os.rmdir(self.path)
            raise

    def heal(self):
        _move_all(self.path, self.origin)
        os.rmdir(self.path)


class BusyHogs:
    """Busy processes competing for the target's CPU (the portable fallback)."""

    name = "hogs"

    def __init__(self, pid, share):
        self.pid = pid
        self.affinity = None
        cpus = None
        if hasattr(os, "sched_setaffinity"):
            self.affinity = os.sched_getaffinity(pid)
            cpus = {min(self.affinity)}
            os.sched_setaffinity(pid, cpus)
            count = max(1, min(MAX_HOGS, round(1 / share) - 1))
        else:
            count = min(MAX_HOGS, (os.cpu_count() or 1) * max(1, round(1 / share) - 1))
        self.hogs = []
        env = {**os.environ, OWNER_ENV: str(os.getpid())}
        for _ in range(count):
            hog = subprocess.Popen([sys.executable, "-c", "while True: pass"], env=env)
            self.hogs.append(hog)
            if cpus is not None:
                os.sched_setaffinity(hog.pid, cpus)

    def heal(self):
        for hog in self.hogs:
            hog.send_signal(signal.SIGKILL)
        for hog in self.hogs:
            hog.wait()
        if self.affinity is not None:
            try:
                os.sched_setaffinity(self.pid, self.affinity)
            except ProcessLookupError:
                pass


METHODS = {"cgroup2": CgroupV2Quota, "cgroup1": CgroupV1Quota, "hogs": BusyHogs}


def available_method():
    """The best method that works here: a quota when cgroups allow, else hogs."""
    if os.geteuid() == 0:
        if CgroupV2Quota.root() is not None:
            return "cgroup2"
        if CgroupV1Quota.root() is not None:
            return "cgroup1"
    return "hogs"


class CpuStarvation:
    """Hold process C{pid} to C{share} of one CPU until L{heal}."""

    def __init__(self, pid, share=0.05, *, method=None, cleanups=None):
        if not 0.0 < share < 1.0:
            raise ValueError(f"share must be between 0 and 1, got {share!r}")
        self.pid = pid
        self.share = share
        self.method = method or available_method()
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; one of {', '.join(METHODS)}")
        self._cleanups = cleanups or default_cleanups
        self._impl = METHODS[self.method](pid, share)
        self._token = self._cleanups.add(
            self._impl.heal, f"end CPU starvation ({self.method}) of pid {pid}"
        )

    @property
    def active(self):
        return self._token is not None

    def heal(self):
        if self._token is not None:
            self._cleanups.run(self._token)
            self._token = None


def cpu_seconds(pid):
    """User plus system CPU time of C{pid} from /proc (Linux), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def remove_stale(*, force=False, alive=None):
    """Remove cgroups a dead rig left behind, moving their tasks to the parent."""
    from clsd.supervision.pgroups import pid_alive
    from rig.faults.cleanup import owner_of

    alive = alive or pid_alive
    removed = []
    for root in filter(None, (CgroupV2Quota.root(), CgroupV1Quota.root())):
        for name in sorted(os.listdir(root)):
            owner = owner_of(name)
            path = os.path.join(root, name)
            if owner is None or not os.path.isdir(path) or (alive(owner) and not force):
                continue
            _move_all(path, root)
            os.rmdir(path)
            removed.append(f"cgroup {path}")
    return removed
