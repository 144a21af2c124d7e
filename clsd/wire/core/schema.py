"""The one schema of what other machines send us: field specs, their checks, and one wording
of a refusal.

Every codec that reads a peer's or etcd's data reads its fields here: the peer protocol's
own messages (L{clsd.wire.core.messages}), membership's and ownership's (their C{from_wire}),
and etcd's JSON gateway answers (L{clsd.ownership.etcd.core.codec}). A refusal always reads
``<message type>.<field path>: <what is wrong>`` (L{refusal}); each caller names the
exception class it raises, so that the layer above keeps counting what it counts today (a
peer's malformed message still closes that connection and is counted).

Field specs (a field's value is one of):

  - C{str}, C{int} (signed 64-bit), C{float} (any finite JSON number), C{bool};
  - C{dict} / C{list}: any JSON object / array, contents unchecked;
  - C{[spec]}: an array whose items all match C{spec};
  - C{{"key": spec, ...}}: an object with exactly these keys;
  - C{MapOf(spec)}: an object with any keys whose values match C{spec};
  - C{Optional(spec)}: (a field only) may be absent; when present, matches C{spec};
  - C{Since(version, spec, ignorable=False)}: (a field only) added in protocol C{version}
    (see "Versions" below);
  - bounded ones: C{Int(minimum, maximum)}, C{Text(maxlen)} (1 to C{maxlen} characters),
    C{Items(maxlen)} (an array of at most C{maxlen} items, contents unchecked),
    C{Number(minimum, below)}, and C{DecimalInt()} (an int64 as protobuf's JSON mapping
    writes it: a number or a string of digits).

An object's fields are exactly its spec's: an unknown field is refused too.

Versions.  A message's schema grows with the protocol: a field wrapped in C{Since(N, spec)}
exists from protocol N on.  It is sent only to a peer that negotiated N or later (the codec
leaves it out for an older one) and refused from a peer that negotiated less, so a field is
never half-understood.  Only a field declared C{ignorable} is sent to every peer, marked as
such on the line, and dropped by a receiver that does not know it; that is for information an
older node can do without (a version string, a hint), never for anything a safety rule reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Set
from typing import Any, cast

import attrs

from clsd.wire.core.errors import FieldError

INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1

#: A compiled spec: returns when the value fits, raises L{FieldError} otherwise.
Check = Callable[[object], None]
#: The exception class a caller raises for a refusal (its argument: the one wording).
ErrorType = Callable[[str], Exception]


@attrs.frozen
class Optional:
    """A field that may be absent."""

    spec: object


@attrs.frozen
class Since:
    """A field added in protocol C{version} (see "Versions" in the module docstring).

    C{spec} may be L{Optional}.  C{ignorable}: sent to older peers too, which drop it.
    """

    version: int
    spec: object
    ignorable: bool = False


@attrs.frozen
class MapOf:
    """An object with arbitrary string keys, every value matching C{spec}."""

    spec: object


@attrs.frozen(cache_hash=True)
class Int:
    """An integer in [C{minimum}, C{maximum}]."""

    minimum: int = INT64_MIN
    maximum: int = INT64_MAX

    def compile(self) -> Check:
        low, high = self.minimum, self.maximum

        def check(value: object) -> None:
            if type(value) is not int:
                raise FieldError("", f"must be an integer, got {json_type(value)}")
            if not low <= value <= high:
                raise FieldError("", f"{value} out of range")
        return check


@attrs.frozen(cache_hash=True)
class Text:
    """A string of 1 to C{maxlen} characters."""

    maxlen: int

    def compile(self) -> Check:
        maxlen = self.maxlen

        def check(value: object) -> None:
            if type(value) is not str or not value or len(value) > maxlen:
                raise FieldError("", f"must be a string of 1 to {maxlen} characters")
        return check


@attrs.frozen(cache_hash=True)
class Items:
    """An array of at most C{maxlen} items (their contents checked by the caller)."""

    maxlen: int

    def compile(self) -> Check:
        maxlen = self.maxlen

        def check(value: object) -> None:
            if type(value) is not list or len(value) > maxlen:
                raise FieldError("", f"must be a list of at most {maxlen} items")
        return check


@attrs.frozen(cache_hash=True)
class Number:
    """A number in [C{minimum}, C{below})."""

    minimum: float
    below: float

    def compile(self) -> Check:
        low, below = self.minimum, self.below

        def check(value: object) -> None:
            kind = type(value)
            if (kind is not int and kind is not float) or not low <= cast(float, value) < below:
                raise FieldError("", f"must be a number in [{low:g}, {below:g})")
        return check


@attrs.frozen(cache_hash=True)
class DecimalInt:
    """A signed 64-bit integer as protobuf's JSON mapping writes one: a number or a string."""

    def compile(self) -> Check:
        def check(value: object) -> None:
            if type(value) is str:
                try:
                    value = int(value)
                except ValueError:
                    raise FieldError("", f"must be an integer, got {value!r}") from None
            if type(value) is not int:
                raise FieldError("", f"must be an integer, got {json_type(value)}")
        return check


_BOUNDED = (Int, Text, Items, Number, DecimalInt)


def json_type(value: object) -> str:
    """What C{value} is, in JSON's words (for a refusal)."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    if value is None:
        return "null"
    return type(value).__name__


def join(part: str, path: str) -> str:
    """The path C{path} (relative to C{part}) seen from outside C{part}."""
    if not path:
        return part
    if path.startswith("["):
        return part + path
    return f"{part}.{path}" if part else path


def refusal(where: str, path: str, problem: str) -> str:
    """The one wording of a refused field: ``where.path: problem`` (``where: problem``)."""
    return f"{join(where, path)}: {problem}"


def _under(part: str, error: FieldError) -> FieldError:
    """C{error} (a L{FieldError} inside C{part}) with its path prefixed by C{part}.

    Paths are only built on the way out of a failure, so checking a good
    message allocates no strings.
    """
    return FieldError(join(part, error.path), error.message)


def compile_spec(spec: object) -> Check:
    """Turn a schema C{spec} into a function C{check(value)} raising L{FieldError}.

    The error's path is relative to the value checked (empty for the value
    itself); containers prefix their key or index on the way out.
    """
    if spec is str:
        def check(value: object) -> None:
            if type(value) is not str:
                raise FieldError("", f"must be a string, got {json_type(value)}")
        return check
    if spec is int:
        def check(value: object) -> None:
            if type(value) is not int:
                raise FieldError("", f"must be an integer, got {json_type(value)}")
            if not INT64_MIN <= value <= INT64_MAX:
                raise FieldError("", "is out of range for a 64-bit integer")
        return check
    if spec is float:
        def check(value: object) -> None:
            kind = type(value)
            if kind is not float and kind is not int:
                raise FieldError("", f"must be a number, got {json_type(value)}")
            if kind is float and not math.isfinite(cast(float, value)):
                raise FieldError("", "must be a finite number")
        return check
    if spec is bool:
        def check(value: object) -> None:
            if type(value) is not bool:
                raise FieldError("", f"must be true or false, got {json_type(value)}")
        return check
    if spec is dict:
        def check(value: object) -> None:
            if type(value) is not dict:
                raise FieldError("", f"must be an object, got {json_type(value)}")
        return check
    if spec is list:
        def check(value: object) -> None:
            if type(value) is not list:
                raise FieldError("", f"must be an array, got {json_type(value)}")
        return check
    if isinstance(spec, _BOUNDED):
        return spec.compile()
    if isinstance(spec, list):
        if len(spec) != 1:
            raise TypeError(f"a list schema has exactly one item schema, got {spec!r}")
        item = compile_spec(spec[0])

        def check(value: object) -> None:
            if type(value) is not list:
                raise FieldError("", f"must be an array, got {json_type(value)}")
            index = 0
            try:
                for index, element in enumerate(value):  # noqa: B007 (named in the error)
                    item(element)
            except FieldError as e:
                raise _under(f"[{index}]", e) from None
        return check
    if isinstance(spec, MapOf):
        item = compile_spec(spec.spec)

        def check(value: object) -> None:
            if type(value) is not dict:
                raise FieldError("", f"must be an object, got {json_type(value)}")
            key = ""
            try:
                for key, element in value.items():  # noqa: B007 (named in the error)
                    item(element)
            except FieldError as e:
                raise _under(key, e) from None
        return check
    if isinstance(spec, dict):
        return compile_object(spec)
    if isinstance(spec, (Optional, Since)):
        raise TypeError(f"{type(spec).__name__}(...) is only allowed as the value of an "
                        "object field")
    raise TypeError(f"not a schema: {spec!r}")


def compile_object(fields: Mapping[str, object]) -> Check:
    """C{check(value)} for an object with exactly C{fields} (a dict of name to spec)."""
    required_keys: list[str] = []
    checks: dict[str, Check] = {}
    for key, spec in fields.items():
        if not isinstance(key, str):
            raise TypeError(f"field names are strings, got {key!r}")
        if isinstance(spec, Since):
            spec = spec.spec
        if isinstance(spec, Optional):
            checks[key] = compile_spec(spec.spec)
        else:
            required_keys.append(key)
            checks[key] = compile_spec(spec)
    required = tuple(required_keys)

    def check(value: object) -> None:
        if type(value) is not dict:
            raise FieldError("", f"must be an object, got {json_type(value)}")
        for key in required:
            if key not in value:
                raise FieldError(key, "is required")
        key = ""
        try:
            for key, element in value.items():
                field_check = checks.get(key)
                if field_check is None:
                    raise FieldError("", "unknown field")
                field_check(element)
        except FieldError as e:
            raise _under(key, e) from None
    return check


def fields_at(fields: Mapping[str, object], version: int | None) -> dict[str, object]:
    """The object schema C{fields} as protocol C{version} knows it (C{None}: every field)."""
    if version is None:
        return dict(fields)
    return {key: spec for key, spec in fields.items()
            if not isinstance(spec, Since) or spec.version <= version}


def added_fields(fields: Mapping[str, object]) -> dict[str, Since]:
    """The L{Since} fields of object schema C{fields}, by name."""
    return {key: spec for key, spec in fields.items() if isinstance(spec, Since)}


# -- reading one field at a time (the layers that parse into their own objects) -----------

_compiled: dict[object, Check] = {}


def checker(spec: object) -> Check:
    """The compiled C{check(value)} of a hashable C{spec}, built once (see L{compile_spec})."""
    check = _compiled.get(spec)
    if check is None:
        check = _compiled[spec] = compile_spec(spec)
    return check


def an_object(value: object, where: str, error: ErrorType) -> dict[str, Any]:
    """C{value} if it is a JSON object, else C{error} naming C{where}."""
    if type(value) is not dict:
        raise error(refusal(where, "", f"must be an object, got {json_type(value)}"))
    return value


def only(data: object, allowed: Set[str], where: str, error: ErrorType) -> None:
    """Refuse an object with a key outside C{allowed}: its fields are exactly its schema's."""
    if type(data) is not dict:
        data = an_object(data, where, error)
    if not data.keys() <= allowed:
        unknown = min(data.keys() - allowed, key=str)
        raise error(refusal(f"{where}.{unknown}", "", "unknown field"))  # any name, even "[x"


def required(data: object, key: str, where: str, error: ErrorType) -> Any:
    """C{data[key]}, unchecked; C{error} if C{data} is no object or has no C{key}."""
    if type(data) is not dict:
        data = an_object(data, where, error)
    try:
        return data[key]
    except KeyError:
        raise error(refusal(where, key, "is required")) from None


def read(data: object, key: str, check: Check, where: str, error: ErrorType) -> Any:
    """C{data[key]} passed through C{check} (from L{checker}); C{error} with the one wording."""
    if type(data) is not dict:
        data = an_object(data, where, error)
    try:
        value = data[key]
    except KeyError:
        raise error(refusal(where, key, "is required")) from None
    try:
        check(value)
    except FieldError as e:
        raise error(refusal(where, join(key, e.path), e.message)) from None
    return value


def field(data: Mapping[str, Any], key: str, spec: object, where: str, error: ErrorType, *,
          optional: bool = False, default: object = None) -> Any:
    """C{data[key]} checked against C{spec} (hashable: a type or a bounded spec).

    With C{optional}, an absent or null field gives C{default}.
    """
    if optional:
        value = data.get(key)
        if value is None:
            return default
        try:
            checker(spec)(value)
        except FieldError as e:
            raise error(refusal(where, join(key, e.path), e.message)) from None
        return value
    return read(data, key, checker(spec), where, error)
