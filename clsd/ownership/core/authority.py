"""Is this lease or cluster message its sender's to send?  Pure rules, one per message kind.

The peer layer proves who sent a message (the TLS certificate); these rules
check that what the message *claims* is that sender's to claim (the table
"Who may send what" in doc/ownership.md).  A message that fails is
*forged*: the caller (L{clsd.ownership.core.node.OwnershipNode.authorise})
returns a L{Forgery}, the shell raises L{clsd.wire.core.errors.Forged} and the
peer layer closes the connection.  Refusals that are a matter of policy
rather than of a false claim (not registered, over budget) are ordinary
answers of the voter, not forgeries.
"""

from collections.abc import Collection

import attrs

from clsd.ownership.core.messages import (
    Accepted, Handover, MoveRequest, Prepare, Promise, Propose, Release,
)


@attrs.frozen
class Forgery:
    """A message that speaks for C{claimed}, which is not its sender; C{detail} says how."""

    claimed: str
    detail: str


def forgery(sender: str, message: object, *, node: str, voters: Collection[str],
            holders: Collection[str]) -> Forgery | None:
    """The L{Forgery} in C{message} from C{sender}, or None if its claims are the sender's.

    @param node: this node's name (the one replies must be meant for).
    @param voters: the configured voters (the same on every node: the
        settings hash of the hello makes sure of it).
    @param holders: the nodes this node knows as holders of the message's
        resource (its own lease, published holdings, voters' answers);
        empty when it knows none.
    """
    if isinstance(message, (Prepare, Propose, Release)):
        if message.ballot.node != sender:
            return Forgery(message.ballot.node,
                           f"{message.TYPE} of {message.resource} with a ballot of "
                           f"{message.ballot.node!r}, sent by {sender!r}")
        return None
    if isinstance(message, (Promise, Accepted)):
        if sender not in voters:
            return Forgery(sender, f"{message.TYPE} of {message.resource} from {sender!r}, "
                           "which is not a configured voter")
        if message.ballot.node != node:
            return Forgery(message.ballot.node,
                           f"{message.TYPE} of {message.resource} answers a ballot of "
                           f"{message.ballot.node!r}, not of this node")
        return None
    if isinstance(message, Handover):
        if holders and sender not in holders:
            return Forgery(sorted(holders)[0],
                           f"handover of {message.resource} from {sender!r}; its holder "
                           f"is {', '.join(sorted(holders))}")
        return None
    if isinstance(message, MoveRequest):
        if message.by and message.by != sender:
            return Forgery(message.by, f"move of {message.cluster} asked by {message.by!r}, "
                           f"sent by {sender!r}")
        return None
    return None
