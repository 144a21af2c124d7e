"""``cleanup-all``: remove whatever a rig left behind, found by the names it owns.

Rules (nft table / iptables chain ``clsd_faults_<pid>``), cgroups
(``clsd_faults_<pid>_cpuN``) and processes (environment
``CLSD_FAULTS_OWNER=<pid>``) whose owner pid no longer runs are removed; with
C{force}, those of live rigs too. A stopped process is continued before it
is killed so that it can die.
"""

import os
import signal

from clsd.supervision.pgroups import pid_alive
from rig.faults import cpu, freeze, network
from rig.faults.cleanup import OWNER_ENV


def owned_processes():
    """C{{pid: owner}} for every process carrying the rig's marker (Linux /proc)."""
    found = {}
    if not os.path.isdir("/proc"):
        return found
    marker = (OWNER_ENV + "=").encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
        except OSError:
            continue
        for item in environ:
            if item.startswith(marker):
                value = item[len(marker):].decode(errors="replace")
                if value.isdigit():
                    found[int(entry)] = int(value)
    return found


def kill_owned_processes(*, force=False, alive=None, owner=None):
    """SIGKILL marked processes of dead owners (or of C{owner}, or all with C{force})."""
    alive = alive or pid_alive
    removed = []
    for pid, their_owner in sorted(owned_processes().items()):
        if owner is not None:
            if their_owner != owner:
                continue
        elif not force and alive(their_owner):
            continue
        for signum in (signal.SIGKILL, signal.SIGCONT):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                break
        else:
            removed.append(f"process {pid} (owner {their_owner})")
    return removed


def cleanup_all(*, force=False):
    """Remove every stale rule, cgroup and process; returns what was removed, and errors."""
    removed, errors = [], []
    # Thaw first: a frozen process left behind would otherwise stay frozen.
    steps = [("frozen cgroups", lambda: freeze.remove_stale(force=force)),
             ("processes", lambda: kill_owned_processes(force=force))]
    for backend in (network.NftBackend, network.IptablesBackend):
        if backend.available():
            steps.append((backend.name, lambda b=backend: network.remove_stale(b(), force=force)))
    steps.append(("cgroups", lambda: cpu.remove_stale(force=force)))
    for name, step in steps:
        try:
            removed.extend(step())
        except Exception as e:
            errors.append(f"{name}: {e}")
    return removed, errors
