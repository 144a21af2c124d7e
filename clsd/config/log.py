"""The ``[log]`` table: an optional JSON-lines copy of the daemon's log.

The human-readable log is twistd's own (``--logfile``, or standard output
with ``-n``) and is always on; ``json`` adds one JSON object per event for
machines (see doc/logging.md).
"""

import os

import attrs

#: The value of ``json`` (and of ``--json-log``) that means standard output.
STDOUT = "-"


@attrs.frozen
class LogConfig:
    #: Absolute path of the JSON-lines log, L{STDOUT}, or C{None}: no JSON log.
    json: str | None = None


def parse_log(table, base_dir):
    """Build a L{LogConfig} from the ``[log]`` L{Table} (C{None}: no such table)."""
    if table is None:
        return LogConfig()
    value = table.string("json", None)
    table.finish()
    if value is None or value == STDOUT:
        return LogConfig(json=value)
    path = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    if os.path.isdir(path):
        raise table.error("json", f"must be a file, {path} is a directory")
    return LogConfig(json=path)
