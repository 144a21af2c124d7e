"""The ProcessProtocol of a supervised service: its output to rotating files, its exit as an event.

The protocol decides nothing: it hands "started with pid P" and "leader
exited with code C / signal S" to its runner, and writes what the service
prints to log files. The exit is reported from C{processExited} (the moment
the leader is reaped), not C{processEnded}, which waits until every pipe is
closed: a grandchild that inherited stdout would otherwise delay the
restart for as long as it lives.
"""

import os

from twisted.internet import defer, error
from twisted.internet.protocol import ProcessProtocol
from twisted.python.logfile import LogFile


class _RotatingFile(LogFile):
    """Twisted's size-rotated L{LogFile}, where C{backups=0} really keeps none."""

    def rotate(self):
        super().rotate()
        if self.maxRotatedFiles == 0:
            try:
                os.remove(self.path + ".1")
            except FileNotFoundError:
                pass


class ServiceOutput:
    """The files a service's stdout and stderr go to (one file when both paths agree).

    @raise OSError: when a directory or file cannot be created.
    """

    def __init__(self, logs):
        self._files = {}
        self._stdout = self._open(logs.stdout, logs)
        self._stderr = self._open(logs.stderr, logs)
        self.closed = False

    def _open(self, path, logs):
        path = os.path.abspath(path)
        if path not in self._files:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._files[path] = _RotatingFile.fromFullPath(
                path, rotateLength=logs.max_bytes, maxRotatedFiles=logs.backups,
            )
        return self._files[path]

    def out(self, data):
        if not self.closed:
            self._stdout.write(data)

    def err(self, data):
        if not self.closed:
            self._stderr.write(data)

    def close(self):
        """Close the files; output arriving later (from a straggler) is dropped."""
        self.closed = True
        for logfile in self._files.values():
            if not logfile.closed:
                logfile.close()


class DiscardedOutput:
    """Where output goes when no log file could be opened (the reason is an event)."""

    def out(self, data):
        pass

    err = out

    def close(self):
        pass


def exit_status(reason):
    """C{(code, signal)} from the Failure given to C{processExited}."""
    value = reason.value
    if isinstance(value, error.ProcessTerminated):
        return value.exitCode, value.signal
    return getattr(value, "exitCode", 0), None


class ServiceProcessProtocol(ProcessProtocol):
    """One instance of a service, as seen from the daemon.

    @param output: a L{ServiceOutput} (or anything with C{out(bytes)} and
        C{err(bytes)}).
    @param on_started: called with C{(protocol, pid)} once the process exists.
    @param on_exited: called with C{(protocol, code, signal)} when the
        leader is reaped; exactly one of code and signal is not None.
    """

    def __init__(self, output, on_started, on_exited):
        self._output = output
        self._on_started = on_started
        self._on_exited = on_exited
        self._release_call = None
        self.pid = None
        #: Whether the leader has been reaped.
        self.exited = False
        #: Fires once the process is reaped and all its pipes are closed.
        self.ended = defer.Deferred()

    def connectionMade(self):
        # Services read nothing from the daemon: stdin at EOF at once.
        self.transport.closeStdin()
        self.pid = self.transport.pid
        self._on_started(self, self.pid)

    def outReceived(self, data):
        self._output.out(data)

    def errReceived(self, data):
        self._output.err(data)

    def processExited(self, reason):
        self.exited = True
        code, signum = exit_status(reason)
        self._on_exited(self, code, signum)

    def processEnded(self, reason):
        if self._release_call is not None and self._release_call.active():
            self._release_call.cancel()
        self._release_call = None
        if not self.ended.called:
            self.ended.callback(None)

    def release_later(self, reactor, grace):
        """Close the pipes after C{grace} seconds unless they reach end-of-file first.

        They stay open only when a process that left the group (a daemon
        that called setsid) still holds them; they are then closed rather
        than leaked. Not at once: the last words of a crash may still be
        in the pipe.
        """
        if not self.ended.called and self._release_call is None:
            self._release_call = reactor.callLater(grace, self.release)

    def release(self):
        """Close the pipes now."""
        self._release_call = None
        transport = self.transport
        if transport is not None:
            transport.loseConnection()
