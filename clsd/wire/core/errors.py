"""Whose fault it was: the remote peer's, or ours.

The split follows h11.  A L{RemoteProtocolError} means the peer sent
something we refuse (a line too long, bad JSON, an unknown message type): the
connection is closed and the event is counted under its C{reason}, but the
daemon carries on.  A L{LocalProtocolError} means our own code tried to send
something invalid: a bug to fix, never the peer's doing.
"""


class ProtocolError(Exception):
    """Base of both kinds; C{reason} is a short stable key for counters and logs."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class RemoteProtocolError(ProtocolError):
    """The peer broke the protocol: close its connection and count C{reason}."""


class LocalProtocolError(ProtocolError):
    """We tried to send something the protocol forbids: a bug in our code."""


class FieldError(Exception):
    """A message field that does not fit its schema; C{path} names the field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class Forged(Exception):
    """An upper layer refuses a message that speaks for a node other than its sender.

    Raised by a layer's receive function when a message names a node in a
    role only that node may fill (the proposer of a ballot, the holder in a
    handover, the observer of a report) and the authenticated sender is
    someone else.  The router closes the connection as ``forged``, counts it
    under the sender's name and logs it (see L{clsd.wire.router.Router}).

    @ivar claimed: the node name the message claimed.
    @ivar detail: what was claimed, in words, for the log and the bye.
    """

    def __init__(self, claimed: str, detail: str) -> None:
        self.claimed = claimed
        self.detail = detail
        super().__init__(f"claims to be {claimed!r}: {detail}")
