"""Records as their members sign them (with the simulator's FakeNotary), for unit tests.

An alive record is believed only with its member's signature (doc/membership.md,
"What each message may claim"); a join or its answer carries the sender's
signature and certificate.
"""

import attrs

from clsd.membership.core.members import State
from clsd.membership.core.messages import Join, JoinAck, MemberUpdate, record_statement
from clsd.membership.core.notary import FakeNotary


def signed_update(member, *args, **kwargs):
    """C{MemberUpdate(member, ...)}, with the member's life signature if it is alive."""
    update = MemberUpdate(member, *args, **kwargs)
    if member.state is State.ALIVE and not update.life:
        update = attrs.evolve(update, life=FakeNotary(member.name).sign_life(
            record_statement(member)))
    return update


def own_proof(member):
    notary = FakeNotary(member.name)
    return notary.sign(record_statement(member))


def join(member):
    return Join(member, own_proof(member))


def join_ack(member, listed=0):
    return JoinAck(member, listed, own_proof(member))
