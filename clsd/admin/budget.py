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
#: in-memory state (microseconds to milliseconds), short enough that a lease
#: round caught by it still completes. A round that gets no majority within
#: T/8 (0.25 s with the default lease T = 2 s) fails, and after a stall the
#: reactor runs its due timers before it reads the answers waiting in its
#: sockets, so a stall must stay well under T/8: the limit (L{budget_limit})
#: is T/16 = 0.125 s, and 0.1 s sits under it. Measured: a 0.25 s budget with
#: back-to-back inputs cost a node its lease (doc/admin.md).
DEFAULT_MANHOLE_BUDGET = 0.1

#: Never less than this: below it the budget is eaten by the interpreter.
MIN_MANHOLE_BUDGET = 0.01

#: The share of wall time manhole input may take: after an input that ran
#: for t seconds, the next waits t * (1/DUTY - 1) (and at least one reactor
#: turn). An interrupted input (0.1 s) is followed by 0.4 s in which lease
#: rounds (T/8 = 0.25 s) complete, so pasted or repeated blocking lines
#: cannot add up into a stall.
DUTY = 0.2


def budget_limit(lease=None, drift_margin=None, heartbeat_interval=1.0, failure_timeout=4.0):
    """The longest budget that keeps a node's leases and membership safe, in seconds.

    Half a lease round's timeout (T/16: a round sent just before a stall
    still has half its time for the answers), half of the renewal slack
    T/3 - m, and a quarter of the pause that membership ignores
    (failure_timeout - heartbeat_interval). C{lease} is C{None} when the node
    has no [quorum] (no leases).
    """
    limits = [(failure_timeout - heartbeat_interval) / 4]
    if lease is not None:
        limits.append(lease / 16)
        limits.append((lease / 3 - drift_margin) / 2)
    return min(limits)


def cool_down(spent):
    """How long input waits after an input that ran for C{spent} seconds (see L{DUTY})."""
    return spent * (1 / DUTY - 1)


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
    cancelled finds the flag down and does nothing) and never in the frames
    of L{run} itself, so its clean-up cannot be cut short. The previous
    SIGALRM handler and any timer that was running are put back afterwards.
    """

    def __init__(self, seconds=DEFAULT_MANHOLE_BUDGET):
        if not seconds > 0:
            raise ValueError(f"the manhole budget must be positive, got {seconds!r}")
        self.seconds = seconds
        self._armed = False
        #: Wall time the last L{run} took, in seconds.
        self.last_spent = 0.0

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
            started = time.monotonic()
            try:
                return f(*args, **kwargs)
            finally:
                self.last_spent = time.monotonic() - started
        previous_handler = signal.signal(signal.SIGALRM, self._alarm)
        if previous_handler is None:  # installed from C, not Python: put the default back
            previous_handler = signal.SIG_DFL
        previous_timer = signal.setitimer(signal.ITIMER_REAL, 0)
        started = time.monotonic()
        try:
            self._armed = True
            signal.setitimer(signal.ITIMER_REAL, self.seconds, REPEAT)
            return _call(f, args, kwargs)
        finally:
            self._disarm(previous_handler, previous_timer, started)

    def _disarm(self, previous_handler, previous_timer, started):
        # The alarm handler never raises in this frame or in run()'s, so
        # nothing here can be cut short.
        self._armed = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        elapsed = self.last_spent = time.monotonic() - started
        signal.signal(signal.SIGALRM, previous_handler)
        delay, interval = previous_timer
        if delay > 0:
            signal.setitimer(signal.ITIMER_REAL, max(delay - elapsed, 1e-3), interval)

    def _alarm(self, signum, frame):
        # Raising while run() sets up or cleans up could leave the timer
        # running: skip those frames (the timer repeats every REPEAT s, so
        # code still running after run() hands over is interrupted next time).
        if self._armed and (frame is None or frame.f_code not in _NOT_INTERRUPTIBLE):
            raise ManholeInterrupted(interrupted_message(self.seconds))


def _call(f, args, kwargs):
    # Its own frame: a C function (time.sleep) called from here is interrupted
    # with this frame current, which is not one of run()'s.
    return f(*args, **kwargs)


_NOT_INTERRUPTIBLE = frozenset({ReactorTimeBudget.run.__code__, ReactorTimeBudget._disarm.__code__})
