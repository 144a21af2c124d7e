"""Helpers for tests that run real processes on trial's reactor, always bounded in time."""

import os

from twisted.internet import task


def pid_alive(pid):
    """Whether C{pid} is a live process (a zombie counts as dead)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:  # no /proc (not Linux): ask the kernel
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


async def wait_until(reactor, predicate, timeout=5.0, step=0.02):
    """Poll C{predicate} until true; L{AssertionError} after C{timeout} seconds."""
    waited = 0.0
    while not predicate():
        if waited >= timeout:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        await task.deferLater(reactor, step, lambda: None)
        waited += step
