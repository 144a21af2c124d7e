"""Process groups left behind by a previous run of the daemon, and their end.

Each service runs in its own process group, so when the daemon is killed
with SIGKILL (or crashes) its services keep running, re-parented to init.
A fresh daemon would start them a second time. To prevent that, the runner
writes one small record per live group into ``data_dir/pgroups/`` when the
group starts and removes it when the group is gone; at start-up the daemon
reads the records left over and terminates the groups that are still alive
*before* it starts any service (L{reap_leftovers}).

A pid may have been reused since the record was written. A record is only
acted on when:

- it was written during the current boot (Linux ``boot_id``), and
- the group's leader, if still alive, has the start identity recorded
  (start time in ticks since boot on Linux, ``ps -o lstart`` elsewhere).

A group whose leader is gone but whose other members live on is taken to be
ours: for it to be someone else's, our whole group would have had to vanish,
its id be handed to a new process that made itself a group leader, and that
leader die leaving members behind, all between the crash and the restart.
See doc/supervision.md.
"""

import json
import os
import signal
import time

import attrs
from twisted.internet import defer, task
from twisted.logger import Logger

from clsd.supervision.pgroups import boot_identity, process_start_identity

#: Sub-directory of data_dir holding one ``<pgid>.json`` per live group.
RECORD_DIR = "pgroups"

#: The longest a leftover group gets between its stop signal and SIGKILL:
#: the daemon is starting and every service waits for this.
ORPHAN_STOP_TIMEOUT = 5.0

#: After SIGKILL, how long to wait for the group to disappear before giving up.
ORPHAN_KILL_WAIT = 5.0

#: How often leftover groups are probed while waiting for them to go.
ORPHAN_POLL_INTERVAL = 0.02


@attrs.frozen
class GroupRecord:
    pgid: int
    service: str
    #: L{process_start_identity} of the leader when the group started.
    leader_start: str | None
    #: L{boot_identity} when the group started.
    boot: str | None
    stop_signal: str = "TERM"
    stop_timeout: float = 10.0
    daemon_pid: int | None = None


class GroupRegistry:
    """The records in ``data_dir/pgroups``: one JSON file per live process group."""

    log = Logger()

    def __init__(self, directory, identity=process_start_identity, boot=boot_identity):
        self.directory = directory
        self._identity = identity
        self._boot = boot

    def _path(self, pgid):
        return os.path.join(self.directory, f"{pgid}.json")

    def add(self, service, pgid, stop_signal="TERM", stop_timeout=10.0):
        """Record that C{service} now runs as process group C{pgid}."""
        record = GroupRecord(
            pgid=pgid, service=service, leader_start=self._identity(pgid),
            boot=self._boot(), stop_signal=stop_signal, stop_timeout=stop_timeout,
            daemon_pid=os.getpid(),
        )
        os.makedirs(self.directory, exist_ok=True)
        path = self._path(pgid)
        temporary = path + ".tmp"
        with open(temporary, "w") as f:
            json.dump(attrs.asdict(record), f)
        # Atomic: a daemon killed mid-write leaves the old file or the new one.
        os.replace(temporary, path)
        return record

    def remove(self, pgid):
        try:
            os.remove(self._path(pgid))
        except FileNotFoundError:
            pass

    def records(self):
        """Every readable record; unreadable files are logged and deleted."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        records = []
        for name in names:
            path = os.path.join(self.directory, name)
            if name.endswith(".tmp"):
                os.remove(path)  # an interrupted write; its final file is absent
                continue
            if not name.endswith(".json"):
                continue
            try:
                with open(path) as f:
                    records.append(GroupRecord(**json.load(f)))
            except (OSError, ValueError, TypeError) as e:
                self.log.error("ignoring unreadable process-group record {path}: {error}",
                               path=path, error=e)
                os.remove(path)
        return records

    def classify(self, record, groups):
        """Why C{record} is or is not a leftover of ours still running.

        @return: C{(is_ours_and_alive, explanation)}.
        """
        boot = self._boot()
        if record.boot is not None and boot is not None and record.boot != boot:
            return False, "recorded before the last reboot"
        if not groups.alive(record.pgid):
            return False, "already gone"
        current = self._identity(record.pgid)
        if current is not None and current != record.leader_start:
            return False, "its pid now belongs to another process"
        return True, "still running"


@defer.inlineCallbacks
def reap_leftovers(registry, reactor, groups, events, monotonic=time.monotonic,
                   stop_timeout=ORPHAN_STOP_TIMEOUT, kill_wait=ORPHAN_KILL_WAIT,
                   poll=ORPHAN_POLL_INTERVAL):
    """Terminate every process group a previous run left behind; wait until they are gone.

    Each group gets its service's stop signal, then SIGKILL after its
    stop_timeout (at most C{stop_timeout}); records of groups that are gone
    are deleted.

    @return: a Deferred firing with the records of groups that were still
        present C{kill_wait} seconds after SIGKILL (their services must not
        be started).
    """
    leftovers = []
    for record in registry.records():
        ours, why = registry.classify(record, groups)
        if not ours:
            events.record("orphan", record.service,
                          f"dropping record of process group {record.pgid}: {why}",
                          pgid=record.pgid)
            registry.remove(record.pgid)
            continue
        signum = getattr(signal, "SIG" + record.stop_signal, signal.SIGTERM)
        events.record("orphan", record.service,
                      f"terminating leftover process group {record.pgid} of a previous "
                      f"run (SIG{record.stop_signal})", pgid=record.pgid)
        groups.signal(record.pgid, signum)
        leftovers.append(record)

    started = monotonic()
    killed_at = {}
    stuck = []
    while leftovers:
        now = monotonic()
        for record in list(leftovers):
            pgid = record.pgid
            if not groups.alive(pgid):
                leftovers.remove(record)
                registry.remove(pgid)
                events.record("orphan", record.service,
                              f"leftover process group {pgid} is gone", pgid=pgid)
            elif pgid in killed_at:
                if now - killed_at[pgid] >= kill_wait:
                    leftovers.remove(record)
                    stuck.append(record)
                    events.record("orphan", record.service,
                                  f"leftover process group {pgid} still present "
                                  f"{kill_wait:g}s after SIGKILL; the service is not "
                                  "started", pgid=pgid)
            elif now - started >= min(record.stop_timeout, stop_timeout):
                events.record("orphan", record.service,
                              f"leftover process group {pgid} still running: SIGKILL",
                              pgid=pgid)
                groups.signal(pgid, signal.SIGKILL)
                killed_at[pgid] = now
        if leftovers:
            yield task.deferLater(reactor, poll, lambda: None)
    return stuck
