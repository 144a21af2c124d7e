"""Bounded waiting from outside a process: poll a condition until it holds or a deadline passes.

Whoever watches real processes from outside (the demo, the test rig, the
tests, the benchmarks) has nothing to be notified by, so it polls, always
against a deadline, and says what it waited for.
"""

import time

from twisted.internet import defer, task


class WaitTimeout(AssertionError):
    """A condition waited for did not come true in time."""


def wait_for(predicate, timeout, *, what="condition", interval=0.02):
    """Call C{predicate()} until it returns something true; return that value (blocking)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


@defer.inlineCallbacks
def poll(reactor, predicate, timeout=10.0, what="condition", interval=0.02):
    """L{wait_for} on a reactor: a Deferred that waits between tries without blocking it.

    The deadline is on C{reactor.seconds()}, so a L{twisted.internet.task.Clock} drives it too.
    """
    deadline = reactor.seconds() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for {what}")
        yield task.deferLater(reactor, interval, lambda: None)
