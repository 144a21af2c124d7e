"""Membership at scale: N real CLSD nodes in P processes, and Serf side by side.

With --procs 1, for each N a child process (a fresh epoll reactor) hosts N
real nodes (rig.multinode: own 127.0.x.y, own certificate, mutual
TLS). With --procs P > 1 (the default: one per core) this process
coordinates P worker processes (rig.multiproc), each hosting N/P of
the nodes; every figure is then taken across the processes, from the
workers' monotonic event times (one system-wide clock on Linux). Measures:

  join      start until every node sees all N alive;
  steady    messages and bytes per node per second (peer counters) over a
            window after the overlay has settled, and the process's CPU;
  kill      per crashed node (sockets aborted, no goodbye), time until
            every live node has declared it dead (the last one's event);
  rss       the process's resident memory.

For N in --serf, the same join and kill measures for Serf agents (LAN
defaults) bound to 127.0.3.x, joined to the first; kill is SIGKILL. Serf is
observed by polling ``serf members`` on every agent, so its figures carry the
polling round's duration as resolution (reported).

    .venv/bin/python bench/membership_scale.py                    # 64, 256, 1024; serf 64, 128
    .venv/bin/python bench/membership_scale.py --nodes 64,128 --serf 64 --kills 5
    .venv/bin/python bench/membership_scale.py --nodes 1024 --procs 2 --serf '' \
        --batch 32 --pause 0.5 --output membership_scale_mp_1024.json

Every Serf agent runs in a session of its own and is killed at the end,
also on failure or Ctrl-C.
"""

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402

SERF_FIRST_ADDRESS = "127.0.3.1"
SERF_PORT = 7946
SERF_RPC_PORT = 7373
#: A ``serf members`` call that hangs must not stall the whole run.
MEMBERS_TIMEOUT = 10.0


def record_kills(result, kills):
    """Store the kills and the distribution of their "dead at all" times in C{result}."""
    result["kills"] = kills
    done = [k["last_s"] for k in kills if k["last_s"] is not None]
    if done:
        result["kill_all_declared_s"] = {
            "count": len(done), "p50": h.percentile(done, 0.5),
            "p99": h.percentile(done, 0.99), "max": max(done)}


# ------------------------------------------------------------------- CLSD child

def run_child(args):
    """Host N nodes on this process's reactor; print one JSON result line."""
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor, task
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate
    from twisted.logger import globalLogBeginner, textFileLogObserver

    from rig.multinode import MultiNodeHost

    globalLogBeginner.beginLoggingTo([FilteringLogObserver(
        textFileLogObserver(sys.stderr),
        [LogLevelFilterPredicate(defaultLogLevel=LogLevel.error)])],
        redirectStandardIO=False)
    n = args.child
    result = {"implementation": "clsd", "nodes": n}
    rng = random.Random(args.seed)

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def wait(predicate, timeout, step):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                return False
            yield sleep(step)
        return True

    profiler = None
    if args.profile:
        import cProfile
        profiler = cProfile.Profile()

    @defer.inlineCallbacks
    def main():
        host = MultiNodeHost(reactor, n)
        result["file_limit"] = host.file_limit
        if profiler:
            profiler.enable()
        cpu0 = time.process_time()
        t0 = time.monotonic()
        yield host.start(batch=args.batch, pause=args.pause)
        joined = yield wait(host.all_joined, args.join_timeout, 0.05)
        result["join_s"] = round(time.monotonic() - t0, 3) if joined else None
        result["join_cpu_s"] = round(time.process_time() - cpu0, 2)
        result["min_alive_seen"] = host.tracker.min_alive()
        if not joined:
            result["error"] = (f"not all joined within {args.join_timeout:g} s: the node "
                               f"seeing fewest sees {host.tracker.min_alive()} of {n}")
        else:
            yield sleep(args.settle)
            before, cpu_a, t_a = host.peer_totals(), time.process_time(), time.monotonic()
            yield sleep(args.window)
            after, cpu_b, t_b = host.peer_totals(), time.process_time(), time.monotonic()
            span = t_b - t_a
            live = len(host.live())
            result["steady"] = {
                "window_s": round(span, 2),
                "messages_out_per_node_s": round((after["messages_out"] - before["messages_out"]) / live / span, 2),
                "messages_in_per_node_s": round((after["messages_in"] - before["messages_in"]) / live / span, 2),
                "bytes_out_per_node_s": round((after["bytes_out"] - before["bytes_out"]) / live / span, 1),
                "cpu_percent_of_core": round(100 * (cpu_b - cpu_a) / span, 1),
                "connections": host.connection_count() // 2,
            }
            kills = []
            candidates = [node for node in host.nodes[1:]]
            rng.shuffle(candidates)
            for victim in candidates[:args.kills]:
                killed = time.monotonic()
                victim.crash()
                done = yield wait(lambda: host.declared_dead_by_all(victim.name),
                                  args.kill_timeout, 0.02)
                times = [at - killed for (obs, subj), (state, at) in host.tracker.changed_at.items()
                         if subj == victim.name and state == "dead" and at >= killed]
                kills.append({"victim": victim.name, "all_declared": done,
                              "declared_by": len(times), "live_observers": len(host.live()),
                              "last_s": round(max(times), 3) if done and times else None,
                              "first_s": round(min(times), 3) if times else None})
                yield sleep(args.between)
            record_kills(result, kills)
        if profiler:
            profiler.disable()
            import io
            import pstats
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
            result["profile_top"] = out.getvalue().splitlines()[-34:]
        result["cpu_s_total"] = round(time.process_time(), 2)
        result["rss_mib"] = round(h.rss_kib(os.getpid()) / 1024, 1)
        yield host.shutdown()

    def finish(_):
        print("RESULT " + json.dumps(result), flush=True)
        reactor.stop()

    def failed(f):
        result["error"] = f.getErrorMessage()
        f.printTraceback(file=sys.stderr)

    reactor.callWhenRunning(lambda: main().addErrback(failed).addBoth(finish))
    reactor.run()


def clsd_run(args, n):
    cmd = [sys.executable, __file__, "--child", str(n), "--batch", str(args.batch),
           "--pause", str(args.pause), "--join-timeout", str(args.join_timeout),
           "--settle", str(args.settle), "--window", str(args.window),
           "--kills", str(args.kills), "--kill-timeout", str(args.kill_timeout),
           "--between", str(args.between), "--seed", str(args.seed)]
    if args.profile:
        cmd.append("--profile")
    limit = args.join_timeout + args.settle + args.window + args.kills * (
        args.kill_timeout + args.between) + 120
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    finally:
        if proc.poll() is None:
            h.kill_session(proc.pid)
            proc.wait()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    return {"implementation": "clsd", "nodes": n, "error": f"child exited {proc.returncode}"}


# ------------------------------------------------------- CLSD in P worker processes

def run_in_reactor(function, *args):
    """Run C{function(reactor, *args)} (returning a Deferred) on a fresh epoll reactor.

    The reactor runs once per process, so every multi-process measurement
    of a bench invocation goes through one call. Ctrl-C stops the reactor;
    the workers then see their stdin close and exit.
    """
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor
    from twisted.python.failure import Failure

    outcome = []

    def go():
        d = defer.maybeDeferred(function, reactor, *args)
        d.addBoth(outcome.append)
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(go)
    reactor.run()
    if not outcome:
        raise KeyboardInterrupt("reactor stopped")
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


def clsd_mp_runs(reactor, args, counts):
    """Every N of C{counts} in turn, each in C{args.procs} fresh worker processes."""
    from twisted.internet import defer

    @defer.inlineCallbacks
    def all_runs():
        results = []
        for n in counts:
            print(f"clsd N={n} in {min(args.procs, n)} processes ...", flush=True)
            result = yield clsd_mp_run(reactor, args, n)
            results.append(result)
            print(table([result]).splitlines()[1], flush=True)
        return results

    return all_runs()


def clsd_mp_run(reactor, args, n):
    from twisted.internet import defer, task

    from rig.multiproc import MultiProcessHost

    rng = random.Random(args.seed)
    result = {"implementation": "clsd", "nodes": n, "procs": min(args.procs, n),
              "seeds": args.seeds}

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def report_progress(host, t0):
        """Print how far the join got: fewest and most members seen, deaths, CPU per worker."""
        status = yield host.status()
        counters = yield host.counters()
        deaths = sum(counters["declared"].get("dead", {}).values())
        result.setdefault("join_progress", []).append({
            "t_s": round(time.monotonic() - t0, 1), "min_alive": status["min_alive"],
            "max_alive": status["max_alive"], "dead_declarations": deaths,
            "connections_made": counters["totals"]["connections"],
            "connections_ended": counters["totals"]["closed"],
            "cpu_s": [w["cpu_s"] for w in counters["per_worker"]],
            "reactor_lag_max_s": [w.get("reactor_lag_max_s") for w in status["workers"]]})
        cpu = " ".join(f"{w['cpu_s']:.0f}" for w in counters["per_worker"])
        print(f"  {time.monotonic() - t0:6.1f} s: sees {status['min_alive']}.."
              f"{status['max_alive']} alive, {deaths} dead declarations, "
              f"{counters['connections'] // 2} connections (made {counters['totals']['connections']},"
              f" ended {counters['totals']['closed']}), CPU s per worker {cpu}, reactor lag max "
              + " ".join(f"{w.get('reactor_lag_max_s', 0):.1f}" for w in status["workers"])
              + " s; fewest: "
              + ", ".join(str(w.get("laggard")) for w in status["workers"])
              + "; core stats: " + ", ".join(str(w.get("core_stats")) for w in status["workers"]),
              flush=True)

    @defer.inlineCallbacks
    def main():
        host = MultiProcessHost(reactor, n, args.procs, seeds=args.seeds,
                                config=membership_overrides(args.set),
                                declarations=args.declarations)
        try:
            yield host.spawn()
            result["file_limit"] = host.file_limit
            t0 = yield host.start(batch=args.batch, pause=args.pause)
            progress = task.LoopingCall(report_progress, host, t0)
            if args.progress:
                progress.start(args.progress, now=False)
            try:
                joined = yield host.joined(args.join_timeout)
            finally:
                if progress.running:
                    progress.stop()
            after_join = yield host.counters()
            result["join_s"] = round(joined - t0, 3) if joined is not None else None
            result["join_cpu_s"] = round(after_join["cpu_s"], 2)
            status = yield host.status()
            result["min_alive_seen"] = status["min_alive"]
            if joined is None:
                result["error"] = (f"not all joined within {args.join_timeout:g} s: the node "
                                   f"seeing fewest sees {status['min_alive']} of {n}")
                return
            yield sleep(args.settle)
            before = yield host.counters()
            t_a = time.monotonic()
            yield sleep(args.window)
            after = yield host.counters()
            span = time.monotonic() - t_a
            live = after["live"]

            def rate(key):
                return (after["totals"][key] - before["totals"][key]) / live / span

            result["steady"] = {
                "window_s": round(span, 2),
                "messages_out_per_node_s": round(rate("messages_out"), 2),
                "messages_in_per_node_s": round(rate("messages_in"), 2),
                "bytes_out_per_node_s": round(rate("bytes_out"), 1),
                # all workers together, in % of one core (can exceed 100)
                "cpu_percent_of_core": round(100 * (after["cpu_s"] - before["cpu_s"]) / span, 1),
                "cpu_percent_of_core_per_process": [
                    round(100 * (a["cpu_s"] - b["cpu_s"]) / span, 1)
                    for a, b in zip(after["per_worker"], before["per_worker"])],
                "connections": after["connections"] // 2,
            }
            kills = []
            candidates = host.live_names()[1:]
            rng.shuffle(candidates)
            for victim in candidates[:args.kills]:
                k = yield host.kill(victim, args.kill_timeout)
                kills.append({"victim": k.victim, "all_declared": k.all_declared,
                              "last_s": k.last_s, "first_s": k.first_s,
                              "process": host.owner[victim].index,
                              "last_s_per_process": k.per_worker,
                              **last_declaration(host.declarations, victim)})
                yield sleep(args.between)
            record_kills(result, kills)
            end = yield host.counters()
            result["cpu_s_total"] = round(end["cpu_s"], 2)
            result["rss_mib"] = round(end["rss_kib"] / 1024, 1)
            result["rss_mib_per_process"] = [round(w["rss_kib"] / 1024, 1)
                                             for w in end["per_worker"]]
            if host.errors:
                result["worker_errors"] = host.errors[:10]
        finally:
            yield host.shutdown()

    def failed(f):
        result["error"] = f.getErrorMessage()
        f.printTraceback(file=sys.stderr)

    return main().addErrback(failed).addCallback(lambda _: result)


# ------------------------------------------------------------------------- Serf

class SerfCluster:
    """N serf agents, each in a session of its own, on 127.0.3.x."""

    def __init__(self, n, workdir):
        from rig.multinode import loopback_addresses

        self.addresses = loopback_addresses(n, SERF_FIRST_ADDRESS)
        self.names = [f"s{i:04d}" for i in range(n)]
        self.workdir = workdir
        self.procs = {}

    def start(self, name, address):
        first = self.addresses[0]
        cmd = ["serf", "agent", f"-node={name}", f"-bind={address}:{SERF_PORT}",
               f"-rpc-addr={address}:{SERF_RPC_PORT}"]
        if address != first:
            # -retry-join: a plain -join gives up if the first agent is not
            # listening yet, and the agent then runs alone.
            cmd += [f"-retry-join={first}:{SERF_PORT}", "-retry-interval=1s"]
        log = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        self.procs[name] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()

    def members(self, address, status):
        try:
            out = subprocess.run(["serf", "members", f"-rpc-addr={address}:{SERF_RPC_PORT}",
                                  f"-status={status}"], capture_output=True, text=True,
                                 timeout=MEMBERS_TIMEOUT)
        except subprocess.TimeoutExpired:
            return []
        return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]

    def kill(self, name):
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def cpu_and_rss(self):
        cpu = rss = 0
        for proc in self.procs.values():
            if proc.poll() is None:
                cpu += h.cpu_seconds(proc.pid)
                rss += h.rss_kib(proc.pid)
        return cpu, rss

    def stop(self):
        for proc in self.procs.values():
            h.kill_session(proc.pid)
            proc.wait()


def serf_run(args, n):
    result = {"implementation": "serf", "nodes": n, "version": subprocess.run(
        ["serf", "version"], capture_output=True, text=True).stdout.splitlines()[0]}
    workdir = tempfile.mkdtemp(prefix="clsd-serf-bench-")
    cluster = SerfCluster(n, workdir)
    try:
        t0 = time.monotonic()
        cluster.start(cluster.names[0], cluster.addresses[0])
        h.wait_for(lambda: cluster.members(cluster.addresses[0], "alive"), 30,
                   "the first serf agent to answer", step=0.05)
        for name, address in zip(cluster.names[1:], cluster.addresses[1:]):
            cluster.start(name, address)
        pending = dict(zip(cluster.names, cluster.addresses))
        rounds = []
        while pending and time.monotonic() - t0 < args.join_timeout:
            r0 = time.monotonic()
            for name, address in list(pending.items()):
                if len(cluster.members(address, "alive")) >= n:
                    del pending[name]
            rounds.append(time.monotonic() - r0)
        result["join_s"] = round(time.monotonic() - t0, 3) if not pending else None
        result["poll_round_s"] = round(max(rounds), 3) if rounds else None
        if pending:
            result["error"] = f"{len(pending)} agents did not see all {n} alive"
            return result
        time.sleep(args.settle)
        cpu_a, _ = cluster.cpu_and_rss()
        t_a = time.monotonic()
        time.sleep(args.window)
        cpu_b, rss = cluster.cpu_and_rss()
        result["steady"] = {"cpu_percent_of_core_all_agents": round(
            100 * (cpu_b - cpu_a) / (time.monotonic() - t_a), 1)}
        result["rss_mib_all_agents"] = round(rss / 1024, 1)
        rng = random.Random(args.seed)
        candidates = cluster.names[1:]
        rng.shuffle(candidates)
        kills = []
        live = dict(zip(cluster.names, cluster.addresses))
        for victim in candidates[:args.serf_kills]:
            del live[victim]
            killed = time.monotonic()
            cluster.kill(victim)
            waiting = dict(live)
            seen = {}
            while waiting and time.monotonic() - killed < args.kill_timeout:
                for name, address in list(waiting.items()):
                    if victim in cluster.members(address, "failed"):
                        seen[name] = time.monotonic() - killed
                        del waiting[name]
            kills.append({"victim": victim, "all_declared": not waiting,
                          "last_s": round(max(seen.values()), 3) if not waiting else None,
                          "first_s": round(min(seen.values()), 3) if seen else None})
            time.sleep(args.between)
        result["kills"] = kills
        done = [k["last_s"] for k in kills if k["last_s"] is not None]
        if done:
            result["kill_all_declared_s"] = {"count": len(done), "p50": h.percentile(done, 0.5),
                                             "p99": h.percentile(done, 0.99), "max": max(done)}
        return result
    finally:
        with h.uninterruptible():
            cluster.stop()
            shutil.rmtree(workdir, ignore_errors=True)


# ------------------------------------------------------------------------- main

def table(results):
    lines = [f"{'impl':8} {'N':>5} {'join s':>8} {'dead p50 s':>10} {'dead p99 s':>10} "
             f"{'dead max':>8} {'msg/node/s':>10} {'B/node/s':>9} {'CPU %core':>9} {'RSS MiB':>8}"]
    for r in results:
        kill = r.get("kill_all_declared_s") or {}
        steady = r.get("steady") or {}
        cpu = steady.get("cpu_percent_of_core", steady.get("cpu_percent_of_core_all_agents"))
        rss = r.get("rss_mib", r.get("rss_mib_all_agents"))

        def f(v, fmt="{:.2f}"):
            return fmt.format(v) if isinstance(v, (int, float)) else "-"

        impl = r["implementation"] + (f"/{r['procs']}p" if r.get("procs") else "")
        lines.append(f"{impl:8} {r['nodes']:>5} {f(r.get('join_s')):>8} "
                     f"{f(kill.get('p50')):>10} {f(kill.get('p99')):>10} {f(kill.get('max')):>8} "
                     f"{f(steady.get('messages_out_per_node_s')):>10} "
                     f"{f(steady.get('bytes_out_per_node_s'), '{:.0f}'):>9} {f(cpu, '{:.1f}'):>9} "
                     f"{f(rss, '{:.0f}'):>8}" + (f"  ({r['error']})" if r.get("error") else ""))
    return "\n".join(lines)


def last_declaration(declarations, victim):
    """Who declared C{victim} dead last, and why (with C{--declarations})."""
    dead = [d for d in declarations if d.get("subject") == victim and d.get("state") == "dead"]
    if not dead:
        return {}
    last = max(dead, key=lambda d: d["t"])
    return {"last_observer": last["observer"], "last_reason": last.get("reason")}


def membership_overrides(settings):
    """C{--set KEY=VALUE} options as C{[membership]} overrides, each VALUE a
    TOML value, checked by the daemon's own reader (names, types, ranges,
    and the rules between settings)."""
    import tomllib

    from clsd.config.membership import parse_membership
    from clsd.config.reader import ConfigError, Table

    data = {}
    for setting in settings:
        key, _, value = setting.partition("=")
        try:
            data.update(tomllib.loads(f"{key.strip()} = {value.strip()}"))
        except tomllib.TOMLDecodeError as e:
            raise SystemExit(f"--set {setting}: not KEY=VALUE with a TOML value ({e})") from None
    table = Table(data, "membership", "--set")
    try:
        config = parse_membership(table)
        table.finish()
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    return {key: getattr(config, key) for key in data}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", default="64,256,1024", help="CLSD node counts (comma-separated)")
    p.add_argument("--serf", default="64,128", help="Serf agent counts ('' for none)")
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1,
                   help="CLSD worker processes (default: one per core; 1: the one-process host)")
    p.add_argument("--seeds", type=int, default=1,
                   help="nodes in the first process that all others join through")
    p.add_argument("--batch", type=int, default=16,
                   help="CLSD nodes started per step (in each process)")
    p.add_argument("--pause", type=float, default=0.25, help="seconds between start steps")
    p.add_argument("--join-timeout", type=float, default=120.0)
    p.add_argument("--settle", type=float, default=10.0, help="after join, before measuring")
    p.add_argument("--window", type=float, default=20.0, help="steady-state window, seconds")
    p.add_argument("--kills", type=int, default=5, help="nodes crashed one after another")
    p.add_argument("--serf-kills", type=int, default=3)
    p.add_argument("--kill-timeout", type=float, default=60.0)
    p.add_argument("--between", type=float, default=3.0, help="seconds between kills")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--progress", type=float, default=0.0,
                   help="print the join's progress this often (seconds; with --procs > 1)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the CLSD runs (with --procs 1)")
    p.add_argument("--output", default="membership_scale.json",
                   help="file name under bench/results/")
    p.add_argument("--declarations", action="store_true",
                   help="stream every suspect and dead declaration from the workers and "
                        "record who declared each killed node dead last, and why")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a [membership] setting for every CLSD node (with --procs > 1; "
                        "repeatable), e.g. --set retransmit_mult=2")
    p.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return run_child(args)
    if args.procs < 1:
        p.error("--procs must be at least 1")
    if args.set and args.procs <= 1:
        p.error("--set needs --procs > 1")
    membership_overrides(args.set)  # a bad key stops here, not in a worker
    if args.profile and args.procs > 1:
        p.error("--profile profiles the one-process host: add --procs 1")
    machine = h.machine_info()
    results = []
    with h.interrupts_as_exceptions():
        counts = [int(x) for x in args.nodes.split(",") if x]
        if args.procs > 1 and counts:
            results.extend(run_in_reactor(clsd_mp_runs, args, counts))
        for n in counts if args.procs <= 1 else ():
            print(f"clsd N={n} ...", flush=True)
            results.append(clsd_run(args, n))
            print(table(results[-1:]).splitlines()[1], flush=True)
        for n in [int(x) for x in args.serf.split(",") if x]:
            if shutil.which("serf") is None:
                results.append({"implementation": "serf", "nodes": n,
                                "error": "serf not installed (apt-get install serf)"})
                continue
            print(f"serf N={n} ...", flush=True)
            results.append(serf_run(args, n))
            print(table(results[-1:]).splitlines()[1], flush=True)
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    settings = {k: v for k, v in vars(args).items() if k not in ("child", "output")}
    path = h.write_json(args.output, {"machine": machine, "settings": settings,
                                      "results": results})
    print(table(results))
    print(f"written to {path}")


if __name__ == "__main__":
    sys.exit(main())
