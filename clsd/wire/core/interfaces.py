"""What the peer layer offers upper layers, and what it expects of them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from clsd.wire.core.messages import Message
    from clsd.wire.core.session import CloseReason


class IPeer(Interface):
    """One established connection to another node, as upper layers see it."""

    name = Attribute("The peer's node name: the name in its certificate, confirmed by its hello.")
    generation = Attribute("The peer's per-start generation from its hello.")
    advertise = Attribute("The host:port the peer says other nodes dial.")
    address = Attribute("The transport's remote (host, port).")
    initiator = Attribute("True when this node dialled the connection.")
    protocol = Attribute("The protocol version negotiated with the peer in the hello.")
    software = Attribute("The peer's CLSD version, from its hello.")

    def send(message: Message) -> bool:
        """Queue C{message} (a L{clsd.wire.core.messages.Message}) for the peer.

        @return: C{True} if written, C{False} when the connection is not
            (or no longer) established.
        @raise clsd.wire.core.errors.LocalProtocolError: the message is not valid.
        """

    def close(key: str = "local-close", detail: str = "", *, blame: str = "local") -> None:
        """Close the connection (with a bye telling the peer C{key} and C{detail}).

        C{blame} C{"peer"} counts the close as the peer's fault (C{dropped}).
        """


class IPeerHandler(Interface):
    """An upper layer (membership, leases) receiving the peer layer's events.

    Only established connections are reported: a connection refused during
    TLS or the hello is counted and logged by the peer layer and never
    reaches a handler.  Every C{peer_connected} is followed by exactly one
    C{peer_disconnected} for the same peer.
    """

    def peer_connected(peer: IPeer) -> None:
        """C{peer} (an L{IPeer}) passed TLS and the hello: messages may flow."""

    def message_received(peer: IPeer, message: Message) -> None:
        """C{message} arrived from C{peer}, already checked against its schema."""

    def peer_disconnected(peer: IPeer, reason: CloseReason) -> None:
        """C{peer}'s connection ended; C{reason} is a L{clsd.wire.core.session.CloseReason}."""
