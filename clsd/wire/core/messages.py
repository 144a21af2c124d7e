"""Message types: what may travel on a peer connection.

Upper layers (membership, leases) declare their messages here and put them
in a L{Registry}; the codec then refuses, as the peer's fault, any message
whose type is not registered or whose fields do not fit, before the upper
layer sees it. A L{MessageType}'s fields are declared in the schema language
of L{clsd.wire.core.schema}; a L{LayerMessageType} is checked by its layer's
own parser, which reads its fields with the same schema.

A message's fields are exactly its schema's: an unknown field is refused
too.  Any change to a message is therefore a protocol version change, which
the hello exchange reports clearly instead of half-understanding a peer.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from clsd.wire.core.errors import FieldError, LocalProtocolError
from clsd.wire.core.schema import compile_object

#: The protocol version this code speaks: the ``v`` of every line and the
#: ``protocol`` of the hello.  Bump it on any incompatible change.
PROTOCOL_VERSION = 1

#: Keys of the envelope, not available as field names.
ENVELOPE_KEYS = frozenset({"v", "type"})


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

    def __init__(self, name: str, fields: Mapping[str, object]) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a message type name is a non-empty string, got {name!r}")
        reserved = ENVELOPE_KEYS.intersection(fields)
        if reserved:
            raise TypeError(f"{name}: field names {sorted(reserved)} are reserved")
        self.name = name
        self.fields = dict(fields)
        self._check = compile_object(self.fields)

    def __repr__(self) -> str:
        return f"<MessageType {self.name}>"

    def validate(self, fields: Mapping[str, object]) -> None:
        """Raise L{FieldError} (path like ``members[2].name``) unless C{fields} fit."""
        self._check(fields)

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

    def __init__(self, name: str, parse: Callable[[dict[str, Any]], object]) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"a message type name is a non-empty string, got {name!r}")
        self.name = name
        self.parse = parse

    def __repr__(self) -> str:
        return f"<LayerMessageType {self.name}>"

    def validate(self, fields: Mapping[str, object]) -> object:
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
#: cluster-wide settings that must agree (e.g. the voter list).
HELLO = MessageType("hello", {
    "protocol": int,
    "name": str,
    "generation": int,
    "advertise": str,
    "settings": str,
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
    canonical = json.dumps(
        settings, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
        allow_nan=False,
    )
    return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
