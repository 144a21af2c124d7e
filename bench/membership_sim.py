"""Membership simulation benchmark: many real cores on the simulated network.

For each N: a formed cluster runs for the given simulated time; every
``crash_every`` seconds one node is killed (its connections close) and
restarted ``restart_after`` seconds later under the same name (a new
generation); one node goes silent without closing its connections (a pulled
cable) half way through. Measured: messages per node per second in steady
state, the time from each crash until every live node has declared the node
dead, false declarations (live nodes declared dead), wall and CPU time, peak
memory. Also: join convergence of N nodes starting together through 3 seeds.

    python bench/membership_sim.py                      # the full run (10,000 nodes, 600 s)
    python bench/membership_sim.py --sizes 64 256 --duration 120 --join 64

Results go to bench/results/membership_sim.json (with the machine).
"""

import argparse
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time

from clsd.config.membership import MembershipConfig
from rig.sim.cluster import SimCluster

HERE = os.path.dirname(os.path.abspath(__file__))


def percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def machine():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "platform": platform.platform(), "python": platform.python_version(),
        "implementation": platform.python_implementation(), "cpus": os.cpu_count(),
        "cpu_model": model, "load_average_at_start": os.getloadavg(),
    }


def run_steady(n, duration, seed, crash_every, restart_after, progress):
    """One formed cluster of n nodes for `duration` simulated seconds."""
    wall0, cpu0 = time.time(), time.process_time()
    cluster = SimCluster(n, MembershipConfig(), seed=seed)
    build = time.time() - wall0
    warmup = 10.0
    cluster.run_for(warmup)
    # The cluster built and its links up, most objects live to the end: keep
    # the collector's full passes from walking them again and again.
    gc.freeze()
    # Steady state: no faults yet.
    window = min(30.0, duration / 4)
    before = cluster.messages
    cluster.run_for(window)
    steady_rate = (cluster.messages - before) / n / window
    crashes = []  # (name, generation, time, kind)
    rng = cluster.rng
    silent = None
    next_crash = cluster.now + 1.0
    end = warmup + duration
    last_report = time.time()
    while cluster.now < end:
        step_to = min(end, next_crash)
        cluster.run_until(step_to)
        if cluster.now >= next_crash and cluster.now < end - 20.0:
            victim = None
            for _ in range(100):
                candidate = cluster.nodes[rng.randrange(n)]
                if candidate.alive and candidate.joined_at is not None and candidate.name != silent:
                    victim = candidate
                    break
            if victim is not None:
                if silent is None and cluster.now >= warmup + duration / 2:
                    silent = victim.name
                    cluster.set_loss(victim.name, 1.0)
                    crashes.append((victim.name, victim.generation, cluster.now, "silent"))
                    # Reconnect the cable after a while: it refutes and is back.
                    cluster.scheduler.at(cluster.now + restart_after, cluster.set_loss,
                                         victim.name, 0.0)
                else:
                    cluster.crash(victim.name)
                    crashes.append((victim.name, victim.generation, cluster.now, "crash"))
                    cluster.scheduler.at(cluster.now + restart_after, cluster.restart, victim.name)
        if cluster.now >= next_crash:
            # Also in the last 20 s, when no fault is injected: a crash time
            # falling there must not stop the clock.
            next_crash += crash_every
        if progress and time.time() - last_report > 30:
            last_report = time.time()
            print(f"  n={n} t={cluster.now:.0f}/{end:.0f} wall={time.time() - wall0:.0f}s "
                  f"events={cluster.scheduler.events_run}", file=sys.stderr, flush=True)
    # Settle: no new faults, then every view must agree.
    settle = 0.0
    while not cluster.converged() and settle < 60.0:
        cluster.run_for(5.0)
        settle += 5.0
    wall = time.time() - wall0
    cpu = time.process_time() - cpu0
    # Detection: from the failure until every node that was live throughout
    # had declared that life of the node dead.
    deaths = {}
    for when, observer, member in cluster.deaths:
        deaths.setdefault((member.name, member.generation), {}).setdefault(observer, when)
    crashed = {(name, generation) for name, generation, _, _ in crashes}
    detection = {"crash": [], "silent": []}
    first = {"crash": [], "silent": []}
    incomplete = 0
    for name, generation, at, kind in crashes:
        seen = deaths.get((name, generation), {})
        expected = [node.name for node in cluster.nodes
                    if node.alive and node.name != name and node.joined_at is not None
                    and node.joined_at <= at and node.name != silent]
        times = [seen[o] - at for o in expected if o in seen]
        if len(times) < len(expected):
            incomplete += 1
            continue
        detection[kind].append(max(times))
        first[kind].append(min(times))
    # The silent node itself, cut off from everyone, declares others dead: its
    # view is the failed one, not a false declaration about a live node.
    false = [(when, observer, member.name) for when, observer, member in cluster.deaths
             if (member.name, member.generation) not in crashed and observer != silent]
    return {
        "n": n, "simulated_seconds": duration + warmup, "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1), "build_seconds": round(build, 2),
        "events": cluster.scheduler.events_run,
        "messages_per_node_per_second_steady": round(steady_rate, 3),
        "messages_per_node_per_second_overall": round(
            cluster.messages / n / cluster.now, 3),
        "messages_dropped": cluster.dropped,
        "failures": len(crashes),
        "crash_detection_all_nodes_seconds": summary(detection["crash"]),
        "crash_detection_first_node_seconds": summary(first["crash"]),
        "silent_failure_detection_all_nodes_seconds": summary(detection["silent"]),
        "failures_not_seen_by_all": incomplete,
        "false_declarations": len(false),
        "false_declaration_examples": false[:5],
        "converged_after_settling_seconds": settle if cluster.converged() else None,
    }


def summary(values):
    if not values:
        return None
    return {"count": len(values), "min": round(min(values), 3),
            "median": round(statistics.median(values), 3),
            "p99": round(percentile(values, 0.99), 3), "max": round(max(values), 3)}


def run_join(n, seed, limit=300.0):
    wall0, cpu0 = time.time(), time.process_time()
    cluster = SimCluster(n, MembershipConfig(), seed=seed, formed=False, stagger=1.0)
    converged = None
    while cluster.now < limit:
        cluster.run_for(0.5)
        if all(node.joined_at is not None for node in cluster.nodes) and cluster.converged():
            converged = cluster.now
            break
    return {
        "n": n, "all_joined_and_converged_at_seconds": converged,
        "messages_per_node": round(cluster.messages / n, 1),
        "wall_seconds": round(time.time() - wall0, 1),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "false_declarations": len(cluster.deaths),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256, 1024, 4096, 10000])
    parser.add_argument("--duration", type=float, default=600.0,
                        help="simulated seconds for the largest size (others: --small-duration)")
    parser.add_argument("--small-duration", type=float, default=300.0)
    parser.add_argument("--crash-every", type=float, default=30.0)
    parser.add_argument("--restart-after", type=float, default=15.0)
    parser.add_argument("--join", type=int, nargs="*", default=[64, 256, 1024])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", default=os.path.join(HERE, "results", "membership_sim.json"))
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    result = {"benchmark": "membership_sim", "machine": machine(), "config": _config_dict(),
              "note": "figures from a shared, busy 2-core machine: re-run on a quiet one",
              "steady": [], "join": []}
    largest = max(args.sizes)
    for n in args.sizes:
        duration = args.duration if n == largest else min(args.small_duration, args.duration)
        print(f"steady n={n} for {duration:.0f} simulated s ...", file=sys.stderr, flush=True)
        row = run_steady(n, duration, args.seed, args.crash_every, args.restart_after,
                         not args.quiet)
        print(json.dumps(row), file=sys.stderr, flush=True)
        result["steady"].append(row)
        _write(args.output, result)
    for n in args.join:
        print(f"join n={n} ...", file=sys.stderr, flush=True)
        row = run_join(n, args.seed)
        print(json.dumps(row), file=sys.stderr, flush=True)
        result["join"].append(row)
        _write(args.output, result)
    result["machine"]["load_average_at_end"] = os.getloadavg()
    result["machine"]["max_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    _write(args.output, result)
    print(f"wrote {args.output}", file=sys.stderr)


def _config_dict():
    import attrs
    return attrs.asdict(MembershipConfig())


def _write(path, result):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(result, f, indent=2)
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
