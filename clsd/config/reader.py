"""A typed, path-aware reader over one TOML table.

Every value is taken out of the table with a type and a range, so that a
mistake is reported as ``FILE: service[1].backoff.factor: must be ...`` and
keys nobody took are reported as unknown: a typo must never pass silently.
"""

import math
import re

_MISSING = object()

#: Names of nodes, services and cluster IDs: they appear in file names,
#: certificates and log lines, so they are kept to a safe alphabet.
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


class ConfigError(Exception):
    """A configuration mistake; ``str()`` is the one line shown to the operator."""

    def __init__(self, source, path, message):
        self.source = source
        self.path = path
        self.message = message
        where = f"{source}: {path}: " if path else f"{source}: "
        super().__init__(where + message)


def _describe(value):
    """Name a TOML value's type the way the operator wrote it."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"number {value!r}"
    if isinstance(value, str):
        return f"string {value!r}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


class Table:
    """Read typed values out of a TOML table, remembering which keys were used.

    Kept apart from the peer schema (L{clsd.wire.core.schema}), which checks a whole message
    at once: a configuration is read key by key by the section that owns it, unknown keys
    are found only after every section took its own, its errors name the file, and its
    types are TOML's (durations, paths, names), not JSON's.
    """

    def __init__(self, data, path, source):
        self._data = data
        self._used = set()
        self.path = path
        self.source = source

    # -- plumbing ---------------------------------------------------------

    def key_path(self, key):
        return f"{self.path}.{key}" if self.path else key

    def error(self, key, message):
        """A L{ConfigError} about C{key} of this table (or the table itself)."""
        path = self.key_path(key) if key is not None else self.path
        return ConfigError(self.source, path, message)

    def __contains__(self, key):
        return key in self._data

    def _take(self, key, default):
        self._used.add(key)
        if key in self._data:
            return self._data[key]
        if default is _MISSING:
            raise self.error(key, "is required")
        return default

    def finish(self):
        """Fail on the first key that no reader asked for."""
        for key in self._data:
            if key not in self._used:
                raise self.error(key, "unknown key")

    # -- scalar values ----------------------------------------------------

    def string(self, key, default=_MISSING, *, nonempty=True):
        value = self._take(key, default)
        if value is default and default is not _MISSING:
            return value
        if not isinstance(value, str):
            raise self.error(key, f"must be a string, got {_describe(value)}")
        if nonempty and not value:
            raise self.error(key, "must not be empty")
        return value

    def name(self, key, what, default=_MISSING):
        """A string restricted to L{NAME_PATTERN}; C{what} names it in errors ("node name")."""
        value = self.string(key, default)
        if value is default and default is not _MISSING:
            return value
        if not NAME_PATTERN.match(value):
            raise self.error(
                key,
                f"{value!r} is not a valid {what} (letters, digits, '_', '.', '-'; "
                "starts with a letter or digit; at most 63)",
            )
        return value

    def boolean(self, key, default=_MISSING):
        value = self._take(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {_describe(value)}")
        return value

    def number(self, key, default=_MISSING, *, minimum=None, maximum=None,
               positive=False):
        """A float; integers are accepted (``lease = 2`` means 2.0)."""
        value = self._take(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {_describe(value)}")
        value = float(value)
        if not math.isfinite(value):
            raise self.error(key, f"must be a finite number, got {value!r}")
        self._check_range(key, value, minimum, maximum, positive)
        return value

    def integer(self, key, default=_MISSING, *, minimum=None, maximum=None):
        value = self._take(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be a whole number, got {_describe(value)}")
        self._check_range(key, value, minimum, maximum, False)
        return value

    def _check_range(self, key, value, minimum, maximum, positive):
        if positive and value <= 0:
            raise self.error(key, f"must be greater than 0, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum!r}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.error(key, f"must be at most {maximum!r}, got {value!r}")

    def choice(self, key, choices, default=_MISSING):
        value = self.string(key, default)
        if value not in choices:
            allowed = " | ".join(choices)
            raise self.error(key, f"must be one of {allowed}, got {value!r}")
        return value

    # -- compound values --------------------------------------------------

    def string_list(self, key, default=_MISSING, *, nonempty=False):
        value = self._take(key, default)
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of strings, got {_describe(value)}")
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise self.error(
                    f"{key}[{index}]", f"must be a string, got {_describe(item)}"
                )
        if nonempty and not value:
            raise self.error(key, "must not be empty")
        return tuple(value)

    def string_map(self, key, default=_MISSING):
        value = self._take(key, default)
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table of strings, got {_describe(value)}")
        for name, item in value.items():
            if not isinstance(item, str):
                raise self.error(
                    f"{key}.{name}", f"must be a string, got {_describe(item)}"
                )
        return dict(value)

    def raw(self, key, default=_MISSING):
        """The untyped value, for keys that accept several shapes."""
        return self._take(key, default)

    def table(self, key):
        """The sub-table C{key} as a L{Table}, or C{None} when absent."""
        value = self._take(key, None)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table, got {_describe(value)}")
        return Table(value, self.key_path(key), self.source)

    def tables(self, key):
        """The array of tables C{[[key]]} as L{Table}s, paths ``key[0]``, ``key[1]``."""
        value = self._take(key, [])
        if isinstance(value, dict):
            raise self.error(key, f"must be an array of tables ([[{key}]]), got a table")
        if not isinstance(value, list):
            raise self.error(key, f"must be an array of tables, got {_describe(value)}")
        result = []
        for index, item in enumerate(value):
            path = f"{self.key_path(key)}[{index}]"
            if not isinstance(item, dict):
                raise ConfigError(self.source, path, f"must be a table, got {_describe(item)}")
            result.append(Table(item, path, self.source))
        return result
