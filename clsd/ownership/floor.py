"""The voter's epoch floor on disk: one integer, written durably.

A voter keeps no lease state on disk (PaxosLease is diskless); only the
*floor* of its epoch counters is stored, so that fencing tokens keep growing
across a restart of every voter (see doc/ownership.md, "Epochs").  The value
is written durably (L{clsd.durable.write_durably}: temporary file, fsync,
rename, fsync of the directory): after a crash the file holds the old value
or the new one, never a torn mix.
"""

import os

from clsd.durable import NotACounter, read_counter, write_durably

#: Where, under ``[node] data_dir``.
FLOOR_FILE = os.path.join("ownership", "epoch-floor")


class FloorError(ValueError):
    """The stored floor cannot be read; the message names the file and the problem."""


def floor_path(data_dir):
    return os.path.join(data_dir, FLOOR_FILE)


def read_floor(data_dir):
    """The stored floor; 0 when none was ever written.

    @raise FloorError: the file exists but does not hold a non-negative
        integer.  Starting a voter with 0 instead could reuse epochs, so this
        is not papered over.
    """
    path = floor_path(data_dir)
    try:
        return read_counter(path)
    except OSError as e:
        raise FloorError(f"{path}: cannot read the epoch floor: {e.strerror}") from None
    except NotACounter as e:
        raise FloorError(f"{path}: the epoch floor must be a non-negative integer, got {e.text!r} "
                         "(remove the file only if every voter of the quorum is running)") from None


def write_floor(data_dir, value):
    """Store C{value} durably (temp file, fsync, rename, fsync the directory)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"an epoch floor must be a non-negative integer, got {value!r}")
    write_durably(floor_path(data_dir), f"{value}\n".encode("ascii"))
