"""Command line of the fault rig (schedule runner added below)."""

import argparse
import sys

from clsd.testing.faults import sweep


def cleanup_all_command(args):
    removed, errors = sweep.cleanup_all(force=args.force)
    for item in removed:
        print(f"removed {item}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if not removed and not errors:
        print("nothing to remove")
    return 1 if errors else 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m clsd.testing.faults")
    commands = parser.add_subparsers(dest="command")
    clean = commands.add_parser(
        "cleanup-all", help="remove rules, cgroups and processes left by rigs that are gone"
    )
    clean.add_argument("--force", action="store_true",
                       help="also remove those of rigs still running")
    clean.set_defaults(func=cleanup_all_command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    sys.exit(args.func(args))
