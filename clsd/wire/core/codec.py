"""The line codec, sans-IO: bytes in, messages out; messages in, bytes out.

One message is one line: a UTF-8 JSON object with the protocol version and
the message type, then the fields, ended by ``\\n``::

    {"v":1,"type":"hello","protocol":2,"name":"alpha",...}

``v`` is the version of this line format; the protocol version, which
decides the messages and fields, is negotiated in the hello and set with
L{Codec.negotiated}.

The codec does no I/O and knows no clock; the connection protocol feeds it
whatever the transport delivered (L{Codec.receive_data}) and pulls complete
messages (L{Codec.next_event}) until it returns L{NEED_DATA}.  Anything the
peer got wrong raises L{RemoteProtocolError}; anything we got wrong raises
L{LocalProtocolError}.

Memory is bounded: at most one partial line of up to C{max_line} bytes is
kept between calls, plus the not yet consumed complete lines of the chunk
just received (a transport hands over at most its read size at a time).
"""

from __future__ import annotations

import json
from typing import NoReturn

from clsd.wire.core.errors import FieldError, LocalProtocolError, RemoteProtocolError
from clsd.wire.core.messages import (
    ENVELOPE_VERSION, IGNORABLE_KEY, LayerMessageType, Message, MessageType, Registry,
)
from clsd.wire.core.schema import Since

#: The most field names one line may declare ignorable.
MAX_IGNORABLE = 32

#: The longest line accepted or sent, in bytes, without its newline.  Large
#: enough for a full membership list of 1024 nodes (about 100 bytes each),
#: small enough that 1000 connections each holding one partial line stay
#: within a few hundred MB in the worst case.
MAX_LINE = 256 * 1024
#: Received lines up to this long are remembered (one per connection) so
#: that a repeated one (a heartbeat, every second) is not parsed again.
REPEAT_CACHE_MAX = 512


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


#: Returned by L{Codec.next_event} when no complete line is buffered.
NEED_DATA = _NeedData()


def _refuse_constant(name: str) -> NoReturn:
    # NaN, Infinity and -Infinity are not JSON; Python accepts them by default.
    raise ValueError(f"{name} is not valid JSON")


_decoder = json.JSONDecoder(parse_constant=_refuse_constant)
_encoder = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _refuse_lone_surrogates(obj: object) -> None:
    """A ``\\ud800`` escape decodes to a str that cannot be UTF-8 again:
    refuse it here rather than let an upper layer fail on it later."""
    try:
        _encoder.encode(obj).encode("utf-8")
    except UnicodeEncodeError:
        raise RemoteProtocolError("not-utf8", "a string escapes a lone UTF-16 surrogate") from None


class Codec:
    """Frame and parse the messages of one connection.

    After the first L{RemoteProtocolError} the codec is broken: it keeps
    raising the same error and drops further data, since the connection is
    about to be closed anyway.
    """

    def __init__(self, registry: Registry, *, max_line: int = MAX_LINE) -> None:
        self.registry = registry
        self.max_line = max_line
        #: The protocol version negotiated in the hello (C{None} before): what
        #: is sent and accepted is that version's (see L{negotiated}).
        self.protocol: int | None = None
        self._lines: list[bytes] = []
        self._next = 0
        # A bytearray, so that a line trickling in byte by byte costs linear
        # time, not quadratic (bytes += copies the whole buffer each time).
        self._partial = bytearray()
        self._error: RemoteProtocolError | None = None
        # Heartbeats repeat: the same line arrives every second on a
        # connection, and the same message object is sent on it every
        # second. The last short line received and the last message sent
        # are kept with their results (messages are treated as read-only).
        self._last_line: bytes | None = None
        self._last_received: Message | None = None
        self._last_sent: Message | None = None
        self._last_sent_data: bytes | None = None

    def negotiated(self, version: int | None) -> None:
        """From now on speak protocol C{version}: messages and fields added later
        are neither sent nor accepted (the hello checked out)."""
        self.protocol = version
        self._last_sent = self._last_sent_data = None
        self._last_line = self._last_received = None

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Take C{data} from the transport; complete lines become available."""
        if self._error is not None or self._pending_error is not None or not data:
            return
        if b"\n" not in data:
            if len(self._partial) + len(data) > self.max_line:
                self._fail_later("line-too-long",
                                 f"a line exceeds {self.max_line} bytes without a newline")
            else:
                self._partial += data
            return
        if self._partial:
            data = bytes(self._partial) + data
        lines = data.split(b"\n")
        partial = lines.pop()
        if self._next:
            del self._lines[:self._next]
            self._next = 0
        self._lines.extend(lines)
        if len(partial) > self.max_line:
            self._fail_later("line-too-long",
                             f"a line exceeds {self.max_line} bytes without a newline")
        else:
            self._partial = bytearray(partial)

    def _fail_later(self, reason: str, detail: str) -> None:
        # Complete lines received before the overflow are still delivered
        # first, so events come out in stream order.
        self._pending_error = RemoteProtocolError(reason, detail)
        self._partial = bytearray()

    _pending_error: RemoteProtocolError | None = None

    def next_event(self) -> Message | _NeedData:
        """The next complete L{Message}, or L{NEED_DATA}.

        @raise RemoteProtocolError: the next line is not an acceptable message.
        """
        if self._error is not None:
            raise self._error
        if self._next < len(self._lines):
            line = self._lines[self._next]
            self._next += 1
            try:
                return self._decode(line)
            except RemoteProtocolError as e:
                self._break(e)
                raise
        if self._pending_error is not None:
            error, self._pending_error = self._pending_error, None
            self._break(error)
            raise error
        if self._next:
            self._lines = []
            self._next = 0
        return NEED_DATA

    def receive_eof(self) -> None:
        """The peer closed its side: a partial line left over is its fault."""
        if self._error is None and self._partial:
            error = RemoteProtocolError(
                "truncated", f"the connection ended inside a line ({len(self._partial)} bytes)"
            )
            self._break(error)
            raise error

    def _break(self, error: RemoteProtocolError) -> None:
        self._error = error
        self._lines = []
        self._next = 0
        self._partial = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes held: the partial line plus complete lines not yet consumed."""
        return len(self._partial) + sum(len(line) for line in self._lines[self._next:])

    def _decode(self, line: bytes) -> Message:
        if line == self._last_line:
            assert self._last_received is not None
            return self._last_received
        message = self._decode_new(line)
        if len(line) <= REPEAT_CACHE_MAX:
            self._last_line, self._last_received = bytes(line), message
        return message

    def _decode_new(self, line: bytes) -> Message:
        if len(line) > self.max_line:
            raise RemoteProtocolError("line-too-long", f"a line of {len(line)} bytes "
                                      f"exceeds the limit of {self.max_line}")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as e:
            raise RemoteProtocolError("not-utf8", f"invalid UTF-8 at byte {e.start}") from None
        try:
            obj = _decoder.decode(text)
        except RecursionError:
            raise RemoteProtocolError("malformed-json", "nested too deeply") from None
        except ValueError as e:
            raise RemoteProtocolError("malformed-json", str(e)) from None
        if type(obj) is not dict:
            raise RemoteProtocolError("bad-envelope", "a line must hold a JSON object")
        if b"\\u" in line:
            _refuse_lone_surrogates(obj)
        version = obj.pop("v", None)
        if type(version) is not int:
            raise RemoteProtocolError("bad-envelope", "missing or non-integer protocol version 'v'")
        if version != ENVELOPE_VERSION:
            raise RemoteProtocolError(
                "unsupported-version",
                f"line format version {version}; this node reads {ENVELOPE_VERSION}",
            )
        name = obj.pop("type", None)
        if type(name) is not str:
            raise RemoteProtocolError("bad-envelope", "missing or non-string message 'type'")
        ignorable = obj.pop(IGNORABLE_KEY, None)
        message_type = self.registry.get(name)
        if message_type is None:
            raise RemoteProtocolError("unknown-type", f"unknown message type {name[:64]!r}")
        protocol = self.protocol
        if protocol is not None and message_type.since > protocol:
            raise RemoteProtocolError(
                "unknown-type", f"message type {name!r} belongs to protocol "
                f"{message_type.since}; this connection speaks {protocol}")
        if ignorable is not None:
            self._drop_ignorable(obj, ignorable, message_type)
        if protocol is not None and message_type.added:
            for key, field in message_type.added.items():
                if field.version > protocol and key in obj:
                    # A layer's parser may know the field: the version says it is unknown.
                    raise RemoteProtocolError("bad-field", f"{name}.{key}: unknown field")
        try:
            parsed = message_type.validate(obj, protocol)
        except FieldError as e:
            raise RemoteProtocolError("bad-field", f"{name}.{e}") from None
        return Message(name, obj, checked=True, parsed=parsed)

    def _drop_ignorable(self, obj: dict[str, object], names: object,
                        message_type: MessageType | LayerMessageType) -> None:
        """Drop the fields the sender declared ignorable that this connection does not know.

        Only fields added after their message can be ignorable, so any other
        field stays as strict as ever; a listed field we know is checked.
        """
        if (type(names) is not list or len(names) > MAX_IGNORABLE
                or any(type(n) is not str for n in names)):
            raise RemoteProtocolError(
                "bad-envelope", f"{IGNORABLE_KEY!r} must be a list of at most "
                f"{MAX_IGNORABLE} field names")
        added = message_type.added
        protocol = self.protocol
        for field in names:
            known = added.get(field)
            if known is None or (protocol is not None and known.version > protocol):
                obj.pop(field, None)

    # -- sending -------------------------------------------------------------

    def _for_peer(self, fields: dict[str, object],
                  added: dict[str, Since]) -> dict[str, object]:
        """C{fields} as this connection's protocol has them: later fields left
        out, ignorable ones kept and declared (before negotiation, all kept)."""
        protocol = self.protocol
        ignorable = []
        result: dict[str, object] = {}
        for key, value in fields.items():
            field = added.get(key)
            if field is not None:
                if field.ignorable:
                    if protocol is None or field.version > protocol:
                        ignorable.append(key)
                elif protocol is not None and field.version > protocol:
                    continue
            result[key] = value
        if ignorable:
            result[IGNORABLE_KEY] = ignorable
        return result

    def send(self, message: Message) -> bytes:
        """The bytes of one line for C{message}.

        @raise LocalProtocolError: unregistered type, fields that do not fit
            their schema, or a line longer than C{max_line}.
        """
        if message is self._last_sent:
            assert self._last_sent_data is not None
            return self._last_sent_data
        message_type = self.registry.get(message.type)
        if message_type is None:
            raise LocalProtocolError("unknown-type", f"message type {message.type!r} "
                                     "is not registered on this connection")
        protocol = self.protocol
        if protocol is not None and message_type.since > protocol:
            raise LocalProtocolError(
                "not-negotiated", f"message type {message.type!r} belongs to protocol "
                f"{message_type.since}; this connection speaks {protocol}")
        if not message.checked:
            try:
                message_type.validate(message.fields)
            except FieldError as e:
                raise LocalProtocolError("bad-field", f"{message.type}.{e}") from None
        envelope = {"v": ENVELOPE_VERSION, "type": message.type}
        if message_type.added:
            envelope.update(self._for_peer(message.fields, message_type.added))
        else:
            envelope.update(message.fields)
        try:
            data = _encoder.encode(envelope).encode("utf-8")
        except (TypeError, ValueError) as e:  # e.g. a lone surrogate in a string
            raise LocalProtocolError("unencodable", f"{message.type}: {e}") from None
        if len(data) > self.max_line:
            raise LocalProtocolError(
                "line-too-long", f"{message.type}: {len(data)} bytes exceeds {self.max_line}"
            )
        data += b"\n"
        self._last_sent, self._last_sent_data = message, data
        return data
