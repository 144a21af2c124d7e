#!/usr/bin/env python3
"""Restart latency: kill a supervised service N times; how long until the new one runs?

CLSD and supervisord supervise the same service in the same run, killed in
turn (alternating which goes first), so both see the same machine load.

The service is ``/bin/sh -c 'echo $$ > FIFO; exec sleep 100000'``: each new
instance writes its pid into a FIFO that this script reads. One sample is the
time from just before ``os.kill(pid, SIGKILL)`` (time.monotonic) to the
arrival of the new pid's line: the supervisor's reaction, its fork/exec of
/bin/sh (dash starts in about a millisecond) and one write. Between kills the
script waits until the service has exec'd ``sleep``, until the supervisor
counts it as running, and then a random pause (default 0.1 to 1.1 s) so that
the kills do not fall in step with a supervisor's own timers.

Both supervisors are configured so that every kill restarts at once: no
backoff, no crash-loop limit (see CLSD_SETTINGS and Supervisord.PROGRAM_SETTINGS).

CLSD runs once per ``--containment`` (default: both, side by side in one
run): ``cgroup`` holds each new instance at the start gate (a /bin/sh)
while the daemon moves it into its cgroup; ``process-group`` spawns the
service directly. Their p50 difference is what cgroup placement costs.

``--type forking`` runs CLSD's service as ``type = "forking"`` instead: a
start command that backgrounds the instance (which writes a pidfile, then
its pid into the FIFO, then execs sleep) and returns at once; the kill hits
the main process, which is not CLSD's child (its end is seen through a
pidfd). supervisord cannot supervise a forking program: with ``--type
forking`` only CLSD runs.

``--type ocf`` runs it through an OCF resource agent written by the bench
(L{OCF_AGENT}, Dummy-like: ``start`` backgrounds the same instance and waits
for its pidfile, ``monitor`` asks whether that pid lives, ``stop`` kills it).
An agent's service is not CLSD's child and may have no process at all (an
address), so its death is seen only by the next ``monitor``: the figure is
dominated by ``monitor_interval`` (``--monitor-interval``, default 0.2 s;
on average half of it), then the stop and start actions. Pacemaker finds
such a death the same way. CLSD only.

Usage: python bench/restart_latency.py [--kills 200] [--only clsd|supervisord]
       [--containment cgroup|process-group|both] [--type simple|forking|ocf]
       [--monitor-interval 0.2]
Writes bench/results/restart_latency.json. Every process it started is
killed on exit, Ctrl-C included.
"""

import argparse
import os
import random
import select
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from clsd.supervision import cgroupfs  # noqa: E402

from _harness import (  # noqa: E402
    BenchError,
    Clsd,
    Supervisord,
    ensure_supervisord,
    interrupts_as_exceptions,
    machine_info,
    process_name,
    remove_tree,
    summary_ms,
    uninterruptible,
    wait_for,
    write_json,
)

SERVICE = "svc"

#: Every death restarts at once in CLSD: the first restart after a crash is
#: immediate anyway; a zero backoff makes the later ones immediate too, and a
#: crash-loop limit far above the kill count never trips.
CLSD_SETTINGS = [
    'restart = "always"',
    "backoff = { initial = 0.0, max = 0.0, factor = 1.0, jitter = 0.0 }",
    "stable_after = 0.0",
    "crash_loop = { max_failures = 1000000, window = 1.0 }",
    "stop_timeout = 5.0",
]

#: The most cgroup placement may add to CLSD's p50 (issue 18).
CGROUP_BUDGET_MS = 2.0

#: A Dummy-like OCF agent (``--type ocf``): OCF_RESKEY_pidfile and OCF_RESKEY_fifo.
#: Its monitor reads the process state: a killed instance may linger as a
#: zombie of a parent that does not reap, and ``kill -0`` would call it running.
OCF_AGENT = """\
#!/bin/sh
PIDFILE=$OCF_RESKEY_pidfile
running() {
    [ -s "$PIDFILE" ] || return 1
    case "$(ps -o stat= -p "$(cat "$PIDFILE")")" in ""|Z*) return 1 ;; esac
}
case "$1" in
meta-data)
    cat <<'END'
<?xml version="1.0"?>
<resource-agent name="sleeper" version="1.0">
<parameters>
<parameter name="pidfile" required="1"><content type="string"/></parameter>
<parameter name="fifo" required="1"><content type="string"/></parameter>
</parameters>
<actions>
<action name="start" timeout="10s"/><action name="stop" timeout="10s"/>
<action name="monitor" timeout="10s" interval="1s"/>
</actions>
</resource-agent>
END
    exit 0 ;;
start)
    running && exit 0
    rm -f "$PIDFILE"
    /bin/sh -c "echo \\$\\$ > $PIDFILE.new; mv $PIDFILE.new $PIDFILE; \\
        echo \\$\\$ > $OCF_RESKEY_fifo; exec SLEEP 100000" </dev/null >/dev/null 2>&1 &
    while [ ! -s "$PIDFILE" ]; do sleep 0.001; done
    exit 0 ;;
stop)
    [ -s "$PIDFILE" ] && kill -9 "$(cat "$PIDFILE")" 2>/dev/null
    rm -f "$PIDFILE"
    exit 0 ;;
monitor)
    running && exit 0
    exit 7 ;;
*)
    exit 3 ;;
esac
"""

#: How long one restart may take before the run is declared broken.
RESTART_TIMEOUT = 10.0


class PidPipe:
    """The FIFO the service instances write their pids into, one line each."""

    def __init__(self, path):
        self.path = Path(path)
        os.mkfifo(self.path)
        self._read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the FIFO open: no EOF between two instances.
        self._keep_open = os.open(self.path, os.O_WRONLY)
        self._buffer = b""

    def next_pid(self, deadline):
        """Block until the next line; (pid, monotonic arrival time)."""
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BenchError(f"no new pid in {self.path.name} before the deadline")
            ready, _, _ = select.select([self._read], [], [], remaining)
            if ready:
                self._buffer += os.read(self._read, 4096)
        arrived = time.monotonic()
        line, self._buffer = self._buffer.split(b"\n", 1)
        return int(line), arrived

    def pending(self):
        """Lines that arrived unasked (a restart nobody caused)."""
        ready, _, _ = select.select([self._read], [], [], 0)
        if ready:
            self._buffer += os.read(self._read, 4096)
        return self._buffer.count(b"\n")

    def close(self):
        os.close(self._read)
        os.close(self._keep_open)


class Subject:
    """One supervisor with its service, and the samples measured on it."""

    def __init__(self, supervisor, workdir):
        self.supervisor = supervisor
        self.pipe = PidPipe(Path(workdir) / f"{supervisor.name}.pids")
        self.pid = None
        #: Forking: the pidfile of the main process (None: a simple service).
        self.pidfile = None
        #: OCF: the agent starts the instance (no command).
        self.agent = False
        self.samples = []
        #: Backoffs / give-ups the supervisor recorded (must all be 0).
        self.anomalies = None

    def service_argv(self, sleep):
        if self.agent:
            return None
        script = f"echo $$ > {self.pipe.path}; exec {sleep} 100000"
        if self.pidfile is not None:
            inner = f"echo $$ > {self.pidfile}; {script}"
            return ["/bin/sh", "-c", f"/bin/sh -c '{inner}' </dev/null >/dev/null 2>&1 &"]
        return ["/bin/sh", "-c", script]

    def start(self, sleep):
        self.supervisor.start([(SERVICE, self.service_argv(sleep))])
        self.pid, _ = self.pipe.next_pid(time.monotonic() + 30)

    def kill_once(self, pause):
        """Wait for a steady service, kill it, time its replacement."""
        supervisor = self.supervisor
        wait_for(lambda: process_name(self.pid) == "sleep", 10,
                 f"{supervisor.name}'s service {self.pid} to exec sleep")
        supervisor.wait_stable(SERVICE)
        time.sleep(pause)
        supervisor.check_alive()
        if self.pipe.pending():
            raise BenchError(f"{supervisor.name} restarted the service unasked")
        killed = time.monotonic()
        os.kill(self.pid, signal.SIGKILL)
        new_pid, arrived = self.pipe.next_pid(killed + RESTART_TIMEOUT)
        if new_pid == self.pid:
            raise BenchError(f"{supervisor.name}: the same pid {new_pid} came back")
        self.pid = new_pid
        self.samples.append(arrived - killed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="kills per supervisor")
    parser.add_argument("--only", choices=("clsd", "supervisord"),
                        help="measure one supervisor only")
    parser.add_argument("--containment", choices=("cgroup", "process-group", "both"),
                        default="both",
                        help="CLSD's containment (both: one CLSD of each, in turn)")
    parser.add_argument("--type", choices=("simple", "forking", "ocf"), default="simple",
                        help="CLSD's service type (forking, ocf: CLSD only)")
    parser.add_argument("--monitor-interval", type=float, default=0.2,
                        help="--type ocf: the service's monitor_interval (s)")
    parser.add_argument("--pause", type=float, nargs=2, default=(0.1, 1.1),
                        metavar=("MIN", "MAX"),
                        help="random pause between a steady service and its kill (s)")
    parser.add_argument("--output", default="restart_latency.json",
                        help="file name under bench/results/")
    parser.add_argument("--keep", action="store_true",
                        help="keep the work directory (configs, logs)")
    args = parser.parse_args(argv)

    sleep = shutil.which("sleep") or "/bin/sleep"
    names = [args.only] if args.only else ["clsd", "supervisord"]
    if args.type in ("forking", "ocf"):
        names = ["clsd"]
    if "supervisord" in names:
        ensure_supervisord()
    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-restart-"))
    subjects = []
    info = machine_info()
    rng = random.Random()
    try:
        with interrupts_as_exceptions():
            for name in names:
                if name == "supervisord":
                    subjects.append(Subject(Supervisord(workdir / name), workdir))
                    continue
                for containment in containments(args):
                    label = f"clsd-{containment}"
                    settings = [*CLSD_SETTINGS, f'containment = "{containment}"']
                    pidfile = None
                    if args.type == "forking":
                        label += "-forking"
                        pidfile = workdir / f"{label}.pid"
                        settings += ['type = "forking"', f'pidfile = "{pidfile}"']
                    elif args.type == "ocf":
                        label += "-ocf"
                        settings = ocf_settings(workdir, label, containment,
                                                args.monitor_interval, sleep)
                    supervisor = Clsd(workdir / label, settings=settings)
                    supervisor.name = label
                    subject = Subject(supervisor, workdir)
                    subject.pidfile = pidfile
                    subject.agent = args.type == "ocf"
                    subjects.append(subject)
            print(describe_setup(args))
            for subject in subjects:
                subject.start(sleep)
                print(f"  {subject.supervisor.name}: daemon pid {subject.supervisor.pid}, "
                      f"service pid {subject.pid}")
            for i in range(args.kills):
                order = subjects if i % 2 == 0 else subjects[::-1]
                for subject in order:
                    subject.kill_once(rng.uniform(*args.pause))
                if (i + 1) % 20 == 0:
                    print(f"  {i + 1}/{args.kills} kills: " + ", ".join(
                        f"{s.supervisor.name} last {s.samples[-1] * 1000:.1f} ms"
                        for s in subjects))
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    except BenchError as e:
        print(f"benchmark failed: {e}", file=sys.stderr)
        for subject in subjects:
            print(f"--- {subject.supervisor.name} output:\n{subject.supervisor.output_tail()}",
                  file=sys.stderr)
        return 1
    finally:
        with uninterruptible():
            for subject in subjects:
                subject.supervisor.stop()
                subject.pipe.close()
                subject.anomalies = subject.supervisor.restart_anomalies()
            if args.keep:
                print(f"work directory kept: {workdir}")
            else:
                remove_tree(workdir)

    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report = build_report(args, subjects, info)
    print_report(report)
    path = write_json(args.output, report)
    print(f"written: {path}")
    return 0


def ocf_settings(workdir, label, containment, monitor_interval, sleep):
    """The ``[[service]]`` lines of the OCF agent's service, its agent written under C{workdir}."""
    ocf_root = workdir / f"{label}-ocf"
    agent = ocf_root / "resource.d" / "bench" / "sleeper"
    agent.parent.mkdir(parents=True)
    agent.write_text(OCF_AGENT.replace("SLEEP", sleep))
    agent.chmod(0o755)
    fifo = workdir / f"{label}.pids"  # Subject's PidPipe: <name>.pids
    return [
        *(line for line in CLSD_SETTINGS if not line.startswith("stop_timeout")),
        f'containment = "{containment}"', 'type = "ocf"', 'agent = "bench:sleeper"',
        f'ocf_root = "{ocf_root}"', f"monitor_interval = {monitor_interval}",
        f'params = {{ pidfile = "{workdir / label}.instance.pid", fifo = "{fifo}" }}',
    ]


def cgroup2_mount():
    """The cgroup v2 mount and whether it favours migrations (doc/supervision.md)."""
    try:
        with open("/proc/self/mountinfo") as f:
            text = f.read()
    except OSError:
        return None
    for point, _, fstype, options, super_options in cgroupfs.parse_mountinfo(text):
        if fstype == cgroupfs.CGROUP2_FSTYPE:
            return {"mount_point": point, "options": options, "super_options": super_options,
                    "favordynmods": "favordynmods" in super_options.split(",")}
    return None


def containments(args):
    return ["cgroup", "process-group"] if args.containment == "both" else [args.containment]


def describe_setup(args):
    return "\n".join([
        f"restart latency: {args.kills} SIGKILLs per supervisor, "
        f"random pause {args.pause[0]:g}-{args.pause[1]:g} s between a steady service "
        "and its kill",
        "every kill restarts at once in both (no backoff, no crash-loop limit):",
        "  clsd:        " + "; ".join(CLSD_SETTINGS),
        "  supervisord: " + "; ".join(f"{k}={v}" for k, v in
                                      Supervisord.PROGRAM_SETTINGS.items()),
    ])


def build_report(args, subjects, info):
    report = {
        "benchmark": "restart_latency",
        "measure": "SIGKILL of the service -> its replacement (/bin/sh, exec'd by the "
                   "supervisor) has written its pid to a FIFO; time.monotonic in the bench",
        "service": "/bin/sh -c 'echo $$ > FIFO; exec sleep 100000'",
        "kills": args.kills,
        "type": args.type,
        "monitor_interval_s": args.monitor_interval if args.type == "ocf" else None,
        "pause_between_kills_s": list(args.pause),
        "percentiles": "nearest rank",
        "settings": {
            "clsd": CLSD_SETTINGS,
            "clsd_containments": containments(args),
            "supervisord": Supervisord.PROGRAM_SETTINGS,
        },
        "machine": info,
        "cgroup2": cgroup2_mount(),
        "results": {},
    }
    for subject in subjects:
        supervisor = subject.supervisor
        entry = summary_ms(subject.samples)
        entry["version"] = supervisor.version()
        entry["backoffs_and_give_ups"] = subject.anomalies
        entry["samples_ms"] = [round(s * 1000, 3) for s in subject.samples]
        report["results"][supervisor.name] = entry
    results = report["results"]
    goals = report["goals"] = {}
    for name, clsd in results.items():
        if not name.startswith("clsd") or args.type == "ocf":
            continue  # an agent's restart waits for its monitor: no latency goal
        goals[f"{name}_p50_le_20ms"] = clsd["p50_ms"] <= 20
        goals[f"{name}_p99_le_100ms"] = clsd["p99_ms"] <= 100
        if "supervisord" in results:
            ratio = round(clsd["p50_ms"] / results["supervisord"]["p50_ms"], 4)
            report[f"ratio_p50_{name}_over_supervisord"] = ratio
            goals[f"{name}_p50_le_0.1x_supervisord"] = ratio <= 0.1
    if "clsd-cgroup" in results and "clsd-process-group" in results:
        added = round(results["clsd-cgroup"]["p50_ms"]
                      - results["clsd-process-group"]["p50_ms"], 3)
        report["cgroup_adds_p50_ms"] = added
        goals[f"cgroup_adds_le_{CGROUP_BUDGET_MS:g}ms_p50"] = added <= CGROUP_BUDGET_MS
    return report


def print_report(report):
    print()
    print(f"{'':20} {'p50 ms':>9} {'p99 ms':>9} {'max ms':>9} {'min ms':>9}  version")
    for name, entry in report["results"].items():
        print(f"{name:20} {entry['p50_ms']:9.2f} {entry['p99_ms']:9.2f} "
              f"{entry['max_ms']:9.2f} {entry['min_ms']:9.2f}  {entry['version']}")
    for name, entry in report["results"].items():
        anomalies = entry["backoffs_and_give_ups"]
        if anomalies is None or any(anomalies.values()):
            print(f"  WARNING: {name} did not restart every kill at once: {anomalies}")
        else:
            print(f"  {name}: no backoff, no give-up ({anomalies})")
    for key, value in report.items():
        if key.startswith("ratio_p50_"):
            print(f"{key}: {value:.4f}")
    if "cgroup_adds_p50_ms" in report:
        print(f"cgroup placement adds {report['cgroup_adds_p50_ms']:.3f} ms to the p50")
    for goal, met in report.get("goals", {}).items():
        print(f"  goal {goal}: {'met' if met else 'NOT met'}")
    machine = report["machine"]
    print(f"machine: {machine['cpu_model']}, {machine['cores']} cores, kernel "
          f"{machine['kernel']}, load {machine['loadavg_at_start']} -> "
          f"{machine.get('loadavg_at_end')}")


if __name__ == "__main__":
    sys.exit(main())
