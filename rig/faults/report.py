"""The run report: one JSON document for machines, one text page for people.

Times in the report are seconds since the run started (monotonic), so the
timeline of faults, windows of unavailability and failovers line up.
"""

import json
import statistics

from rig import checker


def _rel(t, start):
    return None if t is None else round(t - start, 3)


def _percentile(values, fraction):
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def build(*, schedule, run, scenario, final, during, log_problems, replay, bound=None,
          groups=()):
    """The report as a dict.

    @param final: the checker's L{checker.Report} over every record, through
        teardown: the safety verdict.
    @param during: the checker's report over the run up to recovery: the
        availability and failover figures (teardown is not an outage).
    @param bound: the L{rig.faults.availability.Verdict} of the run
        (scenarios with a cluster layout), or None.
    @param groups: the ordered groups whose start order the checker judged.
    """
    start = run.started_at
    timeline = []
    by_kind = {}
    for step in run.steps:
        event = step.event
        timeline.append({
            "at": event.at, "kind": event.kind, "targets": list(event.targets),
            "lasts": event.lasts, "params": event.params, "outcome": step.outcome,
            "applied": _rel(step.applied_at, start), "healed": _rel(step.healed_at, start),
        })
        if step.applied_at is not None:
            by_kind[event.kind] = by_kind.get(event.kind, 0) + 1

    unavailability = {}
    for window in during.unavailability:
        entry = unavailability.setdefault(window.cluster, {"windows": [], "total": 0.0, "worst": 0.0})
        entry["windows"].append({"from": _rel(window.start, start), "to": _rel(window.end, start),
                                 "seconds": round(window.duration, 3), "ongoing": window.ongoing})
        entry["total"] = round(entry["total"] + window.duration, 3)
        entry["worst"] = round(max(entry["worst"], window.duration), 3)

    failovers = []
    for failover in during.failovers:
        failovers.append({
            "fault": failover.fault.kind, "fault_at": _rel(failover.fault.t, start),
            "cluster": failover.cluster, "from": failover.interrupted.node,
            "to": failover.successor.node if failover.successor else None,
            "seconds": None if failover.time is None else round(failover.time, 3),
            "gap": None if failover.gap is None else round(failover.gap, 3),
        })
    times = [f["seconds"] for f in failovers if f["seconds"] is not None]

    violations = [v.describe() for v in final.violations]
    reasons = []
    if violations:
        reasons.append(f"{len(violations)} safety violation(s)")
    if run.recovery_error:
        reasons.append(f"no recovery: {run.recovery_error}")
    views_error = getattr(run, "views_error", None)
    if views_error:
        reasons.append(f"views not converged: {views_error}")
    if log_problems:
        reasons.append(f"{len(log_problems)} crash line(s) in daemon logs")
    if final.problems:
        reasons.append(f"{len(final.problems)} unreadable record line(s)")
    errors = [s for s in timeline if s["outcome"].startswith(("error", "heal error"))]
    if errors:
        reasons.append(f"{len(errors)} fault(s) the rig failed to apply or heal")
    bound_report = None
    if bound is not None:
        bound_report = {
            "bound": bound.bound,
            "exceeded": [e.describe(start) for e in bound.exceeded],
            "worst_recovery": bound.worst_recovery,
            "required_seconds": bound.required_seconds,
        }
        if bound.exceeded:
            reasons.append(f"{len(bound.exceeded)} stretch(es) with a cluster down past its "
                           f"failover bound ({bound.bound}s) while the faults allowed it to run")

    return {
        "verdict": "FAIL" if reasons else "PASS",
        "reasons": reasons,
        "scenario": getattr(scenario, "description", scenario.name),
        "seed": schedule.seed,
        "nodes": list(schedule.nodes),
        "duration": schedule.duration,
        #: The protected services escaped their process group (schedule version 4).
        "escaping": bool(getattr(schedule, "escaping", False)),
        "replay": replay,
        "faults_by_kind": by_kind,
        "timeline": timeline,
        "violations": violations,
        "unbounded_instances": [i.describe() for i in final.unbounded],
        "unavailability": unavailability,
        "failovers": failovers,
        "failover_summary": {
            "count": len(failovers), "recovered": len(times),
            "p50": _percentile(times, 0.5), "p99": _percentile(times, 0.99),
            "max": max(times) if times else None,
            "mean": round(statistics.fmean(times), 3) if times else None,
        },
        "recovery": {
            "healed_at": _rel(run.healed_at, start),
            "seconds": None if run.recovered_at is None else round(run.recovered_at - run.healed_at, 3),
            "error": run.recovery_error,
        },
        "views": {
            "converged": None if getattr(run, "converged_at", None) is None
            else round(run.converged_at - run.healed_at, 3),
            "error": views_error,
        },
        "failover_bound": bound_report,
        "log_problems": log_problems,
        "record_problems": list(final.problems),
        "instances": len(final.intervals),
        "groups": sorted(groups),
        "after_pause": [{"node": a.pause.node, "paused": round(a.pause.end - a.pause.start, 3),
                         "cluster": a.interval.cluster, "ran": round(a.ran, 3),
                         "overlapped": round(a.overlapped, 3), "bound": round(a.pause.bound, 3)}
                        for a in final.after_pause],
    }


def to_json(report):
    return json.dumps(report, indent=2, sort_keys=True) + "\n"


def to_text(report):
    lines = [
        f"CLSD fault run: {report['verdict']}"
        + (f" ({'; '.join(report['reasons'])})" if report["reasons"] else ""),
        f"scenario {report['scenario']}, seed {report['seed']}, nodes {', '.join(report['nodes'])}, "
        f"duration {report['duration']}s, {report['instances']} service instance(s)",
        f"replay: {report['replay']}",
        "",
        "Timeline (seconds since start)",
    ]
    for step in report["timeline"]:
        params = " ".join(f"{k}={v}" for k, v in sorted(step["params"].items()))
        lasting = f" for {step['lasts']}s" if step["lasts"] is not None else ""
        lines.append(f"  {step['at']:8.2f}  {step['kind']:<15} {','.join(step['targets']):<20}"
                     f"{lasting:<12} {params}  [{step['outcome']}]")
    if not report["timeline"]:
        lines.append("  (no faults scheduled)")
    lines += ["", "Safety"]
    if report["violations"]:
        lines += [f"  {v}" for v in report["violations"]]
    else:
        lines.append("  no overlap, no stale epoch, no epoch reuse"
                     + "".join(f", group {g}'s members started in order"
                               for g in report.get("groups", ())))
    for a in report.get("after_pause", ()):
        lines.append(f"  after a {a['paused']}s pause of {a['node']}: its {a['cluster']} ran "
                     f"{a['ran']}s more, {a['overlapped']}s beside another (bound {a['bound']}s)")
    if report["unbounded_instances"]:
        lines.append(f"  {len(report['unbounded_instances'])} instance(s) with no observed end "
                     "(counted as running to the end)")
    lines += ["", "Unavailability per cluster"]
    if report["unavailability"]:
        for cluster, entry in sorted(report["unavailability"].items()):
            lines.append(f"  {cluster}: {len(entry['windows'])} window(s), total {entry['total']}s, "
                         f"worst {entry['worst']}s")
    else:
        lines.append(f"  none longer than {checker.DEFAULT_MAX_GAP}s")
    bound = report.get("failover_bound")
    if bound is not None:
        lines += ["", f"Failover bound during the run ({bound['bound']}s while the faults "
                  "allowed a cluster to run)"]
        lines += [f"  {e}" for e in bound["exceeded"]] or ["  never exceeded"]
        for cluster, seconds in sorted(bound["worst_recovery"].items()):
            lines.append(f"  {cluster}: required {bound['required_seconds'][cluster]}s, "
                         f"worst time to recover {seconds}s")
    summary = report["failover_summary"]
    lines += ["", "Failovers and restarts after faults"]
    if summary["count"]:
        lines.append(f"  {summary['count']} interrupted, {summary['recovered']} recovered; "
                     f"p50 {summary['p50']}s, p99 {summary['p99']}s, max {summary['max']}s")
        for f in report["failovers"]:
            lines.append(f"  {f['fault_at']:8.2f}  {f['fault']:<15} {f['cluster']}: "
                         f"{f['from']} -> {f['to']} in {f['seconds']}s")
    else:
        lines.append("  none")
    recovery = report["recovery"]
    lines += ["", "Recovery after the final heal: "
              + (f"{recovery['seconds']}s" if recovery["error"] is None else recovery["error"])]
    views = report.get("views", {})
    if views.get("converged") is not None:
        lines.append(f"Every view shows every node alive: {views['converged']}s after the heal")
    elif views.get("error"):
        lines.append(f"Views not converged: {views['error']}")
    if report["log_problems"]:
        lines += ["", "Daemon log problems"] + [f"  {p}" for p in report["log_problems"][:50]]
    if report["record_problems"]:
        lines += ["", "Unreadable records"] + [f"  {p}" for p in report["record_problems"][:50]]
    return "\n".join(lines) + "\n"
