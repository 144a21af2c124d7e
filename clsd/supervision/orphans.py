"""Process groups and cgroups left behind by a previous run of the daemon, and their end.

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

Under cgroup containment the service's cgroup is the authority: every
cgroup in this daemon's part of the tree (L{CgroupTree}) that still has a
process is a leftover, record or not (the daemon may have died between
placing a child and writing its record), and it is emptied the same way.
There is no pid reuse question: a cgroup is ours by its path. Leftovers
are emptied, never adopted: the new run starts each service afresh, so it
never runs twice. See doc/supervision.md.
"""

import json
import os
import signal
import time

import attrs
from twisted.internet import defer, task
from twisted.logger import Logger

from clsd.supervision import cgroupfs
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
    #: The service's cgroup when it ran under cgroup containment.
    cgroup: str | None = None


class GroupRegistry:
    """The records in ``data_dir/pgroups``: one JSON file per live process group."""

    log = Logger()

    def __init__(self, directory, identity=process_start_identity, boot=boot_identity):
        self.directory = directory
        self._identity = identity
        self._boot = boot

    def _path(self, pgid):
        return os.path.join(self.directory, f"{pgid}.json")

    def add(self, service, pgid, stop_signal="TERM", stop_timeout=10.0, cgroup=None):
        """Record that C{service} now runs as process group C{pgid} (in C{cgroup})."""
        record = GroupRecord(
            pgid=pgid, service=service, leader_start=self._identity(pgid),
            boot=self._boot(), stop_signal=stop_signal, stop_timeout=stop_timeout,
            daemon_pid=os.getpid(), cgroup=cgroup,
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


class _GroupLeftover:
    """A process group of a previous run, from its record."""

    def __init__(self, record, registry, groups):
        self.service = record.service
        self.stop_signal = record.stop_signal
        self.stop_timeout = record.stop_timeout
        self.what = f"process group {record.pgid}"
        self.fields = {"pgid": record.pgid}
        self.pgid = self._pgid = record.pgid
        self._registry = registry
        self._groups = groups

    def terminate(self):
        self._groups.signal(self._pgid, getattr(signal, "SIG" + self.stop_signal,
                                                 signal.SIGTERM))

    def kill(self):
        self._groups.signal(self._pgid, signal.SIGKILL)

    def alive(self):
        return self._groups.alive(self._pgid)

    def forget(self):
        self._registry.remove(self._pgid)


class _CgroupLeftover:
    """A service cgroup of a previous run that still has processes.

    The recorded group (if any) gets its stop signal and every other
    process of the cgroup SIGTERM, as in a normal stop; SIGKILL is
    ``cgroup.kill``.
    """

    def __init__(self, service, path, records, registry, groups, fs):
        self.service = service
        self.what = f"cgroup {path}"
        self.fields = {"cgroup": path}
        self._path = path
        self._records = records
        self._registry = registry
        self._groups = groups
        self._fs = fs
        record = records[-1] if records else None
        self.pgid = record.pgid if record is not None else None
        self.stop_signal = record.stop_signal if record is not None else "TERM"
        self.stop_timeout = record.stop_timeout if record is not None else ORPHAN_STOP_TIMEOUT

    def terminate(self):
        skip = set()
        for record in self._records:
            self._groups.signal(record.pgid, getattr(signal, "SIG" + record.stop_signal,
                                                     signal.SIGTERM))
            skip.add(record.pgid)
        self._fs.signal_all(self._path, signal.SIGTERM, skip=skip)

    def kill(self):
        self._fs.kill_all(self._path)

    def alive(self):
        try:
            return self._fs.populated(self._path)
        except FileNotFoundError:
            return False

    def forget(self):
        from clsd.supervision.containment import remove_cgroup

        remove_cgroup(self._path)
        for record in self._records:
            self._registry.remove(record.pgid)


def _find_leftovers(registry, groups, events, tree, fs):
    """The leftovers to terminate; drops records and cgroups that need nothing."""
    leftovers = []
    by_cgroup = {}
    for record in registry.records():
        if tree is not None and record.cgroup is not None \
                and os.path.dirname(record.cgroup) == tree.directory:
            by_cgroup.setdefault(record.cgroup, []).append(record)
            continue
        ours, why = registry.classify(record, groups)
        if not ours:
            events.record("orphan", record.service,
                          f"dropping record of process group {record.pgid}: {why}",
                          pgid=record.pgid)
            registry.remove(record.pgid)
            continue
        leftovers.append(_GroupLeftover(record, registry, groups))
    if tree is not None:
        for service in tree.services():
            path = tree.path(service)
            records = by_cgroup.pop(path, [])
            leftover = _CgroupLeftover(service, path, records, registry, groups, fs)
            if leftover.alive():
                leftovers.append(leftover)
            else:
                leftover.forget()  # empty: the old records and the directory go
    for records in by_cgroup.values():  # their cgroup is gone
        for record in records:
            registry.remove(record.pgid)
    return leftovers


@defer.inlineCallbacks
def reap_leftovers(registry, reactor, groups, events, monotonic=time.monotonic,
                   stop_timeout=ORPHAN_STOP_TIMEOUT, kill_wait=ORPHAN_KILL_WAIT,
                   poll=ORPHAN_POLL_INTERVAL, tree=None, fs=cgroupfs):
    """Terminate everything a previous run left behind; wait until it is gone.

    Leftovers are the process groups of the records in C{registry} and,
    with a L{clsd.supervision.containment.CgroupTree}, every service cgroup
    of this daemon that still has processes (found by listing the tree, so
    a process placed just before the daemon died without a record is found
    too). Each gets its service's stop signal (and SIGTERM to the rest of a
    cgroup), then SIGKILL (``cgroup.kill``) after its stop_timeout (at most
    C{stop_timeout}); records and empty cgroups are removed.

    @return: a Deferred firing with the leftovers (each has C{service})
        still present C{kill_wait} seconds after SIGKILL (their services
        must not be started).
    """
    leftovers = _find_leftovers(registry, groups, events, tree, fs)
    for leftover in leftovers:
        events.record("orphan", leftover.service,
                      f"terminating leftover {leftover.what} of a previous run "
                      f"(SIG{leftover.stop_signal})", **leftover.fields)
        leftover.terminate()

    started = monotonic()
    killed_at = {}
    stuck = []
    while leftovers:
        now = monotonic()
        for leftover in list(leftovers):
            key = id(leftover)
            if not leftover.alive():
                leftovers.remove(leftover)
                leftover.forget()
                events.record("orphan", leftover.service,
                              f"leftover {leftover.what} is gone", **leftover.fields)
            elif key in killed_at:
                if now - killed_at[key] >= kill_wait:
                    leftovers.remove(leftover)
                    stuck.append(leftover)
                    events.record("orphan", leftover.service,
                                  f"leftover {leftover.what} still present "
                                  f"{kill_wait:g}s after SIGKILL; the service is not "
                                  "started", **leftover.fields)
            elif now - started >= min(leftover.stop_timeout, stop_timeout):
                events.record("orphan", leftover.service,
                              f"leftover {leftover.what} still running: SIGKILL",
                              **leftover.fields)
                leftover.kill()
                killed_at[key] = now
        if leftovers:
            yield task.deferLater(reactor, poll, lambda: None)
    return stuck
