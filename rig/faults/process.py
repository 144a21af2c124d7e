"""Process faults: kill -9, and freezing a process (SIGSTOP) until it is resumed.

A paused process is resumed by the cleanup registry if the run is
interrupted: a rig that dies must not leave a daemon frozen forever.
"""

import os
import signal

from rig.faults.cleanup import default_cleanups


def kill(pid, signum=signal.SIGKILL):
    """Send C{signum} (SIGKILL by default); False when the process was already gone."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


class Pause:
    """SIGSTOP a process now; SIGCONT it on L{resume} (or at cleanup)."""

    def __init__(self, pid, *, cleanups=None):
        self.pid = pid
        self._cleanups = cleanups or default_cleanups
        self._token = self._cleanups.add(self._continue, f"SIGCONT pid {pid}")
        try:
            os.kill(pid, signal.SIGSTOP)
        except BaseException:
            self._cleanups.discard(self._token)
            raise

    @property
    def active(self):
        return self._token is not None

    def resume(self):
        if self._token is not None:
            self._cleanups.run(self._token)
            self._token = None

    def _continue(self):
        kill(self.pid, signal.SIGCONT)


def process_state(pid):
    """The one-letter state from /proc (``T`` stopped, ``Z`` zombie...); None if unknown.

    Linux only; elsewhere it returns None and callers must not rely on it.
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    return data.rsplit(")", 1)[1].split()[0]
