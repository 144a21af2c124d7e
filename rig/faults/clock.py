"""Wall-clock jumps for one process, with libfaketime, leaving its monotonic clock alone.

The process is started with libfaketime preloaded, reading its offset from a
file (``FAKETIME_TIMESTAMP_FILE``) that the rig rewrites to jump: ``+300``
puts its wall clock five minutes ahead, ``+0`` back. CLOCK_MONOTONIC is not
faked (``FAKETIME_DONT_FAKE_MONOTONIC=1``): the point of the fault is that a
daemon deciding on monotonic time does not notice the jump, and the recorder
keeps comparing records across processes.

The jump is picked up within C{CACHE_SECONDS}; libfaketime re-reads the file
no more often, which keeps its cost negligible for a busy daemon.
"""

import glob
import os

from rig.faults.cleanup import default_cleanups

#: How often the faked process re-reads the offset file.
CACHE_SECONDS = 1

#: Where distributions put the preload library (MT: safe with threads).
LIBRARY_PATTERNS = (
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
    "/usr/lib/*/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
    "/usr/local/lib/faketime/libfaketime.so.1",
)
LIBRARY_ENV = "CLSD_LIBFAKETIME"

SITE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "faketime_site")


class FaketimeMissing(RuntimeError):
    """libfaketime is not installed."""


def find_library():
    """The libfaketime preload library ($CLSD_LIBFAKETIME first); L{FaketimeMissing}."""
    explicit = os.environ.get(LIBRARY_ENV)
    if explicit:
        if not os.path.exists(explicit):
            raise FaketimeMissing(f"{LIBRARY_ENV}={explicit} does not exist")
        return explicit
    for pattern in LIBRARY_PATTERNS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise FaketimeMissing("libfaketime is not installed (apt-get install faketime)")


class FakeClock:
    """The offset file of one faked process, and the environment that uses it."""

    def __init__(self, path, *, library=None):
        self.path = path
        self.library = library or find_library()
        self.offset = 0.0
        self._write(0.0)

    def environ(self, base):
        """C{base} plus what makes a process use this clock."""
        env = dict(base)
        preload = env.get("LD_PRELOAD", "")
        env["LD_PRELOAD"] = f"{self.library} {preload}".strip()
        env["FAKETIME_TIMESTAMP_FILE"] = self.path
        env["FAKETIME_CACHE_DURATION"] = str(CACHE_SECONDS)
        env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
        python_path = env.get("PYTHONPATH", "")
        env["PYTHONPATH"] = SITE_DIR + (os.pathsep + python_path if python_path else "")
        return env

    def set_offset(self, seconds):
        """Put the process's wall clock C{seconds} away from the real one."""
        self._write(seconds)
        self.offset = seconds

    def _write(self, seconds):
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{seconds:+.3f}\n")
        os.replace(tmp, self.path)


class ClockJump:
    """Jump a faked process's wall clock by C{seconds}; L{heal} jumps it back."""

    def __init__(self, clock, seconds, *, cleanups=None):
        self.clock = clock
        self.seconds = seconds
        self._previous = clock.offset
        self._cleanups = cleanups or default_cleanups
        self._token = self._cleanups.add(
            lambda: clock.set_offset(self._previous),
            f"reset wall clock of {clock.path} to {self._previous:+}",
        )
        clock.set_offset(self._previous + seconds)

    @property
    def active(self):
        return self._token is not None

    def heal(self):
        if self._token is not None:
            self._cleanups.run(self._token)
            self._token = None
