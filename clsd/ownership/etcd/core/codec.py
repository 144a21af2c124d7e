"""etcd's v3 JSON gateway, as plain data: request bodies, and checked readers of its answers.

The gateway speaks protobuf-as-JSON: keys and values are base64, int64
fields are JSON strings, and fields at their zero value (``false``, ``0``,
empty lists) are left out.  Every reader here raises L{EtcdAnswerError}
naming what is wrong, in the wording of every refused field
(L{clsd.wire.core.schema}: ``lease grant.ID: must be an integer, got a boolean``),
so that the core can count and log a bad answer and carry on; nothing in this
module performs I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Literal, TypedDict

from clsd.wire.core import schema
from clsd.wire.core.errors import FieldError


class EtcdAnswerError(ValueError):
    """An etcd answer the core cannot use; ``str()`` says what was wrong with it."""


#: A JSON object, as the gateway sends and takes them (contents checked by the readers).
JsonObject = dict[str, Any]


class Kv(TypedDict):
    """One key-value record of an answer, decoded (see L{_kv})."""

    key: str
    value: str
    create_revision: int
    mod_revision: int
    lease: int


#: One event of a watch stream: C{(type, kv, prev_kv)}.
WatchEvent = tuple[str, Kv, Kv | None]


# -- encoding ------------------------------------------------------------------------

def b64(text: str) -> str:
    """A key or value (str) as the gateway wants it."""
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(data: object, what: str) -> str:
    if not isinstance(data, str):
        raise EtcdAnswerError(schema.refusal(what, "", f"must be a base64 string, got {data!r}"))
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as e:
        raise EtcdAnswerError(schema.refusal(what, "", f"is not base64 UTF-8 text ({e})")) \
            from None


def prefix_end(prefix: str) -> str:
    """The ``range_end`` that makes a range or watch cover every key starting with C{prefix}."""
    raw = bytearray(prefix.encode("utf-8"))
    while raw and raw[-1] == 0xFF:
        raw.pop()
    if not raw:
        return "\x00"
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode("ascii")


def holder_value(node: str, generation: int, previous: JsonObject | None = None) -> str:
    """What a holder writes into its key: who it is (JSON, so operators can read it),
    and the ``_last/`` record its create replaced (C{previous}, when there was one)."""
    value: JsonObject = {"node": node, "generation": generation}
    if previous is not None:
        value["previous"] = previous
    return json.dumps(value, sort_keys=True)


def last_value(node: str, generation: int, released: bool) -> str:
    """The ``_last/`` record: who held a resource last, and whether it gave it back."""
    return json.dumps({"node": node, "generation": generation, "released": released},
                      sort_keys=True)


# -- request bodies --------------------------------------------------------------------

GRANT = "/v3/lease/grant"
KEEPALIVE = "/v3/lease/keepalive"
REVOKE = "/v3/lease/revoke"
TXN = "/v3/kv/txn"
RANGE = "/v3/kv/range"
WATCH = "/v3/watch"


def grant_body(ttl: float) -> JsonObject:
    return {"TTL": str(int(ttl)), "ID": "0"}


def keepalive_body(lease_id: int) -> JsonObject:
    return {"ID": str(lease_id)}


def revoke_body(lease_id: int) -> JsonObject:
    return {"ID": str(lease_id)}


def acquire_body(key: str, last_key: str, value: str, last: str, lease_id: int,
                 last_mod: int) -> JsonObject:
    """Create C{key} under the lease only if it does not exist and the ``_last/``
    record is still the one we read (modified at C{last_mod}, 0: absent).

    The second condition is what lets a retry whose first answer was lost
    still know the previous holder: C{value} carries the ``_last/`` record we
    read, and the create succeeds only if that record is the one it replaces.
    On success the ``_last/`` record is read (before it is overwritten); on
    failure the key and the ``_last/`` record are read.
    """
    return {
        "compare": [{"target": "CREATE", "key": b64(key), "create_revision": "0",
                     "result": "EQUAL"},
                    {"target": "MOD", "key": b64(last_key), "mod_revision": str(last_mod),
                     "result": "EQUAL"}],
        "success": [
            {"request_range": {"key": b64(last_key)}},
            {"request_put": {"key": b64(key), "value": b64(value), "lease": str(lease_id)}},
            {"request_put": {"key": b64(last_key), "value": b64(last)}},
        ],
        "failure": [{"request_range": {"key": b64(key)}},
                    {"request_range": {"key": b64(last_key)}}],
    }


def release_body(key: str, last_key: str, last: str, lease_id: int) -> JsonObject:
    """Delete C{key} only while it is still attached to our lease, and record the release."""
    return {
        "compare": [{"target": "LEASE", "key": b64(key), "lease": str(lease_id),
                     "result": "EQUAL"}],
        "success": [
            {"request_delete_range": {"key": b64(key)}},
            {"request_put": {"key": b64(last_key), "value": b64(last)}},
        ],
        "failure": [],
    }


def watch_body(prefix: str, start_revision: int | None = None) -> JsonObject:
    """A watch on every key under C{prefix}; from C{start_revision} on (replayed), or from now."""
    request: JsonObject = {"key": b64(prefix), "range_end": prefix_end(prefix), "prev_kv": True}
    if start_revision is not None:
        request["start_revision"] = str(start_revision)
    return {"create_request": request}


def range_body(key: str) -> JsonObject:
    return {"key": b64(key)}


# -- reading answers -----------------------------------------------------------------------

#: An int64 as the gateway writes one (a JSON string, or a number).
_DECIMAL_INT = schema.checker(schema.DecimalInt())


def _int(data: JsonObject, key: str, what: str, default: int | None = None) -> int:
    value = data.get(key, default)
    if value is None:
        raise EtcdAnswerError(schema.refusal(what, key, "is required"))
    try:
        _DECIMAL_INT(value)
    except FieldError as e:
        raise EtcdAnswerError(schema.refusal(what, key, e.message)) from None
    return int(value)


def _object(data: object, what: str) -> JsonObject:
    return schema.an_object(data, what, EtcdAnswerError)


def _array(data: JsonObject, key: str, what: str) -> list[Any]:
    """C{data[key]}, an array (absent: empty, as the gateway leaves empty lists out)."""
    value = data.get(key, [])
    if not isinstance(value, list):
        raise EtcdAnswerError(schema.refusal(what, key,
                                             f"must be an array, got {schema.json_type(value)}"))
    return value


def parse_json(raw: bytes, what: str) -> JsonObject:
    """Bytes of one JSON object, or L{EtcdAnswerError}."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as e:
        raise EtcdAnswerError(f"{what}: not JSON ({e})") from None
    return _object(data, what)


def error_text(data: object) -> str | None:
    """The message of a gateway error object (``{"error", "message", "code"}``), if any."""
    if isinstance(data, dict) and ("error" in data or "code" in data):
        return str(data.get("message") or data.get("error") or f"code {data.get('code')}")
    return None


def revision(data: JsonObject, what: str) -> int:
    header = _object(data.get("header"), f"{what} header")
    return _int(header, "revision", f"{what} header")


def read_grant(data: JsonObject) -> tuple[int, int]:
    """C{(lease_id, ttl)} from a ``/v3/lease/grant`` answer."""
    what = "lease grant"
    if data.get("error"):
        raise EtcdAnswerError(f"{what}: {data['error']}")
    lease_id = _int(data, "ID", what)
    ttl = _int(data, "TTL", what)
    if lease_id == 0 or ttl <= 0:
        raise EtcdAnswerError(f"{what}: no lease granted (ID {lease_id}, TTL {ttl})")
    return lease_id, ttl


def read_keepalive(data: JsonObject, lease_id: int) -> int:
    """The new TTL from a ``/v3/lease/keepalive`` answer; 0 means etcd no longer has the lease."""
    what = "lease keepalive"
    result = _object(data.get("result"), f"{what} result")
    got = _int(result, "ID", what)
    if got != lease_id:
        raise EtcdAnswerError(f"{what}: answer is for lease {got}, not {lease_id}")
    return max(_int(result, "TTL", what, default=0), 0)


def _kv(data: object, what: str) -> Kv:
    kv = _object(data, what)
    return {
        "key": unb64(kv.get("key"), f"{what} key"),
        "value": unb64(kv.get("value", ""), f"{what} value"),
        "create_revision": _int(kv, "create_revision", what, default=0),
        "mod_revision": _int(kv, "mod_revision", what, default=0),
        "lease": _int(kv, "lease", what, default=0),
    }


def _range_kvs(data: object, what: str) -> list[Kv]:
    response = _object(data, what)
    ranged = _object(response.get("response_range"), f"{what} response_range")
    return [_kv(kv, f"{what} kv") for kv in _array(ranged, "kvs", what)]


def read_value(value: str, what: str) -> JsonObject:
    """The JSON object CLSD stored in a key (holder or ``_last/`` record)."""
    try:
        loaded = json.loads(value)
    except ValueError:
        raise EtcdAnswerError(f"{what}: value is not JSON: {value[:80]!r}") from None
    data = _object(loaded, what)
    if not isinstance(data.get("node"), str):
        raise EtcdAnswerError(f"{what}: value has no node name: {value[:80]!r}")
    return data


def read_acquire(data: JsonObject) -> (tuple[Literal["created"], int, JsonObject | None]
                                       | tuple[Literal["exists"], Kv | None, Kv | None]):
    """The acquire txn's outcome.

    C{("created", revision, last)} with C{last} the ``_last/`` record or None;
    C{("exists", kv, last_kv)} with the key's current kv and the ``_last/``
    record's kv (each None if absent): the key is held, or the ``_last/``
    record changed since we read it.
    """
    what = "acquire txn"
    rev = revision(data, what)
    responses = _array(data, "responses", what)
    if data.get("succeeded", False) is True:
        if len(responses) != 3:
            raise EtcdAnswerError(f"{what}: expected 3 responses, got {len(responses)}")
        kvs = _range_kvs(responses[0], what)
        last = read_value(kvs[0]["value"], f"{what} _last record") if kvs else None
        return ("created", rev, last)
    if len(responses) != 2:
        raise EtcdAnswerError(f"{what}: expected 2 responses, got {len(responses)}")
    kvs = _range_kvs(responses[0], what)
    last_kvs = _range_kvs(responses[1], what)
    return ("exists", kvs[0] if kvs else None, last_kvs[0] if last_kvs else None)


def read_range(data: JsonObject) -> Kv | None:
    """The one kv of a ``/v3/kv/range`` answer for a single key, or None if it is absent."""
    what = "range"
    kvs = _array(data, "kvs", what)
    return _kv(kvs[0], f"{what} kv") if kvs else None


def read_watch_message(data: JsonObject) -> tuple[str, list[WatchEvent], int | None]:
    """One message of a watch stream: C{(kind, events, revision)}.

    C{kind} is ``"created"``, ``"events"``, ``"canceled"`` or ``"compacted"``
    (the revision asked to start from is compacted away: nothing before
    C{revision}, the compaction point, can be replayed); C{events} is a list
    of C{(type, kv, prev_kv)} with C{type} ``"PUT"`` or ``"DELETE"``;
    C{revision} is the header's revision (for ``compacted``: the compaction
    revision), or None.
    """
    what = "watch message"
    if error_text(data) is not None:
        raise EtcdAnswerError(f"{what}: {error_text(data)}")
    result = _object(data.get("result"), f"{what} result")
    header = result.get("header")
    revision = (_int(header, "revision", f"{what} header", default=0) or None
                if isinstance(header, dict) else None)
    if result.get("compact_revision") and _int(result, "compact_revision", what):
        return ("compacted", [], _int(result, "compact_revision", what))
    if result.get("canceled"):
        return ("canceled", [], revision)
    events = _array(result, "events", what)
    parsed: list[WatchEvent] = []
    for item in events:
        event = _object(item, f"{what} event")
        kind = event.get("type", "PUT")
        if kind not in ("PUT", "DELETE"):
            raise EtcdAnswerError(f"{what}: unknown event type {kind!r}")
        kv = _kv(event.get("kv"), f"{what} kv")
        prev = _kv(event["prev_kv"], f"{what} prev_kv") if "prev_kv" in event else None
        parsed.append((kind, kv, prev))
    if result.get("created") and not parsed:
        return ("created", [], revision)
    return ("events", parsed, revision)
