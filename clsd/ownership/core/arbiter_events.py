"""What a lease arbiter reports to the cluster manager; the same for every arbiter.

Times are this node's ``time.monotonic()`` values.
"""

import attrs


@attrs.frozen
class LeaseAcquired:
    """A new tenure: this node holds C{resource} until C{expiry} unless renewed.

    C{previous}: the node that held it before, when known; C{previous_released}
    true when that node released it (stopped gracefully: no fence needed).
    """

    resource: str
    epoch: int
    expiry: float
    previous: str | None = None
    previous_released: bool = False


@attrs.frozen
class LeaseRenewed:
    """The tenure of C{epoch} goes on until the new C{expiry}.

    C{round_trip}: seconds from sending the renewal to its grant (by a
    majority of voters, or etcd's keepalive answer); None when unknown.
    """

    resource: str
    epoch: int
    expiry: float
    round_trip: float | None = None


@attrs.frozen
class LeaseEnding:
    """No renewal in time: stop the service now; it must be gone by C{deadline}.

    The tenure is over even if a late renewal succeeds.
    """

    resource: str
    epoch: int
    deadline: float


@attrs.frozen
class LeaseLost:
    """The holder's own (margined) expiry passed."""

    resource: str
    epoch: int


@attrs.frozen
class LeaseObserved:
    """Who holds C{resource} as far as a majority of voters said (C{holder} None: nobody).

    C{remaining} is a duration measured on a voter's clock: a hint for when
    to try again, never a deadline for safety.
    """

    resource: str
    holder: str | None
    epoch: int
    remaining: float


ARBITER_EVENTS = (LeaseAcquired, LeaseRenewed, LeaseEnding, LeaseLost, LeaseObserved)
#: Any of the above.
ArbiterEvent = LeaseAcquired | LeaseRenewed | LeaseEnding | LeaseLost | LeaseObserved
