"""Which stable log event (doc/logging.md) an event-history record is.

The parts record what happens in the L{clsd.events.EventLog} (kind, subject,
reason, fields) where they see it: the supervision policy's records, the
membership shell's member changes, the hook runner's results, the lease
manager's reports, the daemon's start and stop.  This module is the one
place that says which of those records are also a named event and which
fields it carries; L{clsd.events.EventLog.record} logs them with
L{clsd.logs.emit}.  Facts that are not history records (peer connections,
admin logins and commands, lease renewals, the metrics endpoint) are logged
with C{emit} directly by the part that sees them.

Pure: a record dict in, a list of C{(name, fields)} out.
"""


def _service(record):
    kind, fields = record["kind"], record["fields"]
    service = record["subject"]
    if kind == "spawned":
        return [("service.started", {"service": service, "pid": fields.get("pid"),
                                     "cluster": fields.get("cluster"),
                                     "epoch": fields.get("epoch")})]
    if kind == "exited":
        if fields.get("expected"):
            return []  # the end of a stop we asked for: service.stopped says it
        return [("service.exited", {"service": service, "pid": fields.get("pid"),
                                    "reason": record["reason"]})]
    if kind == "rogue":
        return [("service.rogue", {"service": service, "stopped": fields.get("stopped"),
                                   "reason": record["reason"]})]
    if kind == "adopted":
        return [("service.adopted", {"service": service, "reason": record["reason"]})]
    if kind == "health":
        change = fields.get("change")
        if change in ("rise", "fall"):
            return [(f"health.{change}", {"service": service, "detail": fields.get("detail")})]
        return []
    to = fields.get("to")
    reason = record["reason"]
    if to == "starting" and "restarts" in fields:
        return [("service.restarted", {"service": service, "reason": reason,
                                       "restarts": fields["restarts"]})]
    if to == "backoff":
        return [("service.backoff", {"service": service, "delay": fields.get("delay"),
                                     "failures": fields.get("failures"), "reason": reason})]
    if to == "failed":
        return [("service.failed", {"service": service, "reason": reason})]
    if to == "stopped":
        return [("service.stopped", {"service": service, "reason": reason})]
    return []


def _member(record):
    fields = record["fields"]
    node, state, previous = record["subject"], fields.get("state"), fields.get("previous")
    if state == "alive":
        if previous == "suspect":
            return [("member.alive", {"node": node, "incarnation": fields.get("incarnation")})]
        return [("member.joined", {"node": node, "address": fields.get("address"),
                                   "generation": fields.get("generation")})]
    if state == "suspect":
        return [("member.suspect", {"node": node, "incarnation": fields.get("incarnation"),
                                    "reporters": list(fields.get("reporters") or ())})]
    if state == "dead":
        return [("member.dead", {"node": node,
                                 "reporters": list(fields.get("reporters") or ())})]
    if state == "left":
        return [("member.left", {"node": node})]
    if state == "removed":
        return [("member.reaped", {"node": node})]
    return []


def _hook(record):
    fields = record["fields"]
    named = {"cluster": record["subject"], "hook": fields.get("event"),
             "epoch": fields.get("epoch"), "attempt": fields.get("attempt")}
    if fields.get("ok"):
        return [("hook.ran", named)]
    return [("hook.failed", dict(named, reason=fields.get("detail", record["reason"])))]


def _lease(record):
    fields = record["fields"]
    what = fields.get("what")
    named = {"resource": fields.get("resource"), "epoch": fields.get("epoch")}
    if what == "acquired":
        return [("lease.acquired", dict(named, previous=fields.get("previous")))]
    if what == "lost":
        return [("lease.lost", named)]
    if what == "released":
        return [("lease.released", dict(named, reason=fields.get("why")))]
    return []


def _cluster(record):
    fields = record["fields"]
    what, cluster = fields.get("what"), record["subject"]
    if what == "moved":
        return [("cluster.moved", {"cluster": cluster, "from": fields.get("from"),
                                   "to": fields.get("to"), "epoch": fields.get("epoch"),
                                   "cause": list(fields.get("cause") or ())})]
    if what == "failed":
        return [("cluster.failed", {"cluster": cluster, "reason": fields.get("why")})]
    if what == "shape-mismatch":
        return [("cluster.mismatch", {"cluster": cluster, "reason": fields.get("why")})]
    if what == "shape-agreed":
        return [("cluster.agreed", {"cluster": cluster})]
    if what in ("move-asked", "move-refused"):
        name = "move.asked" if what == "move-asked" else "move.refused"
        return [(name, {"cluster": cluster, "target": fields.get("target"),
                                     "by": fields.get("by"), "key": fields.get("key"),
                                     "reason": fields.get("why")})]
    if what == "stalled":
        return [("cluster.stalled", {"cluster": cluster, "target": fields.get("target"),
                                     "reason": fields.get("why")})]
    return []


def _ownership(record):
    what = record["fields"].get("what")
    if what == "voters-mismatch":
        return [("voters.apart", {"reason": record["fields"].get("why")})]
    if what == "voters-agreed":
        return [("voters.agreed", {})]
    return []


def _voter(record):
    what = record["fields"].get("what")
    if what in ("floor-failed", "floor-stored"):
        fields = record["fields"]
        name = "floor.failed" if what == "floor-failed" else "floor.stored"
        return [(name, {"node": record["subject"], "value": fields.get("value"),
                                   "error": fields.get("error")})]
    return []


def _daemon(record):
    phase = record["fields"].get("phase")
    if phase in ("started", "stopping", "stopped"):
        named = {"node": record["subject"]}
        if phase == "started":
            named["pid"] = record["fields"].get("pid")
        return [(f"daemon.{phase}", named)]
    return []


def _address(record):
    fields = record["fields"]
    what = fields.get("what")
    if what not in ("added", "removed", "announced"):
        return []
    return [(f"address.{what}", {"cluster": record["subject"], "address": fields.get("address"),
                                 "interface": fields.get("interface"),
                                 "epoch": fields.get("epoch")})]


_BY_KIND = {
    "spawned": _service, "exited": _service, "health": _service, "state": _service,
    "rogue": _service, "adopted": _service,
    "member": _member, "hook": _hook, "lease": _lease, "cluster": _cluster,
    "daemon": _daemon, "ownership": _ownership, "voter": _voter, "address": _address,
}


def named_events(record):
    """The stable events C{record} (an L{clsd.events.EventLog} record dict) is: C{[(name, fields)]}."""
    mapper = _BY_KIND.get(record.get("kind"))
    return mapper(record) if mapper is not None else []
