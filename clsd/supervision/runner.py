"""The Twisted shell around one service's lifecycle policy.

L{ServiceRunner} turns processes, timers and health checks into policy
events and carries out the policy's actions. It decides nothing itself;
everything it touches (reactor, clock, process spawning, process groups,
health checker, event log, group records) is injected, so unit tests run it
on a C{Clock} with fakes and integration tests on real processes.

Restart latency: when the leader dies, Twisted reaps it on SIGCHLD and calls
C{processExited}; the runner asks the containment whether anything of the
instance is left (one C{killpg(pgid, 0)}, or one read of ``cgroup.events``),
feeds the policy, and the policy's C{Spawn} is executed in the same call
stack. There is no poll loop on that path. When other processes outlive
the leader, a cgroup is watched (inotify) until it is empty; a process
group is polled.
"""

import collections
import os
import random as _random
import signal
import time

from twisted.application.service import Service
from twisted.internet import defer
from twisted.logger import Logger

from clsd.supervision.containment import ProcessGroupContainment
from clsd.supervision.core.agents import classify
from clsd.supervision.core.policy import describe_exit
from clsd.supervision.core.policy import (
    RESTING_STATES, AgentResult, AwaitMainPid, CancelTimer, Exited, GroupGone, HealthResult, MainPid,
    Record, ResetRequested, RetryRefused, RunAction, RunCheck, RunStopCommand, ScheduleTimer,
    ServicePolicy, SignalGroup, SignalMain, Spawn, Spawned, SpawnFailed, Standby, StartRequested,
    StopCommandDone, StopRequested, TimerFired, WatchMain,
)
from clsd.supervision.forking import CommandProtocol, MainProcessWatch, PidfilePoller
from clsd.supervision.process import DiscardedOutput, ServiceOutput, ServiceProcessProtocol

#: First interval between probes of a process group whose leader is gone
#: but whose other members are not; it doubles up to GROUP_POLL_MAX so a
#: quickly exiting group is noticed at once and a slow one costs little.
GROUP_POLL_FIRST = 0.005
GROUP_POLL_MAX = 0.1

#: How long the output pipes of a finished instance may stay open after its
#: group is gone before they are closed (see
#: L{ServiceProcessProtocol.release_later}); stop() waits for this at most.
OUTPUT_DRAIN_GRACE = 2.0

#: How often a process group abandoned after SIGKILL (a member stuck in the
#: kernel) is probed, until it is gone.
STUCK_POLL = 1.0


class _Cancel:
    """A watch given as a cancel function or a pending call."""

    def __init__(self, cancel, call=None):
        self._cancel = cancel
        self.call = call

    def cancel(self):
        if self._cancel is not None:
            self._cancel()
        if self.call is not None and self.call.active():
            self.call.cancel()


def _describe_error(error):
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class ServiceRunner(Service):
    """Supervises one C{[[service]]}: start, stop, reset, status.

    @param spawn: C{spawn(protocol) -> transport}: start one instance in a
        new process group (see L{clsd.supervision.spawn.spawn_in_new_group});
        it calls C{protocol.makeConnection(transport)} before returning, or raises.
    @param groups: has C{signal(pgid, signum)} and C{alive(pgid)}
        (L{clsd.supervision.pgroups.OSProcessGroups}); the containment when
        no C{containment} is given.
    @param containment: an L{clsd.supervision.containment.IContainment}:
        what "the instance" is when it is signalled, probed and waited for.
    @param events: an L{clsd.events.EventLog}.
    @param registry: a L{clsd.supervision.orphans.GroupRegistry}, or None.
    @param checker_factory: C{checker_factory(check, reactor)}, returning an
        object whose C{check()} returns a Deferred firing with a result
        having C{ok} and C{detail}; needed when the service has a check.
    @param monotonic: the clock the policy is fed with.
    @param output_factory: C{output_factory(logs)}, the service's output files.
    @param run_command: C{run_command(argv, protocol)}: start a helper command
        of the service (a forking service's stop command) in its containment;
        by default L{clsd.supervision.spawn.command_runner}.
    @param watch_main: C{watch_main(reactor, pid, ended)}, an object with
        C{cancel()}: calls C{ended()} when a forking service's main process
        has exited (L{MainProcessWatch}).
    @param kill: C{os.kill}, for a forking service's main process.
    """

    log = Logger()

    #: Whether startService starts the service (the daemon clears it for a
    #: service whose leftover process group could not be terminated).
    autostart = True

    #: For a service that runs under a cluster's lease: C{tenure()} returns
    #: C{(cluster, epoch)} of the current tenure (set by
    #: L{clsd.ownership.core.managed.ManagedService.attach}); its starts are
    #: recorded with them.
    tenure = None

    def __init__(self, config, reactor, *, spawn, groups, events, registry=None,
                 checker_factory=None, monotonic=time.monotonic, random=_random.random,
                 output_factory=ServiceOutput, containment=None, run_command=None,
                 watch_main=MainProcessWatch, kill=os.kill):
        self.config = config
        self.name = f"service:{config.name}"
        self._reactor = reactor
        self._spawn = spawn
        self.containment = containment if containment is not None \
            else ProcessGroupContainment(groups)
        self._events = events
        self._registry = registry
        self._monotonic = monotonic
        self._output_factory = output_factory
        self._policy = ServicePolicy(config, random, now=monotonic())
        self._checker = None
        if config.check is not None:
            if checker_factory is None:
                raise ValueError(f"service {config.name!r} has a check but no checker factory")
            self._checker = checker_factory(config.check, reactor)
        self._queue = collections.deque()
        self._busy = False
        self._timers = {}
        self._protocol = None
        self._recorded_pgid = None
        self._poll_call = None
        self._poll_delay = GROUP_POLL_FIRST
        self._cancel_watch = None
        self._output = None
        self._waiters = []
        #: Instances whose group is gone but whose output pipes are not closed yet.
        self._draining = set()
        self._drain_wait = None
        self._observers = []
        #: pgid -> IDelayedCall: groups abandoned after SIGKILL, still present.
        self._stuck = {}
        self._run_command = run_command
        self._watch_main_factory = watch_main
        self._kill = kill
        #: Forking: the pidfile poller and the main process (or cgroup) watch.
        self._pidfile_poller = None
        self._main_watch = None
        #: Helper commands (stop command, agent actions) not yet reaped.
        self._helpers_running = 0

    # -- the interface the daemon and the admin shell use ---------------------

    @property
    def service_name(self):
        return self.config.name

    @property
    def state(self):
        return self._policy.state

    @property
    def process_alive(self):
        """Whether any process of the current instance may still be alive."""
        return self._policy.process_alive

    @property
    def cgroup(self):
        """The service's cgroup directory (the lease guard kills it too), or None."""
        return self.containment.cgroup

    @property
    def pid(self):
        """The leader pid (== process group id) of the current or last instance."""
        return self._policy.pid

    @property
    def stuck_groups(self):
        """Process groups of earlier instances still present after SIGKILL and L{KILL_WAIT}.

        The policy no longer waits for them, but they are not gone: a member
        stuck in the kernel may still complete I/O it had started.
        """
        return frozenset(self._stuck)

    def add_observer(self, observer):
        """Call C{observer(runner)} after every batch of lifecycle events.

        For lease ownership, which must learn that a managed service failed
        or that its process group is gone.  Called outside the runner's own
        event handling, so an observer may call L{start} or L{stop}.
        """
        self._observers.append(observer)

    def start(self):
        """Ask for the service to run (refused while FAILED: see L{reset})."""
        self._open_output()
        self._feed(StartRequested())

    def stop(self, kill_after=None):
        """Stop the service; the Deferred fires when its whole process group is gone.

        C{kill_after}: SIGKILL no later than this many seconds from now, even
        if ``stop_timeout`` is longer (a lease deadline).
        """
        waiter = defer.Deferred()
        self._waiters.append(waiter)
        self._feed(StopRequested(kill_after))
        self._settle()
        return waiter

    def reset(self):
        """Forget past failures; a FAILED service is started again."""
        self._open_output()
        self._feed(ResetRequested())

    def retry_refused(self):
        """Try a start refused for a transient reason now, not at its retry timer."""
        self._feed(RetryRefused())

    def guard_by_lease(self):
        """This service runs under a lease: a copy found running at a start is not adopted.

        The copy was started outside the service's containment, where the
        lease guard cannot stop it; it is stopped and started again inside.
        """
        self._policy.adopt_running = False

    def standby(self, on):
        """Under a lease: whether this node must not run it (LSB/OCF look for rogue copies)."""
        self._feed(Standby(on))

    def status(self):
        policy = self._policy
        now = self._monotonic()
        return {
            "name": self.config.name,
            "type": self.config.type,
            "state": policy.state.value,
            "pid": self._shown_pid(),
            "restarts": policy.restarts,
            "last_reason": policy.last_reason,
            "since": policy.since,
            "for": round(now - policy.since, 3),
            "healthy": policy.healthy,
            "recent_failures": policy.recent_failures(now),
            "stuck_groups": sorted(self._stuck),
            "containment": self.containment.kind,
            "processes": self.containment.count(policy.pid) if policy.process_alive else 0,
            "main_pid": policy.main_pid if policy.process_alive else None,
            "last_action": policy.last_action,
            "rogue_found": policy.rogue_found,
        }

    def _shown_pid(self):
        """The pid an operator cares about: the program, a forking service's main process.

        None for LSB/OCF services (their actions come and go) and while nothing runs.
        """
        policy = self._policy
        if not policy.process_alive or policy.agent:
            return None
        return policy.main_pid if policy.forking else policy.pid

    # -- IService --------------------------------------------------------------

    def startService(self):
        super().startService()
        if self.autostart:
            self.start()

    def stopService(self):
        super().stopService()
        for call in self._stuck.values():
            if call.active():
                call.cancel()
        d = self.stop()
        d.addBoth(self._close_output)
        d.addBoth(self._release_containment)
        return d

    def _release_containment(self, result):
        if self._policy.process_alive:
            return result
        try:
            released = self.containment.release()
        except OSError as e:
            self._events.record("warning", self.config.name,
                                f"cannot remove its cgroup: {e}")
            return result
        if released is None:
            return result
        return released.addCallback(lambda _: result)

    # -- feeding the policy ------------------------------------------------------

    def _feed(self, event):
        """Queue C{event}; run the queue unless we are already inside it.

        Executing an action may produce an event (a spawn reports its pid),
        so events are queued rather than handled re-entrantly: the policy
        always sees them one at a time, in order.
        """
        self._queue.append(event)
        if self._busy:
            return
        self._busy = True
        try:
            while self._queue:
                event = self._queue.popleft()
                actions = self._policy.handle(event, self._monotonic())
                self._forget_group_if_gone()
                for action in actions:
                    try:
                        self._execute(action)
                    except Exception:
                        self.log.failure("{service}: cannot carry out {action!r}",
                                         service=self.config.name, action=action)
        finally:
            self._busy = False
        self._watch_rest()
        self._settle()
        self._notify_observers()

    def _notify_observers(self):
        for observer in list(self._observers):
            try:
                observer(self)
            except Exception:
                self.log.failure("{service}: observer failed", service=self.config.name)

    def _execute(self, action):
        if isinstance(action, Record):
            fields = action.fields
            if action.kind == "spawned":
                cluster, epoch = self.tenure() if self.tenure is not None else (None, None)
                fields = dict(fields, cluster=cluster, epoch=epoch)
            self._events.record(action.kind, self.config.name, action.reason, **fields)
            if action.kind == "abandoned":
                self._watch_stuck(fields["pgid"])
        elif isinstance(action, Spawn):
            self._start_instance()
        elif isinstance(action, SignalGroup):
            self.containment.signal(action.pgid, action.signum)
        elif isinstance(action, ScheduleTimer):
            self._cancel_timer(action.name)
            self._timers[action.name] = self._reactor.callLater(
                action.delay, self._timer_fired, action.name)
        elif isinstance(action, CancelTimer):
            self._cancel_timer(action.name)
        elif isinstance(action, RunCheck):
            self._run_check(action.pid)
        elif isinstance(action, AwaitMainPid):
            self._await_main_pid()
        elif isinstance(action, WatchMain):
            self._watch_main(action.pid)
        elif isinstance(action, SignalMain):
            try:
                self._kill(action.pid, action.signum)
            except ProcessLookupError:
                pass
        elif isinstance(action, RunStopCommand):
            self._start_stop_command()
        elif isinstance(action, RunAction):
            self._run_action(action.action)
        else:
            raise TypeError(f"unknown action {action!r}")

    def _settle(self):
        """Fire the stop() waiters once nothing runs and nothing will.

        Their output is collected first: the pipes of the last instances
        are given up to OUTPUT_DRAIN_GRACE to reach end-of-file.
        """
        if self._busy or not self._waiters or self._drain_wait is not None \
                or self._helpers_running:
            return
        if self._policy.state not in RESTING_STATES or self._policy.process_alive:
            return
        if self._draining:
            self._drain_wait = defer.DeferredList([p.ended for p in self._draining])
            self._drain_wait.addCallback(self._drained)
            return
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(self._policy.state)

    def _drained(self, _):
        self._drain_wait = None
        self._settle()

    # -- processes -----------------------------------------------------------------

    def _start_instance(self):
        self._open_output()
        protocol = ServiceProcessProtocol(self._output, self._on_started, self._on_exited)
        self._protocol = protocol
        try:
            self.containment.prepare()
            self._spawn(protocol)
        except Exception as e:
            if protocol.pid is None:
                self._protocol = None
                self._feed(SpawnFailed(_describe_error(e),
                                       transient=bool(getattr(e, "transient", False))))
            else:  # started, then something after it failed: it is running
                self.log.failure("{service}: error after spawning", service=self.config.name)

    def _on_started(self, protocol, pid):
        if protocol is not self._protocol:
            return
        if self._registry is not None:
            try:
                cgroup = self.containment.cgroup
                self._registry.add(self.config.name, pid, self.config.stop_signal,
                                   self.config.stop_timeout,
                                   **({"cgroup": cgroup} if cgroup is not None else {}))
                self._recorded_pgid = pid
            except OSError as e:
                self._events.record("warning", self.config.name,
                                    f"cannot record process group {pid}: {e}")
        self._feed(Spawned(pid))

    def _on_exited(self, protocol, code, signum):
        if protocol is not self._protocol:
            self.log.info("{service}: an abandoned instance exited", service=self.config.name)
            return
        pgid = self._policy.pid
        group_alive = self.containment.alive(pgid)
        self._feed(Exited(code, signum, group_alive=group_alive))

    def _watch_rest(self):
        """The leader (or main process) is gone, not the rest: learn when that is gone too."""
        policy = self._policy
        if policy.leader_alive or not policy.group_alive or self._cancel_watch is not None \
                or (self._poll_call is not None and self._poll_call.active()):
            return
        cancel = self.containment.watch_empty(policy.pid, self._emptied)
        if cancel is None:
            self._poll_delay = GROUP_POLL_FIRST
            self._schedule_poll()
        elif policy.process_alive:
            self._cancel_watch = cancel
        else:
            cancel()  # it emptied before the watch existed, and that is known

    def _emptied(self):
        # A fact about the service's only cgroup at this moment; the policy
        # ignores it unless it waits for the rest of an instance (events
        # queued before it, such as the Exited above, are handled first).
        self._feed(GroupGone())

    def _schedule_poll(self):
        if self._poll_call is None or not self._poll_call.active():
            self._poll_call = self._reactor.callLater(self._poll_delay, self._poll_group)

    def _poll_group(self):
        self._poll_call = None
        policy = self._policy
        if policy.leader_alive or not policy.group_alive:
            return  # a new instance, or the policy stopped waiting
        if self.containment.alive(policy.pid):
            self._poll_delay = min(self._poll_delay * 2, GROUP_POLL_MAX)
            self._schedule_poll()
        else:
            self._feed(GroupGone())

    def _forget_group_if_gone(self):
        """Drop the group's record and pipes once the policy knows the group is gone."""
        if self._policy.process_alive:
            return
        if self._recorded_pgid is not None:
            self._registry.remove(self._recorded_pgid)
            self._recorded_pgid = None
        if self._protocol is not None:
            protocol, self._protocol = self._protocol, None
            if protocol.pid is not None and not protocol.ended.called:
                protocol.release_later(self._reactor, OUTPUT_DRAIN_GRACE)
                # An abandoned leader (never reaped) never "ends": do not wait for it.
                if protocol.exited:
                    self._draining.add(protocol)
                    protocol.ended.addCallback(lambda _: self._draining.discard(protocol))
        if self._poll_call is not None and self._poll_call.active():
            self._poll_call.cancel()
        self._poll_call = None
        if self._cancel_watch is not None:
            cancel, self._cancel_watch = self._cancel_watch, None
            cancel()
        self._stop_forking_watches()

    # -- forking services ------------------------------------------------------------

    def _await_main_pid(self):
        self._cancel_pidfile_poller()
        self._pidfile_poller = PidfilePoller(
            self._reactor, self.config.pidfile, self.containment.contains, self._main_found)

    def _main_found(self, pid):
        self._pidfile_poller = None
        self._feed(MainPid(pid))

    def _cancel_pidfile_poller(self):
        if self._pidfile_poller is not None:
            self._pidfile_poller.cancel()
            self._pidfile_poller = None

    def _watch_main(self, pid):
        self._cancel_pidfile_poller()
        if pid is None:
            self._watch_cgroup_as_main()
            return
        self._main_watch = self._watch_main_factory(
            self._reactor, pid, lambda: self._main_exited(pid))

    def _main_exited(self, pid):
        self._main_watch = None
        if self._policy.main_pid != pid or not self._policy.leader_alive:
            return
        group_alive = self.containment.alive(pid)
        self._feed(Exited(None, None, group_alive=group_alive,
                          what=f"main process pid={pid} exited"))

    def _watch_cgroup_as_main(self):
        """No pidfile: the service ends when its cgroup is empty."""
        policy = self._policy

        def emptied():
            if policy.leader_alive and policy.main_pid is None and not self.containment.alive(
                    policy.pid):
                self._main_watch = None
                self._feed(Exited(None, None, group_alive=False, what="its cgroup is empty"))

        cancel = self.containment.watch_empty(policy.pid, emptied)
        if cancel is not None:
            self._main_watch = _Cancel(cancel)
            if not self.containment.alive(policy.pid):
                emptied()
            return

        watch = _Cancel(None)

        def poll():
            if self._main_watch is not watch:
                return
            if self.containment.alive(policy.pid):
                watch.call = self._reactor.callLater(GROUP_POLL_MAX, poll)
            else:
                emptied()

        watch.call = self._reactor.callLater(GROUP_POLL_MAX, poll)
        self._main_watch = watch

    def _helper(self, argv, action, timeout, done):
        """Run a helper command (stop command, agent action) bounded by C{timeout}.

        C{done(code, signum, timed_out)} once it is reaped; an overrun is
        killed (its process group: the service's cgroup is not its to kill).
        """
        run = self._run_command
        if run is None:
            from clsd.supervision.spawn import command_runner

            run = self._run_command = command_runner(self._reactor, self.config,
                                                     self.containment)
        self._open_output()
        self.containment.ensure()
        overran = []

        def finished(code, signum):
            self._helpers_running -= 1
            if call.active():
                call.cancel()
            done(code, signum, bool(overran))

        def overrun():
            overran.append(True)
            if protocol.pid is not None:
                try:
                    os.killpg(protocol.pid, signal.SIGKILL)
                except OSError:
                    pass

        protocol = CommandProtocol(self._output, finished)
        call = self._reactor.callLater(timeout, overrun)
        try:
            run(argv, protocol, action)
        except Exception as e:
            call.cancel()
            raise e
        self._helpers_running += 1

    def _start_stop_command(self):
        def done(code, signum, timed_out):
            detail = "timed out (killed)" if timed_out else describe_exit(code, signum)
            self._feed(StopCommandDone(code == 0 and not timed_out, detail))

        try:
            # Bounded by stop_timeout even where the SIGKILL of the service
            # (a process group) would not reach it.
            self._helper(self.config.stop_command, "stop", self.config.stop_timeout, done)
        except Exception as e:
            self._feed(StopCommandDone(False, f"could not start: {_describe_error(e)}"))

    def _run_action(self, action):
        timeout = self.config.stop_timeout if action == "stop" else self.config.monitor_timeout

        def done(code, signum, timed_out):
            outcome = classify(self.config.type, action, code, timed_out, signum)
            group_alive = self.containment.alive(self._policy.pid)
            self._feed(AgentResult(action, outcome, group_alive))

        try:
            self._helper(None, action, timeout, done)
        except Exception as e:
            from clsd.supervision.core.agents import Outcome, SOFT

            self._feed(AgentResult(action, Outcome(SOFT, f"{action}: cannot run it: "
                                                   f"{_describe_error(e)}"),
                                   self.containment.alive(self._policy.pid)))

    def _stop_forking_watches(self):
        self._cancel_pidfile_poller()
        if self._main_watch is not None:
            watch, self._main_watch = self._main_watch, None
            watch.cancel()

    def _watch_stuck(self, pgid):
        self._stuck[pgid] = self._reactor.callLater(STUCK_POLL, self._probe_stuck, pgid)

    def _probe_stuck(self, pgid):
        if self.containment.alive(pgid):
            self._stuck[pgid] = self._reactor.callLater(STUCK_POLL, self._probe_stuck, pgid)
            return
        del self._stuck[pgid]
        self._events.record("state", self.config.name,
                            f"process group {pgid}, abandoned after SIGKILL, is gone now",
                            pgid=pgid)
        self._notify_observers()

    # -- timers and checks ------------------------------------------------------------

    def _timer_fired(self, name):
        self._timers.pop(name, None)
        self._feed(TimerFired(name))

    def _cancel_timer(self, name):
        call = self._timers.pop(name, None)
        if call is not None and call.active():
            call.cancel()

    def _run_check(self, pid):
        d = defer.maybeDeferred(self._checker.check)

        def result(outcome):
            self._feed(HealthResult(bool(outcome.ok), str(outcome.detail), pid))

        def broken(failure):
            # The checker promises never to fail; if it does, it is a
            # failed check, not a crash of the supervisor.
            self._feed(HealthResult(False, f"check error: {failure.getErrorMessage()}", pid))

        d.addCallbacks(result, broken)
        d.addErrback(lambda f: self.log.failure("{service}: health result", f,
                                                service=self.config.name))

    # -- output ------------------------------------------------------------------------

    def _open_output(self):
        if self._output is not None:
            return
        logs = self.config.logs
        if logs is None:
            self._output = DiscardedOutput()
            return
        try:
            self._output = self._output_factory(logs)
        except OSError as e:
            self._events.record("warning", self.config.name,
                                f"cannot open the output log ({e}); output is discarded")
            self._output = DiscardedOutput()

    def _close_output(self, result):
        if self._output is not None and not self._policy.process_alive:
            self._output.close()
            self._output = None
        return result
