"""Helpers for tests that run real processes on trial's reactor, always bounded in time."""


from twisted.internet import task

from clsd.supervision.pgroups import pid_alive  # noqa: F401 (tests import it from here)


async def wait_until(reactor, predicate, timeout=5.0, step=0.02):
    """Poll C{predicate} until true; L{AssertionError} after C{timeout} seconds."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        await task.deferLater(reactor, step, lambda: None)
        waited += step
