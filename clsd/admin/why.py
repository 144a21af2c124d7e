"""``why CLUSTER``: the latest ownership change of a cluster and its cause chain, on one screen.

Pure: it reads the cluster records and the event history the backend gives and words them.
The cause chain of a move is recorded on the node that acquired the cluster (doc/admin.md,
``history``); a node that only saw its side of the change (it released or lost the lease, or
it is a witness) says so and names where to look.
"""

import attrs

from clsd.admin.backend import AdminError
from clsd.admin.table import printable, utc_time

#: How far back ``why`` looks: the daemon keeps this many events in memory.
WHY_HISTORY = 1000
#: Events shown around the change (before it, and the few that follow it).
CONTEXT_BEFORE = 30.0
CONTEXT_AFTER = 10.0
#: At most this many context lines: with the change and its causes, one 80x24 screen.
MAX_CONTEXT = 8

#: How the history words an ownership change of a cluster (clsd/ownership/reports.py).
_CHANGES = ("moved from ", "acquired lease ", "released lease ", "lost lease ")


@attrs.frozen
class WhyReport:
    cluster: str
    #: The cluster's record (L{clsd.admin.backend.ClusterInfo}), or None if not listed here.
    info: object
    #: The latest change seen here (a L{clsd.admin.backend.HistoryEvent}), or None.
    change: object
    #: Events of the cluster and of members around the change, oldest first.
    context: tuple
    #: Where the cause chain is when it is not here, or None.
    hint: str | None


def _subject(event):
    return event.kind.split(":", 1)[0]


def _is_change(event, cluster):
    return _subject(event) == cluster and event.detail.startswith(_CHANGES)


def why_report(cluster, clusters, events):
    """The L{WhyReport} of C{cluster} from C{clusters} (records) and C{events} (oldest first).

    L{AdminError} when neither names the cluster.
    """
    info = next((c for c in clusters if c.id == cluster), None)
    mentioned = any(_subject(e) == cluster for e in events)
    if info is None and not mentioned:
        raise AdminError(f"no cluster named {cluster!r} here (see 'clusters')")
    changes = [e for e in events if _is_change(e, cluster)]
    change = changes[-1] if changes else None
    context = ()
    if change is not None:
        members = {_subject(e) for e in events if e.kind.endswith(":member")}
        near = [e for e in events if e is not change
                and change.time - CONTEXT_BEFORE <= e.time <= change.time + CONTEXT_AFTER
                and (_subject(e) == cluster or _subject(e) in members)]
        context = tuple(near[-MAX_CONTEXT:])
    hint = None
    moved = change is not None and change.detail.startswith("moved from ")
    if not moved and info is not None and info.owners and info.role != "owner":
        hint = ("the cause chain is recorded on the node that acquired it: run "
                f"'why {cluster}' on {', '.join(info.owners)}")
    return WhyReport(cluster, info, change, context, hint)


def why_data(report):
    """``why --json``: the report as plain data."""
    return {
        "cluster": report.cluster,
        "summary": report.info.summary if report.info is not None else None,
        "role_text": report.info.role_text if report.info is not None else None,
        "epoch": report.info.epoch if report.info is not None else None,
        "change": attrs.asdict(report.change) if report.change is not None else None,
        "context": [attrs.asdict(e) for e in report.context],
        "hint": report.hint,
    }


def why_text(report):
    """``why`` for a reader: the cluster now, the change, its causes, what happened around it."""
    info = report.info
    lines = [f"cluster {printable(report.cluster)}: "
             + (f"{printable(info.summary or info.state)} (epoch {info.epoch}); this node: "
                f"{printable(info.role_text or '-')}" if info is not None else "not listed here")]
    change = report.change
    if change is None:
        lines.append("no ownership change of it in this node's history")
    else:
        lines.append(f"latest change: {utc_time(change.time)}  {printable(change.detail)}")
        lines.extend(f"  <- {printable(fact)}" for fact in change.cause)
        if report.context:
            lines.append("around it:")
            lines.extend(f"  {utc_time(e.time)}  {printable(e.kind)}  {printable(e.detail)}"
                         for e in report.context)
    if report.hint:
        lines.append(printable(report.hint))
    return "\n".join(lines) + "\n"
