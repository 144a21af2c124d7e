"""What a scrape of the status page costs the daemon, against a scrape of ``/metrics``.

Starts the demo's three-node cluster (``clsd.demo.cluster``: real ``twistd -n clsd`` daemons
on loopback addresses reserved from the rig's pool, two clusters, two supervised systems with
health checks, the status page on each metrics listener), then GETs each path of alpha's
listener many times, one request at a time, and reads the CPU time of alpha's reactor thread
(``/proc/PID/task/PID/stat``: the daemon's main thread, where every request is rendered)
before and after. The idle cost over the same time (the heartbeats, lease renewals, health
checks and the page's timeline sampler, once a second) is measured between the rounds and
subtracted. CPU ticks are 10 ms, so each path gets enough requests for a tick to be about 1 %.

    .venv/bin/python bench/status_page.py                # 5 rounds of 100 requests per path
    .venv/bin/python bench/status_page.py --requests 20  # a quick look

Writes bench/results/status_page.json and prints a table.
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from clsd.demo.cluster import METRICS_PORT, ClusterDemo  # noqa: E402
from rig.addresses import reserve  # noqa: E402

PATHS = ("/metrics", "/", "/status.json", "/history.html")
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds (user + system) of the main thread of C{pid}."""
    with open(f"/proc/{pid}/task/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def get(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read()


def measure(pid, url, requests):
    """(CPU s of the reactor thread, wall s, sizes, latencies) for C{requests} GETs."""
    latencies = []
    size = 0
    cpu0, wall0 = thread_cpu(pid), time.monotonic()
    for _ in range(requests):
        started = time.monotonic()
        size = len(get(url))
        latencies.append(time.monotonic() - started)
    return thread_cpu(pid) - cpu0, time.monotonic() - wall0, size, latencies


def idle(pid, seconds):
    cpu0, wall0 = thread_cpu(pid), time.monotonic()
    time.sleep(seconds)
    return (thread_cpu(pid) - cpu0) / (time.monotonic() - wall0)


def revision():
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=HERE, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "clsd"],
                               capture_output=True, text=True, cwd=HERE).stdout.strip()
        return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=100, help="per path and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--idle", type=float, default=3.0, help="idle seconds per round")
    parser.add_argument("--output", default=os.path.join(HERE, "results", "status_page.json"))
    args = parser.parse_args(argv)

    reservation = reserve(3)
    workdir = tempfile.mkdtemp(prefix="clsd-bench-page-")
    demo = ClusterDemo(workdir, lambda line: None, first_address=reservation.addresses[0])
    try:
        demo.start()
        pid = demo.nodes.node("alpha").pid
        base = f"http://{demo.nodes.address('alpha')}:{METRICS_PORT}"
        for path in PATHS:  # warm up (imports, first render)
            get(base + path)
        cpu = {p: 0.0 for p in PATHS}
        wall = {p: 0.0 for p in PATHS}
        latencies = {p: [] for p in PATHS}
        sizes = {}
        idle_rates = []
        for _ in range(args.rounds):
            idle_rates.append(idle(pid, args.idle))
            for path in PATHS:
                c, w, size, lat = measure(pid, base + path, args.requests)
                cpu[path] += c
                wall[path] += w
                latencies[path] += lat
                sizes[path] = size
        idle_rate = statistics.median(idle_rates)
        n = args.requests * args.rounds
        results = {}
        for path in PATHS:
            per = (cpu[path] - idle_rate * wall[path]) / n
            results[path] = {
                "requests": n, "reactor_cpu_ms_per_request": round(per * 1000, 3),
                "raw_cpu_s": round(cpu[path], 3), "wall_s": round(wall[path], 3),
                "latency_p50_ms": round(statistics.median(latencies[path]) * 1000, 3),
                "bytes": sizes[path],
            }
        status = json.loads(get(base + "/status.json"))
        record = {
            "benchmark": "status_page", "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "revision": revision(), "machine": f"{os.cpu_count()} cores, {platform.machine()}",
            "load": os.getloadavg(), "idle_cpu_percent": round(idle_rate * 100, 3),
            "cluster": {"members": len(status["members"]), "clusters": len(status["clusters"]),
                        "services": len(status["services"])},
            "args": vars(args), "paths": results,
        }
    finally:
        demo.close()
        reservation.release()
    os.makedirs(os.path.dirname(args.output), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(record, f, indent=2)
    print(f"alpha of the demo cluster ({record['cluster']}), {record['machine']}, "
          f"load {record['load'][0]:.1f}; idle {record['idle_cpu_percent']} % of a core")
    print(f"{'path':<14} {'reactor ms/request':>18} {'p50 latency ms':>15} {'bytes':>8}")
    for path, r in results.items():
        print(f"{path:<14} {r['reactor_cpu_ms_per_request']:>18.3f} "
              f"{r['latency_p50_ms']:>15.3f} {r['bytes']:>8}")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
