"""Why a cluster moved here: the cause chain of an ownership change, as short lines.

"Why did cluster A move at 03:12?" takes facts from three parts: membership
knows who declared the previous owner dead (and when), the lease manager
knows whether that owner released its lease or let it expire and whether a
fence hook ran, and the new epoch.  The ownership shell keeps membership's
latest departure per node (L{Departures}) and, when the manager reports a
move (L{clsd.ownership.core.actions.Report} ``moved``), joins both here into a
list of lines, oldest fact first, e.g.::

    previous owner beta declared dead at 2026-01-02T03:12:04.512Z: reported
        unreachable by gamma, delta (2 of 3 observers)
    lease epoch 7 of beta expired unrenewed
    fence hook against beta ran ok
    acquired epoch 8

Pure: plain values in, strings out.
"""

import re
from collections.abc import Sequence
from typing import TypedDict

from clsd.ownership.core.actions import Report

#: Membership states after which a node is gone (its departure is a cause).
GONE_STATES = frozenset({"dead", "left"})


class MemberFields(TypedDict, total=False):
    """The keyword fields of a membership ``member`` event read here."""

    state: str
    reporters: Sequence[str]


class MemberRecord(TypedDict, total=False):
    """The keys of an L{clsd.events.EventLog} record read here."""

    ts: str
    subject: str
    reason: str
    fields: MemberFields


class Departures:
    """The latest dead/left declaration of every node, from membership's event records.

    Fed with the L{clsd.events.EventLog} records of kind ``member`` (fields
    C{state}, C{reporters}); a node seen alive again is forgotten, so a stale
    death never explains a later move.
    """

    def __init__(self) -> None:
        self._latest: dict[str | None, MemberRecord] = {}

    def member_changed(self, record: MemberRecord) -> None:
        fields = record.get("fields", {})
        name, state = record.get("subject"), fields.get("state")
        if state in GONE_STATES:
            self._latest[name] = record
        elif state == "alive":
            self._latest.pop(name, None)

    def of(self, node: str | None) -> MemberRecord | None:
        """The record of C{node}'s latest departure, or None."""
        return self._latest.get(node)


def departure_line(node: str | None, record: MemberRecord) -> str:
    """``previous owner beta declared dead at T: reported unreachable by ...``."""
    fields = record.get("fields", {})
    state = fields.get("state")
    reporters = list(fields.get("reporters") or ())
    verb = "declared dead" if state == "dead" else "left"
    line = f"previous owner {node} {verb} at {record.get('ts', '?')}: {record.get('reason', '')}"
    reason = record.get("reason", "")
    if reporters and not all(re.search(rf"\b{re.escape(r)}\b", reason) for r in reporters):
        line += f" (reporters: {', '.join(reporters)})"
    return line


def move_cause(report: Report, departure: MemberRecord | None = None) -> list[str]:
    """The cause chain (a list of short strings) of a ``moved`` L{Report}.

    @param departure: the membership record of the previous owner's latest
        departure (L{Departures.of}), or None when it did not leave (a move,
        a drain, a preemption).
    """
    previous = report.previous
    lines = []
    if departure is not None:
        lines.append(departure_line(previous, departure))
    epoch = f"lease epoch {report.previous_epoch}" if report.previous_epoch else "the lease"
    if report.handed_over:
        lines.append(f"{previous} stopped the service and handed {epoch} over to this node "
                     "(move, standby, drain or failed service there)")
    elif report.previous_released:
        lines.append(f"{previous} released {epoch} (it stopped the service)")
    else:
        lines.append(f"{epoch} of {previous} expired unrenewed")
    if report.fenced:
        lines.append(f"fence hook against {previous} ran ok")
    lines.append(f"acquired epoch {report.epoch}")
    return lines


def is_planned(report: Report) -> bool:
    """Whether the previous owner gave the cluster up itself (not a failure)."""
    return bool(report.previous_released or report.handed_over)
