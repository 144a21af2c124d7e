"""``python -m rig.faults.soak``: many seeds, one results row in doc/reliability.md.

    python -m rig.faults.soak --seeds 3 --nodes 3 --duration 60
    python -m rig.faults.soak --seeds 1000 --first-seed 5000 --no-append

Each seed is one run of the schedule CLI (``python -m rig.faults``)
in its own process, so a run that dies, hangs or leaves a signal handler
behind cannot spoil the next one; its ``report.json`` is the only thing read
back. The row appended to the results table is computed from those reports
(L{summarize}, L{table_row}): nobody types figures into it by hand.

Exit status: 0 when every run passed, 1 otherwise, 2 on a usage error.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time

from rig.faults.cli import SCENARIOS

#: Where ``make soak`` appends its row.
DEFAULT_RESULTS = os.path.join("doc", "reliability.md")
#: The header line of the results table: the row goes after the table's last line.
TABLE_HEADER = "| date | machine | scenario | schedules |"
#: A run that takes longer than its duration plus this is killed and counted as failed
#: (start, settling, recovery bound of 60 s, teardown of up to 15 s per node, with room).
RUN_OVERHEAD = 300.0


def summarize(reports, *, missing=0):
    """The figures of a soak from its runs' report dicts.

    @param missing: runs that produced no report (crashed or timed out); they
        count as schedules run and as failures.
    """
    by_kind = {}
    violations = 0
    failed = missing
    worst_failover = None
    worst_unavailability = None
    bound_checked = 0
    bound_exceeded = 0
    worst_recovery = None
    escaping = 0
    for report in reports:
        escaping += bool(report.get("escaping"))
        for kind, count in report.get("faults_by_kind", {}).items():
            by_kind[kind] = by_kind.get(kind, 0) + count
        violations += len(report.get("violations", ()))
        if report.get("verdict") != "PASS":
            failed += 1
        worst = report.get("failover_summary", {}).get("max")
        if worst is not None and (worst_failover is None or worst > worst_failover):
            worst_failover = worst
        for entry in report.get("unavailability", {}).values():
            if worst_unavailability is None or entry["worst"] > worst_unavailability:
                worst_unavailability = entry["worst"]
        bound = report.get("failover_bound")
        if bound is not None:
            bound_checked += 1
            bound_exceeded += len(bound["exceeded"])
            for seconds in bound["worst_recovery"].values():
                if worst_recovery is None or seconds > worst_recovery:
                    worst_recovery = seconds
    return {
        "schedules": len(reports) + missing,
        "failed": failed,
        "faults_by_kind": dict(sorted(by_kind.items())),
        "violations": violations,
        "worst_failover": worst_failover,
        "worst_unavailability": worst_unavailability,
        #: Runs judged against the failover bound during the run (clusters scenario).
        "bound_checked": bound_checked,
        "bound_exceeded": bound_exceeded,
        #: The longest a cluster stayed short of copies while the faults allowed it to run.
        "worst_recovery": worst_recovery,
        #: Runs whose protected services escaped their process group.
        "escaping": escaping,
    }


def machine_description():
    """Host, CPUs and OS: enough to tell a quiet server from a shared laptop."""
    return (f"{platform.node()} ({os.cpu_count()} CPU, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()})")


def _seconds(value):
    return "-" if value is None else f"{value:.2f} s"


def table_row(summary, *, date, machine, scenario):
    """One Markdown table row for the results table of doc/reliability.md."""
    kinds = ", ".join(f"{k} {n}" for k, n in summary["faults_by_kind"].items()) or "none"
    if summary.get("escaping"):
        kinds += f"; services escaping their process group in {summary['escaping']} runs"
    schedules = f"{summary['schedules']} ({summary['failed']} failed)"
    cells = [date, machine, scenario, schedules, kinds, str(summary["violations"]),
             _seconds(summary["worst_failover"]), _seconds(summary["worst_unavailability"])]
    if summary.get("bound_checked"):
        cells.append(f"{summary['bound_exceeded']} exceeded; worst "
                     f"{_seconds(summary['worst_recovery'])}")
    else:
        cells.append("-")
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def append_row(text, row):
    """C{text} with C{row} added after the last line of the results table.

    @raise ValueError: the text has no results table.
    """
    lines = text.split("\n")
    try:
        index = next(i for i, line in enumerate(lines) if line.startswith(TABLE_HEADER))
    except StopIteration:
        raise ValueError(f"no results table (a line starting {TABLE_HEADER!r})") from None
    end = index + 1
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines.insert(end, row)
    return "\n".join(lines)


def run_seed(seed, *, nodes, duration, scenario, out, python=sys.executable, say=print):
    """Run one seed through the schedule CLI; its report dict, or None when it made none."""
    directory = os.path.join(out, f"seed-{seed}")
    command = [python, "-m", "rig.faults", "--scenario", scenario, "--nodes",
               str(nodes), "--duration", str(duration), "--seed", str(seed), "--out",
               directory, "--quiet"]
    started = time.monotonic()
    try:
        with open(os.path.join(out, f"seed-{seed}.out"), "w") as output:
            subprocess.run(command, stdout=output, stderr=subprocess.STDOUT,
                           timeout=duration + RUN_OVERHEAD)
    except subprocess.TimeoutExpired:
        say(f"seed {seed}: timed out after {time.monotonic() - started:.0f} s")
        return None
    try:
        with open(os.path.join(directory, "report.json")) as f:
            report = json.load(f)
    except (OSError, ValueError) as e:
        say(f"seed {seed}: no report ({e}); see {directory}.out")
        return None
    say(f"seed {seed}: {report['verdict']} in {time.monotonic() - started:.0f} s"
        + (f" ({'; '.join(report['reasons'])}); replay: {report['replay']}"
           if report["verdict"] != "PASS" else ""))
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m rig.faults.soak",
        description="Run many fault schedules and append their figures to doc/reliability.md.")
    parser.add_argument("--seeds", type=int, default=10, help="number of schedules (default 10)")
    parser.add_argument("--first-seed", type=int, default=None,
                        help="first seed (default: from the time, so soaks do not repeat)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--scenario", default="clusters", choices=SCENARIOS,
                        help="clusters (default) or groups: an ordered group and clusters "
                        "that depend on it (doc/reliability.md)")
    parser.add_argument("--out", default=None, help="directory of the runs (default fault-runs/soak-DATE)")
    parser.add_argument("--results", default=DEFAULT_RESULTS, help="file to append the row to")
    parser.add_argument("--no-append", action="store_true", help="print the row only")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.nodes < 1 or args.duration <= 0:
        parser.error("--seeds and --nodes must be at least 1 and --duration positive")
    if not args.no_append:
        # Checked before the hours of runs, not after them.
        try:
            with open(args.results) as f:
                append_row(f.read(), "")
        except (OSError, ValueError) as e:
            parser.error(f"--results {args.results}: {e}")
    first = args.first_seed if args.first_seed is not None else int(time.time()) % 1_000_000
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = os.path.abspath(args.out or os.path.join("fault-runs", f"soak-{stamp}"))
    os.makedirs(out, exist_ok=True)
    print(f"soak: {args.seeds} seed(s) from {first}, {args.nodes} nodes, {args.duration} s, "
          f"scenario {args.scenario}; runs in {out}", flush=True)
    reports, missing = [], 0
    for seed in range(first, first + args.seeds):
        report = run_seed(seed, nodes=args.nodes, duration=args.duration,
                          scenario=args.scenario, out=out,
                          say=lambda line: print(line, flush=True))
        if report is None:
            missing += 1
        else:
            reports.append(report)
    summary = summarize(reports, missing=missing)
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=2, sort_keys=True)
    date = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    scenario = (f"{args.scenario}, {args.nodes} nodes, {args.duration:g} s, "
                f"seeds {first}-{first + args.seeds - 1}")
    row = table_row(summary, date=date, machine=machine_description(), scenario=scenario)
    print(row)
    if not args.no_append:
        with open(args.results) as f:
            text = f.read()
        with open(args.results, "w") as f:
            f.write(append_row(text, row))
        print(f"appended to {args.results}")
    return 0 if summary["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
