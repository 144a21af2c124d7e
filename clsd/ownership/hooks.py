"""Run a cluster's ``fence`` and ``notify`` commands: in order, retried, bounded in time.

The ownership core emits L{RunHook} actions; L{HookRunner} carries them out:

- argv placeholders ``{node}``, ``{cluster}``, ``{epoch}`` and ``{event}``
  are filled in; the environment is the minimal one of every service plus
  ``CLSD_CLUSTER``, ``CLSD_EPOCH``, ``CLSD_NODE`` (the node the event is
  about: the node to fence, or this node for notify) and ``CLSD_EVENT``;
- hooks of one cluster run one at a time, in the order they were asked
  for (a fence never overtakes an earlier notify, and two notifies arrive in
  the order of the events); hooks of different clusters run side by side;
- a run that exits non-zero (or cannot start) is retried after a growing
  delay, up to C{max_attempts} runs; only then does the next hook of that
  cluster start;
- a run still going after C{timeout} seconds gets SIGKILL, to its whole
  process group (a hook runs as the leader of its own group);
- every run is an event (``kind = "hook"``) with its outcome, duration and
  the tail of its output; the final outcome of a ``fence`` goes back to the
  core (C{on_done(ok)}), whose lease decision waits for it;
- a fence of a tenure that ended is cancelled (L{HookRunner.cancel}): dropped
  from the queue, or SIGKILLed (its process group) if it runs, and its
  result is not passed on.
"""

import collections
import random as _random
import signal
import time

import attrs
from twisted.internet import defer
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger

from clsd.config.service import Backoff
from clsd.supervision.context import ExecContext, minimal_environment
from clsd.supervision.core.backoff import restart_delay
from clsd.supervision.core.policy import describe_exit
from clsd.supervision.pgroups import signal_group
from clsd.supervision.process import exit_status
from clsd.supervision.spawn import spawn_in_new_group

#: A hook still running after this long is killed.  Fence agents that talk
#: to a power switch or a BMC answer in seconds; 30 s leaves room for a slow
#: one without letting a hung one block its cluster's queue for long.
DEFAULT_TIMEOUT = 30.0

#: Runs per hook before giving up: with the delays below, about 15 s of
#: retrying (plus the runs themselves) rides out a brief outage of whatever
#: the hook talks to.  A failed fence is retried again later by the core.
DEFAULT_MAX_ATTEMPTS = 5

#: Delay before retry n: 1 s, 2 s, 4 s, 8 s ... capped at 30 s, +/- 10 %.
DEFAULT_BACKOFF = Backoff(initial=1.0, max=30.0, factor=2.0, jitter=0.1)

#: Output kept per run for the event (the tail: where errors usually are).
OUTPUT_TAIL = 2000

#: After SIGKILL (or after the leader exited), how long its pipes may stay
#: open (held by a process that left the group) before we close them.
PIPE_GRACE = 1.0


class HookError(ValueError):
    """A hook's argv cannot be filled in (a placeholder the config did not allow)."""


def fill_argv(argv, *, node, cluster, epoch, event):
    """C{argv} with its placeholders replaced; L{HookError} names a bad one."""
    values = {"node": node, "cluster": cluster, "epoch": str(epoch), "event": event}
    filled = []
    for index, arg in enumerate(argv):
        try:
            filled.append(arg.format_map(values))
        except (KeyError, ValueError, IndexError, AttributeError) as e:
            raise HookError(f"argv[{index}] {arg!r}: cannot fill in placeholders ({e})") from None
    return tuple(filled)


def hook_environment(*, node, cluster, epoch, event):
    env = minimal_environment()
    env.update({"CLSD_CLUSTER": cluster, "CLSD_EPOCH": str(epoch), "CLSD_NODE": node,
                "CLSD_EVENT": event})
    return env


@attrs.frozen
class HookOutcome:
    """How one run ended."""

    ok: bool
    #: "exited code=0", "killed by SIGKILL", "timed out after 30s", "cannot start: ..."
    detail: str
    duration: float


class _HookProtocol(ProcessProtocol):
    def __init__(self, on_exit):
        self._on_exit = on_exit
        self.output = b""
        self.pid = None
        self.ended = False
        self._release = None

    def connectionMade(self):
        self.transport.closeStdin()
        self.pid = self.transport.pid

    def outReceived(self, data):
        self.output = (self.output + data)[-OUTPUT_TAIL:]

    errReceived = outReceived

    def processExited(self, reason):
        code, signum = exit_status(reason)
        self._on_exit(code, signum)

    def processEnded(self, reason):
        self.ended = True
        if self._release is not None and self._release.active():
            self._release.cancel()
        self._release = None

    def release_later(self, reactor, grace):
        """Close our pipe ends after C{grace} unless they reach end-of-file first.

        They stay open only when a process that left the group holds them;
        the hook's result does not wait for that.
        """
        if not self.ended and self._release is None:
            self._release = reactor.callLater(grace, self.release)

    def release(self):
        if self._release is not None and self._release.active():
            self._release.cancel()
        self._release = None
        if self.transport is not None and not self.ended:
            self.transport.loseConnection()


@attrs.define
class _Job:
    action: object  # RunHook
    on_done: object
    attempt: int = 0
    cancelled: bool = False


class HookRunner:
    """Runs RunHook actions: per cluster a queue, one run at a time.

    @param spawn: C{spawn(protocol, context) -> transport} starting the hook
        as the leader of a new process group (default: the real one).
    @param signal_group: C{signal_group(pgid, signum)}.
    @param events: an L{clsd.events.EventLog}.
    """

    log = Logger()

    def __init__(self, reactor, *, events, monotonic=time.monotonic, spawn=None,
                 signal_group=signal_group, timeout=DEFAULT_TIMEOUT,
                 max_attempts=DEFAULT_MAX_ATTEMPTS, backoff=DEFAULT_BACKOFF,
                 random=_random.random):
        self._reactor = reactor
        self._events = events
        self._monotonic = monotonic
        self._spawn = spawn if spawn is not None else (
            lambda protocol, context: spawn_in_new_group(reactor, protocol, context))
        self._signal_group = signal_group
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff = backoff
        self._random = random
        self._queues = collections.defaultdict(collections.deque)
        self._running = {}   # cluster -> (job, protocol, started, timer)
        self._retry = {}     # cluster -> IDelayedCall
        self._stopped = False
        self._releasing = set()
        #: Every finished run: (cluster, event, attempt, HookOutcome).
        self.history = collections.deque(maxlen=200)

    def run(self, action, on_done=None):
        """Queue C{action} (a L{clsd.ownership.core.actions.RunHook}); C{on_done(ok)} at the end."""
        if self._stopped:
            return
        self._queues[action.cluster].append(_Job(action, on_done))
        self._next(action.cluster)

    def cancel(self, cluster, event, epoch):
        """Drop C{cluster}'s C{event} runs for tenure C{epoch}; SIGKILL one that runs.

        Their C{on_done} is never called: the tenure they served has ended.
        """
        queue = self._queues.get(cluster)
        if not queue:
            return
        running = self._running.get(cluster)
        for job in list(queue):
            if job.action.event != event or job.action.epoch != epoch:
                continue
            job.cancelled = True
            if running is not None and running[0] is job:
                if running[1].pid is not None:
                    self._signal_group(running[1].pid, signal.SIGKILL)
                continue  # reported and dropped when it exits
            if queue[0] is job and cluster in self._retry:  # waiting to be retried
                retry = self._retry.pop(cluster)
                if retry.active():
                    retry.cancel()
            queue.remove(job)
            self._record_cancelled(job)
        self._next(cluster)

    def _record_cancelled(self, job):
        action = job.action
        self._events.record(
            "hook", action.cluster,
            f"{action.event} hook for epoch {action.epoch} cancelled: its tenure ended",
            event=action.event, node=action.node, epoch=action.epoch, cancelled=True)

    def busy(self, cluster):
        return cluster in self._running or cluster in self._retry or bool(self._queues[cluster])

    def stop(self):
        """Kill running hooks and drop the queues (the daemon is stopping)."""
        self._stopped = True
        for call in self._retry.values():
            if call.active():
                call.cancel()
        self._retry.clear()
        self._queues.clear()
        for _job, protocol, _, timer in list(self._running.values()):
            if timer.active():
                timer.cancel()
            if protocol.pid is not None:
                self._signal_group(protocol.pid, signal.SIGKILL)
        for protocol in self._releasing:
            protocol.release()
        self._releasing.clear()
        return defer.succeed(None)

    # -- internals -------------------------------------------------------------

    def _next(self, cluster):
        if cluster in self._running or cluster in self._retry or self._stopped:
            return
        queue = self._queues[cluster]
        if not queue:
            self._queues.pop(cluster, None)
            return
        self._launch(queue[0])

    def _launch(self, job):
        action = job.action
        cluster = action.cluster
        job.attempt += 1
        started = self._monotonic()
        try:
            argv = fill_argv(action.argv, node=action.node, cluster=cluster,
                             epoch=action.epoch, event=action.event)
            env = hook_environment(node=action.node, cluster=cluster,
                                   epoch=action.epoch, event=action.event)
            protocol = _HookProtocol(lambda code, signum: self._exited(cluster, code, signum))
            self._running[cluster] = (job, protocol, started, None)
            self._spawn(protocol, ExecContext(argv=argv, env=env))
        except HookError as e:
            self._running.pop(cluster, None)
            # Retrying cannot fix a bad template: give up at once.
            job.attempt = self.max_attempts
            self._finished(job, HookOutcome(False, f"bad command: {e}", 0.0))
            return
        except Exception as e:
            self._running.pop(cluster, None)
            self._finished(job, HookOutcome(False, f"cannot start: {e}",
                                            self._monotonic() - started))
            return
        entry = self._running.get(cluster)
        if entry is not None and entry[1] is protocol:  # not already reaped during spawn
            timer = self._reactor.callLater(self.timeout, self._timed_out, cluster, protocol)
            self._running[cluster] = (job, protocol, started, timer)

    def _timed_out(self, cluster, protocol):
        entry = self._running.get(cluster)
        if entry is None or entry[1] is not protocol:
            return
        protocol.timed_out = True
        if protocol.pid is not None:
            self._signal_group(protocol.pid, signal.SIGKILL)

    def _exited(self, cluster, code, signum):
        job, protocol, started, timer = self._running.pop(cluster)
        if timer is not None and timer.active():
            timer.cancel()
        duration = self._monotonic() - started
        if getattr(protocol, "timed_out", False):
            detail = f"timed out after {self.timeout:g}s (process group killed)"
            ok = False
        else:
            detail = describe_exit(code, signum)
            ok = code == 0 and signum is None
        if self._stopped:
            protocol.release()  # nothing waits for its output any more
        else:
            protocol.release_later(self._reactor, PIPE_GRACE)
            self._releasing = {p for p in self._releasing if not p.ended}
            self._releasing.add(protocol)
        self._finished(job, HookOutcome(ok, detail, duration), protocol.output)

    def _finished(self, job, outcome, output=b""):
        action = job.action
        cluster = action.cluster
        self.history.append((cluster, action.event, job.attempt, outcome))
        final = outcome.ok or job.attempt >= self.max_attempts or job.cancelled
        text = output.decode("utf-8", "replace").strip()
        verdict = "ok" if outcome.ok else ("giving up" if final else "will retry")
        if job.cancelled:
            verdict = "cancelled: its tenure ended; result not used"
        self._events.record(
            "hook", cluster,
            f"{action.event} hook attempt {job.attempt}/{self.max_attempts}: "
            f"{outcome.detail} in {outcome.duration:.3f}s ({verdict})",
            event=action.event, node=action.node, epoch=action.epoch,
            argv=list(action.argv), attempt=job.attempt, ok=outcome.ok, output=text,
            detail=outcome.detail,
        )
        if not final and not self._stopped:
            # (A hook killed by stop() is not retried: the daemon is going away.)
            delay = restart_delay(job.attempt + 1, self.backoff, self._random())
            self._retry[cluster] = self._reactor.callLater(delay, self._retry_now, cluster)
            return
        queue = self._queues.get(cluster)
        if queue and queue[0] is job:
            queue.popleft()
        if job.on_done is not None and not job.cancelled:
            try:
                job.on_done(outcome.ok)
            except Exception:
                self.log.failure("hook result callback failed")
        self._next(cluster)

    def _retry_now(self, cluster):
        self._retry.pop(cluster, None)
        queue = self._queues.get(cluster)
        if queue and not self._stopped:
            self._launch(queue[0])
