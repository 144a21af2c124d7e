"""The membership state machine of one node: events and time in, actions out.

    core = Core("alpha", "127.0.0.11:7400", generation, config, rng=random.Random())
    actions = core.handle(JoinRequested(seeds=("127.0.0.12:7400",)), now)

No I/O, no clock: the shell (or the simulator) feeds events with the current
monotonic time and carries out the actions. See doc/membership.md for the
protocol; the pieces live in their own modules (members, rings, detector, cut,
awareness, broadcast, table, timing, messages).

Contract with the shell:
  - C{Connect(address, name)}: keep a connection to that address (re-dial
    it with backoff while it fails) until C{Disconnect(address)}. C{name} is
    None for seeds, whose names we learn from their certificates.
  - C{LinkUp(name, address)} / C{LinkDown(name)}: a connection to the peer
    authenticated as C{name} opened / closed; for a connection we dialled,
    C{address} is the address given in C{Connect}.
  - C{Send(to, message)}: send on the connection to C{to} if there is one,
    else drop it (membership tolerates loss).
  - C{SetTimer(name, at)}: one timer per name; setting it again replaces it;
    fire C{TimerFired(name)} at monotonic time C{at}.
"""

import collections
import heapq
import itertools
import random
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import lru_cache
from typing import ClassVar

import attrs

from clsd.config.membership import MembershipConfig
from clsd.membership.core.awareness import Awareness
from clsd.membership.core.broadcast import BroadcastQueue
from clsd.membership.core.cut import Reports, is_failed
from clsd.membership.core.detector import Detector
from clsd.membership.core.members import (
    Member, MemberInfo, State, decode_meta, encode_meta, supersedes,
)
from clsd.membership.core.messages import (
    SYNC_BUCKETS, MAX_CERTIFICATES, MAX_REPORTERS, MAX_SYNC_PROOFS, MAX_SYNC_RECORDS, Certs,
    CertsWant, Gossip, Heartbeat, Join, JoinAck, MemberUpdate, Message, Proof, Report, SyncDigest,
    SyncRecords, Unwatch, Update, Watch, record_statement,
)
from clsd.membership.core.notary import FakeNotary, Notary, fingerprint_of
from clsd.membership.core.rings import RingSnapshot, SnapshotCache
from clsd.membership.core.table import MemberSnapshot, MemberTable
from clsd.membership.core.timing import (
    lateness, quorum_for, retransmit_limit, suspicion_timeout, sync_period,
)
from clsd.wire.core.errors import Forged

# -- events -----------------------------------------------------------------


@attrs.frozen
class JoinRequested:
    """Start: join through these seed addresses (none, or only our own: form alone)."""

    seeds: tuple[str, ...] = ()


@attrs.frozen
class LeaveRequested:
    """Leave gracefully (operator's ``leave``, or SIGTERM of the daemon)."""


@attrs.frozen
class ForceRemove:
    """Operator: declare the dead member C{name} gone for good."""

    name: str


@attrs.frozen
class Expel:
    """This node no longer admits C{name} (certificate revoked, or outside ``allow``).

    The member is declared gone (left) at once, whatever its state, and no
    news of that life of it (its generation) brings it back here.
    """

    name: str
    reason: str


@attrs.frozen
class Received:
    sender: str
    message: Message


@attrs.frozen
class TimerFired:
    name: str


@attrs.frozen
class LinkUp:
    name: str
    address: str | None = None


@attrs.frozen
class LinkDown:
    name: str


# -- actions ----------------------------------------------------------------


@attrs.frozen
class Send:
    to: str
    message: Message


@attrs.frozen
class SetTimer:
    name: str
    at: float


@attrs.frozen
class CancelTimer:
    name: str


@attrs.frozen
class Connect:
    address: str
    name: str | None = None


@attrs.frozen
class Disconnect:
    address: str


@attrs.frozen
class MemberChanged:
    """A member's state (or life) changed in this node's view; C{reason} says why.

    C{removed}: the record was reaped (forgotten) after C{reap_after}.
    """

    member: Member
    previous: Member | None
    reason: str
    removed: bool = False
    #: The observers whose reports made this change (a suspicion, a death), when known.
    reporters: tuple[str, ...] = ()


@attrs.frozen
class MetaChanged:
    """A live member published new metadata (L{Core.set_meta}); its state did not change."""

    member: Member


@attrs.frozen
class Joined:
    """This node is now part of a cluster (or formed one alone)."""


@attrs.frozen
class LeaveDone:
    """The leave was announced; the daemon may stop."""


#: What a core is fed, and what it asks its shell to do.
Event = (JoinRequested | LeaveRequested | ForceRemove | Expel | Received | TimerFired | LinkUp
         | LinkDown)
Action = (Send | SetTimer | CancelTimer | Connect | Disconnect | MemberChanged | MetaChanged
          | Joined | LeaveDone)

_NOTHING: tuple[()] = ()


class MembershipError(Exception):
    """An operator command that cannot be carried out (the message says why)."""


TICK = "membership.tick"
GOSSIP = "membership.gossip"
LEAVE = "membership.leave"
CHECK = "membership.check"

IDLE, JOINING, MEMBER, LEAVING, LEFT = "idle", "joining", "member", "leaving", "left"

#: The first push of fresh news waits this fraction of gossip_interval, so
#: that news learnt together travels together while still moving fast.
_FIRST_PUSH = 0.25
#: A sync that found differences is followed by another one this soon (with
#: another neighbour) instead of after a whole sync_interval; each further
#: sync in a row that still finds differences doubles the wait (up to
#: _SYNC_AGAIN_MAX). After a partition heals a few quick rounds merge the
#: views; while many members join at once every sync finds news that
#: gossip is carrying anyway, and a sync a second per node (records of
#: whole buckets each way) would cost more than the join itself.
_SYNC_AGAIN = 1.0
#: ... up to this wait. In the simulator (where CPU is no limit, as on a
#: real cluster of one node per machine) 1024 nodes starting together
#: converge in 24 s with 2 s, 30 s with 4 s and 37 s with sync_interval;
#: each sync is one round of at most 128 records each way unless mostly
#: news (_ROUND_NEWS), about 13 KB a second per node at most.
_SYNC_AGAIN_MAX = 2.0
#: Another sync round follows at once only if at least this fraction of the
#: last round's records was news to us.
_ROUND_NEWS = 0.25
#: The longest the overlay waits for the rest of a list arriving in sync
#: rounds (each round is one round trip; a join of 1024 takes about 8).
_OVERLAY_HOLD = 2.0
#: Consecutive follow-up rounds with one peer when records did not fit.
_MAX_SYNC_ROUNDS = 64
#: A list unchanged this long, while a neighbour's heartbeat shows a different
#: one, is synced with that neighbour at once (and at most this often).
_LIST_QUIET = 2.0
#: A neighbour's list this much larger than ours (a share of it, and at
#: least this many records) is synced with at once, quiet or not.
_BEHIND_SHARE = 0.05
_BEHIND_MIN = 8
#: Join retries double their interval this many times at most.
_JOIN_RETRY_DOUBLINGS = 3
#: Seed and reconnect-probe connections are kept this long after their use.
_TRANSIENT_TTL = 30.0
#: Only a member raises its own incarnation, by one per refutation or
#: publication: news that raises one by more than this at once is forged,
#: and refused (a hostile member could otherwise push a member's incarnation
#: towards the wire's 2**64 bound, where it can no longer refute).
MAX_INCARNATION_STEP = 1 << 32
#: A certificate asked for is not asked for again this soon (its answer is
#: on the way); records waiting for certificates, at most this many.
_CERT_ASK_AGAIN = 2.0
_UNPROVEN_LIMIT = 4096


def _behind(ours: int, theirs: int) -> bool:
    """Whether a list of C{ours} records is clearly behind one of C{theirs}:
    by _BEHIND_SHARE of it and at least _BEHIND_MIN records (a list only a few
    joins behind, as lists are for a second or two while members join, is
    left to gossip)."""
    missing = theirs - ours
    return missing >= _BEHIND_MIN and missing >= theirs * _BEHIND_SHARE


class Core:
    def __init__(self, name: str, address: str, generation: int,
                 config: MembershipConfig | None = None, *, rng: random.Random | None = None,
                 cache: SnapshotCache | None = None, snapshot: MemberSnapshot | None = None,
                 ring_snapshot: RingSnapshot | None = None, notary: Notary | None = None,
                 lives: Mapping[str, tuple[Member, Proof]] | None = None) -> None:
        """
        @param generation: this start of the daemon; must grow across restarts
            of the same name (the shell derives it from persisted state and the
            wall clock, see doc/membership.md).
        @param snapshot, ring_snapshot: start from this member list (e.g. a
            simulation starting already formed); it must include this node.
        @param cache: a L{SnapshotCache} shared by cores in one process.
        @param notary: signs this node's reports and checks others'
            (L{clsd.membership.core.notary}); the daemon passes an
            L{X509Notary}. Default: a L{FakeNotary}, which proves nothing
            (for the simulator and tests).
        @param lives: name -> (alive record, life signature) of the members
            of C{snapshot} (shared, read only), so that a node started from
            a list can relay its records with their signatures.
        """
        self.config = config if config is not None else MembershipConfig()
        self.name = name
        self._rng = rng if rng is not None else random.Random()
        self.notary: Notary = notary if notary is not None else FakeNotary(name)
        #: News refused for want of proof or as impossible, by reason (see
        #: doc/membership.md, "What each message may claim").
        self.refused: collections.Counter[str] = collections.Counter()
        self._table = MemberTable(self.config.observers, snapshot, ring_snapshot, cache)
        known = self._table.get(name)
        incarnation = known.incarnation if known is not None and known.generation == generation else 0
        self.me = Member(name, address, generation, incarnation, State.ALIVE)
        if known != self.me:
            self._table.set(self.me)
        self._detector = Detector()
        self._detector_links = self._detector.links
        self._reports = Reports()
        self._awareness = Awareness(self.config.awareness_max)
        self._queue: BroadcastQueue[Update] = BroadcastQueue()
        self.phase = IDLE
        self._subjects: list[str] = []
        self._watchers: dict[str, bool] = {}
        #: The plain heartbeat's Send actions, reused while neither our
        #: record nor our watchers change: (me, sends). Actions are frozen,
        #: so handing the same objects out again is safe.
        self._beats: tuple[Member, int, list[Send]] | None = None
        self._links: dict[str, str | None] = {}  # name -> the address we dialled, if we did
        self._wanted: dict[str, str | None] = {}  # address -> name or None: our Connects
        self._transient: dict[str, float] = {}  # address -> expiry: seeds, reconnect probes
        #: No entry of _transient expires before this (a lower bound): the
        #: tick skips the scan until then.
        self._transient_next = float("inf")
        self._seeds: tuple[str, ...] = ()
        self._sync_on_connect: set[str] = set()
        self._suspects: dict[str, float] = {}  # name -> since (insertion order: evaluation order)
        #: suspect -> (life, reporters) another node announced dead: once this
        #: node holds every one of those reporters' signed reports (the
        #: evidence, re-derived), the slow path waits only its minimum.
        self._announced_dead: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {}
        self._suspect_order: dict[str, int] = {}  # name -> its position in that order
        self._suspect_serials = itertools.count()
        self._gone: dict[str, float] = {}  # name -> since (dead or left)
        self._tombstones: dict[str, tuple[Member, float]] = {}  # name -> (member, forget_at)
        self._expelled: dict[str, int] = {}  # name -> the last generation expelled
        #: name -> (left record, remover, proof): a leave travels with what
        #: makes others take it, in gossip and anti-entropy alike: a graceful
        #: one with the member's signature, a force-removal with its remover.
        self._departures: dict[str, tuple[Member, tuple[str, ...], Proof]] = {}
        self._info: dict[str, tuple[float, str]] = {}  # name -> (since, reason)
        #: name -> (alive record, (signature, certificate fingerprint)): the
        #: member's own signature of its record, relayed with it. Only a
        #: signed alive record is believed (doc/membership.md, "What each
        #: message may claim"); _base_lives is the shared one of a snapshot.
        self._lives: dict[str, tuple[Member, Proof]] = {}
        self._base_lives: Mapping[str, tuple[Member, Proof]] = lives if lives is not None else {}
        self._own: MemberUpdate | None = None  # our own record, signed
        #: name -> (update, source): signed alive records whose certificate
        #: is not known here yet, believed once it arrives (L{Certs}).
        self._unproven: dict[str, tuple[MemberUpdate, str]] = {}
        self._cert_asked: dict[str, float] = {}  # fingerprint -> when asked
        self._cert_wanted: list[str] = []  # fingerprints to ask the sender of this message for
        self._sender: str | None = None
        self._tick_due: float | None = None
        self._next_sync = self._next_reconnect = self._next_join = 0.0
        self._next_list_sync = 0.0
        # retransmit_limit, per list size (computed on first use)
        self._limit_for: int | None = None
        self._limit_value = 0
        #: The list fingerprint each linked neighbour's last heartbeat showed.
        self._heard_tables: dict[str, int] = {}
        #: A seed link coming up asks to join only if no Join is waiting for
        #: an answer (before this time).
        self._next_join_ask = 0.0
        self._join_retries = 0
        #: The links a Join went on that has not been answered yet.
        self._join_asked: set[str] = set()
        #: Peers we reached at a seed address: seeds, whichever way their
        #: connection to us was made later.
        self._seed_names: set[str] = set()
        #: Syncs in a row that brought news (see _SYNC_AGAIN), and whether
        #: news came since the last sync started.
        self._sync_streak = 0
        self._sync_progressed = False
        self._gossip_set = False
        self._check_at: float | None = None
        self._rings_dirty = True
        #: While a list arrives in sync rounds (a join), our subjects are
        #: chosen once it is complete, not from each partial list: until
        #: then (a bound, in case the rounds stop) the overlay stays as it is.
        self._overlay_hold = 0.0
        #: The size of the list a seed is pushing to us (see JoinAck).
        self._list_expected = 0
        #: Suspects whose verdict may have changed since they were last
        #: evaluated (a report about them; one of their observers changed
        #: health or joined or left the rings): only these are re-evaluated.
        self._affected: set[str] = set()
        #: The evaluation pass under way: a heap of (order, name).
        self._pass: list[tuple[int, str]] | None = None
        self._pass_at = -1          # the order of the suspect being evaluated
        self._out: list[Action] | None = None  # the actions of the event being handled
        #: The monotonic time of the event being handled (0.0 before the first).
        self.now = 0.0
        #: Counters for tests and benchmarks (the scale benchmark's progress):
        #: among them records received by gossip and by lists (anti-entropy,
        #: a join's push), and how many were news.
        self.stats: dict[str, int] = {
            "refutations": 0, "reports": 0, "reports_unreached": 0, "list_syncs": 0,
            "gossip_records": 0, "gossip_news": 0, "list_records": 0, "list_news": 0,
            "joins_answered": 0, "join_acks": 0}
        self.sent = self.received = 0

    # -- queries -------------------------------------------------------------

    @property
    def joined(self) -> bool:
        return self.phase in (MEMBER, LEAVING)

    @property
    def incarnation(self) -> int:
        return self.me.incarnation

    @property
    def health_score(self) -> int:
        return self._awareness.score

    def member(self, name: str) -> Member | None:
        """The L{Member} record of C{name} in this node's view, or None."""
        return self._table.get(name)

    def info(self, name: str) -> MemberInfo | None:
        member = self._table.get(name)
        if member is None:
            return None
        since, reason = self._info.get(name, (None, "known at start"))
        return MemberInfo(member, since, reason)

    def members(self) -> list[MemberInfo | None]:
        """Every member this node knows of (for the admin shell), sorted by name."""
        return [self.info(m.name) for m in sorted(self._table, key=lambda m: m.name)]

    def meta(self, name: str) -> dict[str, object]:
        """The metadata C{name} published (a dict; {} if none or unknown)."""
        member = self._table.get(name)
        return decode_meta(member.meta) if member is not None else {}

    def digest(self) -> tuple[int, ...]:
        """The anti-entropy digest: equal on two nodes iff (almost surely) their lists are."""
        return self._table.digests()

    def fingerprint(self) -> int:
        """The whole list in 64 bits (heartbeats carry it: see L{_compare_lists})."""
        return self._table.fingerprint

    @property
    def suspect_count(self) -> int:
        """How many members this node holds suspect now (a diagnostic: during a
        large join on a saturated machine it shows the false suspicions)."""
        return len(self._suspects)

    def observers_of(self, name: str) -> list[str]:
        return self._table.rings.observers(name)

    def _observers(self, name: str) -> tuple[str, ...]:
        return self._table.rings.observers_tuple(name)

    def _known(self, name: str) -> Member:
        """The record of C{name}, which this node tracks (a suspect, a subject,
        a member gone): such a name is in the table."""
        member = self._table.get(name)
        assert member is not None
        return member

    @property
    def subjects(self) -> tuple[str, ...]:
        return tuple(self._subjects)

    @property
    def watchers(self) -> tuple[str, ...]:
        return tuple(self._watchers)

    def __len__(self) -> int:
        return len(self._table)

    # -- the entry point -----------------------------------------------------

    def handle(self, event: Event, now: float) -> Sequence[Action]:
        """Feed one event; return the actions to carry out, in order."""
        if type(event) is Received:
            return self.receive(event.sender, event.message, now)
        self._begin(now)
        if type(event) is TimerFired:
            self._timer(event.name)
        elif type(event) is LinkUp:
            self._link_up(event.name, event.address)
        elif type(event) is LinkDown:
            self._link_down(event.name)
        elif type(event) is JoinRequested:
            self._join(event.seeds)
        elif type(event) is LeaveRequested:
            self._leave()
        elif type(event) is ForceRemove:
            self._force_remove(event.name)
        elif type(event) is Expel:
            self._expel(event.name, event.reason)
        else:
            raise TypeError(f"not a membership event: {event!r}")
        return self._finish()

    def timer_fired(self, name: str, now: float) -> Sequence[Action]:
        """Same as C{handle(TimerFired(name), now)}, without the event object."""
        self._out = []
        self.now = now
        self._timer(name)
        return self._finish()

    def receive(self, sender: str, message: Message, now: float) -> Sequence[Action]:
        """Same as C{handle(Received(sender, message), now)}, without the event object."""
        if type(message) is Heartbeat and not message.updates and self.phase == MEMBER and (
                message.table == self._table.fingerprint or message.table is None
                or now < self._next_list_sync):
            # The common case (K of these per node per second): nothing but
            # "heard from sender", both of us holding the same list.
            self.now = now
            self.received += 1
            link = self._detector_links.get(sender)
            if link is not None:
                link.last_heard = now
            return _NOTHING
        self._out = []
        self.now = now
        if self.phase not in (IDLE, LEFT):
            handler = self._HANDLERS.get(type(message))
            if handler is None:
                raise TypeError(f"not a membership message: {message!r}")
            self._authorise(sender, message)
            self._sender = sender
            self.received += 1
            self._detector.heard(sender, now)
            handler(self, sender, message)
        return self._finish()

    def _authorise_leave(self, update: MemberUpdate) -> None:
        """A graceful leave must carry the member's own signature (a removal names its remover)."""
        if not update.reporters and not update.verified(self.notary):
            self.refused["leave-proof"] += 1
            name = update.member.name
            raise Forged(name, f"leave of {name} without its signature")

    def _authorise_life(self, update: MemberUpdate) -> None:
        """An alive record whose signature does not verify is forged (an honest relay
        checks it first). Copies and old news are not checked: not believed anyway."""
        member = update.member
        old = self._table.get(member.name)
        if old is member or (old is not None and not supersedes(member, old)):
            return
        if self._life_verdict(update) is False:
            self.refused["life-proof"] += 1
            name = member.name
            raise Forged(name, f"alive record of {name} with an invalid signature")

    def _life_verdict(self, update: MemberUpdate) -> bool | None:
        """Whether C{update} carries its member's valid signature; None: its
        certificate is not known here yet. Verified once per content (cached)."""
        if not update.life:
            return False
        signature, fingerprint = update.life
        member = update.member
        return self.notary.verify_life(member.name, record_statement(member), signature,
                                       fingerprint)

    def _authorise(self, sender: str, message: Message) -> None:
        """Refuse, before it changes anything, a message that speaks for another node.

        C{sender} is the authenticated peer (its certificate's name). A join
        or its answer speaks for the sender; a report, relayed on purpose,
        must carry its observer's valid signature. Raises L{Forged} (the
        router closes the connection and counts it); an honest node checks
        every piece before it relays it, so a bad proof is the sender's.
        """
        kind = type(message)
        if type(message) is Heartbeat or type(message) is Gossip:
            notary = self.notary
            for piece in message.updates:
                if type(piece) is Report:
                    if not piece.verified(notary):
                        self.refused["report-proof"] += 1
                        raise Forged(piece.observer, (
                            f"report on {piece.subject} without a valid signature of "
                            f"its observer {piece.observer}"))
                elif piece.member.state is State.LEFT:
                    self._authorise_leave(piece)
                elif piece.life:
                    self._authorise_life(piece)
        elif type(message) is SyncRecords:
            for record in message.records:
                if record.member.state is State.LEFT:
                    self._authorise_leave(record)
                elif record.life:
                    self._authorise_life(record)
        elif type(message) is Join or type(message) is JoinAck:
            if message.member.name != sender:
                self.refused["join-name"] += 1
                raise Forged(message.member.name, f"{kind.TYPE} for {message.member.name}")

    def _begin(self, now: float) -> None:
        self._out = []
        self.now = now

    def _finish(self) -> list[Action]:
        if self._cert_wanted:
            self._ask_certificates()
        if self._rings_dirty or self._affected:
            self._settle()
        if not self._gossip_set and self._queue and self.phase in (JOINING, MEMBER, LEAVING):
            self._gossip_set = True
            self._emit(SetTimer(GOSSIP, self.now + self.config.gossip_interval * _FIRST_PUSH))
        out, self._out = self._out, None
        assert out is not None  # every event began with _begin (or its inline copy)
        return out

    def _settle(self) -> None:
        """Bring the overlay and the verdicts on suspects up to date with the list."""
        for _ in range(100):
            if self._overlay_due():
                self._rings_dirty = False
                self._refresh_overlay()
            if self._affected:
                self._evaluate_affected()
            if not (self._overlay_due() or self._affected):
                break

    def _overlay_due(self) -> bool:
        return self._rings_dirty and self.now >= self._overlay_hold

    def _emit(self, action: Action) -> None:
        assert self._out is not None  # only while an event is handled
        self._out.append(action)

    def _send(self, to: str, message: Message) -> None:
        self.sent += 1
        assert self._out is not None  # only while an event is handled
        self._out.append(Send(to, message))

    def _own_update(self) -> MemberUpdate:
        """Our own record as news, signed by us (made once per record)."""
        me = self.me
        own = self._own
        if own is None or own.member is not me:
            if me.state is State.ALIVE:
                life = self.notary.sign_life(record_statement(me))
                own = MemberUpdate(me, life=life)
                self._lives[self.name] = (me, life)
            else:
                own = MemberUpdate(me)
            self._own = own
        return own

    def _own_proof(self) -> Proof:
        """(signature, certificate) of our record, for a join or its answer."""
        own = self._own_update()
        return (own.life[0], self.notary.certificate) if own.life else ()

    def _life_of(self, member: Member) -> Proof:
        """The signature of C{member}'s alive record held here, or ()."""
        entry = self._lives.get(member.name) or self._base_lives.get(member.name)
        if entry is not None and (entry[0] is member or entry[0] == member):
            return entry[1]
        return ()

    # -- certificates of signed records ---------------------------------------------

    def _ask_certificates(self) -> None:
        wanted, self._cert_wanted = self._cert_wanted, []
        now = self.now
        asked = self._cert_asked
        when: float | None
        if len(asked) > _UNPROVEN_LIMIT:
            for fingerprint, when in list(asked.items()):
                if now - when >= _CERT_ASK_AGAIN:
                    del asked[fingerprint]
        fresh: list[str] = []
        for fingerprint in dict.fromkeys(wanted):
            when = asked.get(fingerprint)
            if when is None or now - when >= _CERT_ASK_AGAIN:
                asked[fingerprint] = now
                fresh.append(fingerprint)
        if fresh and self._sender is not None:
            for start in range(0, len(fresh), MAX_CERTIFICATES):
                self._send(self._sender, CertsWant(tuple(fresh[start:start + MAX_CERTIFICATES])))

    def _park(self, update: MemberUpdate, source: str) -> None:
        """Keep a signed record whose certificate is on its way (the newest per member)."""
        name = update.member.name
        parked = self._unproven.get(name)
        if parked is None and len(self._unproven) >= _UNPROVEN_LIMIT:
            return
        if parked is None or supersedes(update.member, parked[0].member):
            self._unproven[name] = (update, source)
        assert update.life  # parked for want of the certificate its life names
        self._cert_wanted.append(update.life[1])

    def _on_certs_want(self, sender: str, message: CertsWant) -> None:
        certificates: list[str] = []
        for fingerprint in message.fingerprints:
            certificate = self.notary.certificate_by(fingerprint)
            if certificate is not None:
                certificates.append(certificate)
        if certificates:
            self._send(sender, Certs(tuple(certificates)))

    def _on_certs(self, sender: str, message: Certs) -> None:
        learnt: set[str] = set()
        for certificate in message.certificates:
            fingerprint = fingerprint_of(certificate)
            if fingerprint not in self._cert_asked:
                continue  # only what we asked for: checking a certificate costs
            if self.notary.learn(certificate) is None:
                self.refused["certificate"] += 1
            else:
                learnt.add(fingerprint)
        if not learnt:
            return
        for name, (update, source) in list(self._unproven.items()):
            if update.life and update.life[1] in learnt:  # (parked ones have a life)
                del self._unproven[name]
                self._merge(update, source)
        if self._list_expected and len(self._table) > self._list_expected:
            # A seed's pushed list was waiting for its certificates: it is in.
            self._list_expected = 0
            self._overlay_hold = 0.0
            self._send(sender, SyncDigest(self._table.digests()))

    # -- metadata -------------------------------------------------------------

    def set_meta(self, meta: object, now: float) -> Sequence[Action]:
        """Publish C{meta} (a small JSON-able dict) as this node's metadata.

        Like a refutation, it raises our incarnation so the new record
        supersedes the old everywhere, and gossips it (memberlist's node
        meta update, Serf's tags). Unchanged metadata costs nothing.

        @raise clsd.membership.core.members.MetaError: not a dict, not JSON, or
            larger than L{clsd.membership.core.members.MAX_META}.
        """
        encoded = encode_meta(meta)
        self._begin(now)
        # Leaving, our record is final (state left): nothing more to publish.
        if encoded != self.me.meta and self.phase not in (LEAVING, LEFT):
            self.me = self.me.evolve(meta=encoded, incarnation=self.me.incarnation + 1)
            self._table.set(self.me, now)
            if self.phase in (JOINING, MEMBER):
                self._queue.put(self._own_update())
        return self._finish()

    # -- join and leave --------------------------------------------------------

    def _join(self, seeds: Iterable[str]) -> None:
        if self.phase != IDLE:
            return
        self._seeds = tuple(s for s in seeds if s != self.me.address)
        self._schedule_tick(first=True)
        now = self.now
        self._next_sync = now + self.config.sync_interval * self._rng.uniform(0.5, 1.0)
        self._next_reconnect = now + self.config.reconnect_interval * self._rng.uniform(0.5, 1.0)
        self._rings_dirty = True
        if not self._seeds or len(self._table) > 1:
            # No seed (or a list we were started with): we are the cluster.
            self._become_member()
        else:
            self.phase = JOINING
            self._next_join = now + self.config.join_retry_interval
        for address in self._seeds:
            self._connect(address, None)
            self._set_transient(address, float("inf") if self.phase == JOINING else (
                now + _TRANSIENT_TTL))

    def _become_member(self) -> None:
        self.phase = MEMBER
        self._emit(Joined())
        for address in self._seeds:
            if address in self._transient:
                self._set_transient(address, self.now + _TRANSIENT_TTL)

    def _leave(self) -> None:
        if self.phase in (LEAVING, LEFT):
            return
        if self.phase == IDLE:
            self.phase = LEFT
            self._emit(LeaveDone())
            return
        self.phase = LEAVING
        self.me = self.me.evolve(state=State.LEFT)
        self._table.set(self.me, self.now)
        update = MemberUpdate(self.me).signed(self.notary)
        self._departures[self.name] = (self.me, (), update.proof)
        self._queue.put(update)
        for name in self._links:
            self._send(name, Gossip((update,)))
        self._emit(SetTimer(LEAVE, self.now + self.config.leave_timeout))

    def _leave_done(self) -> None:
        self.phase = LEFT
        for address in list(self._wanted):
            self._emit(Disconnect(address))
        self._wanted.clear()
        for timer in (TICK, GOSSIP, CHECK):
            self._emit(CancelTimer(timer))
        self._emit(LeaveDone())

    def _force_remove(self, name: str) -> None:
        member = self._table.get(name)
        if member is None:
            raise MembershipError(f"no member named {name!r}")
        if name == self.name:
            raise MembershipError("cannot force-remove this node itself: use leave")
        if member.state is not State.DEAD:
            raise MembershipError(
                f"{name} is {member.state.value}, not dead: only a dead member can be force-removed")
        self._accept(member.evolve(state=State.LEFT),
                     f"force-removed by operator on {self.name}", reporters=(self.name,))

    def _expel(self, name: str, reason: str) -> None:
        member = self._table.get(name)
        if member is None or name == self.name:
            return
        self._expelled[name] = max(member.generation, self._expelled.get(name, member.generation))
        if member.state is not State.LEFT:
            self._accept(member.evolve(state=State.LEFT), f"expelled on {self.name}: {reason}",
                         reporters=(self.name,))

    # -- timers ----------------------------------------------------------------

    def _schedule_tick(self, first: bool = False) -> None:
        interval = self.config.heartbeat_interval
        if first:
            self._tick_due = self.now + self._rng.uniform(0.0, interval)
        else:
            assert self._tick_due is not None  # the first tick came first
            self._tick_due += interval
            if self._tick_due <= self.now:
                self._tick_due = self.now + interval
        self._emit(SetTimer(TICK, self._tick_due))

    def _timer(self, name: str) -> None:
        if name == TICK and self.phase in (JOINING, MEMBER, LEAVING):
            self._tick()
        elif name == GOSSIP:
            self._gossip_set = False
            self._push_gossip()
        elif name == LEAVE and self.phase == LEAVING:
            self._leave_done()
        elif name == CHECK:
            self._check_at = None
            if self.phase == MEMBER:
                self._check_links()

    def _tick(self) -> None:
        now = self.now
        config = self.config
        interval = config.heartbeat_interval
        assert self._tick_due is not None  # ticks are scheduled from the join on
        late = lateness(now, self._tick_due)
        if late > interval / 2:
            # We could not run: the silence we see is (at least partly) ours.
            self._detector.credit_stall(late)
        awareness = self._awareness
        if late or awareness.score:
            awareness.tick(late, interval)
        self._schedule_tick()
        if self._watchers:
            self._heartbeat()
        if self.phase == MEMBER:
            self._check_links()
            if self._suspects:
                self._check_suspects()
            if now >= self._next_sync:
                self._next_sync = now + sync_period(config.sync_interval, len(self._table)) * (
                    self._rng.uniform(0.9, 1.1))
                self._start_sync()
            if now >= self._next_reconnect:
                self._next_reconnect = now + config.reconnect_interval * self._rng.uniform(0.9, 1.1)
                self._probe_dead()
            if self._gone or self._tombstones:
                self._reap()
            if self._table.overlay_size:
                self._table.maybe_compact(now)
        elif self.phase == JOINING and now >= self._next_join and now >= self._next_join_ask:
            # Asked again and again, a slow seed would push its whole list
            # again and again: the retries back off (2, 4, 8, 16 s, each
            # times our local health multiplier: on a saturated machine the
            # answer is late, not lost, and asking every link at each retry
            # made 1024 joiners receive 2,303 whole lists). Every link is
            # asked: a seed's own dial may have won over ours (then its link
            # has no seed address), and any member can answer.
            self._join_retries += 1
            self._next_join = now + self._awareness.scale(config.join_retry_interval) * 2 ** min(
                self._join_retries, _JOIN_RETRY_DOUBLINGS)
            for name in self._links:
                self._ask_to_join(name, self._next_join)
        if self._transient and now >= self._transient_next:
            self._expire_transient()

    def _heartbeat(self) -> None:
        assert self._out is not None  # only while an event is handled
        me = self.me
        queue = self._queue
        watchers = self._watchers
        self.sent += len(watchers)
        table = self._table.fingerprint
        size = len(self._table)
        if not queue:
            beats = self._beats
            if beats is None or beats[0] is not me or beats[1] != table:
                beat = Heartbeat(me.generation, me.incarnation, (), table, size)
                beats = self._beats = (me, table, [Send(name, beat) for name in watchers])
            self._out.extend(beats[2])
            return
        limit = self._limit()
        count = self.config.max_piggyback
        self._out.extend([
            Send(name, Heartbeat(me.generation, me.incarnation,
                                 tuple(queue.take(count, limit)), table, size))
            for name in watchers])

    def _limit(self) -> int:
        n = len(self._table)
        if n != self._limit_for:
            self._limit_for = n
            self._limit_value = retransmit_limit(self.config.retransmit_mult, n)
        return self._limit_value

    def _push_gossip(self) -> None:
        if not self._queue or self.phase not in (JOINING, MEMBER, LEAVING):
            return
        names = list(self._links)
        if not names:
            return
        fanout = self.config.gossip_fanout
        targets = names if len(names) <= fanout else self._rng.sample(names, fanout)
        limit = self._limit()
        for name in targets:
            updates = self._queue.take(self.config.max_piggyback, limit)
            if not updates:
                break
            self._send(name, Gossip(tuple(updates)))
        if self._queue:
            self._gossip_set = True
            self._emit(SetTimer(GOSSIP, self.now + self.config.gossip_interval))

    # -- failure detection -------------------------------------------------------

    def _check_links(self) -> None:
        config = self.config
        failing, quiet = self._detector.check(
            self.now, self._awareness.scale(config.failure_timeout),
            config.link_down_grace, 2 * config.heartbeat_interval)
        for subject, link in failing:
            member = self._table.get(subject)
            if member is None or not member.in_ring or link.reported == member.version:
                continue
            link.reported = member.version
            self.stats["reports"] += 1
            if not link.ever_up:
                self.stats["reports_unreached"] += 1
            self._on_report(Report(subject, member.generation, member.incarnation,
                                   self.name).signed(self.notary))
        for subject in quiet:
            if subject in self._links:
                self._send(subject, Watch())

    def _on_report(self, report: Report) -> None:
        subject = report.subject
        member = self._table.get(subject)
        if member is None or member.generation != report.generation:
            return
        if subject == self.name:
            if report.incarnation >= self.me.incarnation:
                self._refute(report.incarnation)
            return
        if not member.in_ring or report.incarnation < member.incarnation:
            return
        if report.incarnation > member.incarnation + MAX_INCARNATION_STEP:
            self.refused["incarnation-step"] += 1
            return
        version = (report.generation, report.incarnation)
        if not self._reports.add(subject, version, report.observer):
            return
        self._queue.put(report)
        if member.state is State.ALIVE or member.incarnation < report.incarnation:
            self._accept(member.evolve(state=State.SUSPECT, incarnation=report.incarnation),
                         f"reported unreachable by {report.observer}",
                         reporters=(report.observer,), gossip=False)
        self._affect(subject)

    def _check_suspects(self) -> None:
        """The slow path: suspicion that nobody refuted in time is a death."""
        config = self.config
        members = len(self._table)
        # A slow node blames itself first (Lifeguard): its own lag also
        # delays the refutations it is waiting for.
        shortest = self._awareness.scale(
            suspicion_timeout(config.suspicion_timeout, members, 1, expected=0))
        for subject, since in list(self._suspects.items()):
            if self.now - since < shortest:
                continue
            member = self._known(subject)
            reported = self._reports.reporters(subject, member.version)
            observers = self._observers(subject)
            counted = tuple(o for o in observers if o in reported)
            if self._announced_proven(subject, member.version, reported):
                timeout = shortest  # another node's rule held: a confirmation in full
            else:
                expected = quorum_for(len(observers), config.quorum) - 1
                timeout = self._awareness.scale(suspicion_timeout(
                    config.suspicion_timeout, members, len(counted), expected))
            if self.now - since >= timeout:
                reporters = counted[:MAX_REPORTERS]
                self._accept(
                    member.evolve(state=State.DEAD),
                    f"suspected for {self.now - since:.1f} s without refuting"
                    + (f" (reported by {', '.join(reporters)})" if reporters else ""),
                    reporters=reporters)

    def _announced_proven(self, subject: str, version: tuple[int, int],
                          reported: frozenset[str]) -> bool:
        """Whether another node announced this life of C{subject} dead, and this
        node holds signed reports of it: at least one, and one of every
        reporter the announcement named (those names are a claim until their
        reports are here; a death learnt by anti-entropy names none)."""
        announced = self._announced_dead.get(subject)
        if announced is None or announced[0] != version or not reported:
            return False
        return all(name in reported for name in announced[1])

    def _affect(self, name: str) -> None:
        """Suspect C{name} must be evaluated again before this event ends.

        Evaluating every suspect after every change gives the same result
        (a suspect whose reports, observers and observers' health did not
        change keeps its verdict) at O(suspects) evaluations per event; this
        keeps the order of that full pass: suspects in the order they became
        suspect, one affected during a pass joining it if it comes later.
        """
        order = self._suspect_order.get(name)
        if order is None:
            return
        if self._pass is not None and order > self._pass_at:
            heapq.heappush(self._pass, (order, name))
        else:
            self._affected.add(name)

    def _affect_watched_by(self, name: str) -> None:
        """The suspects that C{name} (on the rings now) observes: its health counts for them."""
        # Asked about each member that joins while any member is suspect: a
        # look at each suspect's cached observers is cheaper than finding
        # the member's own subjects (K ring searches) while suspects are few,
        # and the same answer (C{name} observes S iff it is among S's observers).
        if len(self._suspects) <= 2 * self.config.observers:
            for subject in list(self._suspects):
                if name in self._observers(subject):
                    self._affect(subject)
            return
        for subject in self._table.rings.subjects(name):
            self._affect(subject)

    def _evaluate_affected(self) -> None:
        order = self._suspect_order
        affected, self._affected = self._affected, set()
        self._pass = heap = [(order[name], name) for name in affected if name in order]
        heapq.heapify(heap)
        done: set[str] = set()
        try:
            while heap:
                at, subject = heapq.heappop(heap)
                if subject in done:
                    continue
                done.add(subject)
                self._pass_at = at
                self._evaluate(subject)
        finally:
            self._pass = None
            self._pass_at = -1

    def _evaluate(self, subject: str) -> None:
        member = self._table.get(subject)
        if member is None or member.state is not State.SUSPECT:
            self._drop_suspect(subject)
            return
        reporters = self._reports.reporters(subject, member.version)
        if not reporters:
            return
        observers = self._observers(subject)
        healthy: set[str] = set()
        for name in observers:
            record = self._table.get(name)
            if record is not None and record.state is State.ALIVE:
                healthy.add(name)
        if is_failed(observers, reporters, healthy, self.config.quorum):
            counted = tuple(o for o in observers if o in reporters and o in healthy)
            self._accept(
                member.evolve(state=State.DEAD),
                f"reported unreachable by {', '.join(counted)} "
                f"({len(counted)} of {len(observers)} observers)",
                reporters=counted)
            self._send_evidence_with(subject, counted)

    def _send_evidence_with(self, subject: str, reporters: Iterable[str]) -> None:
        """Queue the signed reports behind a death again, fresh, so they travel with it.

        Others believe the death only on those reports (its reporters are a
        claim): queued afresh after the death, they go out first in the same
        messages, and a node that hears of the death does not wait for each
        report to reach it on its own.
        """
        queue = self._queue
        for observer in reporters:
            report = queue.get(("r", subject, observer))
            if report is not None:
                queue.put(report)

    def _refute(self, accused: int) -> None:
        if self.phase in (LEAVING, LEFT):
            return
        self.me = self.me.evolve(incarnation=max(self.me.incarnation, accused) + 1)
        self._table.set(self.me, self.now)
        self._queue.put(self._own_update())
        self._awareness.refuted()
        self.stats["refutations"] += 1

    # -- news ----------------------------------------------------------------------

    def _apply_updates(self, updates: Iterable[Update], source: str) -> None:
        records = news = 0
        for update in updates:
            if type(update) is Report:
                self._on_report(update)
            else:
                records += 1
                news += self._merge(update, source)
        stats = self.stats
        stats["gossip_records"] += records
        stats["gossip_news"] += news

    def _merge(self, update: MemberUpdate, source: str) -> bool:
        """Apply news about a member; True if our list changed."""
        member = update.member
        name = member.name
        if name == self.name:
            self._about_me(member)
            return False
        if self._expelled and member.in_ring and (
                member.generation <= self._expelled.get(name, -1)):
            return False  # its refutation, relayed by a node that still admits it
        old = self._table.get(name)
        if old is member:
            # The very record we hold (decoded records and in-process peers
            # share objects): the sender has our news.
            if source == "gossip":
                self._heard(member)
            return False
        if old is None:
            if member.state in (State.DEAD, State.LEFT) and update.age >= self.config.reap_after:
                return False
            tomb = self._tombstones.get(name)
            if tomb is not None and not supersedes(member, tomb[0]):
                return False
        elif not supersedes(member, old):
            if source == "gossip" and member == old:
                self._heard(member)
            return False
        elif (member.generation == old.generation
                and member.incarnation > old.incarnation + MAX_INCARNATION_STEP):
            self.refused["incarnation-step"] += 1
            return False
        state = member.state
        if state is State.ALIVE:
            # A life statement: believed only with the member's own signature.
            verdict = self._life_verdict(update)
            if verdict is None:
                self._park(update, source)
                return False
            if not verdict:
                self.refused["life-unproven"] += 1
                return False
        elif (old is None or old.generation != member.generation
                or old.address != member.address or old.meta != member.meta
                or (state is State.SUSPECT and not old.in_ring)) and not (
                state is State.LEFT and not update.reporters):
            # Suspicion, death or removal of a life not known here (a new
            # generation, a member never seen, another address or meta), or
            # suspicion that would put a dead member back on the rings: only
            # the member's signed record proves a life, so none of these can
            # invent or alter one.
            self.refused["life-unproven"] += 1
            return False
        if state is State.LEFT and update.reporters and old is not None and old.in_ring:
            # A force-removal (by the operator of the node named first) is of
            # a dead member only: a live one here is not its to remove.
            self.refused["removal-of-live"] += 1
            return False
        if state is State.DEAD and old is not None and old.in_ring and (
                old.generation == member.generation):
            # A death must satisfy our own detection rule, on the reports this
            # node holds (each signed by its observer): the reporters named in
            # the record are a claim, not evidence, since any relay could
            # have written them. A stale or partitioned view, or a hostile
            # member, cannot evict a member we still see as healthy.
            version = member.version
            changed = False
            if old.version < version or old.state is State.ALIVE:
                # Gossip the suspicion so that the member hears of it and can
                # refute before our suspicion_timeout runs out.
                self._accept(member.evolve(state=State.SUSPECT),
                             f"declared dead elsewhere ({source})")
                changed = True
            if name in self._suspects:  # kept only while the suspicion lasts
                self._announced_dead[name] = (version, update.reporters)
            self._evaluate(name)
            return changed or self._table.get(name) != old
        if state is State.SUSPECT and source == "sync" and old is not None and old.in_ring:
            self._accept(member, f"suspected elsewhere ({source})", gossip=True)
            return True
        self._accept(member, _reason(member, old, update), age=update.age,
                     reporters=update.reporters, gossip=source != "sync", proof=update.proof,
                     life=update.life)
        return True

    def _heard(self, member: Member) -> None:
        """A gossip copy of C{member}'s record arrived: forward ours less (rumour mongering)."""
        key = ("m", member.name)
        queued = self._queue.get(key)
        if type(queued) is MemberUpdate and (queued.member is member or queued.member == member):
            self._queue.heard(key, self._limit())

    def _about_me(self, member: Member) -> None:
        me = self.me
        if member.generation != me.generation:
            if member.generation > me.generation:
                # A life of ours we do not live: a misconfigured twin, or a
                # hostile member inventing one (relayed alive records are not
                # signed). We cannot supersede it; counted so that it shows.
                self.refused["newer-life-of-self"] += 1
            return  # our previous life
        if member.incarnation < me.incarnation:
            # A suspicion (or death) we refuted already: our record supersedes
            # it. Refuting again would raise our incarnation once per copy,
            # each raise news for the whole cluster.
            return
        if member.incarnation > me.incarnation + MAX_INCARNATION_STEP:
            # Only we raise our incarnation: this is forged (and every honest
            # node refuses it too).
            self.refused["incarnation-step"] += 1
            return
        if member.state is State.ALIVE and member.incarnation == me.incarnation:
            return
        if member.state is State.LEFT and me.state is State.LEFT:
            return
        self._refute(member.incarnation)

    def _accept(self, member: Member, reason: str, *, age: float = 0.0,
                reporters: tuple[str, ...] = (), gossip: bool = True, proof: Proof = (),
                life: Proof = ()) -> None:
        name = member.name
        now = self.now
        old = self._table.get(name)
        healthy = member.state is State.ALIVE
        # Whom this member observes: its health (or its place on the rings)
        # counts in their verdicts. Taken while it is on the rings.
        watch_change = bool(self._suspects) and (
            (old is not None and old.state is State.ALIVE) != healthy
            or (old is not None and old.in_ring) != member.in_ring)
        if watch_change and old is not None and old.in_ring:
            self._affect_watched_by(name)
            watch_change = False
        self._table.set(member, now)
        if watch_change and member.in_ring:
            self._affect_watched_by(name)
        if old is not None and (not member.in_ring or old.generation != member.generation or (
                member.state is State.ALIVE and old.version != member.version)):
            # A refutation, a new life or the end of one: old reports are void,
            # and whoever watches it gives it a fresh timeout.
            self._reports.clear(name)
            self._detector.restart(name, now)
        since = now - age
        self._info[name] = (since, reason)
        if member.state in (State.DEAD, State.LEFT):
            self._gone[name] = since
        else:
            self._gone.pop(name, None)
        if member.state is State.SUSPECT:
            if old is None or old.state is not State.SUSPECT or old.version != member.version:
                if name not in self._suspects:
                    self._suspect_order[name] = next(self._suspect_serials)
                self._suspects[name] = now
                if name in self._links:
                    # Lifeguard's buddy system: tell the suspect itself, so
                    # that it refutes at once rather than when gossip,
                    # queued behind other news, gets round to it.
                    self._send(name, Gossip((MemberUpdate(member),)))
            self._affect(name)
        else:
            self._drop_suspect(name)
        if old is None or old.in_ring != member.in_ring:
            self._rings_dirty = True
        if member.state is State.LEFT:
            self._departures[name] = (member, tuple(reporters), proof)
        elif self._departures:
            self._departures.pop(name, None)
        if life:
            self._lives[name] = (member, life)
        if gossip:
            self._queue.put(MemberUpdate(member, age, reporters, proof, life))
        if old is None or old.state != member.state or old.generation != member.generation:
            self._emit(MemberChanged(member, old, reason, reporters=tuple(reporters)))
        elif old.meta != member.meta:
            self._emit(MetaChanged(member))

    def _drop_suspect(self, name: str) -> None:
        if self._suspects.pop(name, None) is not None:
            self._announced_dead.pop(name, None)
            del self._suspect_order[name]
            self._affected.discard(name)
            self._table.rings.forget_neighbours(name)
            if not self._suspects:
                # The neighbour caches serve the verdicts on suspects; empty,
                # they cost nothing while the rings change (e.g. a mass join).
                self._table.rings.forget_neighbours()

    # -- the overlay ----------------------------------------------------------------

    def _refresh_overlay(self) -> None:
        rings = self._table.rings
        subjects = rings.subjects(self.name) if self.name in rings else []
        old = self._subjects
        wanted_addresses: dict[str, str] = {}
        for name in subjects:
            member = self._known(name)
            wanted_addresses[member.address] = name
        for name in old:
            if name not in subjects:
                self._detector.unwatch(name)
                if name in self._links:
                    self._send(name, Unwatch())
        for name in subjects:
            if name not in self._detector:
                self._detector.watch(name, self.now, name in self._links)
                if name in self._links:
                    self._send(name, Watch())
        self._subjects = subjects
        for address, name in wanted_addresses.items():
            if self._wanted.get(address, ...) != name:
                self._connect(address, name)
        for address in list(self._wanted):
            if address not in wanted_addresses and address not in self._transient:
                del self._wanted[address]
                self._emit(Disconnect(address))

    def _connect(self, address: str, name: str | None) -> None:
        self._wanted[address] = name
        self._emit(Connect(address, name))

    def _set_transient(self, address: str, expiry: float) -> None:
        self._transient[address] = expiry
        if expiry < self._transient_next:
            self._transient_next = expiry

    def _expire_transient(self) -> None:
        if not self._transient:
            return
        now = self.now
        subject_addresses: set[str] | None = None
        following = float("inf")
        for address, expiry in list(self._transient.items()):
            if expiry > now:
                following = min(following, expiry)
                continue
            del self._transient[address]
            self._sync_on_connect.discard(address)
            if subject_addresses is None:
                subject_addresses = {self._known(n).address for n in self._subjects}
            if address not in subject_addresses and address in self._wanted:
                del self._wanted[address]
                self._emit(Disconnect(address))
        self._transient_next = following

    def _link_up(self, name: str, address: str | None) -> None:
        self._links[name] = address
        self._detector.link_up(name, self.now)
        if name in self._detector:
            self._send(name, Watch())
        if address in self._seeds:
            self._seed_names.add(name)
        if (self.phase == JOINING and name in self._seed_names
                and self.now >= self._next_join_ask):
            # One seed at a time: each answers with its whole list. Should
            # that one not answer, the tick asks every link (a seed's own
            # dial to us, without a seed address, may be the one kept).
            wait = self._awareness.scale(self.config.join_retry_interval)
            self._ask_to_join(name, self.now + wait)
        if address in self._sync_on_connect:
            self._sync_on_connect.discard(address)
            self._send(name, SyncDigest(self._table.digests()))

    def _ask_to_join(self, name: str, answer_by: float) -> None:
        self._join_asked.add(name)
        self._next_join_ask = answer_by
        self._send(name, Join(self.me, self._own_proof()))

    def _link_down(self, name: str) -> None:
        self._links.pop(name, None)
        self._heard_tables.pop(name, None)
        if self.phase == JOINING and name in self._join_asked:
            # The Join sent on this connection may be lost with it (two nodes
            # dialling each other keep one connection): ask on another link
            # now, or on the next to come up.
            self._join_asked.discard(name)
            self._next_join_ask = 0.0
            if self._links:
                self._ask_to_join(next(iter(self._links)),
                                  self.now + self.config.join_retry_interval)
        if self._watchers.pop(name, None):
            self._beats = None
        if name in self._detector:
            self._detector.link_down(name, self.now)
            # Check again right after the grace, not at the next tick: a killed
            # node is then reported within link_down_grace.
            at = self.now + self.config.link_down_grace * 1.001
            if self._check_at is None or self._check_at > at:
                self._check_at = at
                self._emit(SetTimer(CHECK, at))

    # -- anti-entropy ------------------------------------------------------------------

    def _start_sync(self) -> None:
        self._sync_streak = self._sync_streak + 1 if self._sync_progressed else 0
        self._sync_progressed = False
        candidates = [n for n in self._links if n in self._watchers or n in self._detector]
        if not candidates:
            candidates = list(self._links)
        if candidates:
            partner = self._rng.choice(candidates)
            self._send(partner, SyncDigest(self._table.digests()))

    def _compare_lists(self, sender: str, table: int, size: int | None = None) -> None:
        """C{sender}'s list is C{table}: if it differs from ours and both are quiet, sync now.

        Gossip now and then misses a node with one record, which then waits
        for a plain anti-entropy round (up to sync_interval). A list that
        has not changed for _LIST_QUIET while a neighbour's differs, and
        that neighbour's is the same as in its previous heartbeat, is that
        case (or two sides of a healed partition); while members join or
        fail, lists change all the time and gossip is at work, so this stays
        silent (without the second condition, 1024 nodes ending a join on a
        saturated machine made 3,000 such syncs in 20 s, nearly all finding
        the news already on its way). At most one such sync per _LIST_QUIET.

        A node whose neighbour holds clearly more records (L{_behind}) syncs
        at once as well: while members join, fingerprints change with every
        heartbeat, so the rule above never holds, and the last joiners of a
        1024-node join, hundreds of members behind, waited for gossip alone.
        """
        now = self.now
        previous = self._heard_tables.get(sender)
        self._heard_tables[sender] = table
        if now < self._next_list_sync or table == self._table.fingerprint:
            return
        if not (size is not None and _behind(len(self._table), size)):
            if table != previous:
                return
            last = self._table.last_change
            if last is not None and now - last < _LIST_QUIET:
                return
        self._next_list_sync = now + _LIST_QUIET
        self.stats["list_syncs"] += 1
        self._send(sender, SyncDigest(self._table.digests()))

    def _probe_dead(self) -> None:
        dead = [n for n in self._gone if self._known(n).state is State.DEAD]
        if not dead:
            return
        member = self._known(self._rng.choice(dead))
        address = member.address
        if address in self._wanted:
            return
        self._set_transient(address, self.now + _TRANSIENT_TTL)
        self._sync_on_connect.add(address)
        self._connect(address, member.name)

    def _records_for(self, buckets: Iterable[int], exclude: Mapping[str, Member] | None = None
                     ) -> tuple[tuple[MemberUpdate, ...], bool]:
        """My records in C{buckets} (random bucket order), at most MAX_SYNC_RECORDS."""
        order = list(buckets)
        self._rng.shuffle(order)
        result: list[MemberUpdate] = []
        more = False
        for bucket in order:
            records = self._table.records_in(bucket)
            if exclude is not None:
                records = [m for m in records if exclude.get(m.name) != m]
            room = MAX_SYNC_RECORDS - len(result)
            if len(records) > room:
                more = True
                records = self._rng.sample(records, room) if not result else []
                if not records:
                    break
            result.extend(self._sync_update(member) for member in records)
            if more:
                break
        return _proof_bound(result, more)

    def _sync_update(self, member: Member) -> MemberUpdate:
        """C{member}'s record as anti-entropy sends it (a death or leave with its age)."""
        if member.state in (State.DEAD, State.LEFT):
            age = max(0.0, self.now - self._gone.get(member.name, self.now))
            departure = self._departures.get(member.name)
            if departure is not None and departure[0] == member:
                return MemberUpdate(member, age, departure[1], departure[2])
            return MemberUpdate(member, age)
        if member is self.me:
            return self._own_update()
        return _plain_update(member, self._life_of(member) if member.state is State.ALIVE else ())

    def _on_sync_digest(self, sender: str, message: SyncDigest) -> None:
        mine = self._table.digests()
        theirs = message.buckets
        differ = tuple(b for b in range(SYNC_BUCKETS) if mine[b] != theirs[b])
        if differ:
            records, more = self._records_for(differ)
            self._send(sender, SyncRecords(records, differ, more, message.round))

    def _on_sync_records(self, sender: str, message: SyncRecords) -> None:
        sent: dict[str, Member] = {}
        changed = 0
        for update in message.records:
            sent[update.member.name] = update.member
            changed += self._merge(update, "sync")
        self.stats["list_records"] += len(message.records)
        self.stats["list_news"] += changed
        if message.want:
            records, more = self._records_for(message.want, exclude=sent)
            self._send(sender, SyncRecords(records, (), more, message.round))
        # Follow up only on progress: records the other side keeps sending
        # but we reject (stale news, a far side's verdicts) must not start a
        # storm of syncs. A sooner sync, or another round at once, only while
        # the records are mostly news (a join's pull of the list, two sides
        # of a healed partition): while members join, every bucket differs by
        # a record or two that gossip brings anyway. Following up on those
        # made every node sync every 2 s during a 512-node join, exchanging
        # 31,000 records a second of which 7 % were news.
        if changed and changed >= len(message.records) * _ROUND_NEWS:
            if self.phase == MEMBER:
                self._sync_soon()
            if message.more and message.round < _MAX_SYNC_ROUNDS:
                self._send(sender, SyncDigest(self._table.digests(), message.round + 1))
                self._overlay_hold = self.now + _OVERLAY_HOLD
                return
        if len(self._table) > self._list_expected:
            if self._list_expected:
                # The pushed list is in. Members who joined the seed while it
                # was on the way (a mass start) are in the seed's list now:
                # one digest brings them, rather than waiting for gossip.
                self._send(sender, SyncDigest(self._table.digests()))
            self._list_expected = 0
            self._overlay_hold = 0.0

    def _sync_soon(self) -> None:
        """Bring the next sync forward: a second, doubling while syncs keep bringing news."""
        self._sync_progressed = True
        wait = min(_SYNC_AGAIN_MAX, self.config.sync_interval,
                   _SYNC_AGAIN * 2 ** min(self._sync_streak, 16))
        self._next_sync = min(self._next_sync, self.now + wait)

    # -- reaping ------------------------------------------------------------------------

    def _reap(self) -> None:
        now = self.now
        if self._tombstones:
            for name, (_, forget_at) in list(self._tombstones.items()):
                if now >= forget_at:
                    del self._tombstones[name]
        if not self._gone:
            return
        reap_after = self.config.reap_after
        for name, since in list(self._gone.items()):
            if now - since >= reap_after:
                member = self._known(name)
                self._table.delete(name, now)
                del self._gone[name]
                self._info.pop(name, None)
                self._departures.pop(name, None)
                self._reports.clear(name)
                self._tombstones[name] = (member, now + reap_after)
                self._emit(MemberChanged(member, member, f"reaped after {reap_after:g} s",
                                         removed=True))

    # -- message handlers -------------------------------------------------------------------

    def _on_heartbeat(self, sender: str, message: Heartbeat) -> None:
        if message.updates:
            self._apply_updates(message.updates, "gossip")
        if message.table is not None and self.phase == MEMBER:
            self._compare_lists(sender, message.table, message.size)

    def _on_gossip(self, sender: str, message: Gossip) -> None:
        self._apply_updates(message.updates, "gossip")

    def _on_watch(self, sender: str, message: Watch) -> None:
        if sender not in self._watchers:
            self._watchers[sender] = True
            self._beats = None
        me = self.me
        self._send(sender, Heartbeat(me.generation, me.incarnation, (), self._table.fingerprint,
                                     len(self._table)))

    def _on_unwatch(self, sender: str, message: Unwatch) -> None:
        if self._watchers.pop(sender, None):
            self._beats = None

    def _on_join(self, sender: str, message: Join) -> None:
        # _authorise made sure the record is the sender's own.
        self._merge_joined(message.member, message.proof)
        self.stats["joins_answered"] += 1
        records = [self._sync_update(m) for m in self._table if m.name != sender]
        self._send(sender, JoinAck(self.me, len(records), self._own_proof()))
        for chunk in _chunks(records):
            self._send(sender, SyncRecords(chunk))
        if self.phase == JOINING:
            self._become_member()

    def _on_join_ack(self, sender: str, message: JoinAck) -> None:
        self.stats["join_acks"] += 1
        self._merge_joined(message.member, message.proof)
        if self.phase == JOINING:
            self._become_member()
        if message.listed:
            # The seed's list follows: choose our subjects once it is here,
            # then compare lists with a neighbour (what we knew before).
            self._list_expected = message.listed
            self._overlay_hold = self.now + _OVERLAY_HOLD
            self._next_sync = min(self._next_sync, self.now + _SYNC_AGAIN)
        else:
            self._send(sender, SyncDigest(self._table.digests()))

    def _merge_joined(self, member: Member, proof: Proof) -> None:
        """The sender's own record from a join or its answer, if alive.

        Its connection proves who sent it; its signature and certificate
        (C{proof}) let us relay it, and teach us the certificate that later
        copies name by fingerprint. A leave said this way could not be
        relayed with proof (a leaving seed's signed leave comes by gossip).
        """
        if member.state is not State.ALIVE:
            return
        life: Proof = ()
        if proof:
            fingerprint = self.notary.learn(proof[1])
            if fingerprint is not None:
                life = (proof[0], fingerprint)
        self._merge(MemberUpdate(member, life=life), "join")

    #: Each message type's handler, which takes a message of that type.
    _HANDLERS: ClassVar[dict[type, Callable[..., None]]] = {
        Heartbeat: _on_heartbeat,
        Gossip: _on_gossip,
        Watch: _on_watch,
        Unwatch: _on_unwatch,
        Join: _on_join,
        JoinAck: _on_join_ack,
        SyncDigest: _on_sync_digest,
        SyncRecords: _on_sync_records,
        CertsWant: _on_certs_want,
        Certs: _on_certs,
    }


def _proof_bound(records: list[MemberUpdate], more: bool) -> tuple[tuple[MemberUpdate, ...], bool]:
    """C{(records, more)} cut after the last signed record a list message may carry."""
    proven = 0
    for index, update in enumerate(records):
        if update.proof:
            proven += 1
            if proven > MAX_SYNC_PROOFS:
                return tuple(records[:index]), True
    return tuple(records), more


def _chunks(records: Iterable[MemberUpdate]) -> Iterator[tuple[MemberUpdate, ...]]:
    """C{records} in list messages: at most MAX_SYNC_RECORDS each, and MAX_SYNC_PROOFS signed."""
    chunk: list[MemberUpdate]
    chunk, proven = [], 0
    for update in records:
        if len(chunk) == MAX_SYNC_RECORDS or (update.proof and proven == MAX_SYNC_PROOFS):
            yield tuple(chunk)
            chunk, proven = [], 0
        chunk.append(update)
        proven += bool(update.proof)
    if chunk:
        yield tuple(chunk)


@lru_cache(maxsize=1 << 16)
def _plain_update(member: Member, life: Proof = ()) -> MemberUpdate:
    """C{MemberUpdate(member, life=life)}, made once per record (sync sends the same ones often)."""
    return MemberUpdate(member, life=life)


def _reason(member: Member, old: Member | None, update: MemberUpdate) -> str:
    state = member.state
    if old is not None and old.generation != member.generation and member.generation > old.generation:
        if state is State.ALIVE:
            return f"restarted (generation {member.generation})"
    if state is State.ALIVE:
        if old is None:
            return "joined"
        if old.state is State.SUSPECT:
            return f"refuted suspicion (incarnation {member.incarnation})"
        if old.state in (State.DEAD, State.LEFT):
            return f"back after being {old.state.value} (incarnation {member.incarnation})"
        return "alive"
    if state is State.LEFT:
        if update.reporters:
            return f"force-removed by operator on {update.reporters[0]}"
        return "left gracefully"
    if state is State.DEAD:
        if update.reporters:
            return f"reported unreachable by {', '.join(update.reporters)}"
        return "dead"
    return member.state.value  # (not state: narrowed to one member, mypy loses its value type)
