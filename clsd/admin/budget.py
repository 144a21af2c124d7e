"""A reactor-time budget for manhole input: blocking code is interrupted, not obeyed.

Code typed in the manhole runs on the reactor thread. Lease renewals (every
T/3 = 0.67 s by default, a stop 1.4 s after the last renewal was sent) and
heartbeats cannot wait out a ``time.sleep(10)``, so no timeout setting can
absorb one: the manhole has to protect the loop. Each input runs under a
budget of wall time enforced with ``signal.setitimer(ITIMER_REAL)``: when it is
spent, SIGALRM's handler raises L{ManholeInterrupted} in the running code,
which aborts that input with a clear message.

Only the main thread receives Python signal handlers, and Twisted's reactor
runs there; elsewhere (or without ``setitimer``) the budget is not available
and L{ReactorTimeBudget.unavailable} says why.

Limits (see doc/admin.md): the handler runs between Python bytecodes, so C
code that never returns to the interpreter (``sum(range(10**10))``, arithmetic
on huge integers, a regex backtracking) is interrupted only when it returns.
System calls interrupted by the signal (sleep, socket reads, waitpid, lock
waits) are aborted at once. Code that catches BaseException and goes on is
interrupted again every L{REPEAT} seconds, but can still outlast the budget.
"""

import signal
import threading
import time

#: Default budget per manhole input: long enough for any inspection of
#: in-memory state (microseconds to milliseconds), short enough that the
#: stall it allows is about a quarter of what a lease can absorb. With the
#: default lease (T = 2 s, drift margin m = 0.1 s) a holder that renews late
#: by up to T/3 - m = 0.57 s still renews before it must stop, so the limit
#: (L{budget_limit}) is half of that, 0.28 s; 0.25 s sits under it.
DEFAULT_MANHOLE_BUDGET = 0.25

#: Never less than this: below it the budget is eaten by the interpreter.
MIN_MANHOLE_BUDGET = 0.01


def budget_limit(lease=None, drift_margin=None, heartbeat_interval=1.0, failure_timeout=4.0):
    """The longest budget that keeps a node's leases and membership safe, in seconds.

    Half of the renewal slack T/3 - m (a renewal delayed by one budget still
    has half its slack left for a retry), and a quarter of the pause that
    membership ignores (failure_timeout - heartbeat_interval). C{lease} is
    C{None} when the node has no [quorum] (no leases).
    """
    limits = [(failure_timeout - heartbeat_interval) / 4]
    if lease is not None:
        limits.append((lease / 3 - drift_margin) / 2)
    return min(limits)


#: After the first interruption, code that swallowed it is interrupted again
#: this often.
REPEAT = 0.05

#: What the operator reads when an input is aborted (the first line names the budget).
EXPLANATION = (
    "manhole code runs on the reactor thread; a blocking call stalls heartbeats "
    "and lease renewals. Use defer_to_thread(f, *args) for long work (it returns "
    "a Deferred; the manhole shows its result when it fires)."
)


class ManholeInterrupted(BaseException):
    """Raised in manhole code whose budget is spent.

    A BaseException, like KeyboardInterrupt, so that ``except Exception`` in
    the operator's code does not swallow it.
    """


def interrupted_message(budget):
    return f"interrupted after {budget:g} s: {EXPLANATION}"


class ReactorTimeBudget:
    """Runs callables under a wall-time budget enforced by SIGALRM.

    The alarm can never fire outside a L{run}: the timer is armed only inside
    it, cancelled in its C{finally}, and the handler raises only while the
    C{_armed} flag is set (a signal already on its way when the timer is
    cancelled finds the flag down and does nothing). The previous SIGALRM
    handler and any timer that was running are put back afterwards.
    """

    def __init__(self, seconds=DEFAULT_MANHOLE_BUDGET):
        if not seconds > 0:
            raise ValueError(f"the manhole budget must be positive, got {seconds!r}")
        self.seconds = seconds
        self._armed = False

    def unavailable(self):
        """Why the budget cannot be enforced here, or C{None} when it can."""
        if not hasattr(signal, "setitimer"):
            return "signal.setitimer is not supported on this OS"
        if threading.current_thread() is not threading.main_thread():
            return "the reactor does not run in the main thread (signals go there)"
        return None

    def run(self, f, *args, **kwargs):
        """Call C{f(*args, **kwargs)}; raise L{ManholeInterrupted} once the budget is spent.

        Where the budget is unavailable, C{f} just runs (the manhole says so
        in its banner).
        """
        if self.unavailable() is not None or self._armed:
            return f(*args, **kwargs)
        previous_handler = signal.signal(signal.SIGALRM, self._alarm)
        if previous_handler is None:  # installed from C, not Python: put the default back
            previous_handler = signal.SIG_DFL
        previous_timer = signal.setitimer(signal.ITIMER_REAL, 0)
        started = time.monotonic()
        try:
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds, REPEAT)
            return f(*args, **kwargs)
        finally:
            self._disarm(previous_handler, previous_timer, time.monotonic() - started)

    def _disarm(self, previous_handler, previous_timer, elapsed):
        while True:
            try:
                # The flag first: from here on, a late SIGALRM is harmless.
                self._armed = False
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, previous_handler)
                delay, interval = previous_timer
                if delay > 0:
                    signal.setitimer(signal.ITIMER_REAL, max(delay - elapsed, 1e-3), interval)
                return
            except ManholeInterrupted:
                # The alarm landed before the flag went down; do it again.
                continue

    def _alarm(self, signum, frame):
        if self._armed:
            raise ManholeInterrupted(interrupted_message(self.seconds))
