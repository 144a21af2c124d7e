"""cgroup v2 through its files: find the hierarchy, place, list, signal, kill.

Standard library only, and nothing from CLSD: the lease guard imports this
file from its directory (it runs under ``python -I -S``, without
site-packages), so that the daemon and the guard kill a cgroup with the very
same code.

The parsing functions are pure (text in, values out); the others do one
small file operation each and raise C{OSError} as the kernel reports it.
"""

import errno
import os
import signal

#: The filesystem type of the unified (v2) hierarchy in /proc/self/mountinfo.
CGROUP2_FSTYPE = "cgroup2"

#: Rounds of "list, SIGKILL every new pid" in the freeze fallback of
#: L{kill_all}; a frozen cgroup stops forking within a round or two.
FREEZE_KILL_ROUNDS = 20


def _unescape(field):
    """mountinfo escapes space, tab, newline and backslash as octal (``\\040``)."""
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        digits = field[i + 1:i + 4]
        if field[i] == "\\" and len(digits) == 3 and all(c in "01234567" for c in digits):
            out.append(chr(int(digits, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse_mountinfo(text):
    """C{[(mount_point, root, fstype, options, super_options), ...]} from mountinfo text.

    Format (proc(5)): ``ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [optional...] - FSTYPE
    SOURCE SUPER_OPTIONS``; lines that do not fit are skipped.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        try:
            separator = fields.index("-", 6)
        except ValueError:
            continue
        if len(fields) < separator + 2:
            continue
        super_options = fields[separator + 3] if len(fields) > separator + 3 else ""
        mounts.append((_unescape(fields[4]), _unescape(fields[3]), fields[separator + 1],
                       fields[5], super_options))
    return mounts


def find_v2_mount(mountinfo_text):
    """C{(mount_point, root)} of the cgroup v2 hierarchy, or None.

    ``/sys/fs/cgroup`` on a pure v2 host, ``/sys/fs/cgroup/unified`` on a
    hybrid one. When it is mounted more than once, the first read-write
    mount wins (then the first at all).
    """
    found = [(point, root, options) for point, root, fstype, options, _
             in parse_mountinfo(mountinfo_text) if fstype == CGROUP2_FSTYPE]
    for point, root, options in found:
        if "rw" in options.split(","):
            return point, root
    return (found[0][0], found[0][1]) if found else None


def favors_dynamic_changes(mountinfo_text):
    """Whether the v2 hierarchy is mounted with ``favordynmods``.

    Without it, every write to ``cgroup.procs`` may wait for an RCU grace
    period (10 to 20 ms measured here), because the kernel takes a global
    lock made cheap for forks at the expense of migrations. With it (or a
    kernel built with CONFIG_CGROUP_FAVOR_DYNMODS) a migration takes about
    0.1 ms. See doc/supervision.md.
    """
    for _, _, fstype, _, super_options in parse_mountinfo(mountinfo_text):
        if fstype == CGROUP2_FSTYPE:
            return "favordynmods" in super_options.split(",")
    return False


def v2_membership(proc_cgroup_text):
    """The v2 cgroup (``0::/path``) in /proc/PID/cgroup text, or None."""
    for line in proc_cgroup_text.splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            return path
    return None


def absolute_path(mount_point, mount_root, membership):
    """Where cgroup C{membership} (as /proc/PID/cgroup names it) is under C{mount_point}.

    None when the cgroup is outside the mounted subtree (C{mount_root}).
    """
    root = mount_root.rstrip("/") or "/"
    if root != "/":
        if membership != root and not membership.startswith(root + "/"):
            return None
        membership = membership[len(root):] or "/"
    return os.path.normpath(os.path.join(mount_point, membership.lstrip("/")))


def is_within(path, ancestor):
    """Whether C{path} is C{ancestor} or below it (both absolute and normalized)."""
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def parse_events(text):
    """``cgroup.events`` as a dict of ints (``populated``, ``frozen``)."""
    values = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if value.strip().isdigit():
            values[key] = int(value)
    return values


# -- file operations -----------------------------------------------------------

def _read(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536).decode("ascii", "replace")
    finally:
        os.close(fd)


def _write(path, value):
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode("ascii"))
    finally:
        os.close(fd)


def populated(cgroup):
    """Whether a live process is in C{cgroup} or below (zombies do not count).

    @raise OSError: ENOENT when the cgroup does not exist.
    """
    return parse_events(_read(os.path.join(cgroup, "cgroup.events"))).get("populated", 0) == 1


def pids(cgroup):
    """The pids in C{cgroup} itself (not its children); [] when it does not exist."""
    try:
        return [int(word) for word in _read(os.path.join(cgroup, "cgroup.procs")).split()]
    except FileNotFoundError:
        return []


def place(cgroup, pid):
    """Move process C{pid} into C{cgroup} (its future children are born there)."""
    _write(os.path.join(cgroup, "cgroup.procs"), str(pid))


def has_kill_file(cgroup):
    """Whether the kernel offers ``cgroup.kill`` (Linux 5.14 and later)."""
    return os.path.exists(os.path.join(cgroup, "cgroup.kill"))


def kill_all(cgroup, use_kill_file=True):
    """SIGKILL every process of C{cgroup} and of its descendants, fork races included.

    ``cgroup.kill`` where the kernel has it (atomic: nothing forked meanwhile
    survives). Elsewhere the cgroup is frozen, every pid listed is killed, the
    listing is repeated until it shows nothing new, and the cgroup is thawed
    (a frozen process still dies of SIGKILL).

    @return: False when the cgroup does not exist (nothing to kill).
    @raise OSError: when it exists but cannot be written.
    """
    if not os.path.isdir(cgroup):
        return False
    if use_kill_file and has_kill_file(cgroup):
        try:
            _write(os.path.join(cgroup, "cgroup.kill"), "1")
        except FileNotFoundError:
            return False
        return True
    freeze = os.path.join(cgroup, "cgroup.freeze")
    try:
        _write(freeze, "1")
    except FileNotFoundError:
        return False
    try:
        killed = set()
        for _ in range(FREEZE_KILL_ROUNDS):
            listed = set(pids_below(cgroup))
            new = listed - killed
            if not new:
                break
            for pid in new:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            killed |= new
    finally:
        try:
            _write(freeze, "0")
        except OSError as e:
            if e.errno != errno.ENOENT:
                raise
    return True


def pids_below(cgroup):
    """The pids in C{cgroup} and in every cgroup below it."""
    found = []
    for directory, _, _ in os.walk(cgroup):
        found.extend(pids(directory))
    return found


def signal_all(cgroup, signum, skip=()):
    """Send C{signum} to every process of C{cgroup} (and below) whose pid is not in C{skip}.

    @return: the pids signalled.
    """
    sent = []
    for pid in pids_below(cgroup):
        if pid in skip:
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue
        sent.append(pid)
    return sent
