"""A cluster's real nodes spread over several worker processes, measured across them.

One process is one reactor thread: on a 2-core machine it forms 128 real
nodes and not 256. L{MultiProcessHost} starts P workers
(L{rig.nodeworker}), each hosting a contiguous share of the N nodes
with its own addresses (node i has the i-th address from 127.0.1.1 in every
process, so all N are distinct) and certificates from one CA made here. The
first process's first nodes are the seeds every other node joins through.

Workers report events with C{time.monotonic()} timestamps. On Linux that is
C{CLOCK_MONOTONIC}, a single system-wide clock, so a time from worker 2 and
one from worker 0 (and this coordinator's own) are on the same scale: "all
joined" is the latest of the workers' "all my nodes see N alive" times, and
"dead at all" the latest of their "all my live nodes see X dead" times.
"""

import json
import os
import sys
import time

import attrs
from twisted.internet import defer, error, protocol
from twisted.logger import Logger

from clsd.certs.authority import create_authority
from rig.multinode import FIRST_ADDRESS, address_of

#: A worker that does not answer a command in this long is broken.
REPLY_TIMEOUT = 120.0
#: How long shutdown waits for a worker to exit before killing it.
EXIT_TIMEOUT = 15.0


class WorkerFailed(RuntimeError):
    """A worker answered a command with an error, or died."""


def partition(count, procs):
    """Split C{count} nodes into C{procs} contiguous runs: [(first_index, size), ...]."""
    if count < 1 or procs < 1:
        raise ValueError(f"need at least one node and one process, got {count} and {procs}")
    procs = min(procs, count)
    base, extra = divmod(count, procs)
    runs, first = [], 0
    for i in range(procs):
        size = base + (1 if i < extra else 0)
        runs.append((first, size))
        first += size
    return runs


class WorkerProcess(protocol.ProcessProtocol):
    """One worker: JSON lines to its stdin, JSON lines (replies and events) from its stdout."""

    log = Logger()

    def __init__(self, index, on_event, stderr=None):
        self.index = index
        self._on_event = on_event
        self._stderr = stderr
        self._buffer = b""
        self._ids = 0
        self._pending = {}
        self.ready = defer.Deferred()
        self.ended = defer.Deferred()
        self.exited = None
        self.stderr_tail = []

    def request(self, cmd, **fields):
        """Send a command; a Deferred firing with the reply (a dict) or L{WorkerFailed}."""
        if self.exited is not None:
            return defer.fail(WorkerFailed(f"worker {self.index} has exited"))
        self._ids += 1
        d = defer.Deferred()
        self._pending[self._ids] = d
        line = json.dumps({"cmd": cmd, "id": self._ids, **fields}, separators=(",", ":"))
        self.transport.write(line.encode("utf-8") + b"\n")
        return d

    def outReceived(self, data):
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                self.log.error("worker {index}: not JSON: {line!r}", index=self.index,
                               line=line[:200])
                continue
            request_id = message.get("id")
            if request_id is not None:
                d = self._pending.pop(request_id, None)
                if d is None:
                    continue
                if message.get("ok"):
                    d.callback(message)
                else:
                    d.errback(WorkerFailed(f"worker {self.index}: {message.get('error')}"))
            elif message.get("event") == "ready" and not self.ready.called:
                self.ready.callback(message)
            else:
                self._on_event(self, message)

    def errReceived(self, data):
        if self._stderr is not None:
            self._stderr.write(data.decode("utf-8", "replace"))
        self.stderr_tail = (self.stderr_tail + data.decode("utf-8", "replace").splitlines())[-40:]

    def processEnded(self, reason):
        self.exited = reason.value
        failure = WorkerFailed(f"worker {self.index} ended: {reason.value}; stderr: "
                               + " | ".join(self.stderr_tail[-5:]))
        pending, self._pending = self._pending, {}
        for d in pending.values():
            d.errback(failure)
        if not self.ready.called:
            self.ready.errback(failure)
        self.ended.callback(None)


@attrs.define
class KillResult:
    """One crashed node: when it was crashed and when the last live node anywhere declared it."""

    victim: str
    killed_at: float
    all_declared: bool
    last_s: float | None
    first_s: float | None
    per_worker: dict


class MultiProcessHost:
    """N real nodes in P worker processes; node 0 (in worker 0) forms the cluster.

    @param reactor: spawns and talks to the workers (and times the waits).
    @param declarations: have workers stream every change into suspect or
        dead (see L{declarations}); off for large joins, where it is noise.
    @param config: C{[membership]} overrides for every node, by field name.
    @param stderr: a file the workers' stderr is copied to (default: kept
        only as a short tail for error messages).
    """

    def __init__(self, reactor, count, procs, *, first_address=FIRST_ADDRESS, seeds=1,
                 declarations=False, config=None, stderr=None, python=sys.executable,
                 monotonic=time.monotonic):
        self.reactor = reactor
        self.count = count
        self.runs = partition(count, procs)
        self.first_address = first_address
        self.seeds = seeds
        self.declarations_on = declarations
        self.config = dict(config or {})
        self._stderr = stderr
        self._python = python
        self._monotonic = monotonic
        self.workers = []
        self.owner = {}             # node name -> worker
        self.addresses = {}         # node name -> address
        self.all_alive = {}         # worker index -> time
        self.dead_at_all = {}       # subject -> {worker index: event}
        self.declarations = []      # every "state" event, with the worker index
        self.started_at = {}
        self.errors = []
        self._waiters = []

    # -- lifecycle ------------------------------------------------------------------

    @defer.inlineCallbacks
    def spawn(self):
        """Start the worker processes and build their nodes (no listener open yet)."""
        authority = create_authority(None)
        ca = {"key": authority.key_pem().decode("ascii"),
              "certificate": authority.certificate_pem().decode("ascii")}
        env = dict(os.environ)
        for index, _ in enumerate(self.runs):
            worker = WorkerProcess(index, self._event, self._stderr)
            self.reactor.spawnProcess(worker, self._python,
                                      [self._python, "-m", "rig.nodeworker"], env=env)
            self.workers.append(worker)
        yield defer.gatherResults([self._timeout(w.ready, "to start") for w in self.workers],
                                  consumeErrors=True)
        replies = yield defer.gatherResults([
            self._timeout(worker.request(
                "prepare", count=size, first_index=first, total=self.count,
                first_address=address_of(first, self.first_address), seeds=self.seeds,
                authority=ca, declarations=self.declarations_on, config=self.config),
                "to prepare")
            for worker, (first, size) in zip(self.workers, self.runs)], consumeErrors=True)
        for worker, reply in zip(self.workers, replies):
            for name, address in reply["nodes"]:
                self.owner[name] = worker
                self.addresses[name] = address
        self.file_limit = min(r["file_limit"] for r in replies)

    @defer.inlineCallbacks
    def start(self, batch=None, pause=0.0):
        """Worker 0 starts its seeds first; then every worker starts, joining through them.

        @param batch: nodes started per step in each worker (so P * batch per
            step in all).
        @return: a Deferred firing with the monotonic time the start began.
        """
        t0 = self._monotonic()
        first = yield self._timeout(self.workers[0].request(
            "start", batch=max(batch or 0, self.seeds) or None, pause=pause, seeds=self.seeds),
            "to start its nodes")
        seeds = first["seed_addresses"]
        yield defer.gatherResults([
            self._timeout(w.request("start", batch=batch, pause=pause, seed_addresses=seeds),
                          "to start its nodes") for w in self.workers[1:]], consumeErrors=True)
        return t0

    @defer.inlineCallbacks
    def shutdown(self):
        """Stop every worker (politely, then by SIGKILL); fires when all have exited."""
        for worker in self.workers:
            if worker.exited is None:
                worker.request("shutdown").addErrback(lambda f: None)
        for worker in self.workers:
            ended = worker.ended
            if worker.exited is None:
                timer = self.reactor.callLater(EXIT_TIMEOUT, self._kill, worker)
                yield ended
                if timer.active():
                    timer.cancel()

    def _kill(self, worker):
        try:
            worker.transport.signalProcess("KILL")
        except error.ProcessExitedAlready:
            pass

    # -- measurements ----------------------------------------------------------------

    def joined(self, timeout):
        """Fires with the time every node in every worker first saw all N alive, or None."""
        return self._wait(lambda: max(self.all_alive.values())
                          if len(self.all_alive) == len(self.workers) else None, timeout)

    @defer.inlineCallbacks
    def kill(self, name, timeout):
        """Crash C{name} in its worker; wait until every live node anywhere declares it dead."""
        worker = self.owner[name]
        reply = yield self._timeout(worker.request("kill", name=name), "to kill")
        killed_at = reply["killed_at"]

        def done():
            events = self.dead_at_all.get(name, {})
            if len(events) == len(self.workers):
                return events
            return None

        events = yield self._wait(done, timeout)
        events = events or self.dead_at_all.get(name, {})
        complete = len(events) == len(self.workers)
        lasts = [e["t"] for e in events.values()]
        firsts = [e["first"] for e in events.values()]
        return KillResult(
            victim=name, killed_at=killed_at, all_declared=complete,
            last_s=round(max(lasts) - killed_at, 3) if complete and lasts else None,
            first_s=round(min(firsts) - killed_at, 3) if firsts else None,
            per_worker={i: round(e["t"] - killed_at, 3) for i, e in events.items()})

    @defer.inlineCallbacks
    def status(self):
        """Every worker's status, and the cluster's: the fewest members any live node sees alive."""
        replies = yield self._all("status")
        return {"live": sum(r["live"] for r in replies),
                "min_alive": min(r["min_alive"] for r in replies),
                "max_alive": max(r["max_alive"] for r in replies),
                "workers": replies}

    @defer.inlineCallbacks
    def counters(self):
        """Peer totals, CPU and RSS summed over the workers (and each worker's own)."""
        replies = yield self._all("counters")
        totals = {}
        for reply in replies:
            for key, value in reply["totals"].items():
                if isinstance(value, dict):  # counts by reason
                    into = totals.setdefault(key, {})
                    for reason, n in value.items():
                        into[reason] = into.get(reason, 0) + n
                else:
                    totals[key] = totals.get(key, 0) + value
        declared = {}
        for reply in replies:
            for state, per_subject in reply["declared"].items():
                bucket = declared.setdefault(state, {})
                for subject, n in per_subject.items():
                    bucket[subject] = bucket.get(subject, 0) + n
        return {"totals": totals, "live": sum(r["live"] for r in replies),
                "cpu_s": sum(r["cpu_s"] for r in replies),
                "rss_kib": sum(r["rss_kib"] for r in replies),
                "connections": sum(r["connections"] for r in replies),
                "declared": declared,
                "per_worker": [{"cpu_s": r["cpu_s"], "rss_kib": r["rss_kib"],
                                "live": r["live"]} for r in replies]}

    def live_names(self):
        return list(self.owner)

    # -- plumbing --------------------------------------------------------------------

    def _all(self, cmd):
        return defer.gatherResults([self._timeout(w.request(cmd), f"to answer {cmd}")
                                    for w in self.workers], consumeErrors=True)

    def _event(self, worker, message):
        kind = message.get("event")
        if kind == "all_alive":
            self.all_alive.setdefault(worker.index, message["t"])
        elif kind == "dead_at_all":
            self.dead_at_all.setdefault(message["subject"], {})[worker.index] = message
        elif kind == "state":
            self.declarations.append({**message, "worker": worker.index})
        elif kind == "started":
            self.started_at[worker.index] = message["t"]
        elif kind == "error":
            self.errors.append({**message, "worker": worker.index})
        self._poke()

    def _poke(self):
        for waiter in list(self._waiters):
            waiter()

    def _wait(self, predicate, timeout):
        """Fire with predicate()'s first non-None value (checked on each event), or None."""
        result = predicate()
        if result is not None:
            return defer.succeed(result)
        d = defer.Deferred()

        def check():
            value = predicate()
            if value is not None and not d.called:
                finish(value)

        def finish(value):
            self._waiters.remove(check)
            if timer.active():
                timer.cancel()
            d.callback(value)

        timer = self.reactor.callLater(timeout, lambda: d.called or finish(None))
        self._waiters.append(check)
        return d

    def _timeout(self, d, what):
        def timed_out(result, timeout):
            raise WorkerFailed(f"a worker took over {timeout:g} s {what}")

        return d.addTimeout(REPLY_TIMEOUT, self.reactor, onTimeoutCancel=timed_out)
