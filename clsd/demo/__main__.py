"""``python -m clsd.demo`` (``make demo``): CLSD in under a minute, on loopback addresses only.

    python -m clsd.demo              three nodes, mutual standby, kill -9 and failover
    python -m clsd.demo --keep       the same cluster, kept up for exploring with ssh
    python -m clsd.demo --single     one node supervising a service (kill it, it restarts)

Every process the demo starts is stopped at its end, on an error and on
Ctrl-C; the temporary directory goes too unless --keep-files.
"""

import argparse
import shutil
import signal
import sys
import tempfile

from clsd.demo import single


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m clsd.demo",
                                     description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--keep", action="store_true",
                      help="keep the three-node cluster up for exploring with ssh (Ctrl-C stops)")
    mode.add_argument("--single", action="store_true",
                      help="the single-node supervision demo instead")
    parser.add_argument("--fast", action="store_true",
                        help="the fast lease profile (1 s lease; what the test suite runs)")
    parser.add_argument("--first-address", default=None, metavar="127.0.0.X",
                        help="address of the first node, the others follow (default 127.0.0.11)")
    parser.add_argument("--keep-files", action="store_true",
                        help="keep the temporary directory (configs, logs, certificates)")
    return parser


def out(line):
    print(line, flush=True)


def _wait_forever():
    signal.pause()


def run_cluster(args, workdir):
    from clsd.demo.cluster import FIRST_ADDRESS, ClusterDemo, DemoError

    demo = None
    try:
        demo = ClusterDemo(workdir, out, fast=args.fast,
                           first_address=args.first_address or FIRST_ADDRESS)
        # SIGTERM and SIGHUP stop everything as Ctrl-C does.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, _interrupt)
        out(f"clsd three-node demo in {workdir}")
        if args.keep:
            demo.keep(_wait_forever)
        else:
            demo.run()
        return 0
    except (DemoError, ValueError, OSError, RuntimeError, AssertionError) as e:
        out(f"demo FAILED: {e}")
        out(f"(logs: {workdir}/nodes/NODE/twistd.log; kept with --keep-files)")
        return 1
    except KeyboardInterrupt:
        out("\ninterrupted: stopping every daemon and service")
        return 130
    finally:
        if demo is not None:
            demo.close()


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None):
    args = build_parser().parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="clsd-demo-")
    try:
        if args.single:
            try:
                single.run(workdir, out)
            except single.DemoError as e:
                out(f"demo FAILED: {e} (see {workdir}/twistd.log)")
                return 1
            return 0
        return run_cluster(args, workdir)
    finally:
        if args.keep_files:
            out(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
