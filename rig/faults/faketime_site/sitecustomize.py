"""Loaded only into processes the rig starts under libfaketime (see clock.py).

libfaketime 0.9.10 (Debian 12) breaks clock_nanosleep(CLOCK_MONOTONIC,
TIMER_ABSTIME) when FAKETIME_DONT_FAKE_MONOTONIC=1: it hands the kernel a
negative time and Python 3.11's time.sleep fails with EINVAL
(https://github.com/wolfcw/libfaketime/issues/426). select() with a timeout
is unaffected, so time.sleep is rebuilt on it. Nothing else is changed.
"""

import select as _select
import time as _time


def _sleep(seconds):
    if seconds < 0:
        raise ValueError("sleep length must be non-negative")
    deadline = _time.monotonic() + seconds
    while True:
        remaining = deadline - _time.monotonic()
        if remaining <= 0:
            return
        _select.select([], [], [], remaining)


try:
    _time.sleep(0)
    _time.sleep(0.0001)
except OSError:
    _time.sleep = _sleep
