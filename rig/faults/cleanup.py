"""Every fault the rig applies registers how to undo it, here, before it takes effect.

Undo actions run in reverse order, each at most once, when the fault is
healed, when the run ends (atexit), or when the rig is told to stop (SIGINT,
SIGTERM, SIGHUP once L{Cleanups.install_signal_handlers} was called). What
survives even that (a kill -9 of the rig) is found by name: every rule,
cgroup and process the rig creates carries its owner's pid, and
``python -m rig.faults cleanup-all`` removes those whose owner is gone.
"""

import atexit
import itertools
import os
import signal
import sys
import threading

#: Prefix of every nft table, iptables chain and cgroup the rig creates;
#: followed by ``_<owner pid>``.
OWNED_PREFIX = "clsd_faults"

#: Environment variable carried by every process the rig starts: the rig's pid.
OWNER_ENV = "CLSD_FAULTS_OWNER"


def owned_name(kind="", pid=None):
    """``clsd_faults_<pid>`` (or ``clsd_faults_<pid>_<kind>``): a name cleanup-all can find."""
    pid = os.getpid() if pid is None else pid
    return f"{OWNED_PREFIX}_{pid}" + (f"_{kind}" if kind else "")


def owner_of(name):
    """The pid encoded in an owned name, or None when C{name} is not ours."""
    lowered = name.lower()
    if not lowered.startswith(OWNED_PREFIX + "_"):
        return None
    head = lowered[len(OWNED_PREFIX) + 1:].split("_", 1)[0]
    return int(head) if head.isdigit() else None


class Cleanups:
    """A LIFO registry of undo actions."""

    def __init__(self):
        self._items = {}
        self._ids = itertools.count()
        self._lock = threading.RLock()
        self._atexit = False
        self._previous_handlers = {}

    def add(self, undo, description):
        """Register C{undo()}; returns a token for L{discard} or L{run}."""
        with self._lock:
            token = next(self._ids)
            self._items[token] = (description, undo)
            if not self._atexit:
                atexit.register(self.run_all)
                self._atexit = True
            return token

    def discard(self, token):
        """Forget an undo action (the fault was healed by other means)."""
        with self._lock:
            self._items.pop(token, None)

    def run(self, token):
        """Run one undo action now (at most once); re-raises its error."""
        with self._lock:
            item = self._items.pop(token, None)
        if item is not None:
            item[1]()

    def pending(self):
        """Descriptions of the undo actions not yet run, newest first."""
        with self._lock:
            return [self._items[t][0] for t in sorted(self._items, reverse=True)]

    def run_all(self):
        """Run every pending undo action, newest first; return the errors, keep going."""
        errors = []
        while True:
            with self._lock:
                if not self._items:
                    break
                token = max(self._items)
                description, undo = self._items.pop(token)
            try:
                undo()
            except Exception as e:  # one failed undo must not stop the others
                errors.append(f"{description}: {e}")
                sys.stderr.write(f"clsd faults: cleanup failed: {description}: {e}\n")
        return errors

    def install_signal_handlers(self, signums=(signal.SIGINT, signal.SIGTERM, signal.SIGHUP)):
        """On these signals: undo everything, then die of the signal as before."""
        for signum in signums:
            self._previous_handlers[signum] = signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame):
        self.run_all()
        previous = self._previous_handlers.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


#: The process-wide registry the primitives use unless given another.
default_cleanups = Cleanups()
