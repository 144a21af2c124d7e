"""Small files that must survive a crash or a power loss intact.

The value is written to a temporary file, fsynced, renamed over the old one,
and the directory fsynced: after a crash the file holds the old content or
the new one, never a torn mix, and content reported as written survives a
power loss.
"""

import os


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
