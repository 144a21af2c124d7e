"""The daemon's side of the lease guard (the guard program is L{clsd.ownership.guard_process}).

L{GuardClient} starts the guard once per daemon, in its own process group,
and tells it which service process group (and, under cgroup containment,
which cgroup) may run until when.  Lines go to the
guard with a plain C{os.write} on a pipe this class owns, never through a
Twisted transport: a Twisted write is only buffered until the next reactor
turn, and a daemon frozen before that turn would leave the deadline unsent.
Once C{arm} returns, the line is in the kernel's pipe buffer, and the guard
reads it whatever the daemon does next.

The pipe's write end is close-on-exec and Twisted closes every other
descriptor in the processes it spawns, so no service or hook holds it: when
the daemon dies, the guard sees end of file at once and kills every armed
group.

Which groups are armed is kept here too (L{armed}): if the guard itself dies,
it is started again and told everything again.
"""

import os
import sys

from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from clsd.clock import guard_environment, lease_clock
from clsd.ownership import guard_process
from clsd.ownership.core.errors import GuardUnavailable
from clsd.supervision.context import DEFAULT_LANG, DEFAULT_PATH
from clsd.supervision.spawn import GroupLeaderProcess

#: If the guard dies, wait this long before starting it again: soon (the
#: services it guards are unprotected meanwhile), but not in a tight loop
#: when it cannot start at all.
DEFAULT_RESTART_DELAY = 0.2

#: How long a graceful stop waits for the guard to exit after its pipe is
#: closed before it is killed (it exits within milliseconds).
STOP_TIMEOUT = 5.0

#: When the pipe is full (the guard is not reading: it is frozen or stuck),
#: retry the lines that did not fit this often.
BACKLOG_RETRY = 0.05

#: Reports kept for status and tests.
MAX_REMEMBERED = 100


def guard_argv(python=None):
    """The command that runs the guard: this interpreter, isolated, without site.

    ``-I -S`` skip site-packages and the environment: the guard needs only
    the standard library and starts in about 15 ms instead of 40+.
    """
    return (python or sys.executable, "-I", "-S", guard_process.__file__)


def _spawn_in_own_group(reactor, protocol, argv, stdin_fd):
    return GroupLeaderProcess(
        reactor, argv[0], list(argv),
        {"PATH": DEFAULT_PATH, "LANG": DEFAULT_LANG, **guard_environment()},
        None, protocol, childFDs={0: stdin_fd, 1: "r", 2: "r"},
    )


class _GuardProtocol(ProcessProtocol):
    def __init__(self, client):
        self.client = client
        self._buffer = b""

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            self.client._on_report(line.decode("ascii", "replace").strip())

    def errReceived(self, data):
        self.client._on_stderr(data.decode("utf-8", "replace"))

    def processEnded(self, reason):
        self.client._on_exit(self, reason)


class GuardClient:
    """Start, feed and watch the one lease-guard process of this daemon.

    @param events: an L{clsd.events.EventLog} (kills and restarts are events).
    @param spawn_process: C{(reactor, protocol, argv, stdin_fd) -> transport};
        the default starts the guard as the leader of a new process group.
    """

    log = Logger()

    def __init__(self, reactor, *, events=None, argv=None, monotonic=lease_clock,
                 restart_delay=DEFAULT_RESTART_DELAY, spawn_process=_spawn_in_own_group):
        self._reactor = reactor
        self._events = events
        self.argv = tuple(argv) if argv is not None else guard_argv()
        self._monotonic = monotonic
        self._restart_delay = restart_delay
        self._spawn_process = spawn_process
        #: pgid -> (deadline, label): what the guard must enforce (resent after a restart).
        self.armed = {}
        #: pgid -> cgroup directory, for the groups armed with one.
        self.cgroups = {}
        self._labels = {}   # pgid -> label of the last arm, also after disarm
        #: (interface, "ADDRESS/PREFIX") -> (deadline, label): floating addresses.
        self.addresses = {}
        #: ((interface, address), label, report) for every removal the guard reported.
        self.address_removals = []
        self.pid = None
        #: Seconds from spawning the guard to its "ready" line, per start.
        self.start_times = []
        #: (pgid, label, seconds late) for every kill the guard reported.
        self.kills = []
        #: Lines the guard reported as errors.
        self.errors = []
        self.restarts = 0
        self._protocol = None
        self._wfd = None
        self._spawned_at = None
        self._ready_waiters = []
        self._pings = {}
        self._ping_counter = 0
        self._backlog = []
        self._backlog_call = None
        self._restart_call = None
        self._stopping = False
        self._stopped = None

    # -- state ------------------------------------------------------------------

    @property
    def running(self):
        """Whether a guard process exists with its pipe open (services may start)."""
        return self._wfd is not None

    def status(self):
        return {
            "pid": self.pid, "running": self.running, "armed": len(self.armed),
            "kills": len(self.kills), "restarts": self.restarts,
            "start_ms": round(self.start_times[-1] * 1000, 1) if self.start_times else None,
        }

    # -- lifecycle ----------------------------------------------------------------

    def start(self):
        """Start the guard; the Deferred fires when it said "ready"."""
        self._stopping = False
        waiter = defer.Deferred()
        self._ready_waiters.append(waiter)
        if not self.running:
            self._launch()
        return waiter

    def stop(self):
        """Close the pipe (the guard kills whatever is still armed) and wait for it to exit."""
        self._stopping = True
        if self._restart_call is not None and self._restart_call.active():
            self._restart_call.cancel()
        if self._backlog_call is not None and self._backlog_call.active():
            self._backlog_call.cancel()
        if self._protocol is None:
            return defer.succeed(None)
        waiter = defer.Deferred()
        if self._stopped is None:
            self._stopped = []
            timer = self._reactor.callLater(STOP_TIMEOUT, self._force_stop, self._protocol)
            self._stopped.append(lambda: timer.cancel() if timer.active() else None)
            self._close_pipe()
        self._stopped.append(lambda: waiter.callback(None))
        return waiter

    def _force_stop(self, protocol):
        try:
            protocol.transport.signalProcess("KILL")
        except (error.ProcessExitedAlready, OSError):
            pass

    def _launch(self):
        self._restart_call = None
        rfd, wfd = os.pipe()  # both close-on-exec; Twisted dup2s rfd onto the child's 0
        protocol = _GuardProtocol(self)
        self._spawned_at = self._monotonic()
        try:
            transport = self._spawn_process(self._reactor, protocol, self.argv, rfd)
        except Exception as e:
            os.close(wfd)
            self._record(f"cannot start the lease guard: {e}")
            self._schedule_restart()
            return
        finally:
            os.close(rfd)
        os.set_blocking(wfd, False)
        self._protocol = protocol
        self._wfd = wfd
        self.pid = transport.pid
        self._backlog = []
        # Everything that must be enforced, at once: lines queue in the pipe
        # while the guard is still starting.
        for pgid, (deadline, _) in sorted(self.armed.items()):
            self._write(self._arm_line(pgid, deadline))
        for key, (deadline, _) in sorted(self.addresses.items()):
            self._write(self._address_line(key, deadline))

    def _close_pipe(self):
        if self._wfd is not None:
            try:
                os.close(self._wfd)
            except OSError:
                pass
            self._wfd = None

    def _schedule_restart(self):
        if self._stopping:
            return
        self.restarts += 1
        self._restart_call = self._reactor.callLater(self._restart_delay, self._launch)

    # -- the protocol -------------------------------------------------------------------

    def arm(self, pgid, deadline, label=None, cgroup=None):
        """Group C{pgid} (and C{cgroup}) may run until C{deadline} (the lease clock), no later.

        Returns whether the line is in the kernel's pipe buffer now: False
        when it is only queued here (pipe full, guard not running) or the
        write failed (EPIPE).  A start gate must not open on False.

        @raise ValueError: a C{cgroup} path the guard's one-line protocol cannot
            carry (whitespace, not ASCII, longer than MAX_CGROUP_PATH).
        """
        pgid = int(pgid)
        deadline = float(deadline)
        if cgroup is not None:
            if (len(cgroup) > guard_process.MAX_CGROUP_PATH or not cgroup.isascii()
                    or any(c.isspace() for c in cgroup)):
                raise ValueError(f"the lease guard cannot be given cgroup {cgroup!r}")
            self.cgroups[pgid] = cgroup
        else:
            self.cgroups.pop(pgid, None)
        self.armed[pgid] = (deadline, label)
        # Kept past disarm: the guard's "killed" report may arrive after the
        # supervisor saw the death and disarmed, and it should still be named.
        self._labels.pop(pgid, None)
        self._labels[pgid] = label
        while len(self._labels) > MAX_REMEMBERED:
            del self._labels[next(iter(self._labels))]
        return self._write(self._arm_line(pgid, deadline))

    def _arm_line(self, pgid, deadline):
        cgroup = self.cgroups.get(pgid)
        suffix = f" {cgroup}" if cgroup is not None else ""
        return f"arm {pgid} {deadline!r}{suffix}\n"

    def disarm(self, pgid):
        """Group C{pgid} stopped: forget its deadline."""
        pgid = int(pgid)
        self.cgroups.pop(pgid, None)
        if self.armed.pop(pgid, None) is not None:
            self._write(f"disarm {pgid}\n")

    def arm_address(self, interface, address, deadline, label=None):
        """Floating C{address} (``ADDRESS/PREFIX``) may stay on C{interface} until C{deadline}.

        Like L{arm}: True only when the line is in the kernel's pipe buffer;
        an address must not be added on False.
        """
        key = (interface, str(address))
        self.addresses[key] = (float(deadline), label)
        return self._write(self._address_line(key, float(deadline)))

    def disarm_address(self, interface, address):
        """The daemon removed C{address} itself: forget its deadline."""
        key = (interface, str(address))
        if self.addresses.pop(key, None) is not None:
            self._write(f"unaddress {key[0]} {key[1]}\n")

    @staticmethod
    def _address_line(key, deadline):
        return f"address {deadline!r} {key[0]} {key[1]}\n"

    def ping(self):
        """A Deferred that fires once the guard has handled every line written before."""
        self._ping_counter += 1
        token = str(self._ping_counter)
        waiter = self._pings[token] = defer.Deferred()
        self._write(f"ping {token}\n")
        return waiter

    def _write(self, line):
        """Write or queue C{line}; True only when it is in the kernel's pipe buffer."""
        if self._wfd is None:
            return False  # not running: self.armed is sent again when it starts
        data = line.encode("ascii")
        if self._backlog:
            self._backlog.append(data)  # keep the order
            return False
        if not self._try_write(data):
            self._record("the lease guard is not reading its pipe (frozen?); queueing")
            self._backlog.append(data)
            self._schedule_backlog()
            return False
        return self._wfd is not None  # None: the write failed and closed the pipe

    def _try_write(self, data):
        """Write one line; False when the pipe is full (a line < PIPE_BUF: all or nothing)."""
        try:
            os.write(self._wfd, data)
        except BlockingIOError:
            return False
        except OSError as e:
            # EPIPE: the guard is gone; processEnded restarts it and resends.
            self._record(f"cannot write to the lease guard: {e.strerror}")
            self._close_pipe()
        return True

    def _schedule_backlog(self):
        if self._backlog_call is None or not self._backlog_call.active():
            self._backlog_call = self._reactor.callLater(BACKLOG_RETRY, self._flush_backlog)

    def _flush_backlog(self):
        self._backlog_call = None
        while self._backlog and self._wfd is not None:
            if not self._try_write(self._backlog[0]):
                self._schedule_backlog()
                return
            self._backlog.pop(0)
        if self._wfd is None:
            self._backlog = []

    # -- reports ---------------------------------------------------------------------------

    def _on_report(self, line):
        words = line.split()
        if not words:
            return
        kind = words[0]
        if kind == "ready":
            self.start_times.append(self._monotonic() - self._spawned_at)
            waiters, self._ready_waiters = self._ready_waiters, []
            for waiter in waiters:
                waiter.callback(self)
        elif kind in ("killed", "eof-killed") and len(words) >= 2:
            pgid = int(words[1])
            late = float(words[2]) if len(words) > 2 else None
            self.armed.pop(pgid, None)
            self.cgroups.pop(pgid, None)
            label = self._labels.get(pgid)
            self.kills.append((pgid, label, late))
            del self.kills[:-MAX_REMEMBERED]
            late_text = f" {late * 1000:.1f} ms after its deadline" if late is not None else ""
            self._record(f"lease guard killed process group {pgid}{late_text}",
                         subject=label, pgid=pgid, late=late)
        elif kind in ("removed", "eof-removed", "remove-failed") and len(words) >= 3:
            key = (words[1], words[2])
            _, label = self.addresses.pop(key, (None, None))
            if kind == "remove-failed":
                self._record(f"lease guard could not remove {key[1]} from {key[0]}: "
                             f"{' '.join(words[3:])}", subject=label)
            else:
                late = float(words[3]) if len(words) > 3 else None
                late_text = f" {late * 1000:.1f} ms after its deadline" \
                    if late is not None else " (the daemon's pipe closed)"
                self._record(f"lease guard removed {key[1]} from {key[0]}{late_text}",
                             subject=label, interface=key[0], address=key[1], late=late)
            self.address_removals.append((key, label, kind))
            del self.address_removals[:-MAX_REMEMBERED]
        elif kind == "gone" and len(words) >= 2:
            self.armed.pop(int(words[1]), None)
            self.cgroups.pop(int(words[1]), None)
        elif kind == "pong" and len(words) >= 2:
            waiter = self._pings.pop(words[1], None)
            if waiter is not None:
                waiter.callback(None)
        elif kind == "error":
            self.errors.append(line)
            del self.errors[:-MAX_REMEMBERED]
            self._record(f"lease guard: {line}")
        elif kind == "dropped":
            self._record(f"lease guard: {' '.join(words[1:])} report(s) lost while "
                         "the daemon was not reading")

    def _on_stderr(self, text):
        self.log.warn("lease guard stderr: {text}", text=text.rstrip())

    def _on_exit(self, protocol, reason):
        if protocol is not self._protocol:
            return
        self._protocol = None
        self.pid = None
        self._close_pipe()
        self._backlog = []
        for waiter in self._pings.values():
            waiter.errback(GuardUnavailable("the lease guard exited"))
        self._pings = {}
        if self._stopping:
            stopped, self._stopped = self._stopped or [], None
            for call in stopped:
                call()
            return
        self._record(f"the lease guard exited unexpectedly ({reason.getErrorMessage()}); "
                     "restarting it")
        self._schedule_restart()

    def _record(self, reason, subject=None, **fields):
        if self._events is not None:
            self._events.record("guard", subject or "lease-guard", reason, **fields)
        else:
            self.log.info("{reason}", reason=reason)
