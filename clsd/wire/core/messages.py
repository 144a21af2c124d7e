"""Message types: what may travel on a peer connection.

Upper layers (membership, leases) declare their messages here and put them
in a L{Registry}; the codec then refuses, as the peer's fault, any message
whose type is not registered or whose fields do not fit, before the upper
layer sees it. A L{MessageType}'s fields are declared in the schema language
of L{clsd.wire.core.schema}; a L{LayerMessageType} is checked by its layer's
own parser, which reads its fields with the same schema.

A message's fields are exactly its schema's: an unknown field is refused
too.  A message or field added later says since which protocol version it
exists (C{since=N}, L{clsd.wire.core.schema.Since}): the codec sends it only
to peers that negotiated that version in the hello, and refuses it from the
others; only a field declared ignorable reaches older peers, which drop it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from clsd.wire.core.errors import FieldError, LocalProtocolError
from clsd.wire.core.schema import (
    INT64_MAX, Check, Int, MapOf, Optional, Since, Text, added_fields, compile_object, fields_at,
)

#: The ``v`` of every line: the version of the line format (a JSON object
#: with ``v`` and ``type``), which has not changed.  What the fields mean is
#: the protocol version the two ends negotiate in the hello
#: (L{clsd.wire.core.versions}, L{clsd.version.PROTOCOL_MIN}).
ENVELOPE_VERSION = 1

#: The protocol of the releases before versioned protocols: the first
#: version of every message type that has no C{since}.
FIRST_PROTOCOL = 1

#: Envelope key listing the ignorable fields of a line (L{clsd.wire.core.schema.Since}).
IGNORABLE_KEY = "ignorable"

#: Keys of the envelope, not available as field names.
ENVELOPE_KEYS = frozenset({"v", "type", IGNORABLE_KEY})


@attrs.frozen
class Message:
    """One decoded (or to-be-sent) message: its type name and its fields.

    Treat C{fields} as read-only; build messages with L{MessageType.build}.
    """

    type: str
    fields: dict[str, Any]
    #: Set by L{MessageType.build} and the codec: the fields were checked
    #: against the schema already, so sending need not check them again.
    checked: bool = attrs.field(default=False, eq=False, repr=False, kw_only=True)
    #: For a L{LayerMessageType}: the upper layer's object the codec parsed
    #: while checking, so that the layer does not parse the fields twice.
    parsed: object = attrs.field(default=None, eq=False, repr=False, kw_only=True)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def get(self, key: str, default: object = None) -> Any:
        return self.fields.get(key, default)


class MessageType:
    """A named message with a field schema (see the module docstring)."""

    def __init__(self, name: str, fields: Mapping[str, object], *,
                 since: int = FIRST_PROTOCOL) -> None:
        """
        @param since: the protocol version that added this message type.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a message type name is a non-empty string, got {name!r}")
        reserved = ENVELOPE_KEYS.intersection(fields)
        if reserved:
            raise TypeError(f"{name}: field names {sorted(reserved)} are reserved")
        self.name = name
        self.since = since
        self.fields = dict(fields)
        #: Fields added after the message type: name -> L{Since}.
        self.added = _check_added(name, since, added_fields(self.fields))
        self._check = compile_object(self.fields)
        self._checks_at: dict[int, Check] = {}

    def __repr__(self) -> str:
        return f"<MessageType {self.name}>"

    def validate(self, fields: Mapping[str, object], version: int | None = None) -> None:
        """Raise L{FieldError} (path like ``members[2].name``) unless C{fields} fit.

        @param version: the negotiated protocol version; fields added after it
            are unknown (C{None}: before negotiation, every field is known).
        """
        if version is None or not self.added:
            self._check(fields)
            return
        check = self._checks_at.get(version)
        if check is None:
            check = self._checks_at[version] = compile_object(fields_at(self.fields, version))
        check(fields)

    def build(self, **fields: Any) -> Message:
        """A L{Message} of this type; L{LocalProtocolError} if the fields do not fit."""
        try:
            self._check(fields)
        except FieldError as e:
            raise LocalProtocolError("bad-field", f"{self.name}.{e}") from None
        return Message(self.name, fields, checked=True)


class LayerMessageType:
    """A message whose fields an upper layer checks with its own parser.

    Membership and ownership already have strict parsers (C{from_wire}:
    a dict with a ``type`` in, a frozen message out, C{ValueError} naming
    the field when it is wrong).  Delegating to them keeps one definition
    of each message, and the codec treats a parser's refusal like a schema
    refusal: the peer's fault, the connection is closed and counted.

    @param parse: C{parse({"type": name, **fields})} returns the layer's
        object or raises C{ValueError}.
    """

    def __init__(self, name: str, parse: Callable[[dict[str, Any]], object], *,
                 since: int = FIRST_PROTOCOL, added: Mapping[str, Since] | None = None) -> None:
        """
        @param since: the protocol version that added this message type.
        @param added: fields added after it, name -> L{Since} (its spec is
            unused: the parser checks the field); the codec leaves them out
            for older peers, like a L{MessageType}'s.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a message type name is a non-empty string, got {name!r}")
        self.name = name
        self.parse = parse
        self.since = since
        self.added = _check_added(name, since, dict(added or {}))

    def __repr__(self) -> str:
        return f"<LayerMessageType {self.name}>"

    def validate(self, fields: Mapping[str, object], version: int | None = None) -> object:
        """The parsed object; L{FieldError} (with the parser's words) if it is refused."""
        if "type" in fields or "v" in fields:
            raise FieldError("", "envelope keys are not fields")
        try:
            return self.parse({"type": self.name, **fields})
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            # Parsers raise ValueError subclasses; anything else they let
            # slip on hostile input is refused the same way, never a crash.
            text = str(e) or type(e).__name__
            for prefix in (self.name + ".", self.name + ": "):
                if text.startswith(prefix):
                    text = text[len(prefix):]  # the codec prefixes the type itself
            raise FieldError("", text) from None

    def build(self, **fields: Any) -> Message:
        """A L{Message} of this type; L{LocalProtocolError} if the parser refuses it."""
        try:
            parsed = self.validate(fields)
        except FieldError as e:
            raise LocalProtocolError("bad-field", f"{self.name}.{e}") from None
        return Message(self.name, fields, checked=True, parsed=parsed)

    def wrap(self, wire: Mapping[str, Any]) -> Message:
        """A L{Message} for a layer's own C{to_wire()} dict, trusted (not parsed again)."""
        fields = dict(wire)
        fields.pop("type", None)
        return Message(self.name, fields, checked=True)


def _check_added(name: str, since: int, added: dict[str, Since]) -> dict[str, Since]:
    for key, field in added.items():
        if not isinstance(field, Since) or field.version <= since:
            raise TypeError(f"{name}.{key}: a field added later than its message (protocol "
                            f"{since}) says so with Since(version > {since}, ...)")
    return added


def layer_types(parse: Callable[[dict[str, Any]], object],
                names: Iterable[str]) -> tuple[LayerMessageType, ...]:
    """L{LayerMessageType}s for C{names}, all parsed by C{parse}."""
    return tuple(LayerMessageType(name, parse) for name in names)


#: Either kind of message type (what a L{Registry} holds).
AnyMessageType = MessageType | LayerMessageType


class Registry:
    """The set of message types a connection understands, by name."""

    def __init__(self, types: Iterable[AnyMessageType] = ()) -> None:
        self._types: dict[str, AnyMessageType] = {}
        for message_type in types:
            self.add(message_type)

    def add(self, message_type: AnyMessageType) -> None:
        if message_type.name in self._types:
            raise ValueError(f"message type {message_type.name!r} is already registered")
        self._types[message_type.name] = message_type

    def extended(self, *types: AnyMessageType) -> Registry:
        """A new registry with these types added to ours."""
        return Registry(list(self._types.values()) + list(types))

    def get(self, name: str) -> AnyMessageType | None:
        return self._types.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)


# -- the peer layer's own messages ---------------------------------------------

#: First message on every connection, both ways.  ``name`` must be the name in
#: the sender's certificate; ``generation`` differs on every start of a node
#: (so a restarted peer is told from its old connection); ``advertise`` is the
#: ``host:port`` others dial; ``settings`` is L{settings_hash} of the
#: cluster-wide settings that must agree, ``settings_digests`` the same one
#: setting at a time (L{settings_digests}), so that a refusal can name the
#: setting.  ``protocol`` is the newest protocol version the sender speaks,
#: ``protocol_min`` the oldest, ``software`` its CLSD version.
#:
#: The hello is read before a version is agreed, so each version's hello must
#: be readable by the others: the fields of protocol 2 are optional in the
#: schema, which lets a node refuse a protocol 1 peer with the one line naming
#: both ranges rather than a field error (the session requires them once the
#: peer speaks 2), and a field any later protocol adds to the hello must be
#: ignorable.
HELLO = MessageType("hello", {
    "protocol": Int(1, INT64_MAX),
    "name": str,
    "generation": int,
    "advertise": str,
    "settings": str,
    "protocol_min": Since(2, Optional(Int(1, INT64_MAX))),
    "software": Since(2, Optional(Text(64))),
    "settings_digests": Since(2, Optional(MapOf(Text(64)))),
})

#: Sent before a deliberate close, so the other side can log why.
BYE = MessageType("bye", {"reason": str, "detail": str})

#: Keeps an idle connection alive; never delivered to the upper layer.
PING = MessageType("ping", {})

PEER_TYPES = (HELLO, BYE, PING)


def peer_registry(*types: AnyMessageType) -> Registry:
    """A registry with the peer layer's own types plus C{types} from upper layers."""
    return Registry(PEER_TYPES + tuple(types))


def settings_hash(settings: Mapping[str, object]) -> str:
    """A digest of the cluster-wide settings that every node must share.

    Canonical JSON (sorted keys, no whitespace) so that equal settings give
    equal digests on every node whatever the order they were read in.

    @param settings: a JSON-serialisable dict, e.g. C{{"voters": [...]}}.
    """
    return "sha256:" + hashlib.sha256(_canonical(settings).encode("utf-8")).hexdigest()


#: Hex characters of each setting's digest in L{settings_digests}: enough that two
#: values of one setting never collide in practice, short enough for the hello.
SETTING_DIGEST_LENGTH = 16


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def settings_digests(settings: Mapping[str, object]) -> dict[str, str]:
    """One short digest per setting: C{settings} flattened to dotted names.

    ``{"quorum": {"lease": 2.0}}`` gives ``{"quorum.lease": "<digest of 2.0>"}``;
    nested tables become dotted names, anything else (numbers, strings, lists,
    null, an empty table) is one setting.  A setting added to the cluster-wide
    settings later is compared and named the same way, with no change here.
    """
    digests: dict[str, str] = {}

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, Mapping) and value:
            for key, item in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), item)
        else:
            digest = hashlib.sha256(_canonical(value).encode("utf-8")).hexdigest()
            digests[prefix] = digest[:SETTING_DIGEST_LENGTH]

    walk("", settings)
    return digests


def settings_differences(ours: Mapping[str, str], theirs: Mapping[str, str]) -> list[str]:
    """The settings two L{settings_digests} maps disagree on, sorted, as an operator reads them.

    A setting only one side has is named with the side that has it.
    """
    names = []
    for name in sorted(set(ours) | set(theirs)):
        if name not in theirs:
            names.append(f"{name} (set only on this node)")
        elif name not in ours:
            names.append(f"{name} (set only on the peer)")
        elif ours[name] != theirs[name]:
            names.append(name)
    return names
