"""``python -m rig.faults``: run a seeded fault schedule, print one, or clean up.

    python -m rig.faults --nodes 5 --duration 120 --seed 7
    python -m rig.faults --nodes 5 --duration 120 --seed 7 --print-schedule
    python -m rig.faults --replay runs/seed-7/schedule.json
    python -m rig.faults cleanup-all [--force]

Exit status: 0 when the run passed, 1 when it failed, 2 on a usage error.
"""

import argparse
import os
import sys
import time

from rig.faults import report as reporting
from rig.faults import schedule as schedules
from rig.faults import sweep
from rig.faults.cleanup import default_cleanups

SCENARIOS = ("supervised", "daemons", "clusters", "groups")


def cleanup_all_command(args):
    removed, errors = sweep.cleanup_all(force=args.force)
    for item in removed:
        print(f"removed {item}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not removed and not errors:
        print("nothing to remove")
    return 1 if errors else 0


def _kinds(text):
    kinds = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in kinds if k not in schedules.ALL_KINDS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault kind(s) {', '.join(unknown)}; known: {', '.join(schedules.ALL_KINDS)}")
    return kinds


def _make_schedule(args):
    if args.replay:
        with open(args.replay) as f:
            return schedules.Schedule.from_json(f.read(), args.replay)
    names = tuple(f"n{i}" for i in range(1, args.nodes + 1))
    return schedules.generate(args.seed, names, args.duration, kinds=args.kinds, lease=args.lease,
                              min_gap=args.min_gap, max_gap=args.max_gap)


def _replay_command(schedule_path, scenario):
    # The schedule file does not name the scenario: the command must.
    return f"{sys.executable} -m rig.faults --replay {schedule_path} --scenario {scenario}"


def _firewall(say):
    from rig.faults.network import Firewall, ToolMissing

    if os.geteuid() != 0:
        say("not root: network faults will be skipped")
        return None
    try:
        return Firewall()
    except ToolMissing as e:
        say(f"{e}: network faults will be skipped")
        return None


def run_command(args):
    from rig.faults.runner import SCENARIOS as scenarios, execute

    try:
        schedule = _make_schedule(args)
    except (OSError, schedules.ScheduleError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_schedule:
        sys.stdout.write(schedule.to_json())
        return 0
    directory = os.path.abspath(args.out or os.path.join(
        "fault-runs", f"seed-{schedule.seed}-{time.strftime('%Y%m%d-%H%M%S')}"))
    os.makedirs(directory, exist_ok=True)
    schedule_path = os.path.join(directory, "schedule.json")
    with open(schedule_path, "w") as f:
        f.write(schedule.to_json())
    say = (lambda line: print(line, flush=True)) if not args.quiet else (lambda line: None)
    say(f"run directory {directory}; {len(schedule.events)} fault(s) scheduled")
    default_cleanups.install_signal_handlers()
    firewall = _firewall(say)
    try:
        report = execute(schedule, directory, scenarios[args.scenario](), say=say,
                         replay=_replay_command(schedule_path, args.scenario), firewall=firewall)
    finally:
        if firewall is not None:
            firewall.close()
        errors = default_cleanups.run_all()
    if errors:
        report["reasons"].append(f"{len(errors)} cleanup error(s)")
        report["verdict"] = "FAIL"
    with open(os.path.join(directory, "report.json"), "w") as f:
        f.write(reporting.to_json(report))
    text = reporting.to_text(report)
    with open(os.path.join(directory, "report.txt"), "w") as f:
        f.write(text)
    sys.stdout.write("\n" + text)
    return 0 if report["verdict"] == "PASS" else 1


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m rig.faults",
        description="Run a seeded, replayable fault schedule against real clsd daemons.",
    )
    parser.add_argument("--nodes", type=int, default=3, help="number of daemons (default 3)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of faults before the final heal (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="schedule seed (default 0)")
    parser.add_argument("--kinds", type=_kinds, default=schedules.ALL_KINDS,
                        help="comma-separated fault kinds (default: all): "
                        + ", ".join(schedules.ALL_KINDS))
    parser.add_argument("--lease", type=float, default=schedules.DEFAULT_LEASE,
                        help="lease length the pauses are sized against (default 2.0)")
    parser.add_argument("--min-gap", type=float, default=schedules.DEFAULT_MIN_GAP)
    parser.add_argument("--max-gap", type=float, default=schedules.DEFAULT_MAX_GAP)
    parser.add_argument("--scenario", choices=SCENARIOS, default="supervised",
                        help="supervised: each node supervises a protected service of its own; "
                        "daemons: daemons only; clusters: shared cluster IDs with failover; "
                        "groups: an ordered group and clusters that depend on it "
                        "(default supervised)")
    parser.add_argument("--replay", metavar="SCHEDULE.json", help="run this schedule exactly")
    parser.add_argument("--print-schedule", action="store_true",
                        help="print the schedule as JSON and exit")
    parser.add_argument("--out", metavar="DIR", help="run directory (default fault-runs/seed-...)")
    parser.add_argument("--quiet", action="store_true", help="print only the final report")
    parser.set_defaults(func=run_command)
    commands = parser.add_subparsers(dest="command")
    clean = commands.add_parser(
        "cleanup-all", help="remove rules, cgroups and processes left by rigs that are gone")
    clean.add_argument("--force", action="store_true",
                       help="also remove those of rigs still running")
    clean.set_defaults(func=cleanup_all_command)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.func is run_command and args.nodes < 1:
        parser.error("--nodes must be at least 1")
    sys.exit(args.func(args))
