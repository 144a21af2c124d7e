"""A worker process hosting some of a cluster's real nodes, driven over its stdin/stdout.

One Python process runs one reactor thread, so one process cannot host
1024 nodes on a machine with several cores. L{rig.multiproc} starts
several of these workers, each hosting a contiguous share of the nodes with
L{MultiNodeHost} (own addresses, certificates from one shared CA), and
measures across them.

The control protocol is one JSON object per line. Commands (stdin) carry
C{"cmd"} and, if the coordinator wants a reply, an C{"id"} that the reply
echoes:

  prepare   build the nodes (certificates, listeners not yet open):
            count, first_index, total, first_address, seeds (local seed
            count), authority {key, certificate} (PEM), declarations (bool:
            stream every suspect/dead change), config (membership overrides)
  start     open the listeners and join, in batches of C{batch} every
            C{pause} s; through C{seed_addresses} if given (nodes in another
            process), else through this host's first C{seeds} nodes. The
            reply carries the addresses of those first nodes.
  status    live nodes, the fewest and most members any of them sees alive
  kill      crash node C{name} (sockets aborted, no goodbye)
  counters  peer message/byte totals, CPU seconds, RSS, declaration counts
  shutdown  crash every node, wait for the sockets to close, exit

Events (stdout) without an C{"id"}: C{ready} (the reactor runs), C{started}
(every node started), C{all_alive} (every hosted node sees C{total} alive:
the first time only), C{dead_at_all} (every live hosted node other than the
subject sees C{subject} dead, removed or left: once per subject), and with
C{declarations} one C{state} event per change of any member into suspect,
dead, removed or left.

Every event carries C{t}, the C{time.monotonic()} of the moment it became
true (the membership event's own time, not the moment it was written). On
Linux C{time.monotonic} is C{CLOCK_MONOTONIC}, one clock for the whole
system, so times from different processes on one machine are comparable;
that is what lets the coordinator say "the last node in any process saw it
at t". (On other systems that is not promised; the coordinator then measures
only on this machine's Linux.)

The worker exits when its stdin closes, so a coordinator that dies (even by
kill -9) takes its workers with it.
"""

import collections
import gc
import json
import os
import resource
import sys
import time

import attrs

from twisted.internet import defer

# No reactor is installed by these imports: main() installs epoll first.
from clsd.config.membership import MembershipConfig
from rig.multinode import MultiNodeHost, ViewTracker

#: Member states that count as "declared failed".
DEAD_STATES = ("dead", "removed", "left")
#: States whose every entry is a declaration worth counting.
DECLARED_STATES = ("suspect",) + DEAD_STATES


def rss_kib():
    """This process's resident memory (Linux /proc; elsewhere its peak, from getrusage)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


class ReportingTracker(ViewTracker):
    """A L{ViewTracker} that tells the coordinator when cluster-wide facts become true here.

    "Every hosted node sees all N alive" is kept as a count of the observers
    that do (O(1) per event), so the join's N x N membership events cost no
    scan each.
    """

    def __init__(self, monotonic, report):
        super().__init__(monotonic)
        self._report = report
        #: The cluster's size: "all alive" means this many.
        self.expected = None
        self.full = 0
        self.all_alive_at = None
        #: Stream every declaration as a C{state} event.
        self.declarations = False
        self.counts = {state: collections.Counter() for state in DECLARED_STATES}
        self.dead_reported = set()

    def _member(self, observer, subject, state, reason=None):
        view = self.views.get(observer)
        if view is None:
            return
        before = self.alive_counts[observer]
        old = view.get(subject)
        super()._member(observer, subject, state, reason)
        at = self.changed_at[(observer, subject)][1]
        after = self.alive_counts[observer]
        expected = self.expected
        if expected is not None:
            if before < expected <= after:
                self.full += 1
            elif after < expected <= before:
                self.full -= 1
            if self.all_alive_at is None and self.full >= len(self.views):
                self.all_alive_at = at
                self._report({"event": "all_alive", "t": at, "nodes": len(self.views)})
        if state in DECLARED_STATES and state != old:
            self.counts[state][subject] += 1
            if self.declarations:
                self._report({"event": "state", "observer": observer, "subject": subject,
                              "state": state, "previous": old, "reason": reason, "t": at})
        if state in DEAD_STATES:
            self.check_dead(subject)

    def forget(self, observer):
        if self.expected is not None and self.alive_counts.get(observer, 0) >= self.expected:
            self.full -= 1
        super().forget(observer)

    def check_dead(self, subject):
        """Report once when every live hosted node but C{subject} sees it failed."""
        if subject in self.dead_reported:
            return
        times = []
        for observer, view in self.views.items():
            if observer == subject:
                continue
            if view.get(subject) not in DEAD_STATES:
                return
            times.append(self.changed_at[(observer, subject)][1])
        self.dead_reported.add(subject)
        now = self._monotonic()
        self._report({"event": "dead_at_all", "subject": subject, "observers": len(times),
                      "t": max(times, default=now), "first": min(times, default=now)})


def _authority(fields):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from clsd.certs.authority import KeyAndCertificate

    return KeyAndCertificate(
        key=serialization.load_pem_private_key(fields["key"].encode("ascii"), None),
        certificate=x509.load_pem_x509_certificate(fields["certificate"].encode("ascii")))


class WorkerControl:
    """Commands in, events out; a thin shell around one L{MultiNodeHost}."""

    def __init__(self, reactor, write, monotonic=time.monotonic):
        self.reactor = reactor
        self._write = write
        self._monotonic = monotonic
        self.host = None
        self.tracker = None

    def report(self, message):
        self._write(json.dumps(message, separators=(",", ":")))

    def command(self, message):
        """Run one command; its reply (if it has an id) may come later."""
        request_id = message.get("id")
        name = message.get("cmd")
        handler = getattr(self, f"do_{name}", None) if isinstance(name, str) else None
        if handler is None:
            d = defer.fail(ValueError(f"unknown command {name!r}"))
        else:
            d = defer.maybeDeferred(handler, message)

        def reply(result):
            if request_id is not None:
                self.report({"id": request_id, "ok": True, "t": self._monotonic(),
                             **(result or {})})

        def failed(failure):
            if request_id is not None:
                self.report({"id": request_id, "ok": False, "error": failure.getErrorMessage()})
            else:
                self.report({"event": "error", "cmd": name, "error": failure.getErrorMessage()})

        d.addCallbacks(reply, failed)
        return d

    def do_prepare(self, message):
        if self.host is not None:
            raise ValueError("prepare: already prepared")
        config = attrs.evolve(MembershipConfig(), **message.get("config", {}))
        self.tracker = ReportingTracker(self._monotonic, self.report)
        self.tracker.declarations = bool(message.get("declarations"))
        total = int(message["total"])
        self.host = MultiNodeHost(
            self.reactor, int(message["count"]), config=config,
            first_address=message["first_address"], monotonic=self._monotonic,
            seeds=int(message.get("seeds", 1)), first_index=int(message["first_index"]),
            total=total, authority=_authority(message["authority"]), tracker=self.tracker)
        self.tracker.expected = total
        return {"nodes": [[n.name, n.address] for n in self.host.nodes],
                "file_limit": self.host.file_limit}

    def do_start(self, message):
        host = self._host()
        seeds = [tuple(a) for a in message.get("seed_addresses") or ()]
        if seeds:
            host.join_through(seeds)
        d = host.start(batch=message.get("batch"), pause=float(message.get("pause", 0.0)))
        d.addCallback(lambda _: self.report({"event": "started", "t": self._monotonic()}))
        local = int(message.get("seeds", 1))
        started = [n for n in host.nodes[:local] if n.membership is not None]
        return {"seed_addresses": [list(n.network.advertise) for n in started]}

    def do_status(self, message):
        tracker = self._host().tracker
        counts = list(tracker.alive_counts.values())
        laggard = min(tracker.alive_counts, key=tracker.alive_counts.get, default=None)
        node = self.host.node(laggard) if laggard is not None else None
        core = node.core if node is not None and node.membership is not None else None
        stats = collections.Counter()
        for n in self.host.live():
            if n.core is not None:
                stats.update(n.core.stats)
                stats["suspects_now"] += n.core.suspect_count
        # The worst stall of this process since the last status, from the
        # host's lag monitor (a saturated process delays every node it hosts).
        lag = self.host.lag.take_worst()
        return {"live": len(counts), "min_alive": min(counts, default=0),
                "core_stats": dict(stats), "reactor_lag_max_s": round(lag, 3),
                # the node that sees fewest: why it lags (for progress reports)
                "laggard": None if core is None else {
                    "name": laggard, "phase": core.phase, "members": len(core),
                    "links": len(core._links), "dialing": len(node.network.dialing()),
                    "dial_failures": [d.failures for d in node.network._dialers.values()],
                    "closed": dict(node.network.stats.closed)},
                "max_alive": max(counts, default=0),
                "all_alive_at": getattr(tracker, "all_alive_at", None),
                "connections": self.host.connection_count()}

    def do_kill(self, message):
        host = self._host()
        name = message["name"]
        node = next((n for n in host.nodes if n.name == name), None)
        if node is None:
            raise ValueError(f"kill: no node {name!r} here")
        at = self._monotonic()
        node.crash()
        # The victim's own view no longer counts: a subject it alone had
        # not yet declared failed may now be failed at every live node here.
        for subject in list(self.tracker.counts["dead"]):
            self.tracker.check_dead(subject)
        return {"name": name, "killed_at": at}

    def do_counters(self, message):
        host = self._host()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {"totals": host.peer_totals(), "live": len(host.live()),
                "cpu_s": usage.ru_utime + usage.ru_stime, "rss_kib": rss_kib(),
                "connections": host.connection_count(),
                "declared": {state: dict(c) for state, c in self.tracker.counts.items()}}

    def do_shutdown(self, message):
        if self.host is None:
            return None
        return self.host.shutdown().addCallback(lambda _: None)

    def _host(self):
        if self.host is None:
            raise ValueError("not prepared")
        return self.host


#: A worker holds hundreds of nodes in one heap, so Python's full (gen 2)
#: collections scan hundreds of nodes' objects: at 512 nodes in 2 workers,
#: about 20 of them per worker during the join, 0.34 s each (a stall of every
#: node hosted), 15 % of the CPU with gen 0 and 1. A daemon hosting one node
#: has a heap hundreds of times smaller. Rarer collections keep that cost
#: out of the measurement (cycles are still collected, later).
GC_THRESHOLDS = (50_000, 20, 100)


def main():
    gc.set_threshold(*GC_THRESHOLDS)
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor, stdio
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate
    from twisted.logger import globalLogBeginner, textFileLogObserver
    from twisted.protocols.basic import LineOnlyReceiver

    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.error)])],
        redirectStandardIO=False)

    class Lines(LineOnlyReceiver):
        delimiter = b"\n"
        MAX_LENGTH = 1 << 20

        def connectionMade(self):
            self.control = WorkerControl(reactor, self.send)
            reactor.callWhenRunning(self.control.report,
                                    {"event": "ready", "pid": os.getpid(), "t": time.monotonic()})

        def send(self, line):
            self.transport.write(line.encode("utf-8") + b"\n")

        def lineReceived(self, line):
            try:
                message = json.loads(line)
                if not isinstance(message, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                self.control.report({"event": "error", "error": f"bad command line: {e}"})
                return
            d = self.control.command(message)
            if message.get("cmd") == "shutdown":
                d.addBoth(lambda _: reactor.callLater(0, stop))

        def connectionLost(self, reason):
            # the coordinator is gone (or closed our stdin): so are we
            stop()

    stopping = []

    def stop():
        if not stopping and reactor.running:
            stopping.append(True)
            reactor.stop()

    stdio.StandardIO(Lines(), reactor=reactor)
    profile_to = os.environ.get("CLSD_WORKER_PROFILE")
    if profile_to:
        # For finding where a large join spends its time: one stats file per worker.
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor},
                        f"{profile_to}.{os.getpid()}")
    else:
        reactor.run()


if __name__ == "__main__":
    main()
