"""Write TOML from plain dicts: just enough for the configuration files the rig generates.

Top-level scalars first, then ``[table]``s, then ``[[array]]`` tables; deeper
tables are written inline. The standard library reads TOML but cannot write it.
"""

import json
import math


def _key(key):
    if key and all(c.isalnum() or c in "-_" for c in key):
        return key
    return json.dumps(key)


def value(v):
    """One TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"TOML cannot hold {v!r} here")
        return repr(v)
    if isinstance(v, str):
        # JSON string escapes are valid TOML basic-string escapes.
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(value(item) for item in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_key(k)} = {value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} as TOML")


def _is_table_array(v):
    return isinstance(v, (list, tuple)) and v and all(isinstance(i, dict) for i in v)


def _body(table):
    return [f"{_key(k)} = {value(v)}" for k, v in table.items()]


def dumps(data):
    """A TOML document for C{data}: C{{"node": {...}, "service": [{...}, ...]}}."""
    lines = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict) and not _is_table_array(v)}
    lines += _body(scalars)
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{_key(key)}]", *_body(table)]
    for key, tables in data.items():
        if _is_table_array(tables):
            for table in tables:
                lines += ["", f"[[{_key(key)}]]", *_body(table)]
    return "\n".join(lines).lstrip("\n") + "\n"
