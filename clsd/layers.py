"""The message types a cluster node speaks: the peer layer's, membership's, ownership's.

Membership and ownership define their messages (and strict parsers) in their
own packages; here they become L{LayerMessageType}s, so the codec refuses a
malformed one as the peer's fault and hands the parsed object up with the
message (L{Message.parsed}).
"""

from clsd.membership.core import messages as membership_messages
from clsd.ownership.core import messages as ownership_messages
from clsd.wire.core.messages import layer_types, peer_registry

MEMBERSHIP_TYPES = layer_types(membership_messages.from_wire,
                               sorted(membership_messages.MESSAGE_TYPES))
OWNERSHIP_TYPES = layer_types(ownership_messages.from_wire,
                              sorted(ownership_messages.MESSAGE_TYPES))


def node_registry():
    """A registry with every message type a node sends or accepts."""
    return peer_registry(*MEMBERSHIP_TYPES, *OWNERSHIP_TYPES)


def membership_message(message):
    """The peer-layer L{Message} that carries membership message C{message}."""
    return _BY_NAME[message.TYPE].wrap(message.to_wire())


def ownership_message(wire):
    """The peer-layer L{Message} that carries ownership's C{wire} dict."""
    return _BY_NAME[wire["type"]].wrap(wire)


_BY_NAME = {t.name: t for t in MEMBERSHIP_TYPES + OWNERSHIP_TYPES}
