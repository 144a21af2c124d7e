"""Failover of an ordered group beside a single service, same run (``bench/failover.py --group N``).

Two rigs, one after the other, each three real daemons on loopback (alpha,
beta, witness) with cluster A (alpha preferred): first A run by one protected
service, then A run by an ordered group of N protected services. Every
protected service becomes ready (serves HTTP) ``--ready-delay`` seconds (50 ms)
after it starts, and its health check (every 10 ms, rise 1) says when it runs,
so each member is started once the one before it answers.

Each trial kills the owner's daemon and its services (kill -9) and polls every
member's HTTP address on the standby every 2 ms until each answers with a new
instance. Per trial:

- ``failover``: the fault until the last member answers;
- per member, its own start time: its spawn (the new owner's ``spawned`` event,
  on the same monotonic clock) until it answers;
- ``added``: from the first member's spawn until the last member answers,
  minus the members' own start times: what the group's sequencing adds
  (the health check finding a member ready, the next spawn). The issue's goal:
  at most 20 ms per member, reported at the p50 and the p99;
- ``load``: the machine's 1-minute load average when the trial began (the
  added time's tail grows with it: the daemon waits for a CPU).

The checker runs over every record of both rigs: no member may overlap its
other copy. Writes bench/results/failover_group.json and prints a table.
"""

import json
import os
import time

from _harness import summary_ms

from rig.cluster import GroupClusterRig, ClusterRig, active_standby, member_resource
from rig.failover import FailoverRig, http_identity, log_offset, wait_rejoined
from rig.faults.cleanup import Cleanups
from rig.launcher import Launcher

CLUSTER = "A"
#: A health check that finds a ready member within 10 ms.
FAST_CHECK = {"type": "http", "interval": 0.01, "timeout": 0.01, "fall": 3, "rise": 1,
              "grace": 2.0}
POLL = 0.002
TIMEOUT = 30.0


def member_names(count):
    return tuple(f"m{i + 1}" for i in range(count))


def run(args, timing, workdir, say):
    """C{{"single": {...}, "group-N": {...}}}: both rigs' figures."""
    results = {}
    for label, members in (("single", None), (f"group-{args.group}", member_names(args.group))):
        results[label] = run_rig(label, members, args, timing, workdir / label, say)
    single, group = results["single"], results[f"group-{args.group}"]
    if single["failover"].get("count") and group["failover"].get("count"):
        group["added_vs_single_p50_ms"] = round(
            group["failover"]["p50_ms"] - single["failover"]["p50_ms"], 3)
    return results


def run_rig(label, members, args, timing, workdir, say):
    cleanups = Cleanups()
    layout = active_standby(CLUSTER)
    if members is None:
        cluster_rig = ClusterRig(layout, timing, ready_delay=args.ready_delay, check=FAST_CHECK)
        resources = [CLUSTER]
        services = ["system-a"]
    else:
        cluster_rig = GroupClusterRig(layout, members, timing, ready_delay=args.ready_delay,
                                      check=FAST_CHECK)
        resources = [member_resource(CLUSTER, m) for m in members]
        services = [f"system-a-{m}" for m in members]
    launcher = Launcher(workdir, list(layout.nodes), template=cluster_rig.template(),
                        cleanups=cleanups)
    trials = []
    try:
        rig = FailoverRig(launcher, cluster_rig)
        launcher.start_all()
        rig.wait_owner(resources[-1], timeout=60)
        say(f"  {label}: {len(resources)} service(s), ready {args.ready_delay * 1000:.0f} ms "
            f"after start, lease {timing.lease_seconds:g} s, {args.trials} kill trials")
        for index in range(args.trials):
            trials.append(one_trial(rig, resources, services, timing.lease_seconds))
            if trials[-1].get("error"):
                say(f"    trial {index + 1}: FAILED: {trials[-1]['error']}")
            elif (index + 1) % 10 == 0:
                t = trials[-1]
                say(f"    {index + 1}/{args.trials}: failover {t['failover_s'] * 1000:.0f} ms, "
                    f"added {t['added_s'] * 1000:.1f} ms")
        report = launcher.check(horizon=time.monotonic())
        ok = [t for t in trials if not t.get("error")]
        return {
            "services": len(resources),
            "trials": len(trials), "failed": len(trials) - len(ok),
            "failover": summary_ms([t["failover_s"] for t in ok]) if ok else {},
            "own_start": summary_ms([s for t in ok for s in t["own_s"]]) if ok else {},
            "added": summary_ms([t["added_s"] for t in ok]) if ok else {},
            "added_per_member_p50_ms": per_member(ok, len(resources), "p50_ms"),
            "added_per_member_p99_ms": per_member(ok, len(resources), "p99_ms"),
            "loadavg_1min": {"min": min(t["load"] for t in trials),
                             "max": max(t["load"] for t in trials)} if trials else {},
            "violations": [v.describe() for v in report.violations],
            "trials_detail": trials,
        }
    finally:
        launcher.teardown()
        cleanups.run_all()


def per_member(trials, members, key):
    """The C{key} percentile of the trials' added time divided by C{members}, in ms."""
    if not trials:
        return None
    return round(summary_ms([t["added_s"] / members for t in trials])[key], 3)


def one_trial(rig, resources, services, lease):
    launcher = rig.launcher
    owner = rig.wait_owner(resources[-1], timeout=TIMEOUT)
    [standby] = [n for n in rig.standbys(CLUSTER, owner)]
    old = {r: {i.instance for i in rig.running(r)} for r in resources}
    offsets = {name: log_offset(launcher, name) for name in launcher.nodes}
    # The machine's load: the added time's tail depends on it (the daemon waits for a CPU).
    trial = {"owner": owner, "load": round(os.getloadavg()[0], 2)}
    try:
        t0 = rig.kill_daemon(owner, services=True)
        ready = {}
        deadline = t0 + TIMEOUT
        while len(ready) < len(resources):
            if time.monotonic() > deadline:
                raise TimeoutError(f"members answering on {standby}: {sorted(ready)}")
            for resource in resources:
                if resource in ready:
                    continue
                identity = http_identity(rig.url(standby, resource))
                if (identity is not None and identity.get("cluster") == resource
                        and identity.get("instance") not in old[resource]):
                    ready[resource] = time.monotonic()
            time.sleep(POLL)
        spawned = spawn_times(launcher, standby, services, t0)
        own = [ready[r] - spawned[s] for r, s in zip(resources, services)]
        trial.update(failover_s=ready[resources[-1]] - t0, own_s=own,
                     added_s=(ready[resources[-1]] - spawned[services[0]]) - sum(own))
    except Exception as e:  # noqa: BLE001 - a failed trial is reported, the run goes on
        trial["error"] = f"{type(e).__name__}: {e}"
    finally:
        if not launcher.node(owner).running:
            launcher.start(owner)
        try:
            wait_rejoined(launcher, owner, offsets, hold=max(lease, 1.0), timeout=60)
        except AssertionError as e:
            trial.setdefault("error", f"not rejoined: {e}")
    return trial


def spawn_times(launcher, node, services, since):
    """Each service's first ``spawned`` event on C{node} after C{since} (monotonic)."""
    path = os.path.join(launcher.node(node).spec.data_dir, "events.jsonl")
    found = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            event = json.loads(line)
            if (event.get("kind") == "spawned" and event.get("subject") in services
                    and event["mono"] >= since and event["subject"] not in found):
                found[event["subject"]] = event["mono"]
    missing = [s for s in services if s not in found]
    if missing:
        raise LookupError(f"no spawned event on {node} for {', '.join(missing)}")
    return found


def table(results):
    nan = float("nan")
    lines = [f"{'rig':10} {'trials':>6} {'failed':>6} {'failover p50':>12} {'p99':>8} "
             f"{'own start p50':>13} {'added p50':>10} {'p99':>8} {'per member p50':>14} "
             f"{'p99':>8}"]
    for label, r in results.items():
        f, o, a = r["failover"], r["own_start"], r["added"]
        lines.append(f"{label:10} {r['trials']:>6} {r['failed']:>6} "
                     f"{f.get('p50_ms', nan):>10.0f}ms {f.get('p99_ms', nan):>6.0f}ms "
                     f"{o.get('p50_ms', nan):>11.1f}ms {a.get('p50_ms', nan):>8.1f}ms "
                     f"{a.get('p99_ms', nan):>6.1f}ms "
                     f"{(r['added_per_member_p50_ms'] or nan):>12.1f}ms "
                     f"{(r['added_per_member_p99_ms'] or nan):>6.1f}ms")
    return "\n".join(lines)
