#!/usr/bin/env python3
"""Failover time: fail the owner of a cluster ID; how long until the service answers on the standby?

Three real ``twistd clsd`` daemons on loopback (alpha, beta, witness; each on
its own 127.0.0.x, mutual TLS from one test CA, three voters), one
active-standby cluster ID ``A`` registered on alpha (priority 100) and beta
(50), run by the protected test service, which serves HTTP on the node's
address and records every start and stop.

Each trial applies one fault to whichever node owns A now:
  - ``kill``: kill -9 the owner's daemon and its service (a machine crash);
  - ``partition``: drop every packet between the owner's address and the
    other two (nft on ``lo``), leaving the owner running in a minority.
One sample is the time from just before the fault (time.monotonic) until an
HTTP GET to the standby's address is answered by a new instance of A,
polled every 10 ms. Then the fault is undone (the node restarted, or the
rules lifted), and the next trial waits until all three see each other alive
(their logs' membership lines since the fault: none, or "alive" last) for one
lease in a row, so that every trial starts from a full cluster. There is no
preempt, so the owner alternates between alpha and beta.

Overlap: the checker runs over every start/stop record of the run; the worst
overlap of two instances of A (in seconds) must be 0. Per trial, the gap
between the old instance's end and the new one's start is kept too.

Profiles: ``default`` (the shipped settings: lease 2 s, membership defaults)
and ``fast`` (lease 0.6 s with membership timings to match, see
rig.cluster.FAST_TIMING). Both set ``reconnect_interval`` to 1 s: it
only decides how soon a healed partition is rejoined between trials, not the
measured failover time; the default of 30 s would make each partition trial
half a minute longer.

Arbiters: ``--arbiter voters`` (the above) or ``etcd``: then two nodes (alpha,
beta; no witness) take their leases from one real etcd member on its own
127.0.0.x (TLS with client certificates, see rig.etcd), and
``partition`` cuts the owner off from beta *and* from etcd. etcd lease TTLs
are whole seconds, so its ``fast`` profile uses a 1 s lease (the etcd member
runs with a 500 ms election timeout, which allows it) with the fast membership
timings. Its profiles are recorded as ``etcd-default`` and ``etcd-fast``.

Usage: python bench/failover.py [--trials 50] [--profile default|fast|both]
           [--kinds kill,partition] [--arbiter voters|etcd|both]
       python bench/failover.py --address [...]: at a floating address, in network
           namespaces (bench/address_failover.py says more)
       python bench/failover.py --group 3 [--trials 30] [--profile fast]: an ordered
           group of 3 beside a single service, same run (bench/group_failover.py says
           more; writes failover_group.json)
Writes bench/results/failover.json (profiles run before are kept; with
``--arbiter etcd`` the default is failover_etcd.json) and prints a table. Partitions need root and nft. Every process and rule is removed at
the end, Ctrl-C included.
"""

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import (  # noqa: E402
    RESULTS_DIR, interrupts_as_exceptions, machine_info, remove_tree, summary_ms,
    uninterruptible, write_json,
)

from rig import checker  # noqa: E402
from rig.cluster import TIMINGS, ClusterRig, active_standby  # noqa: E402
from rig.etcd import EtcdCluster, etcd_cluster_rig, etcd_layout  # noqa: E402
from rig.faults import topology  # noqa: E402
from rig.failover import FailoverRig, log_offset, wait_rejoined  # noqa: E402
from rig.faults import network  # noqa: E402
from rig.faults.cleanup import Cleanups, owned_name  # noqa: E402
from rig.launcher import Launcher  # noqa: E402

CLUSTER = "A"
KINDS = ("kill", "partition")
#: Between trials: how soon a healed or restarted node is rejoined (see above).
BENCH_MEMBERSHIP = {"reconnect_interval": 1.0}
#: A trial with no answer on the standby this long after the fault failed.
FAILOVER_TIMEOUT = 30.0
#: Three failed trials in a row: the cluster is broken, stop.
MAX_FAILED_IN_A_ROW = 3


class Trial:
    def __init__(self, kind, owner, standby):
        self.kind, self.owner, self.standby = kind, owner, standby
        self.seconds = None
        self.gap = None
        self.error = None

    def as_json(self):
        return {"kind": self.kind, "owner": self.owner, "standby": self.standby,
                "seconds": None if self.seconds is None else round(self.seconds, 4),
                "gap_s": None if self.gap is None else round(self.gap, 4),
                "error": self.error}


#: etcd's profiles: leases are whole seconds there (see the module docstring).
ETCD_LEASES = {"default": 2.0, "fast": 1.0}


def run_profile(profile, args, workdir, say, arbiter="voters"):
    timing = TIMINGS[profile].with_membership(**BENCH_MEMBERSHIP)
    name = profile if arbiter == "voters" else f"etcd-{profile}"
    cleanups = Cleanups()
    launcher = firewall = etcd = None
    trials = []
    rng = random.Random(args.seed)
    try:
        if arbiter == "etcd":
            import attrs

            timing = attrs.evolve(timing, name=name, lease=ETCD_LEASES[profile])
            etcd = EtcdCluster(workdir / name / "etcd", 1,
                               ca_dir=str(workdir / name / "rig" / "ca"), cleanups=cleanups)
            etcd.start()
            cluster_rig = etcd_cluster_rig(etcd_layout(CLUSTER), timing, etcd)
        else:
            cluster_rig = ClusterRig(active_standby(CLUSTER), timing)
        lease = timing.lease_seconds
        launcher = Launcher(workdir / name / "rig", list(cluster_rig.layout.nodes),
                            template=cluster_rig.template(), cleanups=cleanups)
        if "partition" in args.kinds:
            firewall = network.Firewall(name=owned_name("bfo"), backend=network.default_backend(),
                                        cleanups=cleanups)
        rig = FailoverRig(launcher, cluster_rig, firewall)
        rig.etcd_addresses = etcd.addresses if etcd is not None else []
        if etcd is not None:
            # The first node up takes a free etcd key at once: alpha first.
            launcher.start("alpha")
            rig.wait_owner(CLUSTER, timeout=60)
            launcher.start("beta")
            time.sleep(lease)
        else:
            launcher.start_all()
        rig.wait_owner(CLUSTER, timeout=60)
        say(f"  {name}: cluster {CLUSTER} runs on {rig.owner(CLUSTER)}; "
            f"lease {lease:g} s, {args.trials} trials of {', '.join(args.kinds)}")
        failed_in_a_row = 0
        for index in range(args.trials):
            for kind in args.kinds:
                trial = one_trial(rig, kind, lease, rng)
                trials.append(trial)
                if trial.error:
                    failed_in_a_row += 1
                    say(f"    trial {index + 1} {kind}: FAILED: {trial.error}")
                    if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                        raise RuntimeError(f"{failed_in_a_row} failed trials in a row; "
                                           f"logs in {workdir / name}")
                else:
                    failed_in_a_row = 0
            if (index + 1) % 10 == 0:
                say(f"    {index + 1}/{args.trials}: " + ", ".join(
                    f"{t.kind} {t.seconds * 1000:.0f} ms" for t in trials[-len(args.kinds):]
                    if t.seconds is not None))
        horizon = time.monotonic()
        report = launcher.check(horizon=horizon)
        return result(profile, timing, trials, report, launcher, arbiter)
    finally:
        with uninterruptible():
            if firewall is not None:
                firewall.close()
            if launcher is not None:
                launcher.teardown()
            if etcd is not None:
                etcd.teardown()
            cleanups.run_all()


def one_trial(rig, kind, lease, rng):
    launcher = rig.launcher
    owner = rig.wait_owner(CLUSTER, timeout=FAILOVER_TIMEOUT)
    [old] = rig.running(CLUSTER)
    [standby] = rig.standbys(CLUSTER, owner)
    trial = Trial(kind, owner, standby)
    # Off any timer's beat: renewals come every lease/3.
    time.sleep(rng.uniform(0, lease / 3))
    token = None
    offsets = {name: log_offset(launcher, name) for name in launcher.nodes}
    try:
        if kind == "kill":
            t0 = rig.kill_daemon(owner, services=True)
        elif rig.etcd_addresses:
            # Off the network: cut from the other node and from etcd.
            address = launcher.address(owner)
            others = [launcher.address(n) for n in launcher.nodes if n != owner]
            pairs = topology.isolate(address, others + list(rig.etcd_addresses))
            t0 = time.monotonic()
            token = rig.firewall.block(pairs)
        else:
            t0, token = rig.isolate(owner)
        t1, node, identity = rig.wait_answer(CLUSTER, [standby], not_instance=old.instance,
                                             timeout=FAILOVER_TIMEOUT)
        trial.seconds = t1 - t0
        old_end = interval_of(launcher, old.instance).end
        new_start = interval_of(launcher, identity["instance"]).start
        if old_end is not None:
            trial.gap = new_start - old_end
    except Exception as e:  # noqa: BLE001 - a failed trial is reported, the run goes on
        trial.error = f"{type(e).__name__}: {e}"
    finally:
        if token is not None:
            rig.heal(token)
        if not launcher.node(owner).running:
            launcher.start(owner)
        try:
            # Held for one lease: a pending suspicion would show by then.
            wait_rejoined(launcher, owner, offsets, hold=max(lease, 1.0), timeout=60)
        except AssertionError as e:
            trial.error = trial.error or f"not rejoined: {e}"
    return trial


def interval_of(launcher, instance):
    for interval in checker.intervals(launcher.records().records):
        if interval.instance == instance:
            return interval
    raise LookupError(f"no records of instance {instance}")


def result(profile, timing, trials, report, launcher, arbiter="voters"):
    overlaps_a = [o for o in report.overlaps if o.cluster == CLUSTER]
    out = {
        "settings": {"arbiter": arbiter, "lease": timing.lease_seconds,
                     "drift_margin": timing.drift_margin, "membership": timing.membership},
        "worst_overlap_s": round(max((o.duration for o in overlaps_a), default=0.0), 6),
        "violations": [v.describe() for v in report.violations],
        "log_problems": launcher.log_problems()[:20],
        "kinds": {},
        "trials": [t.as_json() for t in trials],
    }
    for kind in sorted({t.kind for t in trials}):
        ok = [t for t in trials if t.kind == kind and t.seconds is not None]
        gaps = [t.gap for t in trials if t.kind == kind and t.gap is not None]
        entry = {"trials": sum(t.kind == kind for t in trials),
                 "failed": sum(t.kind == kind and t.error is not None for t in trials)}
        if ok:
            entry.update(summary_ms([t.seconds for t in ok]))
        if gaps:
            entry["min_gap_ms"] = round(min(gaps) * 1000, 3)
        out["kinds"][kind] = entry
    return out


def table(profiles):
    lines = [f"{'profile':12} {'fault':10} {'trials':>6} {'failed':>6} {'p50 ms':>8} "
             f"{'p99 ms':>8} {'max ms':>8} {'min gap ms':>10} {'worst overlap':>13}"]
    for name, data in profiles.items():
        for kind, k in data["kinds"].items():
            lines.append(
                f"{name:12} {kind:10} {k['trials']:>6} {k['failed']:>6} "
                f"{k.get('p50_ms', float('nan')):>8.0f} {k.get('p99_ms', float('nan')):>8.0f} "
                f"{k.get('max_ms', float('nan')):>8.0f} {k.get('min_gap_ms', float('nan')):>10.1f} "
                f"{data['worst_overlap_s']:>12.3f}s")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=50, help="trials per fault kind")
    parser.add_argument("--profile", choices=("default", "fast", "both"), default="both")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="comma-separated: kill, partition (default both)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the random pauses")
    parser.add_argument("--arbiter", choices=("voters", "etcd", "both"), default="voters",
                        help="who grants the leases (etcd: one real etcd member)")
    parser.add_argument("--output", default=None,
                        help="file name under bench/results/ (default failover.json, "
                             "failover_etcd.json with --arbiter etcd or both)")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    parser.add_argument("--group", type=int, default=0, metavar="N",
                        help="failover of an ordered group of N services beside a single "
                             "service (kill -9 only; bench/group_failover.py)")
    parser.add_argument("--ready-delay", type=float, default=0.05, metavar="SECONDS",
                        help="with --group: each service is ready this long after it starts")
    args = parser.parse_args(argv)
    if args.group:
        return group_main(args)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    for kind in args.kinds:
        if kind not in KINDS:
            parser.error(f"--kinds: unknown fault {kind!r} (known: {', '.join(KINDS)})")
    profiles = ["default", "fast"] if args.profile == "both" else [args.profile]
    arbiters = ["voters", "etcd"] if args.arbiter == "both" else [args.arbiter]
    if args.output is None:
        args.output = "failover.json" if arbiters == ["voters"] else "failover_etcd.json"

    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-failover-"))
    info = machine_info()
    done = {}
    status = 0
    try:
        with interrupts_as_exceptions():
            for arbiter in arbiters:
                for profile in profiles:
                    name = profile if arbiter == "voters" else f"etcd-{profile}"
                    done[name] = run_profile(profile, args, workdir, print, arbiter)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        status = 130
    except Exception as e:  # noqa: BLE001
        print(f"benchmark failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        if args.keep or status:
            print(f"work directory kept: {workdir}")
        else:
            remove_tree(workdir)
    if not done:
        return status or 1
    previous = {}
    path = RESULTS_DIR / args.output
    if path.exists():
        try:
            previous = json.loads(path.read_text()).get("profiles", {})
        except ValueError:
            previous = {}
    data = {
        "benchmark": "failover",
        "description": __doc__.split("\n\n")[0],
        "cluster": CLUSTER,
        "trials_per_kind": args.trials,
        "machine": info,
        "goal": {"default": "p50 <= 2500 ms, p99 <= 3500 ms", "fast": "p50 <= 1000 ms",
                 "worst_overlap_s": 0},
        "arbiters": arbiters,
        "profiles": {**previous, **{name: {**d, "machine": info} for name, d in done.items()}},
    }
    written = write_json(args.output, data)
    print(table(done))
    print(f"written to {written}")
    if any(d["worst_overlap_s"] > 0 or d["violations"] for d in done.values()):
        print("OVERLAP: two nodes ran cluster A at once", file=sys.stderr)
        return 2
    return status


def group_main(args):
    import group_failover

    if args.group < 1:
        raise SystemExit("--group: N must be at least 1")
    profile = "fast" if args.profile == "both" else args.profile
    timing = TIMINGS[profile].with_membership(**BENCH_MEMBERSHIP)
    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-group-"))
    info = machine_info()
    status = 0
    results = None
    try:
        with interrupts_as_exceptions():
            results = group_failover.run(args, timing, workdir, print)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        status = 130
    finally:
        if args.keep or status or results is None:
            print(f"work directory kept: {workdir}")
        else:
            remove_tree(workdir)
    if results is None:
        return status or 1
    info["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    data = {
        "benchmark": "failover --group",
        "description": group_failover.__doc__.split("\n\n")[0],
        "profile": profile, "lease": timing.lease_seconds, "group": args.group,
        "ready_delay_s": args.ready_delay, "trials": args.trials, "machine": info,
        "goal": "added <= 20 ms per member; no overlap",
        "rigs": results,
    }
    output = args.output or "failover_group.json"
    written = write_json(output, data)
    print(group_failover.table(results))
    print(f"written to {written}")
    if any(r["violations"] for r in results.values()):
        print("OVERLAP: a member ran on two nodes at once", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__" and "--address" in sys.argv[1:]:
    from address_failover import main as address_main

    sys.exit(address_main(sys.argv[1:]))
elif __name__ == "__main__":
    sys.exit(main())
