"""This start's generation, larger than every previous start's, kept in data_dir.

A node's generation tells its lives apart: news of a higher generation
supersedes anything about an older one, and the peer layer tells a restarted
peer's connections from its old ones by it. It must therefore grow across
restarts of the same name. The wall clock alone (nanoseconds at start-up)
does not guarantee that: a restart after the clock was set back would take a
smaller generation, and the others would ignore the new life until the old
record is reaped. So the generation is C{max(stored + 1, time_ns())}, stored
durably before it is used: larger than any before it even if the clock went
back, and still about the wall clock (unique across a data_dir that is lost).
The wall clock is an identity here, never a measure of time.
"""

import os
import time

from clsd.durable import NotACounter, read_counter, write_durably

#: Where, under ``[node] data_dir``.
GENERATION_FILE = os.path.join("membership", "generation")


class GenerationError(Exception):
    """The stored generation cannot be read or written; names the file and the problem."""


def generation_path(data_dir):
    return os.path.join(data_dir, GENERATION_FILE)


def read_generation(data_dir):
    """The last stored generation; 0 when none was ever stored.

    @raise GenerationError: the file exists but cannot be read or does not
        hold a non-negative integer (starting with a guess could reuse an
        old life's generation, so this is not papered over).
    """
    path = generation_path(data_dir)
    try:
        return read_counter(path)
    except OSError as e:
        raise GenerationError(f"{path}: cannot read the stored generation: {e.strerror}") from None
    except NotACounter as e:
        raise GenerationError(
            f"{path}: the stored generation must be a non-negative integer, got {e.text[:40]!r} "
            "(remove the file to start afresh from the wall clock)") from None


def next_generation(data_dir, wall_ns=None):
    """Choose this start's generation, store it durably, and return it.

    @param wall_ns: the wall clock in nanoseconds (default C{time.time_ns}).
    @raise GenerationError: the stored one is unreadable, or the new one cannot be stored.
    """
    now = wall_ns() if wall_ns is not None else time.time_ns()
    generation = max(read_generation(data_dir) + 1, now)
    path = generation_path(data_dir)
    try:
        write_durably(path, f"{generation}\n".encode("ascii"))
    except OSError as e:
        raise GenerationError(f"{path}: cannot store the generation: {e.strerror or e}") from None
    return generation
