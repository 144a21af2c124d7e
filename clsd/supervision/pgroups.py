"""Process groups as the operating system sees them: signal, probe, identify.

A small portable interface with Linux refinements, kept apart so that the
rest of the supervisor never touches /proc:

- L{group_alive}: ``killpg(pgid, 0)`` is the portable probe, but it also
  succeeds while the only members left are zombies waiting for their new
  parent (init, which in some containers reaps slowly or never). On Linux
  the members' states are read from /proc, so zombies do not count.
- L{process_start_identity}: what tells a process from a later one that
  reused its pid: the start time in clock ticks since boot (field 22 of
  /proc/PID/stat) on Linux, ``ps -o lstart=`` (to the second) elsewhere.
- L{boot_identity}: Linux's boot_id; after a reboot every recorded pid is
  meaningless.
"""

import os
import subprocess
import sys

_PROC = "/proc"
_HAVE_PROC_STAT = sys.platform.startswith("linux") and os.path.exists("/proc/self/stat")


def signal_group(pgid, signum):
    """Send C{signum} to process group C{pgid}; C{False} if the group is gone."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True


def group_alive(pgid):
    """Whether process group C{pgid} has a member that is not a zombie."""
    return OSProcessGroups().alive(pgid)


def pid_alive(pid):
    """Whether process C{pid} exists and is not a zombie (without /proc: whether it exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    if not os.path.isdir(_PROC):
        return True
    fields = _read_stat(pid)
    return fields is not None and fields[:1] not in ([b"Z"], [b"X"])


def _read_stat(pid):
    """Fields 3.. of /proc/PID/stat (state first), or None if it vanished."""
    try:
        fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    # The command name (field 2) may contain spaces and parentheses.
    return data[data.rfind(b")") + 2:].split()


def _is_live_member(pid, pgid):
    fields = _read_stat(pid)
    return bool(fields) and len(fields) > 2 and int(fields[2]) == pgid \
        and fields[0] not in (b"Z", b"X")


def _linux_live_members(pgid):
    """Every non-zombie process of group C{pgid}: one pass over /proc."""
    return [int(entry) for entry in os.listdir(_PROC)
            if entry.isdigit() and _is_live_member(entry, pgid)]


def process_start_identity(pid):
    """A string that changes when pid C{pid} is reused; C{None} if there is no such process."""
    if _HAVE_PROC_STAT:
        fields = _read_stat(pid)
        if not fields or len(fields) < 20:
            return None
        return f"linux-starttime:{int(fields[19])}"
    return _ps_start_identity(pid)


def _ps_start_identity(pid):
    try:
        result = subprocess.run(
            ["ps", "-o", "lstart=", "-p", str(pid)],
            capture_output=True, text=True, timeout=5, env={"LC_ALL": "C", "PATH": os.defpath},
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    started = " ".join(result.stdout.split())
    if result.returncode != 0 or not started:
        return None
    return f"ps-lstart:{started}"


def boot_identity():
    """An id of the current boot, or C{None} where the OS offers none we read."""
    try:
        with open(f"{_PROC}/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


class OSProcessGroups:
    """The real operating system, as the runner and the orphan reaper use it.

    Tests substitute an object with the same two methods.

    On Linux, C{alive} remembers the live members it found per group: while
    one of them lives, re-reading their few /proc entries answers the
    question, and the whole of /proc (a few ms per hundred processes) is
    scanned again only when all of them are gone, since only a live member
    can have forked a new one.
    """

    signal = staticmethod(signal_group)

    def __init__(self):
        self._members = {}

    def alive(self, pgid):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            self._members.pop(pgid, None)
            return False
        except PermissionError:
            return True  # it exists; it is not ours to signal
        if not _HAVE_PROC_STAT:
            return True
        for pid in self._members.get(pgid, ()):
            if _is_live_member(pid, pgid):
                return True
        members = _linux_live_members(pgid)
        if members:
            self._members[pgid] = members
            return True
        self._members.pop(pgid, None)
        return False
