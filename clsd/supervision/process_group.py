"""Spawn a child in a process group of its own, and signal that whole group.

Why: a probe or service may fork helpers; killing only the child's pid would
leave them behind. Twisted's ``spawnProcess`` cannot create a new process
group, so this module subclasses Twisted's private ``Process`` -- the only
place in CLSD that touches that private API (see DESIGN.md, "Known traps").

How: with ``posix_spawnp(..., setpgroup=0)`` (POSIX_SPAWN_SETPGROUP) when it
can be used -- the fast path, no Python runs in the child -- otherwise by
fork: the child calls ``setpgid(0, 0)`` before exec and the parent calls
``setpgid(pid, pid)`` too, so the group exists before either side goes on.
"""

import errno
import fcntl
import os
import signal

from twisted.internet import process as _process


class GroupProcess(_process.Process):
    """A Twisted L{Process} whose child leads a new process group (pgid == pid)."""

    def _trySpawnInsteadOfFork(self, path, uid, gid, executable, args, environment, kwargs):
        # posix_spawn cannot chdir (before Python 3.13) nor switch user: those
        # go the fork way below. Mirrors Twisted's own method, plus setpgroup.
        if (
            getattr(os, "posix_spawnp", None) is None
            or uid is not None
            or gid is not None
            or (path is not None and os.path.abspath(path) != os.path.abspath("."))
            or getattr(self._reactor, "_neverUseSpawn", False)
        ):
            return False
        fd_state = []
        for fd in _process._listOpenFDs():
            try:
                cloexec = fcntl.fcntl(fd, fcntl.F_GETFD, fcntl.FD_CLOEXEC)
            except OSError:
                continue
            fd_state.append((fd, cloexec))
        if environment is None:
            environment = os.environ
        ignored = [
            signum for signum in range(1, signal.NSIG)
            if signal.getsignal(signum) == signal.SIG_IGN
        ]
        self.pid = os.posix_spawnp(
            executable,
            args,
            environment,
            file_actions=_process._getFileActions(
                fd_state, kwargs.get("fdmap"),
                doClose=_process._PS_CLOSE, doDup2=_process._PS_DUP2,
            ),
            setsigdef=ignored,
            setpgroup=0,
        )
        self.status = -1
        return True

    def _fork(self, path, uid, gid, executable, args, environment, **kwargs):
        super()._fork(path, uid, gid, executable, args, environment, **kwargs)
        # Fork path only (posix_spawn already did it): close the race in which
        # the parent signals the group before the child has created it.
        try:
            os.setpgid(self.pid, self.pid)
        except OSError as e:
            # EACCES: the child has already exec'd (after its own setpgid).
            if e.errno not in (errno.EACCES, errno.ESRCH):
                raise

    def _execChild(self, path, uid, gid, executable, args, environment):
        os.setpgid(0, 0)
        super()._execChild(path, uid, gid, executable, args, environment)


def spawn_in_new_group(reactor, protocol, argv, env=None, path=None, uid=None,
                       gid=None, child_fds=None):
    """Like C{reactor.spawnProcess}, but the child leads a new process group.

    C{reactor} must be a real POSIX reactor (the one that reaps children).
    @raise OSError: the program cannot be run (e.g. not found): with
        posix_spawn this is raised here rather than reported as an exit.
    @return: the process transport; its C{pid} is also the group id.
    """
    argv = tuple(argv)
    return GroupProcess(reactor, argv[0], argv, env, path, protocol,
                        uid, gid, child_fds)


def signal_group(pgid, signum):
    """Send C{signum} to the process group C{pgid}; C{False} if it no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    return True
