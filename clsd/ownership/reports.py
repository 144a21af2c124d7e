"""The ownership core's reports (L{Report}) as the operator sees them: records in the event
history, and the sparse ``lease.renewed`` log line."""

from clsd.logs import emit
from clsd.ownership.core.cause import is_planned, move_cause

#: ``lease.renewed`` is logged sparingly: the first renewal of a tenure, then
#: at most once per this many seconds per resource (a renewal happens every
#: lease/3, about once a second by default: logging each would drown the
#: JSON log and push everything else out of its rotation).  Renewals are
#: never in the event history; their latency is in the metrics.
RENEWED_LOG_INTERVAL = 60.0


class ReportRecorder:
    """Turn this node's lease reports into event records and log lines.

    @param events: the daemon's L{clsd.events.EventLog}.
    @param departures: the L{clsd.ownership.core.cause.Departures} that explain a move.
    @param log: the L{twisted.logger.Logger} the ownership shell logs with.
    @param monotonic: the lease clock.
    """

    def __init__(self, events, node_name, departures, log, monotonic):
        self._events = events
        self.node_name = node_name
        self.departures = departures
        self.log = log
        self._monotonic = monotonic
        self._renewals = {}          # resource -> [epoch, renewals, last logged (monotonic)]

    def record(self, report):
        """Log and record a lease fact (see L{clsd.named_events})."""
        what, cluster, resource, epoch = report.what, report.cluster, report.resource, report.epoch
        if what == "renewed":
            self._log_renewal(report)
        elif what == "acquired":
            self._renewals.pop(resource, None)
            before = f" (previous holder {report.previous})" if report.previous else ""
            self._events.record("lease", cluster, f"acquired lease {resource} epoch {epoch}"
                                + before, what=what, resource=resource, epoch=epoch,
                                previous=report.previous)
        elif what in ("lost", "released"):
            self._renewals.pop(resource, None)
            self._events.record("lease", cluster, f"{what} lease {resource} epoch {epoch}: "
                                f"{report.reason}", what=what, resource=resource, epoch=epoch,
                                why=report.reason)
        elif what == "moved":
            cause = move_cause(report, self.departures.of(report.previous))
            self._events.record(
                "cluster", cluster,
                f"moved from {report.previous} to {self.node_name} (epoch {epoch})",
                what=what, resource=resource, epoch=epoch, planned=is_planned(report),
                cause=cause, **{"from": report.previous, "to": self.node_name})
        elif what == "failed":
            self._events.record("cluster", cluster, f"failed: {report.reason}", what=what,
                                why=report.reason)
        elif what == "stuck":
            self._events.record("lease", cluster, f"keeping lease {resource} epoch {epoch}: "
                                f"{report.reason}", what=what, resource=resource, epoch=epoch,
                                why=report.reason)
        elif what in ("waiting", "waited"):
            text = f"waiting: {report.reason}" if what == "waiting" else report.reason
            self._events.record("cluster", cluster, text, what=what, why=report.reason)
        elif what in ("shape-mismatch", "shape-agreed"):
            self._events.record("cluster", cluster, f"{what}: {report.reason}", what=what,
                                why=report.reason)
        elif what in ("voters-mismatch", "voters-agreed"):
            self._events.record("ownership", self.node_name, f"{what}: {report.reason}",
                                what=what, why=report.reason)
        elif what in ("move-asked", "move-refused"):
            key = f", admin key {report.key}" if report.key else ""
            verb = "asked" if what == "move-asked" else "refused"
            why = f": {report.reason}" if report.reason else ""
            self._events.record("cluster", cluster,
                                f"move to {report.target} {verb} (asked by {report.by}{key})"
                                f"{why}", what=what, target=report.target, by=report.by,
                                key=report.key, why=report.reason)
        elif what == "stalled":
            self._events.record("cluster", cluster, f"target {report.target} stalled: "
                                f"{report.reason}", what=what, target=report.target,
                                resource=resource, why=report.reason)

    def _log_renewal(self, report):
        now = self._monotonic()
        state = self._renewals.get(report.resource)
        if state is None or state[0] != report.epoch:
            state = self._renewals[report.resource] = [report.epoch, 0, None]
        state[1] += 1
        if state[2] is not None and now - state[2] < RENEWED_LOG_INTERVAL:
            return
        state[2] = now
        round_trip = report.round_trip
        emit(self.log, "lease.renewed",
             "renewed lease {resource} epoch {epoch} ({renewals} renewals this tenure; "
             "last round trip {round_trip_ms} ms)",
             resource=report.resource, epoch=report.epoch, renewals=state[1],
             round_trip=round_trip,
             round_trip_ms="?" if round_trip is None else f"{round_trip * 1000:.1f}")
