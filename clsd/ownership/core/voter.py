"""The lease voter (PaxosLease acceptor): grants leases, keeps its promises in memory only.

Rules, each with its reason:

- A voter that starts (or restarts) refuses everything for
  ``timing.voter_quiet`` (T + m).  It has forgotten what it granted before;
  whatever that was expires within T of its own clock, so after the quiet
  period it cannot contradict a grant it no longer remembers.
- A ballot is promised only if its counter is strictly above every counter
  promised before (and above the epoch floor), so grants never share a
  counter: the counter that starts a tenure is a unique, growing epoch.
- A Propose is granted only if no *other* owner holds an unexpired grant
  here.  Together with majorities this alone makes two holders impossible
  (each voter's grant windows to different owners are disjoint, and any two
  majorities share a voter); the Prepare phase adds liveness and lets a
  holder renew with a single Propose.
- A cluster's leases under one shape exclude those under the other: no
  grant of ``A/k`` while another owner holds an unexpired grant of ``A``
  here, nor of ``A`` while another owner holds one of any ``A/k``; and a
  ballot for one is promised only above every counter promised for the
  other.  Two nodes that disagree on the cluster's mode (L{clsd.ownership.core.shape})
  then need two majorities that share a voter refusing one of them, and the
  epoch keeps growing across a change of mode.
- While the voters change, a request is granted only if the proposer's
  voter set is one step from this voter's (L{clsd.ownership.core.voterset}):
  refused with reason ``voters`` otherwise.
- A renewal of a tenure older than one this voter has granted since is
  refused ``held`` with that newer epoch, also once the newer grant has
  expired: the old tenure ended when the newer one began, and a holder that
  was paused through the newer tenure must not act under its epoch again.
- A grant lasts the request's C{duration} counted from its *arrival* here,
  which is later than when the holder sent it: the holder's own count ends
  earlier.

Optional epoch floor (fencing tokens that survive a restart of *every*
voter): with C{reserve_block} set, the voter never promises a counter above
a value it has asked the shell to persist (L{PersistEpochFloor}); after a
restart it is given that value back as C{epoch_floor} and refuses anything at
or below it.

Who may ask (doc/ownership.md, "Who may send what"): a ballot must be its
sender's own (the node shell refuses a forgery before it gets here, see
L{clsd.ownership.core.authority}); the sender must be an admitted member
registered for the resource's cluster, or the holder of its unexpired
grant here (C{registered}); each sender has a request budget per resource
(L{clsd.ownership.core.ratelimit}); a counter may not jump more than
L{MAX_COUNTER_JUMP} above what this voter promised.  These refusals are
answers (C{ok} false with a reason), cheap, and change no state.

A Prepare from another owner while a grant is unexpired is answered with
the holder but binds nothing: its counter is not promised.  The proposer
backs off on seeing the holder, so nothing is lost, and a storm of rising
counters cannot outbid the holder's renewals (doc/ownership.md, "Why it is
safe").
"""

from collections.abc import Iterable, Sequence

import attrs

from clsd.ownership.core.actions import PersistEpochFloor, Send
from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.messages import Accepted, Prepare, Promise, Propose, Release
from clsd.ownership.core.ratelimit import RequestBudget
from clsd.ownership.core.shape import cluster_of, is_slot
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voterset import VoterSet

#: What a voter asks its shell to do.
VoterAction = Send | PersistEpochFloor

#: Epochs reserved per durable write of the floor.  A holder renews about
#: three times per lease (1.5 ballots/s per resource at T = 2 s), so one write
#: per resource every ~2 hours; a restart skips at most this many epochs.
DEFAULT_RESERVE_BLOCK = 10_000

#: How far above what this voter promised (or its floor) a ballot counter may
#: be.  Honest proposers count up by one from the highest counter they heard
#: of, so at the honest rate (a few per second) this is decades of ballots;
#: a hostile jump to near 2**63 would exhaust the epochs (and every int64
#: consumer of CLSD_EPOCH) at once.
MAX_COUNTER_JUMP = 2 ** 32

#: At most one new block of epochs is reserved (one durable write) per this
#: many seconds.  Honestly a block lasts hours; a sender climbing by large
#: jumps would otherwise cost a synchronous write per request.  A ballot
#: above the reserved floor meanwhile is refused (``reserving``) and retried.
RESERVE_INTERVAL = 1.0


@attrs.define
class _Grant:
    owner: tuple[str, int]
    ballot: Ballot
    epoch: int
    until: float


@attrs.define
class _Resource:
    promised: Ballot | None = None
    grant: _Grant | None = None
    previous: str | None = None
    previous_released: bool = False
    previous_epoch: int = 0
    #: The highest tenure epoch granted here.
    newest_epoch: int = 0


class LeaseVoter:
    """One node's voter, for every resource; sans-IO, no timers needed."""

    def __init__(self, node: str, timing: LeaseTiming, now: float, *, epoch_floor: int = 0,
                 reserve_block: int | None = None, quiet: bool = True,
                 voter_set: VoterSet | None = None) -> None:
        self.node = node
        #: This node's L{VoterSet}: which proposers' voter sets it may grant to
        #: (L{VoterSet.admits}); None grants to any.
        self.voter_set = voter_set
        self.timing = timing
        self.quiet_until = now + timing.voter_quiet if quiet else now
        self.floor = epoch_floor
        self.reserve_block = reserve_block
        self.reserved = epoch_floor if reserve_block is not None else None
        self._requested = self.reserved
        self._reserved_at: float | None = None
        self._resources: dict[str, _Resource] = {}
        self._slots: dict[str, set[str]] = {}  # cluster ID -> the ``ID/k`` resources seen here
        self.budget = RequestBudget.for_lease(timing.lease)
        #: Why the last write of the epoch floor failed; while set, nothing is granted.
        self.floor_error: str | None = None

    def start(self) -> list[VoterAction]:
        """Actions to run once at start: reserve the first block of epochs."""
        if self.reserve_block is None:
            return []
        self._requested = self.floor + self.reserve_block
        return [PersistEpochFloor(self._requested)]

    def persisted(self, value: int) -> None:
        """The shell wrote C{value} durably: counters up to it may now be promised."""
        if self.reserved is not None:
            self.reserved = max(self.reserved, value)
        self.floor_error = None

    def floor_failed(self, value: int, error: object) -> None:
        """The shell could not write C{value}: grant nothing until a write succeeds."""
        self.floor_error = f"cannot store the epoch floor {value}: {error}"

    def quiet(self, now: float) -> bool:
        return now < self.quiet_until

    def receive(self, sender: str, message: Prepare | Propose | Release, now: float, *,
                registered: bool | None = None) -> list[VoterAction]:
        """Handle one request from C{sender}; returns the reply actions.

        @param registered: whether C{sender} is an admitted member that
            published a registration for the resource's cluster (None: not
            checked, for a voter used on its own).
        """
        refusal = self._refusal(sender, message, now, registered)
        if refusal is not None:
            if isinstance(message, Release):
                return []  # a release has no answer: dropped
            reply_type = Promise if isinstance(message, Prepare) else Accepted
            state = self._resources.get(message.resource)
            promised = self._promised_counter(state) if state is not None else self.floor
            return [Send(sender, reply_type(message.resource, message.ballot, ok=False,
                                            reason=refusal, promised=promised))]
        state = self._state(message.resource)
        self._expire(state, now)
        if isinstance(message, Prepare):
            return self._prepare(sender, message, state, now)
        if isinstance(message, Propose):
            return self._propose(sender, message, state, now)
        if isinstance(message, Release):
            self._release(message, state)
            return []
        raise TypeError(f"a voter does not handle {type(message).__name__}")

    def holder(self, resource: str, now: float) -> tuple[tuple[str, int], int, float] | None:
        """(owner, epoch, remaining) of the unexpired grant of C{resource}, or None."""
        state = self._resources.get(resource)
        if state is None:
            return None
        self._expire(state, now)
        if state.grant is None:
            return None
        return state.grant.owner, state.grant.epoch, state.grant.until - now

    def forget_budgets(self, now: float) -> None:
        """Drop the request budgets that have refilled (call now and then)."""
        self.budget.prune(now)

    # -- internals ---------------------------------------------------------

    def _state(self, resource: str) -> _Resource:
        state = self._resources.get(resource)
        if state is None:
            state = self._resources[resource] = _Resource()
            if is_slot(resource):
                self._slots.setdefault(cluster_of(resource), set()).add(resource)
        return state

    def _other_shape(self, resource: str, now: float) -> list[_Resource]:
        """The states of C{resource}'s cluster under the other mode (``A`` vs ``A/k``)."""
        if is_slot(resource):
            names: Iterable[str] = [cluster_of(resource)]
        else:
            names = self._slots.get(resource, ())
        states = [self._resources[n] for n in names if n in self._resources]
        for state in states:
            self._expire(state, now)
        return states

    def _cross_grant(self, resource: str, owner: tuple[str, int],
                     now: float) -> _Grant | None:
        """An unexpired grant of C{resource}'s cluster under the other mode to another owner."""
        for state in self._other_shape(resource, now):
            if state.grant is not None and state.grant.owner != owner:
                return state.grant
        return None

    def _holder_node(self, resource: str, now: float) -> str | None:
        state = self._resources.get(resource)
        if state is None:
            return None
        self._expire(state, now)
        return state.grant.owner[0] if state.grant is not None else None

    def _refusal(self, sender: str, message: object, now: float,
                 registered: bool | None) -> str | None:
        """Why C{message} is refused before it may touch any state, or None.

        Cheap checks only, in order: the sender's role, its budget, the floor,
        the counter's jump.  The holder of an unexpired grant keeps renewing
        and may release even when its registration is gone from membership
        (being withdrawn, or a member list that lags).
        """
        if not isinstance(message, (Prepare, Propose, Release)):
            raise TypeError(f"a voter does not handle {type(message).__name__}")
        holder = self._holder_node(message.resource, now)
        if registered is False and holder != sender:
            return "not-registered"
        if isinstance(message, Release) and holder is not None and holder != sender:
            # Its proposes meet another's grant ("held") anyway: nothing to take back.
            return "held"
        if not self.budget.take((sender, message.resource), now):
            return "rate-limited"
        if self.floor_error is not None and not isinstance(message, Release):
            return "floor-unsaved"
        state = self._resources.get(message.resource)
        base = self._promised_counter(state) if state is not None else self.floor
        if message.ballot.counter > base + MAX_COUNTER_JUMP:
            return "counter-jump"
        return None

    def _expire(self, state: _Resource, now: float) -> None:
        grant = state.grant
        if grant is not None and grant.until <= now:
            state.previous = grant.owner[0]
            state.previous_released = False
            state.previous_epoch = grant.epoch
            state.grant = None

    def _promised_counter(self, state: _Resource, cross: Sequence[_Resource] = ()) -> int:
        counters = [s.promised.counter for s in (state, *cross) if s.promised is not None]
        return max(counters + [self.floor])

    def _admit(self, state: _Resource, ballot: Ballot, cross: Sequence[_Resource],
               message: Prepare | Propose) -> str | None:
        """None if C{ballot} may be promised/accepted, else the refusal reason."""
        if self.voter_set is not None and not self.voter_set.admits(message.voters):
            return "voters"
        if state.promised is not None and ballot == state.promised:
            return None
        if ballot.counter <= self._promised_counter(state, cross):
            return "stale"
        if self.reserved is not None and ballot.counter > self.reserved:
            return "reserving"
        return None

    def _maybe_reserve(self, counter: int, now: float) -> list[VoterAction]:
        if self.reserve_block is None:
            return []
        assert self._requested is not None  # set from the first block on
        if counter + self.reserve_block // 2 < self._requested:
            return []
        if self._reserved_at is not None and now < self._reserved_at + RESERVE_INTERVAL:
            return []
        self._reserved_at = now
        self._requested = max(counter, self._requested) + self.reserve_block
        return [PersistEpochFloor(self._requested)]

    def _prepare(self, sender: str, message: Prepare, state: _Resource,
                 now: float) -> list[VoterAction]:
        ballot = message.ballot
        actions = self._maybe_reserve(ballot.counter, now)
        cross = self._other_shape(message.resource, now)
        reason = "quiet" if self.quiet(now) else self._admit(state, ballot, cross, message)
        if reason is not None:
            reply = Promise(message.resource, ballot, ok=False, reason=reason,
                            promised=self._promised_counter(state, cross))
            return actions + [Send(sender, reply)]
        # Another owner's grant under the other mode blocks this one like its own.
        grant = state.grant or self._cross_grant(message.resource, ballot.owner, now)
        if grant is None or grant.owner == ballot.owner:
            state.promised = ballot  # else: answered, not promised (see the module doc)
        reply = Promise(
            message.resource, ballot, ok=True, promised=ballot.counter,
            holder=grant.owner if grant else None,
            epoch=grant.epoch if grant else 0,
            remaining=grant.until - now if grant else 0.0,
            previous=state.previous, previous_released=state.previous_released,
            previous_epoch=state.previous_epoch,
        )
        return actions + [Send(sender, reply)]

    def _propose(self, sender: str, message: Propose, state: _Resource,
                 now: float) -> list[VoterAction]:
        ballot = message.ballot
        actions = self._maybe_reserve(ballot.counter, now)
        cross = self._other_shape(message.resource, now)
        grant = state.grant
        if grant is None or grant.owner == ballot.owner:
            grant = self._cross_grant(message.resource, ballot.owner, now) or grant
        # "held" before "stale": a holder refused because another owner holds
        # here must learn that its tenure is over (a paused machine resuming).
        # The epoch a "held" names: the other owner's grant, else a newer
        # tenure granted here since (the asker's ended when it began).
        newest = max(s.newest_epoch for s in (state, *cross))
        held_epoch = grant.epoch if grant is not None else 0
        reason: str | None
        if self.quiet(now):
            reason = "quiet"
        elif grant is not None and grant.owner != ballot.owner:
            reason = "held"
        elif message.epoch < newest:
            reason, held_epoch = "held", newest
        else:
            reason = self._admit(state, ballot, cross, message)
        if reason is None and message.duration > self.timing.max_request:
            reason = "too-long"
        if reason is not None:
            reply = Accepted(message.resource, ballot, ok=False, reason=reason,
                             promised=self._promised_counter(state, cross),
                             remaining=grant.until - now if grant else 0.0,
                             epoch=held_epoch)
            return actions + [Send(sender, reply)]
        state.promised = ballot
        state.grant = _Grant(ballot.owner, ballot, message.epoch, now + message.duration)
        state.newest_epoch = max(state.newest_epoch, message.epoch)
        reply = Accepted(message.resource, ballot, ok=True, promised=ballot.counter,
                         remaining=message.duration)
        return actions + [Send(sender, reply)]

    def _release(self, message: Release, state: _Resource) -> None:
        ballot = message.ballot
        if state.promised is None or ballot.counter > state.promised.counter:
            # Late proposes of the releasing holder (lower counters) now fail.
            state.promised = ballot
        grant = state.grant
        if grant is not None and grant.owner == ballot.owner:
            state.grant = None
            state.previous = ballot.node
            state.previous_released = True
            state.previous_epoch = grant.epoch
