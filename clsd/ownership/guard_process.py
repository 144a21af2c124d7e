"""The lease guard: kills a service's processes when its lease deadline passes.

One guard process runs per daemon, outside the daemon's event loop, so that a
frozen daemon (SIGSTOP, swap storm, VM pause of the daemon alone, a stuck
reactor) cannot leave a service running past its lease.  It is deliberately
tiny and stdlib-only, so that it starts fast (run with ``python -I -S``) and is
obviously correct.  Nothing here is imported by the daemon; the daemon side is
L{clsd.ownership.guard.GuardClient}.

Protocol: the daemon writes lines to the guard's standard input::

    arm PGID DEADLINE [CGROUP]
                           process group PGID (and, under cgroup containment,
                           every process of the cgroup directory CGROUP) may
                           run until DEADLINE, no later (seconds of the lease
                           clock, CLOCK_MONOTONIC_RAW: one clock for the whole
                           machine, so the daemon's clsd.clock.lease_clock()
                           values mean the same
                           here); replaces an earlier deadline
    disarm PGID            forget PGID (its service stopped)
    address DEADLINE INTERFACE ADDRESS/PREFIX
                           a cluster's floating address may stay on INTERFACE
                           until DEADLINE, no later; replaces an earlier one
    unaddress INTERFACE ADDRESS/PREFIX
                           forget it (the daemon removed it)
    ping TOKEN             answer "pong TOKEN" once every earlier line is handled

At a deadline the guard sends SIGKILL to the whole group and empties the
cgroup (``cgroup.kill``, or freeze + SIGKILL each + thaw: the same code as
the daemon's, clsd/supervision/cgroupfs.py, imported from its directory
because the guard runs without site-packages): a process that left the group
(``setsid``, a double fork) dies too; then it deletes the floating addresses
due (``ip address del``), so that a frozen daemon's node stops answering for
them before any other node may add them.  A deadline already
past when it is read means: kill now.  When standard input reaches end of
file (the daemon exited or was killed: the kernel closes its end of the pipe)
the guard kills every armed group at once and exits.

Reports, one line each on standard output (never blocking: a frozen daemon
does not read them, so a report that does not fit is dropped and counted)::

    ready PID PGID                 started (in its own process group PGID)
    killed PGID LATE               SIGKILL sent, LATE seconds after the deadline
    gone PGID                      deadline passed, nothing of it existed any more
    eof-killed PGID                killed because the daemon's pipe closed
    removed INTERFACE ADDRESS LATE an address deleted, LATE seconds after its deadline
    eof-removed INTERFACE ADDRESS  deleted because the daemon's pipe closed
    remove-failed INTERFACE ADDRESS TEXT
    pong TOKEN
    error TEXT                     a line it did not understand (ignored)

Malformed input is reported and ignored; the guard never exits because of it.
It refuses to arm process group 0 or 1, its own group, and its parent's group
(the daemon's), and a cgroup that is not an absolute, normalized path in the
cgroup v2 hierarchy or that holds the guard or the daemon (the hierarchy's
root, their own cgroups and every ancestor): a bad line must never make it
kill the daemon or itself.
"""

import ipaddress
import math
import os
import select
import signal
import sys
import time

#: The longest input line accepted; longer ones are reported and skipped.
#: "arm PGID DEADLINE CGROUP" is the cgroup path plus under 50 bytes
#: (the client refuses paths longer than MAX_CGROUP_PATH).
MAX_LINE = 1024
MAX_CGROUP_PATH = 900


#: Where the daemon's cgroup code (standard library only) is: the guard runs
#: without site-packages, where ``clsd`` cannot be imported, so it imports
#: that one file from its directory (importlib.util would cost ~5 ms of
#: start-up; a plain import uses the cached bytecode).
CGROUPFS_DIRECTORY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                  "supervision")


def _load_cgroupfs():
    sys.path.append(CGROUPFS_DIRECTORY)  # last: nothing there shadows the standard library
    try:
        import cgroupfs
    finally:
        sys.path.remove(CGROUPFS_DIRECTORY)
    return cgroupfs


cgroupfs = _load_cgroupfs()


def kill_cgroup(path):
    """SIGKILL every process of cgroup C{path}; False when it had none (or is gone)."""
    try:
        if not cgroupfs.populated(path):
            return False
    except FileNotFoundError:
        return False
    return cgroupfs.kill_all(path)


def _read_text(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def protected_cgroups(read=_read_text, pids=("self",)):
    """The cgroup v2 mount and the cgroup directories of C{pids} (never to be killed).

    @return: C{(mount_point or None, [cgroup directories])}.
    """
    mountinfo = read("/proc/self/mountinfo")
    mount = cgroupfs.find_v2_mount(mountinfo) if mountinfo else None
    if mount is None:
        return None, []
    found = []
    for pid in pids:
        text = read(f"/proc/{pid}/cgroup")
        membership = cgroupfs.v2_membership(text) if text else None
        if membership is not None:
            path = cgroupfs.absolute_path(mount[0], mount[1], membership)
            if path is not None:
                found.append(path)
    return mount[0], found

#: The daemon's ``ip`` command code (clsd/address/ipcmd.py, standard library
#: only), imported from its directory as cgroupfs is: the guard removes an
#: address with the same command the daemon adds it with.
IPCMD_DIRECTORY = os.path.join(os.path.dirname(CGROUPFS_DIRECTORY), "address")


def _load_ipcmd():
    sys.path.append(IPCMD_DIRECTORY)
    try:
        import ipcmd
    finally:
        sys.path.remove(IPCMD_DIRECTORY)
    return ipcmd


ipcmd = _load_ipcmd()


def remove_address(interface, address):
    """Delete C{address} (``ADDRESS/PREFIX``) from C{interface}; None, or why it failed.

    An address that is not there any more counts as removed.
    """
    gone, reason = ipcmd.try_remove(interface, address)
    return None if gone else reason


#: Read size: many lines per system call when the daemon writes a burst.
READ_SIZE = 65536


def _lease_clock():
    """The daemon's lease clock (L{clsd.clock.lease_clock}, copied: this program is stdlib-only).

    CLOCK_MONOTONIC_RAW where there is one (no time daemon slews it), else
    time.monotonic; minus the seconds in C{CLSD_TEST_CLOCK_OFFSET_FILE} when a
    test rig set it (a paused machine's clock, see clsd/clock.py).
    """
    raw = getattr(time, "CLOCK_MONOTONIC_RAW", None)
    read = (lambda: time.clock_gettime(raw)) if raw is not None else time.monotonic
    path = os.environ.get("CLSD_TEST_CLOCK_OFFSET_FILE")
    if not path:
        return read
    state = {"offset": 0.0, "read_at": None}

    def offset_clock():
        now = read()
        if state["read_at"] is None or now - state["read_at"] >= 0.01:
            state["read_at"] = now
            try:
                with open(path) as f:
                    state["offset"] = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass
        return now - state["offset"]
    return offset_clock


lease_clock = _lease_clock()


class Guard:
    """The guard's state: armed groups and their deadlines; I/O through two fds."""

    def __init__(self, infd=0, outfd=1, clock=lease_clock, kill=os.killpg,
                 kill_cgroup=kill_cgroup, protected=None, remove_address=remove_address):
        self.infd = infd
        self.outfd = outfd
        self.clock = clock
        self.kill = kill
        self.kill_cgroup = kill_cgroup
        self.remove_address = remove_address
        self.armed = {}  # pgid -> deadline
        self.cgroups = {}  # pgid -> cgroup directory, for those armed with one
        self.addresses = {}  # (interface, "ADDRESS/PREFIX") -> deadline
        #: (cgroup v2 mount point, [cgroup directories of the guard and the daemon]).
        self.protected = protected if protected is not None \
            else protected_cgroups(pids=("self", os.getppid()))
        self.dropped = 0
        self.own_pgid = os.getpgrp()
        try:
            self.daemon_pgid = os.getpgid(os.getppid())
        except OSError:
            self.daemon_pgid = None
        self._buffer = b""
        self._skipping = False

    # -- reports ---------------------------------------------------------------

    def report(self, *words):
        line = " ".join(str(w) for w in words) + "\n"
        if self.dropped:
            line = f"dropped {self.dropped}\n" + line
        try:
            os.write(self.outfd, line.encode("ascii", "replace"))
        except (BlockingIOError, BrokenPipeError, OSError):
            self.dropped += 1
        else:
            self.dropped = 0

    # -- input -------------------------------------------------------------------

    def feed(self, data):
        """Handle a chunk of input (any split across lines)."""
        self._buffer += data
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                if len(self._buffer) > MAX_LINE:
                    if not self._skipping:
                        self.report("error", f"line longer than {MAX_LINE} bytes skipped")
                    self._skipping = True
                    self._buffer = b""
                return
            line, self._buffer = self._buffer[:newline], self._buffer[newline + 1:]
            if self._skipping:
                self._skipping = False  # the end of the over-long line
                continue
            if len(line) > MAX_LINE:
                self.report("error", f"line longer than {MAX_LINE} bytes skipped")
                continue
            self.line(line)

    def line(self, raw):
        try:
            words = raw.decode("ascii").split()
        except UnicodeDecodeError:
            self.report("error", "line is not ASCII")
            return
        if not words:
            return
        command, args = words[0], words[1:]
        if command == "arm" and len(args) in (2, 3):
            pgid = self._pgid(args[0])
            deadline = self._deadline(args[1])
            cgroup = self._cgroup(args[2]) if len(args) == 3 else None
            if pgid is not None and deadline is not None and (len(args) == 2 or cgroup):
                self.armed[pgid] = deadline
                if cgroup:
                    self.cgroups[pgid] = cgroup
                else:
                    self.cgroups.pop(pgid, None)
        elif command == "disarm" and len(args) == 1:
            pgid = self._pgid(args[0])
            if pgid is not None:
                self.armed.pop(pgid, None)
                self.cgroups.pop(pgid, None)
        elif command == "address" and len(args) == 3:
            deadline = self._deadline(args[0])
            key = self._address(args[1], args[2])
            if deadline is not None and key is not None:
                self.addresses[key] = deadline
        elif command == "unaddress" and len(args) == 2:
            key = self._address(args[0], args[1])
            if key is not None:
                self.addresses.pop(key, None)
        elif command == "ping" and len(args) == 1:
            self.report("pong", args[0][:64])
        else:
            self.report("error", f"not understood: {_show(raw)}")

    def _pgid(self, text):
        try:
            pgid = int(text, 10)
        except ValueError:
            self.report("error", f"process group must be an integer, got {_show(text)}")
            return None
        if pgid <= 1:
            self.report("error", f"refusing process group {pgid}")
            return None
        if pgid in (self.own_pgid, self.daemon_pgid):
            self.report("error", f"refusing process group {pgid}: the guard's or the daemon's own")
            return None
        return pgid

    def _cgroup(self, path):
        mount, own = self.protected
        if mount is None:
            self.report("error", f"refusing cgroup {_show(path)}: no cgroup v2 hierarchy here")
            return None
        if not os.path.isabs(path) or os.path.normpath(path) != path \
                or not cgroupfs.is_within(path, mount) or path == mount:
            self.report("error", f"refusing cgroup {_show(path)}: not a cgroup below {mount}")
            return None
        if any(cgroupfs.is_within(mine, path) for mine in own):
            self.report("error", f"refusing cgroup {_show(path)}: it holds the guard or the "
                        "daemon")
            return None
        return path

    def _address(self, interface, text):
        """C{(interface, "ADDRESS/PREFIX")}, or None (reported) for anything else."""
        try:
            ipcmd.check_interface_name(interface)
        except ValueError:
            self.report("error", f"refusing interface {_show(interface)}")
            return None
        try:
            address = ipaddress.ip_interface(text)
        except ValueError:
            self.report("error", f"not an address with a prefix: {_show(text)}")
            return None
        ip = address.ip
        if "/" not in text or ip.is_loopback or ip.is_link_local or ip.is_unspecified \
                or ip.is_multicast:
            self.report("error", f"refusing address {_show(text)}")
            return None
        return interface, str(address)

    def _deadline(self, text):
        try:
            deadline = float(text)
        except ValueError:
            deadline = math.nan
        if not math.isfinite(deadline):
            self.report("error", f"deadline must be a finite number, got {_show(text)}")
            return None
        return deadline

    # -- killing -------------------------------------------------------------------

    def kill_due(self):
        now = self.clock()
        for pgid, deadline in list(self.armed.items()):
            if deadline <= now:
                del self.armed[pgid]
                self._kill(pgid, self.cgroups.pop(pgid, None), "killed",
                           f"{now - deadline:.6f}")
        # Processes first: a copy of the service must not outlive its lease
        # by the time an ``ip`` command takes.
        for key, deadline in list(self.addresses.items()):
            if deadline <= now:
                del self.addresses[key]
                self._remove(key, "removed", f"{self.clock() - deadline:.6f}")

    def kill_all(self):
        for pgid in list(self.armed):
            del self.armed[pgid]
            self._kill(pgid, self.cgroups.pop(pgid, None), "eof-killed")
        for key in list(self.addresses):
            del self.addresses[key]
            self._remove(key, "eof-removed")

    def _remove(self, key, what, *extra):
        interface, address = key
        failure = self.remove_address(interface, address)
        if failure is None:
            self.report(what, interface, address, *extra)
        else:
            self.report("remove-failed", interface, address,
                        " ".join(failure.split())[:200])

    def _kill(self, pgid, cgroup, what, *extra):
        hit = failed = False
        try:
            self.kill(pgid, signal.SIGKILL)
            hit = True
        except ProcessLookupError:
            pass
        except OSError as e:
            self.report("error", f"cannot kill process group {pgid}: {e.strerror}")
            failed = True
        if cgroup is not None:
            # Whether or not the group was still there: an escaped process may be.
            try:
                hit = self.kill_cgroup(cgroup) or hit
            except OSError as e:
                self.report("error", f"cannot kill cgroup {_show(cgroup)}: {e.strerror}")
                failed = True
        if hit:
            self.report(what, pgid, *extra)
        elif not failed:
            self.report("gone", pgid)

    def timeout_ms(self):
        """poll() timeout: until the next deadline (rounded up), or for ever."""
        deadlines = [*self.armed.values(), *self.addresses.values()]
        if not deadlines:
            return None
        remaining = min(deadlines) - self.clock()
        return max(0, math.ceil(remaining * 1000))

    # -- the loop ----------------------------------------------------------------------

    def run(self):
        poller = select.poll()
        poller.register(self.infd, select.POLLIN)
        self.report("ready", os.getpid(), self.own_pgid)
        while True:
            if poller.poll(self.timeout_ms()):
                try:
                    data = os.read(self.infd, READ_SIZE)
                except BlockingIOError:
                    data = None
                except OSError:
                    data = b""
                if data == b"":
                    # The daemon is gone: nobody will renew or stop anything.
                    self.kill_all()
                    return 0
                if data:
                    self.feed(data)
            self.kill_due()


def _show(text):
    if isinstance(text, bytes):
        text = text.decode("ascii", "replace")
    return repr(text[:60])


def main():
    # Terminal-generated signals are for the daemon's session, not for us
    # (we are in our own process group already; this is belt and braces).
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGTSTP):
        signal.signal(signum, signal.SIG_IGN)
    os.set_blocking(1, False)
    _raise_priority()
    return Guard().run()


#: The guard's nice value when it may raise its priority (it runs as root):
#: on a CPU-starved machine its kill must still land inside the lease's drift
#: margin, before any voter could grant the lease to another node.
GUARD_NICE = -10


def _raise_priority():
    """Ask to be scheduled ahead of ordinary work (POSIX setpriority; best effort)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, GUARD_NICE)
    except (OSError, AttributeError):
        pass  # not root, or no setpriority here: run at the normal priority


if __name__ == "__main__":
    sys.exit(main())
