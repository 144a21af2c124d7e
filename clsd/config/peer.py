"""The ``[peer]`` table: bounds on peer connections that have not authenticated yet.

Anyone who can reach ``node.listen`` can open connections without a
certificate; these settings cap how many may be pending (accepted, not yet
past TLS and the hello) and for how long (doc/peer-protocol.md, "Limits").
"""

import attrs

from clsd.wire.core.preauth import PreauthLimits
from clsd.wire.core.session import Timeouts

_LIMITS = PreauthLimits()


@attrs.frozen
class PeerConfig:
    #: Accepted connections not yet authenticated, in all.
    max_pending: int = _LIMITS.max_pending
    #: The same, from one source address.
    max_pending_per_address: int = _LIMITS.max_pending_per_address
    #: Seconds from TCP accept (or connect) to a checked hello.
    handshake_timeout: float = Timeouts().handshake
    #: Seconds between summary lines of refused connections.
    refused_log_interval: float = _LIMITS.log_interval

    @property
    def limits(self):
        """These settings as the peer layer's L{PreauthLimits}."""
        return PreauthLimits(max_pending=self.max_pending,
                             max_pending_per_address=self.max_pending_per_address,
                             log_interval=self.refused_log_interval)


def parse_peer(table):
    """Build a L{PeerConfig} from the ``[peer]`` L{Table} (C{None}: no such table)."""
    d = PeerConfig()
    if table is None:
        return d
    total = table.integer("max_pending", d.max_pending, minimum=1, maximum=1_000_000)
    per_address = table.integer("max_pending_per_address", d.max_pending_per_address,
                                minimum=1, maximum=1_000_000)
    if per_address > total:
        raise table.error("max_pending_per_address",
                          f"must not exceed max_pending ({total}), got {per_address}")
    handshake = table.number("handshake_timeout", d.handshake_timeout,
                             minimum=0.5, maximum=300.0)
    interval = table.number("refused_log_interval", d.refused_log_interval,
                            minimum=1.0, maximum=3600.0)
    table.finish()
    return PeerConfig(max_pending=total, max_pending_per_address=per_address,
                      handshake_timeout=handshake, refused_log_interval=interval)
