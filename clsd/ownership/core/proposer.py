"""The lease proposer/holder for one resource (PaxosLease proposer, with renewal and release).

Acquire: Prepare(b) to every voter; with a majority of promises that show
no unexpired grant to anyone else, Propose(b); with a majority of grants the
lease is held until ``sent_at + T - m``, where ``sent_at`` is when *this*
node sent the Propose (voters count from its later arrival).

Renew: a single Propose with a fresh, higher ballot T/3 after the last
granted one was sent; retried every T/12.  If no renewal succeeds by
``expiry - T/4`` the holder reports L{LeaseEnding}: the service gets TERM now
and KILL at the expiry, and this tenure is over (no late renewal revives it).

Release: after the service is stopped, Release(b') with a ballot above every
one used, so that no Propose still in flight can be granted afterwards.

Epoch: the counter of the ballot that started the tenure; renewals keep it.

"A majority" is L{VoterSet.granted_by}: while the voters change, a majority
of the new set and of the previous one.
"""

import random
from collections.abc import Iterable, Sequence
from typing import cast

import attrs

from clsd.ownership.core.actions import Send
from clsd.ownership.core.arbiter_events import (
    ArbiterEvent, LeaseAcquired, LeaseEnding, LeaseLost, LeaseObserved, LeaseRenewed,
)
from clsd.ownership.core.ballot import Ballot
from clsd.ownership.core.messages import Accepted, Prepare, Promise, Propose, Release
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voterset import VoterSet

#: What a proposer returns: events for the manager, messages for the shell.
ProposerOutput = ArbiterEvent | Send


def _previous_tenure(promises: Sequence[Promise]) -> tuple[str | None, bool]:
    """C{(node, released)} of the last tenure that ended, from a majority's promises.

    A voter that missed later tenures still remembers an older one, perhaps
    released by the very node that later held again and died: so the answer
    about the highest epoch decides, never the node's name.  Voters of the
    same tenure may differ (a Release that reached some of them); the release
    was sent only after the service had stopped, so one of them is enough.
    """
    known = [p for p in promises if p.previous is not None]
    if not known:
        return None, False
    last = max(known, key=lambda p: p.previous_epoch)
    released = any(p.previous_released for p in known
                   if p.previous_epoch == last.previous_epoch and p.previous == last.previous)
    return last.previous, released


@attrs.define
class _Round:
    ballot: Ballot
    phase: str  # "prepare" | "propose"
    started: float
    renewal: bool
    sent_at: float = 0.0
    replies: dict[str, Promise | Accepted] = attrs.field(factory=dict)
    previous: str | None = None
    previous_released: bool = False


@attrs.define
class _Held:
    epoch: int
    ballot: Ballot
    sent_at: float
    expiry: float
    ending: bool = False


class LeaseProposer:
    """Acquires, renews and releases the lease on one resource; sans-IO."""

    def __init__(self, resource: str, node: str, generation: int,
                 voters: VoterSet | Iterable[str], timing: LeaseTiming,
                 rng: random.Random) -> None:
        """C{voters}: a L{VoterSet}, or a plain sequence of names (one set, simple majority)."""
        self.resource = resource
        self.node = node
        self.generation = generation
        tagged = isinstance(voters, VoterSet)
        self.voter_set = voters if isinstance(voters, VoterSet) else VoterSet(tuple(voters))
        self.voters = self.voter_set.members
        #: The voter-set tag our requests carry (L{VoterSet.admits} at the voters);
        #: a plain sequence sends none, as daemons before voter changes did.
        self._tag = self.voter_set.tag if tagged else None
        self.timing = timing
        self.rng = rng
        self.wanted = False
        self.wanted_since: float | None = None
        self._round: _Round | None = None
        self._held: _Held | None = None
        self._highest = 0                         # highest counter seen or used
        self._last_used: Ballot | None = None     # the last ballot sent, for Release
        self._next_attempt: float | None = None   # when to start the next round
        # Voters counted as granting (fenced, see assume_granted).
        self._assumed: set[str] = set()
        # Until then a grant seen is likely a Release in flight.
        self._hurried_until: float | None = None
        self._hurry_pause = 0.0                   # the next short pause while hurried (doubles)

    @property
    def owner(self) -> tuple[str, int]:
        return (self.node, self.generation)

    # -- commands ----------------------------------------------------------

    def acquire(self, now: float) -> list[ProposerOutput]:
        """Keep trying to hold the lease (and keep renewing it once held)."""
        if not self.wanted:
            self.wanted = True
            self.wanted_since = now
            if self._round is None and self._held is None:
                self._next_attempt = now
        return self.tick(now)

    def hurry(self, now: float) -> list[ProposerOutput]:
        """Try now rather than at the next scheduled attempt (e.g. after a Handover).

        The holder sends its Handover right after its Release, but the Release
        to another voter may arrive after our Prepare there, so that voter still
        shows the old grant. For one lease after a hurry, a round blocked by a
        grant retries after a short pause that doubles each time (from
        C{retry_slack}) rather than after the grant's whole remaining time.
        Only the waiting changes: a grant shown still blocks the round.
        """
        if self.wanted and self._round is None and self._held is None:
            self._next_attempt = now
        self._hurried_until = now + self.timing.lease
        self._hurry_pause = self.timing.retry_slack
        return self.tick(now)

    def abandon(self, now: float) -> list[ProposerOutput]:
        """Stop trying to acquire; a held lease stays held (renewed) until released."""
        self.wanted = False
        out: list[ProposerOutput] = []
        rnd = self._round
        if rnd is not None and not rnd.renewal:
            self._round = None
            if rnd.phase == "propose" and self._held is None:
                # Voters may grant the Propose in flight: take it back at once
                # rather than leave it blocking the others for a whole lease.
                out = self.release(now)
        if self._held is None:
            self._next_attempt = None
        return out

    def release(self, now: float) -> list[ProposerOutput]:
        """The service is stopped: give the lease back at once (no-op if nothing was ever sent)."""
        self.wanted = False
        self._round = None
        self._held = None
        self._next_attempt = None
        if self._last_used is None:
            return []
        self._highest += 1
        ballot = Ballot(self._highest, self.node, self.generation)
        self._last_used = None
        return [Send(voter, Release(self.resource, ballot)) for voter in self.voters]

    def assume_granted(self, voter: str) -> None:
        """Count C{voter} as granting until it answers again (two-voter mode, after fencing it).

        Only sound when a fence command has made sure that node runs nothing
        and grants nothing; it stops as soon as the voter is heard from.
        """
        if voter in self.voters:
            self._assumed.add(voter)

    # -- queries -------------------------------------------------------------

    def holding(self, now: float) -> tuple[int, float] | None:
        """(epoch, expiry) while this node holds the lease by its own margined clock, else None."""
        held = self._held
        if held is None or now >= held.expiry or held.ending:
            return None
        return held.epoch, held.expiry

    def tenure(self, now: float) -> tuple[int, float] | None:
        """(epoch, expiry) of the current tenure, also while it is ending; None once over.

        The service may run until this expiry (its deadline); L{holding} is
        the narrower "may keep running and renewing".
        """
        held = self._held
        if held is None or now >= held.expiry:
            return None
        return held.epoch, held.expiry

    def next_wakeup(self) -> float | None:
        times = []
        if self._round is not None:
            times.append(self._round.started + self.timing.round_timeout)
        if self._held is not None:
            if not self._held.ending:
                times.append(self.timing.stop_at(self._held.sent_at))
            times.append(self._held.expiry)
        if self._next_attempt is not None and self._round is None:
            times.append(self._next_attempt)
        return min(times) if times else None

    # -- events ------------------------------------------------------------

    def tick(self, now: float) -> list[ProposerOutput]:
        out: list[ProposerOutput] = []
        held = self._held
        if held is not None:
            if not held.ending and now >= self.timing.stop_at(held.sent_at):
                held.ending = True
                if self._round is not None and self._round.renewal:
                    self._round = None
                out.append(LeaseEnding(self.resource, held.epoch, held.expiry))
            if now >= held.expiry:
                self._held = None
                out.append(LeaseLost(self.resource, held.epoch))
                self._next_attempt = now if self.wanted else None
        rnd = self._round
        if rnd is not None and now >= rnd.started + self.timing.round_timeout:
            out += self._fail_round(now, retry=self._retry_delay(rnd))
        if (self._round is None and self._next_attempt is not None
                and now >= self._next_attempt):
            out += self._start_round(now)
        return out

    def receive(self, sender: str, message: Promise | Accepted,
                now: float) -> list[ProposerOutput]:
        """A L{Promise} or L{Accepted} from voter C{sender}."""
        if sender not in self.voters:
            return []
        if getattr(message, "reason", "") != "quiet":
            self._assumed.discard(sender)
        self._highest = max(self._highest, message.ballot.counter, message.promised)
        rnd = self._round
        if rnd is None or message.ballot != rnd.ballot:
            return []
        if isinstance(message, Promise) and rnd.phase == "prepare":
            rnd.replies[sender] = message
            return self._after_promise(rnd, now)
        if isinstance(message, Accepted) and rnd.phase == "propose":
            rnd.replies[sender] = message
            return self._after_accepted(rnd, now)
        return []

    # -- internals ---------------------------------------------------------

    def _votes(self, rnd: _Round) -> tuple[list[str], list[str], list[str]]:
        ok = [v for v, r in rnd.replies.items() if r.ok]
        assumed = [v for v in self._assumed if v not in rnd.replies]
        refused = [v for v, r in rnd.replies.items() if not r.ok]
        return ok, assumed, refused

    def _hopeless(self, rnd: _Round) -> bool:
        """True when enough voters refused that no majority can be reached."""
        _, _, refused = self._votes(rnd)
        return self.voter_set.hopeless(refused)

    def _start_round(self, now: float) -> list[ProposerOutput]:
        self._next_attempt = None
        held = self._held
        if held is not None and held.ending:
            return []  # this tenure is over; acquire again once it is released or lost
        renewal = held is not None
        if not renewal and not self.wanted:
            return []
        self._highest += 1
        ballot = Ballot(self._highest, self.node, self.generation)
        self._last_used = ballot
        message: Propose | Prepare
        if renewal:
            assert held is not None
            self._round = _Round(ballot, "propose", now, renewal=True, sent_at=now)
            message = Propose(self.resource, ballot, self.timing.lease, held.epoch,
                              self._tag)
        else:
            self._round = _Round(ballot, "prepare", now, renewal=False)
            message = Prepare(self.resource, ballot, self._tag)
        return [Send(voter, message) for voter in self.voters]

    def _after_promise(self, rnd: _Round, now: float) -> list[ProposerOutput]:
        ok, assumed, refused = self._votes(rnd)
        promises = cast("dict[str, Promise]", rnd.replies)  # the prepare phase keeps only these
        if self.voter_set.granted_by(ok + assumed):
            others = [p for p in (promises[v] for v in ok)
                      if p.holder is not None and tuple(p.holder) != self.owner]
            if others:
                blocking = max(others, key=lambda r: r.remaining)
                self._round = None
                self._next_attempt = now + self._blocked_pause(blocking, now)
                assert blocking.holder is not None
                return [LeaseObserved(self.resource, blocking.holder[0], blocking.epoch,
                                      blocking.remaining)]
            rnd.previous, rnd.previous_released = _previous_tenure(
                [promises[v] for v in ok])
            rnd.phase = "propose"
            rnd.started = now
            rnd.sent_at = now
            rnd.replies = {}
            message = Propose(self.resource, rnd.ballot, self.timing.lease, rnd.ballot.counter,
                              self._tag)
            observed: list[ProposerOutput] = [LeaseObserved(self.resource, None, 0, 0.0)]
            return observed + [Send(voter, message) for voter in self.voters]
        if self._hopeless(rnd):
            return self._fail_round(now, retry=self._retry_delay(rnd))
        return []

    def _after_accepted(self, rnd: _Round, now: float) -> list[ProposerOutput]:
        ok, assumed, refused = self._votes(rnd)
        if rnd.renewal and self._taken_by_another(rnd, refused):
            return self._taken(now)
        if self.voter_set.granted_by(ok + assumed):
            self._round = None
            expiry = self.timing.holder_expiry(rnd.sent_at)
            if expiry <= now:
                # Granted, but we learn it too late to use it (we were frozen).
                self._next_attempt = now
                return []
            self._next_attempt = rnd.sent_at + self.timing.renew_after
            held = self._held
            if rnd.renewal:
                if held is None or held.ending:
                    return []
                held.ballot, held.sent_at, held.expiry = rnd.ballot, rnd.sent_at, expiry
                return [LeaseRenewed(self.resource, held.epoch, expiry, now - rnd.sent_at)]
            self._held = _Held(rnd.ballot.counter, rnd.ballot, rnd.sent_at, expiry)
            return [LeaseAcquired(self.resource, rnd.ballot.counter, expiry,
                                  rnd.previous, rnd.previous_released)]
        if self._hopeless(rnd):
            return self._fail_round(now, retry=self._retry_delay(rnd))
        return []

    def _taken_by_another(self, rnd: _Round, refused: Iterable[str]) -> bool:
        """Whether a voter refused our renewal for a grant of a tenure that began after ours.

        "held" alone is not enough: a voter that was paused with its machine
        resumes still showing the old holder's grant, and would end the new
        holder's tenure. Epochs grow with every tenure, so a grant with a
        higher epoch than ours is proof that ours is over.
        """
        held = self._held
        return held is not None and any(
            rnd.replies[v].reason == "held" and rnd.replies[v].epoch > held.epoch
            for v in refused)

    def _taken(self, now: float) -> list[ProposerOutput]:
        """Another owner holds our lease at a voter, in a tenure that began after ours.

        Our grant there has expired by that voter's clock, so our own clock
        cannot be trusted (a whole machine paused and resumed: its deadline
        still lies ahead): the tenure ends now, not at its deadline.
        """
        held, self._held, self._round = self._held, None, None
        self._next_attempt = now if self.wanted else None
        if held is None:
            return []
        out: list[ProposerOutput] = [LeaseEnding(self.resource, held.epoch, now)]
        return out + [LeaseLost(self.resource, held.epoch)]

    def _blocked_pause(self, blocking: Promise, now: float) -> float:
        """How long to wait after a voter showed C{blocking}'s unexpired grant."""
        pause = min(max(blocking.remaining, 0.0) + self.timing.retry_slack,
                    self.timing.voter_quiet)
        if self._hurried_until is not None and now < self._hurried_until:
            pause = min(pause, self._hurry_pause)
            self._hurry_pause *= 2
        return pause

    def _retry_delay(self, rnd: _Round) -> float:
        if rnd.renewal:
            return self.timing.renew_retry
        reasons = {r.reason for r in rnd.replies.values() if not r.ok}
        if reasons and reasons <= {"stale"}:
            # Outbid: retry soon with a higher counter, jittered against duels.
            return self.rng.uniform(self.timing.retry_slack, 4 * self.timing.retry_slack)
        return self.rng.uniform(0.75, 1.25) * self.timing.acquire_retry

    def _fail_round(self, now: float, retry: float) -> list[ProposerOutput]:
        self._round = None
        if self._held is not None and not self._held.ending:
            self._next_attempt = now + retry
        elif self.wanted:
            self._next_attempt = now + retry
        else:
            self._next_attempt = None
        return []
