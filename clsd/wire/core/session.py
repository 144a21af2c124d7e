"""The life of one peer connection, as a pure state machine.

    CONNECTING --tls_ready--> HANDSHAKING --valid hello--> ESTABLISHED
         \\                         \\                          |
          `-------------------------`--> CLOSING <------------'
                                              |
                                           CLOSED   (lost, from any state)

CONNECTING: the transport is up and the TLS handshake is running.
HANDSHAKING: TLS verified the peer's certificate; one this node does not
admit (revoked, or a name outside ``[membership] allow``) is refused at once
with a bye saying why, otherwise both sides send a hello and check the
other's.  ESTABLISHED: messages flow to the upper layer.
CLOSING: we decided to close and wait for the transport to go away.

L{Session} does no I/O and reads no clock: each event comes with the
current monotonic time and returns a list of actions (L{Send}, L{Deliver},
L{Established}, L{Disconnect}) for the Twisted shell in
L{clsd.wire.protocol} to carry out.  L{Session.deadline} says when it next
needs a L{Session.tick}, which is how every timeout is enforced: the TLS plus
hello handshake, silence from an established peer, a peer that stops reading
our data, and a graceful close that does not finish.
"""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

import attrs

from clsd.wire.core.errors import LocalProtocolError
from clsd.wire.core.messages import BYE, PING, Message, settings_differences
from clsd.wire.core.versions import ProtocolRange, incompatibility, negotiate

if TYPE_CHECKING:
    from cryptography import x509

    from clsd.wire.core.admission import Admission
    from clsd.wire.core.errors import RemoteProtocolError


class State(enum.Enum):
    CONNECTING = "connecting"
    HANDSHAKING = "handshaking"
    ESTABLISHED = "established"
    CLOSING = "closing"
    CLOSED = "closed"


# Who ended a connection, which decides the counter it lands in:
#: we refused or dropped the peer for its fault (rejected / dropped);
PEER = "peer"
#: the peer refused or closed us (a TLS alert about our certificate, a bye);
REMOTE = "remote"
#: our own decision (shutdown, duplicate connection, self-connection);
LOCAL = "local"
#: the transport failed (reset, EOF without a bye).
NETWORK = "network"


@attrs.frozen
class Timeouts:
    """How long a connection may take at each step, in seconds (monotonic)."""

    #: TCP accepted to hello checked.  A full mutual-TLS handshake costs
    #: about 2.5 ms of CPU; 10 s leaves room for a badly overloaded peer while
    #: a connection that never finishes (slowloris) is gone soon.  Time this
    #: process itself could not run is given back (L{Session.credit_stall}),
    #: up to C{stall_credit} times this.
    handshake: float = 10.0
    #: At most this many handshake timeouts of our own stalls are forgiven:
    #: a saturated node does not abandon handshakes its own backlog slowed,
    #: and a peer that never finishes is still dropped within 40 s.
    stall_credit: float = 3.0
    #: An established peer that sends no complete message for this long is
    #: dropped.  Three keepalive intervals: one late ping is not a failure.
    #: Our own stalls are given back here too, up to C{stall_credit}
    #: times this.
    idle: float = 30.0
    #: Send a ping when we have sent nothing for this long, so that our
    #: peer's idle timer does not fire on a quiet but healthy connection.
    keepalive: float = 10.0
    #: A peer that reads none of our data for this long is dropped: its
    #: unread output would otherwise grow in our memory.
    write_stall: float = 30.0
    #: A graceful close (bye, TLS close_notify) that has not finished after
    #: this long is cut short (the peer is not reading).
    close: float = 5.0
    #: Bytes we may queue for a peer that has stopped reading before we drop
    #: it: several seconds of normal traffic, far below memory trouble.
    max_output_buffer: int = 4 * 1024 * 1024


@attrs.frozen
class CloseReason:
    """Why a connection ended: a short C{key} for counters, a C{detail} for logs."""

    key: str
    detail: str
    blame: str = LOCAL


# -- actions -------------------------------------------------------------------


@attrs.frozen
class Send:
    """Write C{message} to the peer."""

    message: Message


@attrs.frozen
class Deliver:
    """Hand C{message} to the upper layer."""

    message: Message


@attrs.frozen
class Established:
    """The hello checked out: tell the upper layer about the peer."""

    hello: Message


@attrs.frozen
class Disconnect:
    """Close the transport; C{abort}: at once, dropping unsent data."""

    reason: CloseReason
    abort: bool = False


#: What a L{Session} event asks the shell to do.
Action = Send | Deliver | Established | Disconnect


class Session:
    """The decisions of one peer connection (see the module docstring)."""

    def __init__(self, *, hello: Message, now: float, timeouts: Timeouts = Timeouts()) -> None:
        """
        @param hello: our own hello L{Message}; its name, protocol and
            settings are what the peer's hello is checked against.
        @param now: the monotonic time the transport connected.
        """
        self.local_hello = hello
        #: The protocol versions we offer, from our own hello.
        self.protocols = hello_protocols(hello)
        #: The version negotiated with the peer (C{None} until its hello checked out).
        self.protocol: int | None = None
        self.timeouts = timeouts
        self.state = State.CONNECTING
        self.started = now
        self.last_received = now
        self.last_sent = now
        self.certificate_name: str | None = None
        self.peer_hello: Message | None = None
        self.close_reason: CloseReason | None = None
        self._closing_since: float | None = None
        self._aborted = False
        self._paused_since: float | None = None
        self._queued_while_paused = 0
        #: Seconds of our own stalls given back to the handshake, and to
        #: the silence since the peer's last message.
        self.handshake_credit = 0.0
        self.idle_credit = 0.0

    # -- the handshake -------------------------------------------------------

    def tls_ready(self, certificate_name: str, now: float, admission: Admission | None = None,
                  certificate: x509.Certificate | None = None) -> list[Action]:
        """TLS verified the peer's C{certificate}, which names C{certificate_name}.

        @param admission: the L{clsd.wire.core.admission.Admission} in force now
            (C{None}: every CA-signed certificate is admitted).
        """
        if self.state is not State.CONNECTING:
            if self.state in (State.CLOSING, State.CLOSED):
                return []
            raise LocalProtocolError("bad-state", f"tls_ready in state {self.state.value}")
        self.certificate_name = certificate_name
        self.state = State.HANDSHAKING
        self.last_sent = now
        if admission is not None:
            refusal = admission.refusal(certificate_name, certificate)
            if refusal is not None:
                # Before our hello: a node we do not admit learns nothing
                # about us but why it was refused (the bye).
                return self._close(*refusal, PEER, now)
        return [Send(self.local_hello)]

    def _check_hello(self, hello: Message, now: float) -> list[Action]:
        fields = hello.fields
        ours = self.local_hello.fields
        name = fields["name"]
        peer = self.certificate_name
        # Who it is first (authentication), then whether we can talk.
        if name != peer:
            return self._close(
                "name-mismatch",
                f"the hello claims the name {name!r} but the certificate is for {peer!r}",
                PEER, now)
        if name == ours["name"]:
            return self._close(
                "self-connection",
                f"connected to itself ({name!r}): a join or connect address is this node's own",
                LOCAL, now)
        try:
            theirs = hello_protocols(hello)
        except ValueError as e:
            return self._close("bad-field", f"hello.protocol_min: {e}", PEER, now)
        version = negotiate(self.protocols, theirs)
        if version is None:
            return self._close(
                "incompatible",
                incompatibility(name, fields.get("software"), theirs,
                                ours.get("software", "unknown"), self.protocols),
                PEER, now)
        missing = sorted(key for key in REQUIRED_SINCE_2 if key not in fields)
        if missing and version >= 2:
            return self._close(
                "bad-field", f"hello.{missing[0]}: is required by protocol {version}", PEER, now)
        if fields["settings"] != ours["settings"]:
            differing = settings_differences(ours.get("settings_digests", {}),
                                             fields.get("settings_digests", {}))
            what = ", ".join(differing) if differing else "(no single setting named)"
            return self._close(
                "settings-mismatch",
                f"peer {name!r} has other cluster-wide settings than this node: {what}; "
                "these must be the same in every node's configuration",
                PEER, now)
        self.peer_hello = hello
        self.protocol = version
        self.state = State.ESTABLISHED
        return [Established(hello)]

    # -- traffic ---------------------------------------------------------------

    def message_received(self, message: Message, now: float) -> list[Action]:
        """A complete, schema-checked message arrived."""
        state = self.state
        if state is State.CLOSING or state is State.CLOSED:
            return []  # we are leaving: nothing more is processed
        self.last_received = now
        self.idle_credit = 0.0
        if state is State.ESTABLISHED:
            kind = message.type
            if kind == "ping":
                return []
            if kind == "bye":
                return self._peer_bye(message, now)
            if kind == "hello":
                return self._close("duplicate-hello", "a second hello", PEER, now)
            return [Deliver(message)]
        if state is State.HANDSHAKING:
            if message.type == "hello":
                return self._check_hello(message, now)
            if message.type == "bye":
                return self._peer_bye(message, now)
            return self._close(
                "no-hello", f"the first message was {message.type!r}, not hello", PEER, now)
        # CONNECTING: TLS delivers nothing before its handshake; a transport
        # that does is not TLS.
        return self._close("unexpected-data", "data before the TLS handshake", PEER, now)

    def _peer_bye(self, message: Message, now: float) -> list[Action]:
        return self._close(
            "peer-closed",
            f"the peer closed the connection: {message['reason']}: {message['detail']}",
            REMOTE, now, send_bye=False)

    def protocol_error(self, error: RemoteProtocolError, now: float) -> list[Action]:
        """The codec refused the peer's data (a L{RemoteProtocolError})."""
        return self._close(error.reason, error.detail, PEER, now)

    def message_sent(self, size: int, now: float) -> list[Action]:
        """We wrote C{size} bytes; drop the peer if it has stopped reading too long."""
        self.last_sent = now
        if self._paused_since is None:
            return []
        self._queued_while_paused += size
        if (self._queued_while_paused > self.timeouts.max_output_buffer
                and self.state is State.ESTABLISHED):
            return self._close(
                "slow-reader",
                f"more than {self.timeouts.max_output_buffer} bytes queued for a peer "
                "that does not read",
                PEER, now, abort=True)
        return []

    def write_paused(self, now: float) -> None:
        """The transport's send buffer is full: the peer is not keeping up."""
        if self._paused_since is None:
            self._paused_since = now
            self._queued_while_paused = 0

    def write_resumed(self, now: float) -> None:
        self._paused_since = None
        self._queued_while_paused = 0

    # -- closing ---------------------------------------------------------------

    def close(self, key: str, detail: str, now: float, *, blame: str = LOCAL) -> list[Action]:
        """Our side decided to close (shutdown, duplicate connection, ...)."""
        return self._close(key, detail, blame, now)

    def _close(self, key: str, detail: str, blame: str, now: float, *, abort: bool = False,
               send_bye: bool = True) -> list[Action]:
        if self.state is State.CLOSING or self.state is State.CLOSED:
            return []
        reason = CloseReason(key, detail, blame)
        actions: list[Action] = []
        if send_bye and not abort and self.state in (State.HANDSHAKING, State.ESTABLISHED):
            actions.append(Send(BYE.build(reason=key, detail=detail)))
        self.close_reason = reason
        self.state = State.CLOSING
        self._closing_since = now
        self._aborted = abort
        actions.append(Disconnect(reason, abort=abort))
        return actions

    def lost(self, reason: CloseReason, now: float) -> CloseReason:
        """The transport is gone.  Returns the L{CloseReason} that counts.

        @param reason: why the transport says it went (a L{CloseReason}
            built by the shell); ours wins if we had decided to close.
        """
        if self.state is State.CLOSED:
            assert self.close_reason is not None
            return self.close_reason
        if self.state is not State.CLOSING or self.close_reason is None:
            self.close_reason = reason
        self.state = State.CLOSED
        return self.close_reason

    # -- time ----------------------------------------------------------------

    def credit_stall(self, seconds: float) -> None:
        """This process could not run for C{seconds}: do not hold them against the peer.

        Lifeguard's rule for the peer layer (see L{clsd.wire.core.lag}): when our
        own reactor is behind, a slow handshake or a long silence is our
        fault, not the peer's, and dropping the connection would only add a
        new handshake to the backlog. Bounded by C{timeouts.stall_credit}
        handshake (or idle) timeouts.
        """
        seconds = max(0.0, seconds)
        t = self.timeouts
        if self.state is State.CONNECTING or self.state is State.HANDSHAKING:
            self.handshake_credit = min(self.handshake_credit + seconds,
                                        t.handshake * t.stall_credit)
        elif self.state is State.ESTABLISHED:
            self.idle_credit = min(self.idle_credit + seconds, t.idle * t.stall_credit)

    def deadline(self) -> float | None:
        """The monotonic time of the next L{tick} needed, or C{None}."""
        t = self.timeouts
        state = self.state
        if state is State.ESTABLISHED:
            deadline = min(self.last_received + t.idle + self.idle_credit,
                           self.last_sent + t.keepalive)
            if self._paused_since is not None:
                deadline = min(deadline, self._paused_since + t.write_stall)
            return deadline
        if state is State.CONNECTING or state is State.HANDSHAKING:
            return self.started + t.handshake + self.handshake_credit
        if state is State.CLOSING and not self._aborted:
            assert self._closing_since is not None
            return self._closing_since + t.close
        return None

    def tick(self, now: float) -> list[Action]:
        """Enforce whatever timeout has passed by C{now}."""
        t = self.timeouts
        state = self.state
        if state is State.CONNECTING or state is State.HANDSHAKING:
            if now - self.started - self.handshake_credit >= t.handshake:
                step = "TLS" if state is State.CONNECTING else "hello"
                own = (f", {self.handshake_credit:.1f} s more allowed for our own stalls"
                       if self.handshake_credit else "")
                return self._close(
                    "handshake-timeout",
                    f"no complete handshake within {t.handshake:g} s{own} (stuck in {step})",
                    PEER, now, abort=True)
            return []
        if state is State.ESTABLISHED:
            if self._paused_since is not None and now - self._paused_since >= t.write_stall:
                return self._close(
                    "slow-reader", f"the peer read none of our data for {t.write_stall:g} s",
                    PEER, now, abort=True)
            if now - self.last_received - self.idle_credit >= t.idle:
                own = (f", {self.idle_credit:.1f} s more allowed for our own stalls"
                       if self.idle_credit else "")
                return self._close(
                    "idle-timeout", f"no message from the peer for {t.idle:g} s{own}", PEER, now)
            if now - self.last_sent >= t.keepalive:
                self.last_sent = now
                return [Send(PING.build())]
            return []
        if state is State.CLOSING and not self._aborted:
            assert self._closing_since is not None and self.close_reason is not None
            if now - self._closing_since >= t.close:
                self._aborted = True
                return [Disconnect(self.close_reason, abort=True)]
        return []


#: Hello fields that every node speaking protocol 2 or later sends (optional in
#: the schema only so that a protocol 1 peer is refused by L{incompatibility}).
REQUIRED_SINCE_2 = ("protocol_min", "software", "settings_digests")


def hello_protocols(hello: Message) -> ProtocolRange:
    """The L{ProtocolRange} a hello offers (a protocol 1 hello offers just 1).

    @raise ValueError: C{protocol_min} above C{protocol}.
    """
    high = hello["protocol"]
    return ProtocolRange(hello.get("protocol_min", high), high)
