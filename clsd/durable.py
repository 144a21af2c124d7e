"""Small files that must survive a crash or a power loss intact.

The value is written to a temporary file, fsynced, renamed over the old one,
and the directory fsynced: after a crash the file holds the old content or
the new one, never a torn mix, and content reported as written survives a
power loss.
"""

import os


class NotACounter(ValueError):
    """The file holds something other than a non-negative integer (C{text}: what it holds)."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text


def read_counter(path):
    """The non-negative integer stored at C{path} by L{write_durably}; 0 if no file.

    @raise OSError: the file exists but cannot be read.
    @raise NotACounter: it does not hold a non-negative integer. Callers
        refuse to guess: a counter restarted from 0 could reuse old values.
    """
    try:
        with open(path, "rb") as f:
            raw = f.read(100)
    except FileNotFoundError:
        return 0
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise NotACounter(text)
    return int(text)


def write_durably(path, data):
    """Replace the file C{path} with C{data} (bytes), durably; creates its directory.

    @raise OSError: the directory or the file cannot be written.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    temp = path + ".tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temp, path)
    dfd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
