#!/usr/bin/env python3
"""Connection floods without a certificate against the owner of a real 3-node cluster.

Three real ``twistd clsd`` daemons on loopback (alpha owns cluster ID ``A``,
beta stands by, witness votes; see bench/_peer_rig.py). Floods of increasing
size hit alpha's peer port from ``--sources`` loopback addresses (20, a
reserved block of their own), in two kinds:

  - ``tcp``: connect and hold (no byte sent);
  - ``hello``: connect, send a real TLS ClientHello, then stall.

Each flood is opened as fast as non-blocking connects go (by processes of
at most 8,000 connections each: one process's descriptors are limited), held for
``--hold`` seconds and closed at once. Meanwhile alpha's metrics are scraped
every 0.1 s for its renewals of A (count and summed round trip), and its
resident size (VmRSS) every 0.2 s, and for as long again before the flood
for comparison. A flood is survived when A stays with the
same instance and epoch, no member changes state, and no gap between two
renewals reaches two renewal periods (2 x lease/3: one renewal missed).
After each flood the script waits for alpha's "peer flood over" line (the
freed heap returned with malloc_trim) and reads the RSS again. Sizes go up
until one is not survived; the largest survived one is the result per kind.

Usage: python bench/peer_flood.py [--sizes 1000,5000,10000,20000]
           [--kinds tcp,hello] [--hold 8] [--output peer_flood.json]
The default sizes are a quick look (1000,3000). Writes bench/results/<output>
and prints a table. Every process is stopped at the end, Ctrl-C included.
"""

import argparse
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import (  # noqa: E402
    interrupts_as_exceptions, machine_info, remove_tree, write_json,
)
from _peer_rig import OWNER, PeerRig  # noqa: E402

from rig.addresses import reserve  # noqa: E402
from rig.flood import Flood, RenewalWatch, resident_mb  # noqa: E402

KINDS = ("tcp", "hello")
#: Connections one flood process holds: the hard descriptor limit (20,000
#: here, and not raisable in a container without CAP_SYS_RESOURCE) bounds
#: one process, so larger floods are split over several.
PER_PROCESS = 8_000


def _flood_process(target, sources, hello, count, opened, close):
    flood = Flood(target, sources, hello=hello)
    opened.send((flood.open(count, timeout=30.0), flood.errors))
    close.wait()
    flood.close()
    opened.send("closed")


class SplitFlood:
    """A L{Flood} spread over processes of at most L{PER_PROCESS} connections each."""

    def __init__(self, target, sources, *, hello=False):
        self.target = target
        self.sources = sources
        self.hello = hello
        self.errors = 0
        self._workers = []
        self._close = multiprocessing.Event()

    def open(self, count):
        shares = [PER_PROCESS] * (count // PER_PROCESS)
        if count % PER_PROCESS:
            shares.append(count % PER_PROCESS)
        for share in shares:
            here, there = multiprocessing.Pipe()
            process = multiprocessing.Process(
                target=_flood_process,
                args=(self.target, self.sources, self.hello, share, there, self._close),
                daemon=True)
            process.start()
            self._workers.append((process, here))
        opened = 0
        for _process, pipe in self._workers:
            n, errors = pipe.recv()
            opened += n
            self.errors += errors
        return opened

    def close(self):
        self._close.set()
        for process, pipe in self._workers:
            if pipe.poll(30):
                pipe.recv()
            process.join(10)
            if process.is_alive():
                process.kill()
        self._workers = []
#: The flood-over line comes one summary interval (10 s) plus one quiet one after the end.
FLOOD_OVER_TIMEOUT = 45.0
SETTLE = 2.0


def one_flood(rig, sources, kind, size, hold, log):
    pid = rig.pid()
    offsets = rig.log_offsets()
    state = rig.state()
    time.sleep(SETTLE)
    rss_before = resident_mb(pid)
    watch = RenewalWatch(rig.metrics_url(), "A").start()
    quiet_from = time.monotonic()
    time.sleep(hold)  # the same window without a flood, to compare
    quiet_to = time.monotonic()
    flood = SplitFlood(rig.target(), sources, hello=(kind == "hello"))
    started = time.monotonic()
    try:
        opened = flood.open(size)
        open_seconds = time.monotonic() - started
        rss_peak = resident_mb(pid)
        until = time.monotonic() + hold
        while time.monotonic() < until:
            rss_peak = max(rss_peak, resident_mb(pid) or 0)
            time.sleep(0.2)
    finally:
        flood.close()
    ended = time.monotonic()
    over = rig.wait_logged(OWNER, offsets[OWNER], "peer flood over", FLOOD_OVER_TIMEOUT)
    time.sleep(0.5)
    rss_after = resident_mb(pid)
    watch.stop()
    renewals = watch.window(started, ended)
    baseline = watch.window(quiet_from, quiet_to)
    changes = rig.member_changes(offsets)
    lines = rig.log_lines_since(OWNER, offsets[OWNER])
    same = rig.state() == state
    late = renewals.get("longest_gap_s", 0) >= 2 * rig.lease / 3
    result = {
        "kind": kind, "size": size, "opened": opened, "connect_errors": flood.errors,
        "open_seconds": round(open_seconds, 2), "hold_seconds": hold,
        "rss_mb": {"before": round(rss_before, 1), "peak": round(rss_peak, 1),
                   "after": round(rss_after, 1)},
        "rss_after_vs_before": round(rss_after / rss_before, 3),
        "renewals": renewals,
        "renewals_without_flood": baseline,
        "flood_over_logged": over,
        "owner_log_lines": len(lines),
        "owner_log_sample": lines[:4],
        "member_changes": {k: v for k, v in changes.items() if v},
        "lease_kept": same,
        "survived": same and not late and not any(changes.values()),
    }
    log(f"  {kind:5} {size:6}: opened {opened} in {open_seconds:.1f} s, RSS "
        f"{rss_before:.0f}/{rss_peak:.0f}/{rss_after:.0f} MB, renewals "
        f"{renewals.get('renewals')} (gap {renewals.get('longest_gap_s')} s, round trip "
        f"{renewals.get('mean_round_trip_ms')} ms; without flood: gap "
        f"{baseline.get('longest_gap_s')} s, {baseline.get('mean_round_trip_ms')} ms), "
        f"{len(lines)} log lines, "
        f"{'survived' if result['survived'] else 'NOT survived'}")
    return result


def table(results):
    rows = ["kind   size    opened  RSS before/peak/after MB  after/before  renewals  "
            "longest gap s  round trip ms  (without flood)  log lines  survived"]
    for r in results:
        rss, ren, base = r["rss_mb"], r["renewals"], r["renewals_without_flood"]
        rows.append(
            f"{r['kind']:6} {r['size']:6}  {r['opened']:6}  "
            f"{rss['before']:6.1f}/{rss['peak']:6.1f}/{rss['after']:6.1f}     "
            f"{r['rss_after_vs_before']:6.3f}      {ren.get('renewals', '-'):>6}  "
            f"{ren.get('longest_gap_s', '-'):>13}  {str(ren.get('mean_round_trip_ms')):>13}  "
            f"({base.get('longest_gap_s')} s, {base.get('mean_round_trip_ms')} ms)  "
            f"{r['owner_log_lines']:9}  {r['survived']}")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,3000",
                        help="comma-separated flood sizes, increasing (default 1000,3000)")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--hold", type=float, default=8.0, help="seconds each flood is held")
    parser.add_argument("--sources", type=int, default=20,
                        help="loopback source addresses of the flood (default 20: more than "
                             "max_pending / max_pending_per_address, so both caps are hit)")
    parser.add_argument("--output", default="peer_flood.json")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(",") if s.strip())
    kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for kind in kinds:
        if kind not in KINDS:
            parser.error(f"--kinds: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-flood-"))
    info = machine_info()
    results, status = [], 0
    rig = PeerRig(workdir / "rig")
    reservation = reserve(args.sources)
    try:
        with interrupts_as_exceptions():
            rig.start()
            print(f"cluster up; owner {OWNER}; lease {rig.lease} s")
            for kind in kinds:
                for size in sizes:
                    result = one_flood(rig, reservation.addresses, kind, size, args.hold, print)
                    results.append(result)
                    if not result["survived"]:
                        break
            violations = rig.violations()
            problems = rig.log_problems()
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        print(f"benchmark failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
        violations, problems = None, None
    finally:
        rig.stop()
        reservation.release()
        if args.keep or status:
            print(f"work directory kept: {workdir}")
        else:
            remove_tree(workdir)
    largest = {kind: max([r["size"] for r in results if r["kind"] == kind and r["survived"]],
                         default=0) for kind in kinds}
    data = {
        "benchmark": "peer_flood",
        "description": __doc__.split("\n\n")[0],
        "machine": info,
        "goal": "20000 connections survived, RSS after within 10 % of before",
        "hold_seconds": args.hold,
        "source_addresses": args.sources,
        "largest_survived": largest,
        "overlap_violations": violations,
        "log_problems": problems,
        "floods": results,
    }
    written = write_json(args.output, data)
    print(table(results))
    print(f"largest flood survived: {largest}; overlaps: {violations}; "
          f"tracebacks/problems: {problems}")
    print(f"written to {written}")
    return status


if __name__ == "__main__":
    sys.exit(main())
