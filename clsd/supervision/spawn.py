"""Start a child process as the leader of its own, new process group.

Why: the supervisor must be able to signal and wait for *everything* a
service started (workers, shell pipelines, grandchildren), and a crash of
the daemon must leave the service findable by its process group id.
Twisted's C{spawnProcess} has no option for a new group, so this module
subclasses C{twisted.internet.process.Process}:

- the fast path (no ``cwd``, no ``user``) uses C{os.posix_spawnp} with
  C{setpgroup=0} (POSIX_SPAWN_SETPGROUP): no fork of the daemon's memory, the
  child is in its own group before it executes a single instruction;
- the fork path (``cwd`` or ``user`` set: posix_spawn cannot chdir or change
  credentials portably) calls C{os.setpgid(0, 0)} in the child, and the
  parent calls C{os.setpgid(pid, pid)} too, closing the classic job-control
  race where the parent signals the group before the child created it.

With C{after_spawn} (lease ownership arms its guard there), the program is
held at a start gate until the hook has returned: the child is a tiny
C{/bin/sh} that waits for "go" on descriptor 3 and only then executes the
program. A daemon frozen or killed between the spawn and the hook therefore
leaves no program running unguarded: frozen, the gate never opens; killed,
the gate reads end-of-file and the child exits with L{GATE_CLOSED_STATUS}.

With C{place} (cgroup containment), the child is held at the same gate
while the daemon moves it into the service's cgroup; only then does it
execute the program, so nothing the program forks, however fast, is born
outside the cgroup. Holding the child costs one C{/bin/sh} start (about a
millisecond); a L{GateReserve} takes it off the restart path by starting
the next instance's gate ahead of time (L{WarmGate}; figures in
doc/supervision.md).

Every private Twisted name used by CLSD is in this one module; the tests in
tests/supervision/test_spawn.py run both paths against the installed Twisted.
"""

import errno
import fcntl
import os
import shutil
import signal

import attrs
from twisted.internet import defer
from twisted.internet import process as _twisted_process
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.internet.process import (
    _getFileActions,
    _listOpenFDs,
)

try:
    from os import POSIX_SPAWN_CLOSE as _PS_CLOSE
    from os import POSIX_SPAWN_DUP2 as _PS_DUP2
except ImportError:  # pragma: no cover - platforms without posix_spawn
    _PS_CLOSE = _PS_DUP2 = None  # type: ignore[assignment,misc]  # (mypy checks Linux)

_log = Logger()

SPAWN_PATH_POSIX_SPAWN = "posix_spawn"

#: The start gate: read one line from descriptor 3; run the program only if
#: it is "go" (dash starts in about a millisecond).
GATE_SHELL = "/bin/sh"
GATE_SCRIPT = ('IFS= read -r word <&3 || exit 125; [ "$word" = go ] || exit 125; '
               'exec 3<&-; exec "$@"')
#: Exit status of a gated child whose gate was closed without "go".
GATE_CLOSED_STATUS = 125
SPAWN_PATH_FORK = "fork"


class GroupLeaderProcess(_twisted_process.Process):
    """A Twisted C{Process} whose child leads a new process group (pgid == pid).

    @ivar spawn_path: L{SPAWN_PATH_POSIX_SPAWN} or L{SPAWN_PATH_FORK}, the
        way this child was created (for tests and diagnostics).
    """

    spawn_path = None

    def __init__(self, reactor, executable, args, environment, path, proto,
                 uid=None, gid=None, childFDs=None, groups=None, after_spawn=None):
        self._supplementary_groups = groups
        self._after_spawn = after_spawn
        super().__init__(reactor, executable, args, environment, path, proto,
                         uid=uid, gid=gid, childFDs=childFDs)

    def _trySpawnInsteadOfFork(self, path, uid, gid, executable, args, environment,
                               kwargs):
        # A copy of Twisted's Process._trySpawnInsteadOfFork (Twisted 24-26),
        # plus setpgroup=0.
        if (
            _PS_CLOSE is None
            or uid is not None
            or gid is not None
            or (path is not None and os.path.abspath(path) != os.path.abspath("."))
            or getattr(self._reactor, "_neverUseSpawn", False)
        ):
            self.spawn_path = SPAWN_PATH_FORK
            return False
        fdmap = kwargs.get("fdmap")
        fdState = []
        for eachFD in _listOpenFDs():
            try:
                isCloseOnExec = fcntl.fcntl(eachFD, fcntl.F_GETFD, fcntl.FD_CLOEXEC)
            except OSError:
                pass
            else:
                fdState.append((eachFD, isCloseOnExec))
        if environment is None:
            environment = os.environ
        setSigDef = [
            everySignal
            for everySignal in range(1, signal.NSIG)
            if signal.getsignal(everySignal) == signal.SIG_IGN
        ]
        self.pid = os.posix_spawnp(
            executable,
            args,
            environment,
            file_actions=_getFileActions(fdState, fdmap, doClose=_PS_CLOSE,
                                         doDup2=_PS_DUP2),
            setsigdef=setSigDef,
            setpgroup=0,
        )
        self.status = -1
        self.spawn_path = SPAWN_PATH_POSIX_SPAWN
        return True

    def _fork(self, path, uid, gid, executable, args, environment, **kwargs):
        super()._fork(path, uid, gid, executable, args, environment, **kwargs)
        if self.spawn_path == SPAWN_PATH_FORK:
            try:
                os.setpgid(self.pid, self.pid)
            except OSError as e:
                # EACCES: the child already executed (and had set its group);
                # ESRCH: it already died. Either way its own call did the job.
                if e.errno not in (errno.EACCES, errno.ESRCH):
                    raise
        if self._after_spawn is not None:
            # The child exists and leads its group; nothing else (pipes,
            # protocol, reaper) is set up. Lease ownership arms its guard
            # here; the start gate holds the program until this returns.
            try:
                self._after_spawn(self.pid)
            except Exception:
                _log.failure("after_spawn({pid}) failed", pid=self.pid)

    def _execChild(self, path, uid, gid, executable, args, environment):
        # Runs in the forked child; any exception is reported by Twisted's
        # _fork on the child's stderr, followed by os._exit(1).
        os.setpgid(0, 0)
        if path:
            os.chdir(path)
        if uid is not None or gid is not None:
            # Groups first, then gid, then uid: after setuid we could not.
            if self._supplementary_groups is not None:
                os.setgroups(list(self._supplementary_groups))
            if gid is not None:
                os.setgid(gid)
            if uid is not None:
                os.setuid(uid)
        os.execvpe(executable, args, environment)


def resolve_program(program, env, cwd=None):
    """The path of C{program}, searched in the service's own C{PATH}.

    Done here, for both spawn paths alike: C{posix_spawnp} would search the
    daemon's PATH, not the service's. A missing program is reported before
    anything is started, with the PATH that was searched.

    @raise FileNotFoundError: when there is no such executable.
    """
    if "/" in program:
        path = os.path.join(cwd, program) if cwd and not os.path.isabs(program) else program
        if not os.path.isfile(path) or not os.access(path, os.X_OK):
            raise FileNotFoundError(errno.ENOENT, "no such executable", path)
        return program
    search = env.get("PATH", os.defpath)
    found = shutil.which(program, path=search)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, f"not found in PATH {search}", program)
    return found


def spawn_in_new_group(reactor, protocol, context, after_spawn=None, place=None):
    """Start C{context} (an L{clsd.supervision.context.ExecContext}) as a group leader.

    The child's stdin is a pipe the protocol may close; stdout and stderr
    are pipes read by the protocol.  C{place(pid)} then C{after_spawn(pid)},
    if given, are called the moment the child exists, before the protocol is
    connected and before the child executes the program (it waits at the
    start gate); if either raises, the exception is logged and the gate stays
    shut: the child exits with L{GATE_CLOSED_STATUS} without running the
    program.

    @raise OSError: when the program cannot be started at all (no such
        executable; on the posix_spawn path also exec errors; on the fork
        path those make the child exit with status 1 after writing the
        reason to its stderr).
    """
    hooks = [hook for hook in (place, after_spawn) if hook is not None]
    if not hooks:
        return _group_leader(reactor, protocol, context)
    gate = _StartGate(hooks)
    try:
        return _group_leader(reactor, protocol, context, gate_fd=gate.read_end,
                             after_spawn=gate.open)
    finally:
        gate.close()


def _group_leader(reactor, protocol, context, gate_fd=None, after_spawn=None):
    """A L{GroupLeaderProcess} running C{context}; behind the start gate with C{gate_fd}."""
    executable = resolve_program(context.argv[0], context.env, context.cwd)
    credentials = context.credentials
    uid = gid = groups = None
    if credentials is not None:
        uid, gid, groups = credentials.uid, credentials.gid, credentials.groups
    argv, child_fds = list(context.argv), None
    if gate_fd is not None:
        # exec "$@" runs the resolved path (which is then also its argv[0]).
        argv = [GATE_SHELL, "-c", GATE_SCRIPT, "clsd-gate", executable, *context.argv[1:]]
        child_fds = {0: "w", 1: "r", 2: "r", 3: gate_fd}
        executable = GATE_SHELL
    return GroupLeaderProcess(
        reactor, executable, argv, dict(context.env), context.cwd, protocol,
        uid=uid, gid=gid, groups=groups, childFDs=child_fds, after_spawn=after_spawn)


class _StartGate:
    """A pipe whose read end is the gated child's descriptor 3."""

    def __init__(self, hooks):
        self._hooks = hooks
        self.read_end, self._write_end = os.pipe()  # both close-on-exec

    def open(self, pid):
        """Run the hooks in order; only if they all return, tell the child to go."""
        for hook in self._hooks:
            hook(pid)
        os.write(self._write_end, b"go\n")

    def close(self):
        # Without "go" (the hook raised, or the spawn failed) the child reads
        # end-of-file and exits with GATE_CLOSED_STATUS.
        for fd in (self.read_end, self._write_end):
            try:
                os.close(fd)
            except OSError:
                pass


class _Relay(ProcessProtocol):
    """The protocol of a warm gate: silent until it is claimed, then a pass-through."""

    target = None
    exited = False
    reason = None

    def __init__(self):
        #: Fires when an unclaimed gate's process has ended (pipes closed).
        self.ended = defer.Deferred()

    def makeConnection(self, transport):
        self.transport = transport  # the target's connectionMade waits for the claim

    def childDataReceived(self, fd, data):
        if self.target is not None:
            self.target.childDataReceived(fd, data)

    def childConnectionLost(self, fd):
        if self.target is not None:
            self.target.childConnectionLost(fd)

    def processExited(self, reason):
        self.exited = True
        self.reason = reason
        if self.target is not None:
            self.target.processExited(reason)

    def processEnded(self, reason):
        self.exited = True
        if self.target is not None:
            self.target.processEnded(reason)
        elif not self.ended.called:
            self.ended.callback(None)

    def attach(self, protocol):
        self.target = protocol
        protocol.makeConnection(self.transport)


class WarmGate:
    """A gated child started before it is needed, for one L{ExecContext}.

    It is the L{GATE_SHELL} of L{spawn_in_new_group}, already running (and
    leading its own process group), waiting for "go"; L{claim} runs the
    hooks (placement, guard) and says "go", so a restart costs no shell
    start. Unclaimed, it runs nothing: L{discard} (or the daemon's death)
    closes its gate and it exits with L{GATE_CLOSED_STATUS}, unreported.
    """

    def __init__(self, reactor, context):
        self.context = context
        self._relay = _Relay()
        read_end, self._write_end = os.pipe()  # both close-on-exec
        try:
            self.transport = _group_leader(reactor, self._relay, context, gate_fd=read_end)
        except BaseException:
            os.close(self._write_end)
            self._write_end = None
            raise
        finally:
            os.close(read_end)
        self.pid = self.transport.pid

    @property
    def usable(self):
        """Whether it still waits at its gate."""
        return self._write_end is not None and not self._relay.exited

    def claim(self, protocol, hooks):
        """Run C{hooks(pid)} in order, say "go", connect C{protocol}; the transport.

        @raise Exception: what a hook raised; the gate is then discarded
            (the child exits without running the program).
        """
        try:
            for hook in hooks:
                hook(self.pid)
            os.write(self._write_end, b"go\n")
        except BaseException:
            self.discard()
            raise
        os.close(self._write_end)
        self._write_end = None
        self._relay.attach(protocol)
        return self.transport

    def discard(self):
        """Close the gate unopened: the child exits with GATE_CLOSED_STATUS.

        @return: a Deferred that fires once the child has ended.
        """
        if self._write_end is not None:
            os.close(self._write_end)
            self._write_end = None
        if self._relay.target is not None:
            return defer.succeed(None)
        return self._relay.ended


#: After a start, how long to wait before starting the next instance's warm
#: gate: not at once, so that the new instance gets the CPU first.
WARM_GATE_DELAY = 0.05


class GateReserve:
    """At most one L{WarmGate} for one service, refilled after each start."""

    log = Logger()

    def __init__(self, reactor, delay=WARM_GATE_DELAY):
        self._reactor = reactor
        self._delay = delay
        self._gate = None
        self._call = None
        self.closed = False

    def take(self, context):
        """The warm gate for C{context} if there is a usable one (it leaves the reserve)."""
        gate, self._gate = self._gate, None
        if gate is not None and gate.usable and gate.context == context:
            return gate
        if gate is not None:
            gate.discard()
        return None

    def refill(self, context):
        """Start a warm gate for C{context} a little later (none while closed)."""
        if self.closed:
            return
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self._reactor.callLater(self._delay, self._start, context)

    def _start(self, context):
        self._call = None
        if self.closed:
            return
        if self._gate is not None:
            if self._gate.usable and self._gate.context == context:
                return
            self._gate, stale = None, self._gate
            stale.discard()  # for another start (an earlier tenure's environment)
        try:
            self._gate = WarmGate(self._reactor, context)
        except Exception:
            # Only an optimisation: the next start spawns its gate itself.
            self.log.failure("cannot start a warm gate")

    def close(self):
        """Discard the warm gate and start no other (the service is stopped for good).

        @return: a Deferred that fires once the discarded gate has ended.
        """
        self.closed = True
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        gate, self._gate = self._gate, None
        return gate.discard() if gate is not None else defer.succeed(None)

    def reopen(self):
        self.closed = False


def service_spawner(reactor, service, containment=None):
    """C{spawn(protocol, extra_env=None, after_spawn=None)} for one C{[[service]]}.

    C{extra_env} is added to the service's environment for this start only
    (lease ownership gives each tenure its ``CLSD_*`` variables); the rest of
    the L{ExecContext} is computed once, at the first start. With an
    L{clsd.supervision.containment.IContainment} that needs placement, every
    child is placed before it runs the program.
    """
    place = containment.place if containment is not None and containment.needs_placement \
        else None
    reserve = getattr(containment, "reserve", None) if place is not None else None
    from clsd.supervision.context import exec_context

    context = None

    def spawn(protocol, extra_env=None, after_spawn=None):
        nonlocal context
        spawn.extra_env = dict(extra_env or {})
        if context is None:
            # May raise KeyError if the user vanished since the config was
            # read: reported as a spawn failure, retried later.
            context = exec_context(service)
        this = context.with_env(**extra_env) if extra_env else context
        if reserve is None:
            return spawn_in_new_group(reactor, protocol, this, after_spawn=after_spawn,
                                      place=place)
        reserve.reopen()
        gate = reserve.take(this)
        if gate is not None:
            hooks = [place] + ([after_spawn] if after_spawn is not None else [])
            transport = gate.claim(protocol, hooks)
        else:
            transport = spawn_in_new_group(reactor, protocol, this, after_spawn=after_spawn,
                                           place=place)
        reserve.refill(this)
        return transport

    def warm(extra_env=None):
        """Have a warm gate ready for a start with C{extra_env} that is coming soon.

        An ordered group's next member: its start then costs no shell start.
        Only an optimisation: without a reserve, or a context, nothing happens.
        """
        nonlocal context
        if reserve is None:
            return
        if context is None:
            try:
                context = exec_context(service)
            except Exception:
                return  # the start itself reports it
        reserve.reopen()
        reserve.refill(context.with_env(**extra_env) if extra_env else context)

    #: The CLSD_* variables of the last start (an agent's other actions get them too).
    spawn.extra_env = {}
    spawn.warm = warm
    return spawn


def command_runner(reactor, service, containment=None, extra_env=None):
    """C{run(argv, protocol, action="start")}: a helper command of C{service}.

    A forking service's stop command, or an LSB/OCF action (C{argv} None:
    the agent's C{action}). It gets the service's environment (with the
    agent's for C{action}, and C{extra_env()}, the ``CLSD_*`` variables of
    the current tenure), directory and user, leads a process group of its
    own and, under a cgroup, is placed in the service's cgroup before it
    runs (what it starts is contained like the service).
    """
    place = containment.place if containment is not None and containment.needs_placement \
        else None
    from clsd.supervision.context import exec_context

    def run(argv, protocol, action="start"):
        context = exec_context(service, action)
        if argv is not None:
            context = attrs.evolve(context, argv=tuple(argv))
        if extra_env is not None:
            context = context.with_env(**extra_env())
        return spawn_in_new_group(reactor, protocol, context, place=place)

    return run
