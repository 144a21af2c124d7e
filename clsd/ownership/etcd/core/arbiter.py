"""The etcd v3 lease arbiter: L{IArbiter} on etcd leases and a create-if-absent transaction.

Ownership of a resource (a cluster ID or an n-active slot) is the key
``prefix + resource``, created under an etcd lease by a transaction that
succeeds only if the key is absent.  The key's create revision is the
tenure's epoch: etcd's revision only grows, so a later tenure always has a
higher epoch than every earlier one.

Per resource this node wants, it keeps one etcd lease alive (grant, then
keepalives every TTL/3), so that when the holder's key disappears the
acquiring transaction is a single round trip.  A standby learns of the
deletion from a watch on the prefix and tries at once; a slow poll (about
once a lease) covers a broken watch.  A broken watch is resumed after the
last revision it delivered, so no DELETE or PUT is missed; a PUT of our key
on another lease while we hold it means we no longer hold it.

Safety, as with the built-in voters: etcd expires a lease no earlier than
TTL after the grant or keepalive that last reached it, and that is later
than when we *sent* it.  So the holder counts its lease as over at
``sent_at + TTL - drift_margin`` (L{LeaseTiming.holder_expiry}), reports
L{LeaseEnding} at ``stop_at`` when keepalives keep failing, and the lease
guard kills the service at that expiry even if this daemon is frozen.

Sans-IO: it returns L{EtcdCall}/L{EtcdWatch}/L{EtcdLog} actions and is fed
L{EtcdReply}/L{EtcdWatchMessage}/L{EtcdWatchClosed} through L{receive}.
Every bad answer (no answer, an HTTP error, malformed JSON, missing fields,
a lease etcd no longer knows) is counted, logged once per streak, and
treated as "not renewed" or "not acquired": never an exception.
"""

from __future__ import annotations

import collections
import random

import attrs
from zope.interface import implementer

from clsd.ownership.core.arbiter import IArbiter
from clsd.ownership.core.arbiter_events import (
    LeaseAcquired, LeaseEnding, LeaseLost, LeaseObserved, LeaseRenewed,
)
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.etcd.core import codec
from clsd.ownership.etcd.core.actions import (
    ETCD_INPUTS, EtcdCall, EtcdLog, EtcdReply, EtcdWatch, EtcdWatchClosed, EtcdWatchMessage,
)
from clsd.ownership.etcd.core.codec import JsonObject, Kv

#: Key prefix (under the configured one) of the records of who held a
#: resource last and whether it released it; resource names start with a
#: letter or digit, so they never collide with it.
LAST = "_last/"

#: What the arbiter returns: actions for its shell and events for the cluster manager.
Output = (EtcdCall | EtcdWatch | EtcdLog
          | LeaseAcquired | LeaseRenewed | LeaseEnding | LeaseLost | LeaseObserved)


def call_timeout(ttl: float) -> float:
    """How long one etcd call may take: a quarter lease, so that a hung call
    still leaves time for another keepalive before the holder must stop."""
    return ttl / 4


#: A reply the shell never delivers is given up this long after its own
#: timeout (the shell always answers; this only keeps the core live if not).
CALL_GRACE = 0.5


@attrs.define
class _Lease:
    id: int
    ttl: int
    sent_at: float  # when the latest grant/keepalive etcd answered with TTL > 0 was sent


@attrs.define
class _Held:
    epoch: int
    ending: bool = False


@attrs.define
class _Slot:
    resource: str
    wanted: bool = False
    lease: _Lease | None = None
    held: _Held | None = None
    keyed: bool = False               # our key was created under self.lease
    next_attempt: float | None = None  # when to try the acquire txn (or grant) again
    next_renew: float | None = None
    in_flight: set[str] = attrs.field(factory=set)  # kinds of calls in flight: grant txn keepalive
    observed: tuple[str | None, int] | None = None      # (holder, epoch) last seen
    last: tuple[int, JsonObject | None] = (0, None)            # the _last/ record as last read: (mod_revision, record)


@attrs.frozen
class _Pending:
    kind: str
    resource: str
    lease_id: int
    sent_at: float
    timeout: float


def _replaced(value: str, resource: str) -> tuple[str | None, bool]:
    """C{(node, released)} of the ``_last/`` record our own key says its create replaced."""
    previous = codec.read_value(value, f"holder of {resource}").get("previous")
    if previous is None:
        return None, False
    if not isinstance(previous, dict) or not isinstance(previous.get("node"), str):
        raise codec.EtcdAnswerError(
            f"holder of {resource}: 'previous' is not a _last record: {previous!r}")
    return previous["node"], previous.get("released") is True


@implementer(IArbiter)
class EtcdArbiter:
    """Leases on etcd keys, sans-IO; see the module docstring."""

    def __init__(self, node: str, generation: int, prefix: str, timing: LeaseTiming,
                 rng: random.Random) -> None:
        self.node = node
        self.generation = generation
        self.prefix = prefix
        self.timing = timing
        self.rng = rng
        self.ttl = max(1, round(timing.lease))
        self.counters: collections.Counter[str] = collections.Counter()
        self.last_success: float | None = None
        self._slots: dict[str, _Slot] = {}
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._watch_id: int | None = None
        self._watch_reopen: float | None = None
        #: The revision a reopened watch starts from (one past the last one it
        #: delivered), or None: from now.
        self._watch_from: int | None = None
        self._recheck: dict[str, float] = {}  # resource -> when to check our key again
        self._failing: set[tuple[str, str]] = set()  # (resource, kind) whose last call failed

    # -- helpers ------------------------------------------------------------------------

    def _timing(self, ttl: int) -> LeaseTiming:
        return LeaseTiming(lease=float(ttl), drift_margin=self.timing.drift_margin)

    def _key(self, resource: str) -> str:
        return self.prefix + resource

    def _last_key(self, resource: str) -> str:
        return self.prefix + LAST + resource

    def _slot(self, resource: str) -> _Slot:
        slot = self._slots.get(resource)
        if slot is None:
            slot = self._slots[resource] = _Slot(resource)
        return slot

    def _call(self, kind: str, resource: str, lease_id: int, path: str, body: JsonObject,
              now: float) -> EtcdCall:
        self._next_id += 1
        timeout = call_timeout(self.ttl)
        self._pending[self._next_id] = _Pending(kind, resource, lease_id, now, timeout)
        if kind in ("grant", "txn", "keepalive"):
            self._slots[resource].in_flight.add(kind)
        return EtcdCall(self._next_id, path, body, timeout)

    def _jitter(self, delay: float) -> float:
        return self.rng.uniform(0.75, 1.25) * delay

    def _expiry(self, lease: _Lease) -> float:
        return self._timing(lease.ttl).holder_expiry(lease.sent_at)

    def _stop_at(self, lease: _Lease) -> float:
        return self._timing(lease.ttl).stop_at(lease.sent_at)

    def _revoke(self, slot: _Slot, now: float) -> list[Output]:
        """Drop this slot's lease; revoking it at etcd also deletes a key a late txn made."""
        lease, slot.lease, slot.keyed = slot.lease, None, False
        slot.next_renew = None
        if lease is None:
            return []
        return [self._call("revoke", slot.resource, lease.id, codec.REVOKE,
                           codec.revoke_body(lease.id), now)]

    def _ensure_watch(self, now: float) -> list[Output]:
        if self._watch_id is not None:
            return []
        if self._watch_reopen is not None and now < self._watch_reopen:
            return []
        self._watch_reopen = None
        self._next_id += 1
        self._watch_id = self._next_id
        return [EtcdWatch(self._watch_id, codec.watch_body(self.prefix, self._watch_from),
                          call_timeout(self.ttl))]

    def _check_key(self, slot: _Slot, now: float) -> list[Output]:
        """Read our key: is it still on our lease?  (When the watch cannot replay.)"""
        assert slot.lease is not None
        return [self._call("check", slot.resource, slot.lease.id, codec.RANGE,
                           codec.range_body(self._key(slot.resource)), now)]

    # -- IArbiter commands ----------------------------------------------------------------

    def acquire(self, resource: str, now: float) -> list[Output]:
        slot = self._slot(resource)
        if not slot.wanted:
            slot.wanted = True
            if slot.held is None and slot.next_attempt is None:
                slot.next_attempt = now
        return self.tick(now)

    def hurry(self, resource: str, now: float) -> list[Output]:
        slot = self._slots.get(resource)
        if slot is not None and slot.wanted and slot.held is None:
            slot.next_attempt = now
        return self.tick(now)

    def abandon(self, resource: str, now: float) -> list[Output]:
        slot = self._slots.get(resource)
        if slot is None:
            return []
        slot.wanted = False
        slot.next_attempt = None
        if slot.held is None:
            return self._revoke(slot, now)
        return []

    def release(self, resource: str, now: float) -> list[Output]:
        slot = self._slots.get(resource)
        if slot is None:
            return []
        slot.wanted = False
        slot.next_attempt = None
        out: list[Output] = []
        if slot.lease is not None and slot.keyed:
            last = codec.last_value(self.node, self.generation, released=True)
            out.append(self._call(
                "release", resource, slot.lease.id, codec.TXN,
                codec.release_body(self._key(resource), self._last_key(resource), last,
                                   slot.lease.id), now))
        slot.held = None
        return out + self._revoke(slot, now)

    def holding(self, resource: str, now: float) -> tuple[int, float] | None:
        slot = self._slots.get(resource)
        if slot is None or slot.held is None or slot.held.ending:
            return None
        assert slot.lease is not None
        expiry = self._expiry(slot.lease)
        return (slot.held.epoch, expiry) if now < expiry else None

    def tenure(self, resource: str, now: float) -> tuple[int, float] | None:
        """(epoch, expiry) of the current tenure, also while it is ending."""
        slot = self._slots.get(resource)
        if slot is None or slot.held is None:
            return None
        assert slot.lease is not None
        expiry = self._expiry(slot.lease)
        return (slot.held.epoch, expiry) if now < expiry else None

    def accepts(self, message: object) -> bool:
        return isinstance(message, ETCD_INPUTS)

    # -- two-voter mode does not apply ------------------------------------------------------

    def silent_voters(self, resource: str, now: float, longer_than: float) -> tuple[str, ...]:
        """None: there are no voters to fence; etcd's own quorum decides."""
        return ()

    def assume_granted(self, resource: str, voter: str) -> None:
        """Never needed: fencing a peer cannot stand in for etcd's quorum."""

    def reachable(self, now: float) -> bool:
        """Whether etcd answered a call successfully within the last lease (for status)."""
        return self.last_success is not None and now - self.last_success < self.ttl

    # -- timers -----------------------------------------------------------------------------------

    def tick(self, now: float) -> list[Output]:
        out: list[Output] = []
        for call_id, pending in list(self._pending.items()):
            if now >= pending.sent_at + pending.timeout + CALL_GRACE:
                del self._pending[call_id]
                out += self._failed(pending, "no answer from the etcd client", now)
        if self._slots:
            out += self._ensure_watch(now)
        for resource, due in list(self._recheck.items()):
            if now >= due:
                del self._recheck[resource]
                slot = self._slots.get(resource)
                if slot is not None and slot.held is not None and slot.lease is not None:
                    out += self._check_key(slot, now)
        for slot in list(self._slots.values()):
            out += self._tick_slot(slot, now)
        return out

    def _tick_slot(self, slot: _Slot, now: float) -> list[Output]:
        out: list[Output] = []
        held, lease = slot.held, slot.lease
        if held is not None:
            assert lease is not None
            if not held.ending and now >= self._stop_at(lease):
                held.ending = True
                out.append(LeaseEnding(slot.resource, held.epoch, self._expiry(lease)))
            if now >= self._expiry(lease):
                # Over by our own clock: forget it, but do not revoke: etcd must
                # keep the key until its own, later, expiry (the margin's cushion).
                slot.held, slot.lease, slot.keyed, slot.next_renew = None, None, False, None
                out.append(LeaseLost(slot.resource, held.epoch))
                if slot.wanted:
                    slot.next_attempt = now
        elif lease is not None and now >= self._stop_at(lease):
            out += self._revoke(slot, now)  # too old to start a tenure with
        held, lease = slot.held, slot.lease
        if (lease is not None and (held is None or not held.ending)
                and "keepalive" not in slot.in_flight
                and slot.next_renew is not None and now >= slot.next_renew):
            out.append(self._call("keepalive", slot.resource, lease.id, codec.KEEPALIVE,
                                  codec.keepalive_body(lease.id), now))
        if (slot.wanted and held is None and slot.next_attempt is not None
                and now >= slot.next_attempt
                and not slot.in_flight & {"grant", "txn"}):
            if lease is None:
                out.append(self._call("grant", slot.resource, 0, codec.GRANT,
                                      codec.grant_body(self.ttl), now))
            else:
                key, last_key = self._key(slot.resource), self._last_key(slot.resource)
                last_mod, last = slot.last
                out.append(self._call(
                    "txn", slot.resource, lease.id, codec.TXN,
                    codec.acquire_body(key, last_key,
                                       codec.holder_value(self.node, self.generation, last),
                                       codec.last_value(self.node, self.generation, False),
                                       lease.id, last_mod), now))
        return out

    def next_wakeup(self) -> float | None:
        times = [p.sent_at + p.timeout + CALL_GRACE for p in self._pending.values()]
        times += list(self._recheck.values())
        if self._slots and self._watch_id is None and self._watch_reopen is not None:
            times.append(self._watch_reopen)
        for slot in self._slots.values():
            held, lease = slot.held, slot.lease
            if lease is not None:
                if held is not None:
                    if not held.ending:
                        times.append(self._stop_at(lease))
                    times.append(self._expiry(lease))
                else:
                    times.append(self._stop_at(lease))
                if ((held is None or not held.ending) and slot.next_renew is not None
                        and "keepalive" not in slot.in_flight):
                    times.append(slot.next_renew)
            if (slot.wanted and held is None and slot.next_attempt is not None
                    and not slot.in_flight & {"grant", "txn"}):
                times.append(slot.next_attempt)
        return min(times) if times else None

    # -- inputs ----------------------------------------------------------------------------------

    def receive(self, sender: str, message: object, now: float) -> list[Output]:
        if isinstance(message, EtcdReply):
            pending = self._pending.pop(message.id, None)
            if pending is None:
                self.counters["late_replies"] += 1
                return self.tick(now)
            return self._on_reply(pending, message, now) + self.tick(now)
        if isinstance(message, EtcdWatchMessage):
            return self._on_watch_message(message, now) + self.tick(now)
        if isinstance(message, EtcdWatchClosed):
            if message.id == self._watch_id:
                self._watch_id = None
                self._watch_reopen = now + self._jitter(self.timing.acquire_retry)
                self.counters["watch_closed"] += 1
                out: list[Output] = [
                    EtcdLog("watch", f"etcd watch on {self.prefix} closed: {message.reason}")]
                return out + self.tick(now)
            return []
        return []

    def _on_reply(self, pending: _Pending, reply: EtcdReply, now: float) -> list[Output]:
        slot = self._slots.get(pending.resource)
        if slot is not None:
            slot.in_flight.discard(pending.kind)
        try:
            if reply.status is None:
                self.counters["unreachable"] += 1
                raise codec.EtcdAnswerError(f"no answer: {reply.error}")
            if reply.status != 200:
                self.counters["http_errors"] += 1
                text = None
                try:
                    text = codec.error_text(codec.parse_json(reply.body, "error"))
                except codec.EtcdAnswerError:
                    pass
                text = text or reply.body[:200].decode("utf-8", "replace").strip()
                raise codec.EtcdAnswerError(f"HTTP {reply.status}: {text}")
            data = codec.parse_json(reply.body, pending.kind)
            if codec.error_text(data) is not None:
                raise codec.EtcdAnswerError(codec.error_text(data))
            out: list[Output] = getattr(self, "_on_" + pending.kind)(slot, pending, data, now)
        except codec.EtcdAnswerError as e:
            if reply.status == 200:
                self.counters["bad_answers"] += 1
            return self._failed(pending, str(e), now)
        self.last_success = now
        if (pending.resource, pending.kind) in self._failing:
            self._failing.discard((pending.resource, pending.kind))
            out = [EtcdLog(pending.resource, f"etcd {pending.kind} works again")] + out
        return out

    def _failed(self, pending: _Pending, reason: str, now: float) -> list[Output]:
        """A call that did not do its job: log (once per streak) and retry as its kind needs."""
        self.counters[f"{pending.kind}_failures"] += 1
        out: list[Output] = []
        if (pending.resource, pending.kind) not in self._failing:
            self._failing.add((pending.resource, pending.kind))
            out.append(EtcdLog(pending.resource, f"etcd {pending.kind} failed: {reason}"))
        slot = self._slots.get(pending.resource)
        if slot is None:
            return out
        slot.in_flight.discard(pending.kind)
        gone = "lease not found" in reason
        if pending.kind == "keepalive":
            if slot.lease is not None and slot.lease.id == pending.lease_id:
                slot.next_renew = now + self._timing(slot.lease.ttl).renew_retry
        elif pending.kind == "check":
            self._recheck[pending.resource] = now + self.timing.renew_retry
        elif pending.kind in ("grant", "txn"):
            if gone and slot.lease is not None and slot.lease.id == pending.lease_id:
                slot.lease, slot.keyed, slot.next_renew = None, False, None
            if slot.wanted and slot.held is None:
                slot.next_attempt = now + self._jitter(self.timing.acquire_retry)
        return out

    # -- answers, by kind -------------------------------------------------------------------------

    def _on_grant(self, slot: _Slot | None, pending: _Pending, data: JsonObject,
                  now: float) -> list[Output]:
        lease_id, ttl = codec.read_grant(data)
        if slot is None or not slot.wanted or slot.held is not None or slot.lease is not None:
            # Nobody wants it any more (or we have one already): give it back.
            return [self._call("revoke", pending.resource, lease_id, codec.REVOKE,
                               codec.revoke_body(lease_id), now)]
        slot.lease = _Lease(lease_id, ttl, pending.sent_at)
        slot.keyed = False
        slot.next_renew = pending.sent_at + self._timing(ttl).renew_after
        if now >= self._stop_at(slot.lease):
            return self._revoke(slot, now)  # granted too late to be of use (we were frozen)
        slot.next_attempt = now
        return []

    def _on_keepalive(self, slot: _Slot | None, pending: _Pending, data: JsonObject,
                      now: float) -> list[Output]:
        lease = slot.lease if slot is not None else None
        if lease is None or lease.id != pending.lease_id:
            return []  # a lease we gave up meanwhile
        assert slot is not None
        ttl = codec.read_keepalive(data, lease.id)
        if ttl <= 0:
            self.counters["lease_not_found"] += 1
            return [EtcdLog(slot.resource, f"etcd lease {lease.id:x} is gone (keepalive TTL "
                                           f"{ttl})")] + self._lease_gone(slot, now)
        if pending.sent_at > lease.sent_at:
            lease.sent_at, lease.ttl = pending.sent_at, ttl
        slot.next_renew = lease.sent_at + self._timing(lease.ttl).renew_after
        held = slot.held
        if held is not None and not held.ending:
            return [LeaseRenewed(slot.resource, held.epoch, self._expiry(lease),
                                 round_trip=now - pending.sent_at)]
        return []

    def _lease_gone(self, slot: _Slot, now: float) -> list[Output]:
        """etcd no longer has our lease: any key on it is gone, another node may hold it now."""
        held = slot.held
        slot.lease, slot.keyed, slot.held, slot.next_renew = None, False, None, None
        out: list[Output] = []
        if held is not None:
            if not held.ending:
                out.append(LeaseEnding(slot.resource, held.epoch, now))
            out.append(LeaseLost(slot.resource, held.epoch))
        if slot.wanted:
            slot.next_attempt = now
        return out

    def _on_txn(self, slot: _Slot | None, pending: _Pending, data: JsonObject,
                now: float) -> list[Output]:
        outcome = codec.read_acquire(data)
        lease = slot.lease if slot is not None else None
        if slot is None or lease is None or lease.id != pending.lease_id or slot.held is not None:
            return []  # the lease was given up meanwhile (revoking it removed any key)
        if outcome[0] == "created":
            _, epoch, last = outcome
            previous = last["node"] if last is not None else None
            released = bool(last.get("released")) if last is not None else False
            return self._take(slot, epoch, previous, released, now)
        _, kv, last_kv = outcome
        slot.last = (0, None) if last_kv is None else (
            last_kv["mod_revision"],
            codec.read_value(last_kv["value"], f"_last record of {slot.resource}"))
        if kv is None:
            # The key is free, but the _last/ record changed since we read it:
            # try again at once with the record just read.
            slot.next_attempt = now
            return []
        if kv["lease"] == lease.id:
            # Created by an earlier attempt of ours whose answer was lost: our
            # key's value holds the _last/ record that create replaced.
            previous, released = _replaced(kv["value"], slot.resource)
            return self._take(slot, kv["create_revision"], previous, released, now)
        holder = codec.read_value(kv["value"], f"holder of {slot.resource}")["node"]
        slot.next_attempt = now + self._jitter(self.timing.lease)
        observed = (holder, kv["create_revision"])
        if observed == slot.observed:
            return []
        slot.observed = observed
        return [LeaseObserved(slot.resource, holder, kv["create_revision"], float(lease.ttl))]

    def _take(self, slot: _Slot, epoch: int, previous: str | None, released: bool,
              now: float) -> list[Output]:
        lease = slot.lease
        assert lease is not None
        slot.keyed = True
        if now >= self._stop_at(lease):
            # Created, but too late to run anything in it: give it back and retry.
            slot.next_attempt = now
            return self.release(slot.resource, now) + self._rewant(slot, now)
        slot.held = _Held(epoch)
        slot.next_attempt = None
        slot.observed = (self.node, epoch)
        return [LeaseAcquired(slot.resource, epoch, self._expiry(lease), previous, released)]

    def _rewant(self, slot: _Slot, now: float) -> list[Output]:
        slot.wanted = True
        slot.next_attempt = now
        return []

    def _on_check(self, slot: _Slot | None, pending: _Pending, data: JsonObject,
                  now: float) -> list[Output]:
        kv = codec.read_range(data)
        if (slot is None or slot.held is None or slot.lease is None
                or slot.lease.id != pending.lease_id):
            return []
        if kv is None:
            self.counters["key_lost"] += 1
            return [EtcdLog(slot.resource, "our etcd key is gone")] + self._lease_gone(slot, now)
        if kv["lease"] != slot.lease.id:
            return self._key_taken(slot, kv, now)
        return []

    def _on_revoke(self, slot: _Slot | None, pending: _Pending, data: JsonObject,
                   now: float) -> list[Output]:
        return []

    def _on_release(self, slot: _Slot | None, pending: _Pending, data: JsonObject,
                    now: float) -> list[Output]:
        return []

    # -- the watch ------------------------------------------------------------------------------

    def _on_watch_message(self, message: EtcdWatchMessage, now: float) -> list[Output]:
        slot: _Slot | None
        if message.id != self._watch_id:
            return []
        try:
            kind, events, revision = codec.read_watch_message(
                codec.parse_json(message.body, "watch"))
        except codec.EtcdAnswerError as e:
            self.counters["bad_answers"] += 1
            return [EtcdLog("watch", f"bad etcd watch message: {e}")]
        if kind == "compacted":
            # What happened since we last saw the stream cannot be replayed:
            # watch from now, try what we want, and check the keys we hold.
            self.counters["watch_compacted"] += 1
            self._watch_id, self._watch_reopen, self._watch_from = None, now, None
            out: list[Output] = [EtcdLog("watch", f"etcd compacted the revisions the watch was to resume "
                                    f"from (up to {revision}); checking held keys")]
            for slot in self._slots.values():
                if slot.held is not None and slot.lease is not None:
                    out += self._check_key(slot, now)
                elif slot.wanted:
                    slot.next_attempt = now
            return out
        if kind == "canceled":
            self._watch_id = None
            self._watch_reopen = now
            return [EtcdLog("watch", "etcd cancelled the watch; reopening")]
        if kind == "created":
            if self._watch_from is None and revision is not None:
                self._watch_from = revision + 1  # it reports what follows this revision
            # Events may have been missed while no watch was open: try now.
            for slot in self._slots.values():
                if slot.wanted and slot.held is None:
                    slot.next_attempt = now
            return []
        out = []
        for event, kv, prev in events:
            if kv["mod_revision"]:
                self._watch_from = max(self._watch_from or 0, kv["mod_revision"] + 1)
            resource = kv["key"][len(self.prefix):]
            if not kv["key"].startswith(self.prefix) or resource.startswith(LAST):
                continue
            slot = self._slots.get(resource)
            if slot is None:
                continue
            if event == "DELETE":
                out += self._on_deleted(slot, kv, prev, now)
            elif kv["lease"] != (slot.lease.id if slot.lease else None):
                held = slot.held
                if held is not None and (kv["mod_revision"] or held.epoch + 1) > held.epoch:
                    out += self._key_taken(slot, kv, now)  # whatever its value says
                    continue
                try:
                    holder = codec.read_value(kv["value"], f"holder of {resource}")["node"]
                except codec.EtcdAnswerError as e:
                    self.counters["bad_answers"] += 1
                    out.append(EtcdLog(resource, str(e)))
                    continue
                slot.observed = (holder, kv["create_revision"])
                out.append(LeaseObserved(resource, holder, kv["create_revision"],
                                         float(self.ttl)))
        return out

    def _key_taken(self, slot: _Slot, kv: Kv, now: float) -> list[Output]:
        """Our key, while we hold it, is on another lease: whoever has that lease holds it."""
        self.counters["key_taken"] += 1
        out: list[Output] = [EtcdLog(slot.resource, f"our etcd key was put on another lease "
                                      f"({kv['lease']:x}) while we held it; stopping")]
        held = slot.held
        out += self._revoke(slot, now)  # our lease carries no key of ours any more
        slot.held = held
        return out + self._lease_gone(slot, now)

    def _on_deleted(self, slot: _Slot, kv: Kv, prev: Kv | None, now: float) -> list[Output]:
        held = slot.held
        if held is not None and (prev["create_revision"] == held.epoch if prev is not None
                                 else (kv["mod_revision"] or held.epoch + 1) > held.epoch):
            # Our own key vanished while we hold it (deleted by hand, or our
            # lease revoked elsewhere): another node may take it now, so stop now.
            self.counters["key_lost"] += 1
            return [EtcdLog(slot.resource, "our etcd key was deleted while we held it")] + \
                self._lease_gone(slot, now)
        slot.observed = None
        if slot.wanted and slot.held is None:
            slot.next_attempt = now
            return [LeaseObserved(slot.resource, None, 0, 0.0)]
        return []
