"""The event history: what happened to whom and why, for operators and tests.

Every state change of every service (and of the daemon) is one event with a
reason (``exited code=1``, ``health fall 3/3``, ``crash-loop 5 in 60s``).
Events are kept in a bounded in-memory history for the admin shell, appended
as JSON lines to ``data_dir/events.jsonl`` (rotated by size) for people and
tools, and logged through C{twisted.logger}: a record that is one of the
stable events of doc/logging.md (L{clsd.named_events}) is logged under its
name, with its documented fields.
"""

import collections
import datetime
import json
import os
import time

from twisted.logger import Logger
from twisted.python.logfile import LogFile

from clsd.logs import emit
from clsd.named_events import named_events

#: Events kept in memory: enough for an operator's "what just happened",
#: small enough (about 0.5 KB each) to never matter for memory.
DEFAULT_HISTORY = 1000

#: The JSON-lines file rotates at this size, keeping EVENT_FILE_BACKUPS old ones.
EVENT_FILE_MAX_BYTES = 10 * 1024 * 1024
EVENT_FILE_BACKUPS = 5

EVENT_FILE_NAME = "events.jsonl"


def _iso(ts):
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(
        timespec="milliseconds").replace("+00:00", "Z")


class EventLog:
    """A bounded history of events, mirrored to a JSON-lines file and the log.

    @param wall: wall-clock time (C{time.time}) for the human-readable C{ts}.
    @param monotonic: the ordering clock; C{mono} is comparable only within
        one run of the daemon.
    """

    log = Logger(namespace="clsd.events")

    def __init__(self, history=DEFAULT_HISTORY, wall=time.time, monotonic=time.monotonic):
        self._history = collections.deque(maxlen=history)
        self._wall = wall
        self._monotonic = monotonic
        self._file = None
        self._write_failed = False
        self._listeners = []

    def open(self, path):
        """Start appending to C{path} (a directory's ``events.jsonl``)."""
        path = os.path.abspath(path)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self._file = LogFile.fromFullPath(
            path, rotateLength=EVENT_FILE_MAX_BYTES, maxRotatedFiles=EVENT_FILE_BACKUPS)

    def close(self):
        if self._file is not None:
            self._file.close()
            self._file = None

    def record(self, kind, subject, reason, **fields):
        """Remember one event and return it as the dict that was written."""
        event = {
            "ts": _iso(self._wall()),
            "mono": round(self._monotonic(), 6),
            "kind": kind,
            "subject": subject,
            "reason": reason,
            "fields": fields,
        }
        self._history.append(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                self.log.failure("event listener {listener!r} failed", listener=listener)
        named = named_events(event)
        if named:
            # The stable names of doc/logging.md, instead of the plain line.
            summary = reason
            if kind == "state" and "to" in fields:
                summary = f"{fields.get('from')} -> {fields['to']}: {reason}"
            for name, named_fields in named:
                emit(self.log, name, "{subject}: {summary}", subject=subject,
                     summary=summary, clsd_event=event, **named_fields)
        elif kind == "state" and "to" in fields:
            self.log.info("{subject}: {previous} -> {state}: {reason}", subject=subject,
                          previous=fields.get("from"), state=fields["to"], reason=reason,
                          clsd_event=event)
        else:
            self.log.info("{subject}: {kind}: {reason}", subject=subject, kind=kind,
                          reason=reason, clsd_event=event)
        if self._file is not None:
            self._write(event)
        return event

    def _write(self, event):
        try:
            line = json.dumps(event, default=str, separators=(",", ":")) + "\n"
            self._file.write(line.encode("utf-8"))
        except OSError as e:
            # A full disk must not take the supervisor down; say it once.
            if not self._write_failed:
                self._write_failed = True
                self.log.error("cannot write the event file: {error}", error=e)
        else:
            self._write_failed = False

    def add_listener(self, listener):
        """Call C{listener(event)} on every event from now on (the admin's live views);
        returns the function that stops it."""
        self._listeners.append(listener)
        return lambda: listener in self._listeners and self._listeners.remove(listener)

    def recent(self, n=None, subject=None):
        """The last C{n} events (all kept when None), oldest first, optionally of one subject."""
        events = [e for e in self._history if subject is None or e["subject"] == subject]
        return events if n is None else events[-n:] if n > 0 else []
