"""The I/O of ``type = "forking"`` services: the pidfile, the main process, the stop command.

A forking service's main process is not the daemon's child (its start
command daemonized it), so its end is not a SIGCHLD: on Linux a pidfd
(``pidfd_open``) becomes readable the moment it exits, and elsewhere it is
polled. The decisions (how long to wait, what an exit means) stay in
L{clsd.supervision.core.policy}; this module only reports facts.
"""

import os

from twisted.internet.protocol import ProcessProtocol

from clsd.supervision.pgroups import pid_alive
from clsd.supervision.process import exit_status

#: How often the pidfile is read while the start is awaited (doubling up to the max).
PIDFILE_POLL_FIRST = 0.01
PIDFILE_POLL_MAX = 0.2
#: How often a main process is probed where there is no pidfd.
MAIN_POLL = 0.1


def read_pidfile(path):
    """The pid in C{path} (its first word), or None when absent, empty or not a pid."""
    try:
        with open(path, "rb") as f:
            words = f.read(64).split()
    except OSError:
        return None
    if not words or not words[0].isdigit():
        return None
    pid = int(words[0])
    return pid if pid > 1 else None


class PidfilePoller:
    """Read C{path} until it names a live process for which C{accept(pid)} is true.

    Calls C{found(pid)} once; L{cancel} stops it (the start timed out or
    the service is stopped: the policy keeps the deadline, not this).
    """

    def __init__(self, reactor, path, accept, found):
        self._reactor = reactor
        self._path = path
        self._accept = accept
        self._found = found
        self._delay = PIDFILE_POLL_FIRST
        self._call = None
        self._poll()

    def _poll(self):
        self._call = None
        pid = read_pidfile(self._path)
        if pid is not None and pid_alive(pid) and self._accept(pid):
            self._found(pid)
            return
        self._call = self._reactor.callLater(self._delay, self._poll)
        self._delay = min(self._delay * 2, PIDFILE_POLL_MAX)

    def cancel(self):
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class _PidfdReader:
    """The IReadDescriptor of a pidfd: readable once the process has exited."""

    def __init__(self, fd, ended):
        self._fd = fd
        self._ended = ended

    def fileno(self):
        return self._fd

    def logPrefix(self):
        return "pidfd"

    def doRead(self):
        self._ended()

    def connectionLost(self, reason):
        pass


class MainProcessWatch:
    """Call C{ended()} once, when process C{pid} (not our child) has exited.

    A pidfd where the kernel has one (Linux 5.3+), else a poll every
    L{MAIN_POLL} seconds.
    """

    def __init__(self, reactor, pid, ended, *, use_pidfd=True):
        self._reactor = reactor
        self._pid = pid
        self._ended = ended
        self._reader = None
        self._call = None
        self.done = False
        fd = None
        if use_pidfd and hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(pid)
            except ProcessLookupError:
                self._reactor.callLater(0, self._fire)
                return
            except OSError:
                fd = None  # an older kernel (ENOSYS): poll
        if fd is not None:
            self._reader = _PidfdReader(fd, self._fire)
            reactor.addReader(self._reader)
        else:
            self._call = reactor.callLater(MAIN_POLL, self._poll)

    def _poll(self):
        self._call = None
        if pid_alive(self._pid):
            self._call = self._reactor.callLater(MAIN_POLL, self._poll)
        else:
            self._fire()

    def _fire(self):
        if self.done:
            return
        self.cancel()
        self._ended()

    def cancel(self):
        self.done = True
        if self._reader is not None:
            self._reactor.removeReader(self._reader)
            os.close(self._reader.fileno())
            self._reader = None
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None


class CommandProtocol(ProcessProtocol):
    """A helper command of a service (a stop command, an agent's action): one report.

    Its output goes to the service's. C{done(code, signum)} is called once
    the command is reaped (one of them is None).
    """

    def __init__(self, output, done):
        self._output = output
        self._done = done
        self.pid = None

    def connectionMade(self):
        self.transport.closeStdin()
        self.pid = self.transport.pid

    def outReceived(self, data):
        self._output.out(data)

    def errReceived(self, data):
        self._output.err(data)

    def processExited(self, reason):
        self._done(*exit_status(reason))
