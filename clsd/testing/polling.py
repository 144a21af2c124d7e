"""Bounded waiting for the rig: poll a condition until it holds or a deadline passes.

The rig observes real processes from outside; it has nothing to be notified
by, so it polls, always against a deadline, and says what it waited for.
"""

import time

from twisted.internet import defer, task


class WaitTimeout(AssertionError):
    """A condition the rig waited for did not come true in time."""


def wait_for(predicate, timeout, *, what="condition", interval=0.02):
    """Call C{predicate()} until it returns something true; return that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@defer.inlineCallbacks
def poll(reactor, predicate, timeout, what="condition", interval=0.05):
    """L{wait_for} for code on a reactor: wait between tries without blocking it."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        yield task.deferLater(reactor, interval, lambda: None)
