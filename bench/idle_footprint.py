#!/usr/bin/env python3
"""Idle footprint: CPU and memory of a daemon supervising 10 sleeping services.

CLSD (and, for comparison, supervisord) each supervise 10 services
(``sleep 100000``) that do nothing. Once all 10 run, the script waits a
warm-up, then measures over a window (default 30 s) the daemon process's
CPU (user + system, from /proc/PID/stat, else ``ps``) as a percentage of one
core, and its resident memory (VmRSS) at the start and end of the window.
Other processes the daemon started (helpers other than the services) are
measured too and reported separately.

Usage: python bench/idle_footprint.py [--services 10] [--window 30] [--only clsd]
Writes bench/results/idle.json. Every process it started is killed on exit.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import (  # noqa: E402
    BenchError,
    Clsd,
    Supervisord,
    cpu_seconds,
    ensure_supervisord,
    interrupts_as_exceptions,
    machine_info,
    process_name,
    remove_tree,
    rss_kib,
    uninterruptible,
    wait_for,
    write_json,
)

#: The services restart immediately and never give up, as in restart_latency.
CLSD_SETTINGS = ['restart = "always"']


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10)
    parser.add_argument("--window", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=5.0,
                        help="seconds after all services run, before measuring")
    parser.add_argument("--only", choices=("clsd", "supervisord"))
    parser.add_argument("--output", default="idle.json", help="file name under bench/results/")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    sleep = shutil.which("sleep") or "/bin/sleep"
    services = [(f"idle{i:02d}", [sleep, "100000"]) for i in range(args.services)]
    names = [args.only] if args.only else ["clsd", "supervisord"]
    if "supervisord" in names:
        ensure_supervisord()
    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-idle-"))
    supervisors = []
    info = machine_info()
    try:
        with interrupts_as_exceptions():
            for name in names:
                supervisors.append(Clsd(workdir / name, settings=CLSD_SETTINGS)
                                   if name == "clsd" else Supervisord(workdir / name))
            for supervisor in supervisors:
                supervisor.start(services)
            for supervisor in supervisors:
                wait_for(lambda: len(supervisor.services_running("sleep")) == args.services,
                         60, f"{supervisor.name} to run {args.services} services")
                supervisor.check_alive()
            print(f"{args.services} services running under {', '.join(names)}; "
                  f"warm-up {args.warmup:g} s, then measuring {args.window:g} s ...")
            time.sleep(args.warmup)
            results = measure(supervisors, args.window)
            for supervisor in supervisors:
                supervisor.check_alive()
                running = len(supervisor.services_running("sleep"))
                if running != args.services:
                    raise BenchError(f"{supervisor.name}: {running} services running "
                                     f"at the end, not {args.services}")
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        for supervisor in supervisors:
            print(f"--- {supervisor.name} output:\n{supervisor.output_tail()}",
                  file=sys.stderr)
        return 1
    finally:
        with uninterruptible():
            for supervisor in supervisors:
                supervisor.stop()
            if args.keep:
                print(f"work directory kept: {workdir}")
            else:
                remove_tree(workdir)

    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = {
        "benchmark": "idle_footprint",
        "services": args.services,
        "service_command": f"{sleep} 100000",
        "window_s": args.window,
        "warmup_s": args.warmup,
        "cpu_percent_of": "one core (100 = one core busy all the time)",
        # CPU time is counted in clock ticks: below this, a figure reads as 0.
        "cpu_resolution_percent": round(100 / os.sysconf("SC_CLK_TCK") / args.window, 4)
        if hasattr(os, "sysconf") else None,
        "machine": info,
        "results": results,
    }
    for name, entry in results.items():
        print(f"{name:12} daemon CPU {entry['daemon']['cpu_percent']:.3f} %  "
              f"RSS {entry['daemon']['rss_kib_end'] / 1024:.1f} MiB  "
              f"(+{len(entry['helpers'])} helper process(es): CPU "
              f"{entry['helpers_cpu_percent']:.3f} %, RSS "
              f"{entry['helpers_rss_kib'] / 1024:.1f} MiB)  version {entry['version']}")
    print(f"machine: {info['cpu_model']}, {info['cores']} cores, load "
          f"{info['loadavg_at_start']} -> {info['loadavg_at_end']}")
    print(f"written: {write_json(args.output, report)}")
    return 0


def helpers_of(supervisor):
    """The daemon's own helper processes: its session, services excluded."""
    return [pid for pid in supervisor.members() if process_name(pid) != "sleep"]


def measure(supervisors, window):
    start = {}
    for supervisor in supervisors:
        helpers = helpers_of(supervisor)
        start[supervisor.name] = (
            cpu_seconds(supervisor.pid), rss_kib(supervisor.pid),
            {pid: cpu_seconds(pid) for pid in helpers},
        )
    began = time.monotonic()
    time.sleep(window)
    elapsed = time.monotonic() - began
    results = {}
    for supervisor in supervisors:
        cpu0, rss0, helpers0 = start[supervisor.name]
        cpu1 = cpu_seconds(supervisor.pid)
        helpers = {}
        for pid, before in helpers0.items():
            try:
                helpers[pid] = {
                    "name": process_name(pid),
                    "cpu_percent": round((cpu_seconds(pid) - before) / elapsed * 100, 3),
                    "rss_kib": rss_kib(pid),
                }
            except BenchError:
                continue  # a short-lived helper ended during the window
        results[supervisor.name] = {
            "version": supervisor.version(),
            "daemon": {
                "pid": supervisor.pid,
                "cpu_seconds": round(cpu1 - cpu0, 3),
                "cpu_percent": round((cpu1 - cpu0) / elapsed * 100, 3),
                "rss_kib_start": rss0,
                "rss_kib_end": rss_kib(supervisor.pid),
            },
            "helpers": helpers,
            "helpers_cpu_percent": round(sum(h["cpu_percent"] for h in helpers.values()), 3),
            "helpers_rss_kib": sum(h["rss_kib"] for h in helpers.values()),
            "elapsed_s": round(elapsed, 3),
        }
    return results


if __name__ == "__main__":
    sys.exit(main())
