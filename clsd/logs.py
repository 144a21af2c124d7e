"""Stable event names in the log, and the optional JSON-lines log file.

Two audiences read the log. People read twistd's own text log (``--logfile``,
or standard output under ``twistd -n``), which stays as it is. Machines read
the JSON log (``--json-log FILE`` or ``[log] json``): one JSON object per
line, written by L{twisted.logger.jsonFileLogObserver}, where every event
that matters to operations carries a stable name in its ``event`` field
(``member.dead``, ``lease.acquired``, ...). Parts log such events with
L{emit}, which accepts only the names of L{EVENTS}, so a name cannot drift
away from doc/logging.md.

How the JSON observer gets installed, and why so: twistd calls the plugin's
C{makeService} I{before} it starts logging (``globalLogBeginner.beginLoggingTo``
with its text observer). An observer added to C{globalLogPublisher} at that
moment receives every later event live, the twistd start-up banner included,
while the beginner replays its buffer only to the text observer: no event
is lost and none is written twice. twistd's other hooks do not fit: its
``--logger`` option I{replaces} the text log and takes no file name, and an
C{ILogObserver} application component works only for ``.tac`` files. The
file is opened then, before twistd sheds privileges (``--uid``) and before
it daemonizes, like twistd's own log file, so a path that cannot be written
is a one-line error at start-up; it is closed after the reactor has shut
down, so the events of stopping services are in it.
"""

import sys

from twisted.logger import (
    Logger, LogLevel, eventAsText, globalLogPublisher, jsonFileLogObserver,
)
from twisted.python.logfile import LogFile

from clsd.config.log import STDOUT

#: The JSON log rotates at this size, keeping JSON_LOG_BACKUPS old files
#: (``FILE.1`` ... ``FILE.5``): the same bound as the event history, so a
#: chatty cluster cannot fill the disk.
JSON_LOG_MAX_BYTES = 10 * 1024 * 1024
JSON_LOG_BACKUPS = 5

_I, _W, _E, _C = LogLevel.info, LogLevel.warn, LogLevel.error, LogLevel.critical

#: Every stable event name: its default level and what it means. This table
#: is the catalogue; doc/logging.md lists the same names (a test checks it).
EVENTS = {
    "daemon.started": (_I, "The daemon is up: leftovers reaped, services started."),
    "daemon.stopping": (_I, "The daemon was asked to stop."),
    "daemon.stopped": (_I, "Every service is stopped; the daemon exits."),
    "service.started": (_I, "A supervised service's process started."),
    "service.exited": (_W, "A service's process ended without being asked to."),
    "service.restarted": (_W, "A service was started again after it exited or failed its check."),
    "service.backoff": (_W, "A restart is delayed (consecutive failures)."),
    "service.failed": (_E, "A service is FAILED (crash loop, cannot start): no more restarts."),
    "service.stopped": (_I, "A service was stopped on purpose (operator, lease, shutdown)."),
    "service.adopted": (_I, "An LSB/OCF system found already running at a start was adopted, "
                            "not started twice (services outside a cluster only)."),
    "service.rogue": (_W, "A copy of an LSB/OCF service runs on this node without the "
                          "cluster's lease (started by hand): found, then stopped or not."),
    "health.rise": (_I, "A service's health check passed `rise` times: healthy."),
    "health.fall": (_W, "A service's health check failed `fall` times: unhealthy."),
    "member.joined": (_I, "A node joined the membership."),
    "member.suspect": (_W, "A node is suspected of having failed."),
    "member.alive": (_I, "A suspected node refuted the suspicion."),
    "member.dead": (_E, "A node was declared dead by its observers."),
    "member.left": (_I, "A node left gracefully."),
    "member.reaped": (_I, "A dead or departed node was forgotten."),
    "lease.acquired": (_I, "This node acquired a cluster's lease (new epoch)."),
    "lease.renewed": (_I, "This node renewed a lease it holds (logged sparingly)."),
    "lease.lost": (_E, "A lease this node held expired without renewal."),
    "lease.released": (_I, "This node gave a lease up (stop, move, drain)."),
    "cluster.moved": (_W, "A cluster's service changed node (failover or move)."),
    "cluster.failed": (_E, "A cluster cannot run anywhere (no eligible node, escalation)."),
    "cluster.mismatch": (_W, "A live node has other settings for a cluster: not acquiring it."),
    "cluster.agreed": (_I, "Every live node has the same settings for a cluster again."),
    "voters.apart": (_W, "A live node's voters are two steps of a change away: "
                                "acquiring nothing."),
    "voters.agreed": (_I, "Every live node's voters are at most one step apart again."),
    "move.asked": (_W, "A member asked this node (the holder) to move a cluster."),
    "move.refused": (_W, "A move asked over the wire was refused (not a member, ...)."),
    "cluster.stalled": (_W, "A placed target did not take its cluster in time: skipped."),
    "floor.failed": (_C, "This voter cannot store its epoch floor: it grants nothing."),
    "floor.stored": (_I, "This voter stored its epoch floor again and grants again."),
    "hook.ran": (_I, "A hook command (fence, notify) succeeded."),
    "hook.failed": (_E, "A hook command failed or timed out."),
    "address.added": (_I, "A cluster's floating address was added here (this node holds "
                          "the lease)."),
    "address.removed": (_I, "A cluster's floating address was removed here (a stop, a lost "
                            "lease, or left behind by an earlier run)."),
    "address.announced": (_I, "A floating address was announced (gratuitous ARP / "
                              "unsolicited neighbour advertisement)."),
    "peer.connected": (_I, "A peer connection was established (TLS and hello done)."),
    "peer.disconnected": (_I, "An established peer connection ended."),
    "peer.rejected": (_W, "A connection was refused (bad certificate, name, version, ...)."),
    "peer.forged": (_W, "A peer spoke for another node; its connection was closed."),
    "peer.refused": (_W, "Accepted connections refused before authentication, summed up "
                         "(at most one line per interval)."),
    "admin.login": (_I, "An operator logged in over SSH (or the manhole)."),
    "admin.command": (_I, "An operator ran an admin command."),
    "metrics.listening": (_I, "The Prometheus endpoint is listening."),
}


def emit(log: Logger, event: str, format: str | None = None, *, level: LogLevel | None = None,
         **fields: object) -> None:
    """Log the stable event C{event} on C{log} (a L{twisted.logger.Logger}).

    The text log shows ``[event] message`` (or ``[event] key=value ...``
    when there is no C{format}); the JSON log carries C{event} and every
    field as JSON keys. Fields must not be named ``format`` or ``level``,
    nor start with ``log_`` (twisted.logger's own keys).

    @param format: a L{twisted.logger} format string over C{fields}.
    @param level: overrides the event's default level from L{EVENTS}.
    @raise ValueError: C{event} is not in L{EVENTS} (a programming mistake,
        caught by the tests of the part that logs it).
    """
    try:
        default_level, _ = EVENTS[event]
    except KeyError:
        raise ValueError(f"unknown log event name {event!r}; add it to clsd.logs.EVENTS "
                         "and doc/logging.md") from None
    for name in fields:
        if name.startswith("log_"):
            raise ValueError(f"log field {name!r}: names starting with log_ are twisted's")
    if format is None:
        format = " ".join(f"{name}={{{name}}}" for name in fields)
    prefixed = "[{event}] " + format if format else "[{event}]"
    log.emit(level or default_level, prefixed, event=event, **fields)


def json_observer(out_file):
    """A L{jsonFileLogObserver} writing one JSON object per line to C{out_file}.

    Each object is twisted.logger's own serialization (so
    L{twisted.logger.eventsFromJSONLogFile} reads it back) plus ``text``:
    the message as the text log shows it, traceback included, for
    ``jq -r .text``.
    """
    write_json = jsonFileLogObserver(out_file, recordSeparator="")

    def observe(event):
        if "text" not in event:
            # Each observer gets the same dict: add to a copy.
            event = dict(event, text=eventAsText(
                event, includeTimestamp=False, includeSystem=False))
        write_json(event)

    return observe


class JsonLog:
    """An installed JSON log: the observer, its file, and how to undo both."""

    def __init__(self, path, publisher, out_file, owns_file):
        self.path = path
        self._publisher = publisher
        self._file = out_file
        self._owns_file = owns_file
        self.observer = json_observer(out_file)
        publisher.addObserver(self.observer)

    def close(self):
        """Stop writing and close the file (idempotent)."""
        if self._file is None:
            return
        self._publisher.removeObserver(self.observer)
        if self._owns_file:
            self._file.close()
        self._file = None


def open_json_log(path, publisher=globalLogPublisher):
    """Start copying every event on C{publisher} to C{path} as JSON lines.

    @param path: a file (rotating at L{JSON_LOG_MAX_BYTES}) or ``-``: the
        process's original standard output (twistd redirects C{sys.stdout}
        into the log; writing there would loop).
    @raise OSError: the file cannot be opened for appending.
    """
    if path == STDOUT:
        return JsonLog(path, publisher, sys.__stdout__, owns_file=False)
    log_file = LogFile.fromFullPath(
        path, rotateLength=JSON_LOG_MAX_BYTES, maxRotatedFiles=JSON_LOG_BACKUPS)
    return JsonLog(path, publisher, log_file, owns_file=True)


def start_json_log(log_config, reactor, publisher=globalLogPublisher):
    """Install the JSON log of L{clsd.config.LogConfig} C{log_config}, if any.

    Closed after the reactor has shut down (after every service stopped).
    Called from C{makeService}; see the module docstring for why then.

    @return: the L{JsonLog}, or C{None} when no JSON log is configured.
    @raise OSError: the file cannot be opened.
    """
    if log_config.json is None:
        return None
    json_log = open_json_log(log_config.json, publisher)
    reactor.addSystemEventTrigger("after", "shutdown", json_log.close)
    return json_log
