"""The etcd arbiter core, fed fake gateway answers: acquire, renew, expiry math, every bad answer."""

import json
import random

from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.ownership.core.arbiter import IArbiter
from clsd.ownership.core.arbiter_events import (
    LeaseAcquired, LeaseEnding, LeaseLost, LeaseObserved, LeaseRenewed,
)
from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.etcd.core import codec
from clsd.ownership.etcd.core.actions import (
    ETCD_SENDER, EtcdCall, EtcdLog, EtcdReply, EtcdWatch, EtcdWatchClosed, EtcdWatchMessage,
)
from clsd.ownership.etcd.core.arbiter import CALL_GRACE, EtcdArbiter, call_timeout

PREFIX = "/clsd/site/"
LEASE_ID = 0x1234
TTL = 2
MARGIN = 0.1


def header(revision=5):
    return {"cluster_id": "1", "member_id": "2", "revision": str(revision), "raft_term": "2"}


def kv(key, value, create_revision, lease=0):
    out = {"key": codec.b64(key), "value": codec.b64(value),
           "create_revision": str(create_revision), "mod_revision": str(create_revision),
           "version": "1"}
    if lease:
        out["lease"] = str(lease)
    return out


def raw(data):
    return json.dumps(data).encode()


def grant_answer(lease_id=LEASE_ID, ttl=TTL):
    return raw({"header": header(), "ID": str(lease_id), "TTL": str(ttl)})


def keepalive_answer(lease_id=LEASE_ID, ttl=TTL):
    result = {"header": header(), "ID": str(lease_id)}
    if ttl:
        result["TTL"] = str(ttl)
    return raw({"result": result}) + b"\n"


def created_answer(revision, last=None):
    ranged = {"header": header(revision - 1)}
    if last is not None:
        ranged["kvs"] = [kv(PREFIX + "_last/A", json.dumps(last), 3)]
    return raw({"header": header(revision), "succeeded": True, "responses": [
        {"response_range": ranged}, {"response_put": {"header": header(revision)}},
        {"response_put": {"header": header(revision)}}]})


def exists_answer(holder, revision, lease=999, value=None, last=None, last_mod=None):
    """The acquire txn failed: the key (None: absent) and the _last/ record as etcd has them."""
    ranged = {"header": header(revision + 3)}
    if holder is not None:
        value = value or json.dumps({"node": holder, "generation": 7})
        ranged.update(kvs=[kv(PREFIX + "A", value, revision, lease)], count="1")
    last_ranged = {"header": header(revision + 3)}
    if last is not None:
        last_ranged.update(kvs=[kv(PREFIX + "_last/A", json.dumps(last), last_mod or revision)],
                           count="1")
    return raw({"header": header(revision + 3), "responses": [
        {"response_range": ranged}, {"response_range": last_ranged}]})


def watch_line(events=None, created=False):
    result = {"header": header()}
    if created:
        result["created"] = True
    if events:
        result["events"] = events
    return raw({"result": result})


def calls(actions, path=None):
    return [a for a in actions if isinstance(a, EtcdCall) and (path is None or a.path == path)]


def events(actions, kind):
    return [a for a in actions if isinstance(a, kind)]


class Harness:
    def __init__(self, lease=2.0):
        self.timing = LeaseTiming(lease=lease, drift_margin=MARGIN)
        self.arbiter = EtcdArbiter("alpha", 42, PREFIX, self.timing, random.Random(1))

    def reply(self, call, now, body=b"", status=200, error=None):
        return self.arbiter.receive(ETCD_SENDER, EtcdReply(call.id, status, body, error), now)

    def acquire(self, now=0.0, grant_at=0.01, txn_at=0.02, revision=10, last=None):
        """Acquire A; returns (acquired event, grant call, all actions)."""
        out = self.arbiter.acquire("A", now)
        [grant] = calls(out, codec.GRANT)
        out = self.reply(grant, grant_at, grant_answer())
        [txn] = calls(out, codec.TXN)
        out = self.reply(txn, txn_at, created_answer(revision, last))
        [acquired] = events(out, LeaseAcquired)
        return acquired, grant, out


def tick_until(h, wanted, limit=20):
    """Tick through wakeups (keepalives answered fine) until an action of type/path C{wanted}."""
    for _ in range(limit):
        now = h.arbiter.next_wakeup()
        out = h.arbiter.tick(now)
        for call in calls(out, codec.KEEPALIVE):
            out += h.reply(call, now, keepalive_answer())
        found = [a for a in out if a.__class__ is wanted or getattr(a, "path", None) == wanted]
        if found:
            return now, found
    raise AssertionError(f"no {wanted} within {limit} wakeups")


class InterfaceTests(unittest.TestCase):
    def test_provides_iarbiter(self):
        self.assertTrue(verifyObject(IArbiter, Harness().arbiter))

    def test_accepts_only_etcd_inputs(self):
        arbiter = Harness().arbiter
        self.assertTrue(arbiter.accepts(EtcdReply(1, 200)))
        self.assertTrue(arbiter.accepts(EtcdWatchClosed(1, "x")))
        self.assertFalse(arbiter.accepts(object()))

    def test_no_silent_voters(self):
        """Fencing a silent peer voter (two-voter mode) never applies to etcd."""
        h = Harness()
        h.arbiter.acquire("A", 0.0)
        self.assertEqual(h.arbiter.silent_voters("A", 100.0, 1.0), ())
        h.arbiter.assume_granted("A", "beta")  # a no-op, never an error


class AcquireTests(unittest.TestCase):
    def test_grant_then_create_if_absent_txn(self):
        h = Harness()
        out = h.arbiter.acquire("A", 0.0)
        [watch] = events(out, EtcdWatch)
        self.assertEqual(watch.body["create_request"]["key"], codec.b64(PREFIX))
        [grant] = calls(out, codec.GRANT)
        self.assertEqual(grant.body, {"TTL": "2", "ID": "0"})
        self.assertEqual(grant.timeout, call_timeout(TTL))
        out = h.reply(grant, 0.01, grant_answer())
        [txn] = calls(out, codec.TXN)
        compare = txn.body["compare"][0]
        self.assertEqual((compare["target"], compare["create_revision"], compare["key"]),
                         ("CREATE", "0", codec.b64(PREFIX + "A")))
        put = txn.body["success"][1]["request_put"]
        self.assertEqual(put["lease"], str(LEASE_ID))
        self.assertEqual(json.loads(codec.unb64(put["value"], "v"))["node"], "alpha")

    def test_epoch_is_the_create_revision_and_expiry_counts_from_the_grant_send(self):
        h = Harness()
        acquired, _, _ = h.acquire(now=0.0, grant_at=0.3, txn_at=0.4, revision=12345678901)
        self.assertEqual(acquired.epoch, 12345678901)
        # Sent at 0.0: expiry = 0.0 + TTL - margin, wherever the answers arrived.
        self.assertAlmostEqual(acquired.expiry, TTL - MARGIN)
        self.assertEqual(h.arbiter.holding("A", 0.5), (12345678901, TTL - MARGIN))
        self.assertIsNone(h.arbiter.holding("A", TTL - MARGIN))

    def test_previous_holder_from_the_last_record(self):
        h = Harness()
        acquired, _, _ = h.acquire(last={"node": "beta", "generation": 3, "released": True})
        self.assertEqual((acquired.previous, acquired.previous_released), ("beta", True))
        h = Harness()
        acquired, _, _ = h.acquire(last={"node": "beta", "generation": 3, "released": False})
        self.assertEqual((acquired.previous, acquired.previous_released), ("beta", False))

    def test_held_elsewhere_is_observed_and_polled_slowly(self):
        h = Harness()
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        out = h.reply(txn, 0.02, exists_answer("beta", 7))
        [observed] = events(out, LeaseObserved)
        self.assertEqual((observed.holder, observed.epoch), ("beta", 7))
        self.assertIsNone(h.arbiter.holding("A", 0.03))
        wake = h.arbiter.next_wakeup()
        # The slow poll (about a lease, jittered), not a busy loop.
        self.assertEqual(calls(h.arbiter.tick(0.5), codec.TXN), [])
        self.assertGreater(wake, 0.02)

    def test_watch_delete_triggers_an_immediate_retry(self):
        h = Harness()
        out = h.arbiter.acquire("A", 0.0)
        [watch] = events(out, EtcdWatch)
        [grant] = calls(out, codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        h.reply(txn, 0.02, exists_answer("beta", 7))
        deleted = {"type": "DELETE", "kv": {"key": codec.b64(PREFIX + "A"), "mod_revision": "9"},
                   "prev_kv": kv(PREFIX + "A", '{"node": "beta"}', 7, 999)}
        out = h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch.id, watch_line([deleted])),
                                0.3)
        [txn] = calls(out, codec.TXN)
        self.assertEqual(events(out, LeaseObserved), [LeaseObserved("A", None, 0, 0.0)])
        [acquired] = events(h.reply(txn, 0.31, created_answer(20)), LeaseAcquired)
        self.assertEqual(acquired.epoch, 20)
        self.assertGreater(acquired.epoch, 7)

    def test_a_lost_txn_answer_is_recognised_by_our_lease(self):
        """The txn created the key but its answer was lost: the next attempt finds it ours."""
        h = Harness()
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        out = h.reply(txn, 0.5, status=None, error="timed out")
        self.assertTrue(events(out, EtcdLog))
        retry_at, [txn] = tick_until(h, codec.TXN)
        [acquired] = events(h.reply(txn, retry_at, exists_answer("alpha", 11, lease=LEASE_ID)),
                            LeaseAcquired)
        self.assertEqual(acquired.epoch, 11)

    def test_a_lost_txn_answer_keeps_the_previous_holder(self):
        """The retry finds our key: it still knows whom that create replaced (fence it)."""
        h = Harness()
        beta = {"node": "beta", "generation": 3, "released": False}
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        # The first attempt did not know the _last/ record: etcd refuses and shows it.
        [txn] = calls(h.reply(txn, 0.02, exists_answer(None, 8, last=beta, last_mod=6)),
                      codec.TXN)
        self.assertEqual(txn.body["compare"][1]["mod_revision"], "6")
        # That create succeeded at etcd, but its answer was lost.
        created_value = codec.unb64(txn.body["success"][1]["request_put"]["value"], "value")
        h.reply(txn, 0.5, status=None, error="timed out")
        retry_at, [txn] = tick_until(h, codec.TXN)
        ours = {"node": "alpha", "generation": 42, "released": False}
        out = h.reply(txn, retry_at, exists_answer("alpha", 11, lease=LEASE_ID,
                                                  value=created_value, last=ours))
        [acquired] = events(out, LeaseAcquired)
        self.assertEqual((acquired.epoch, acquired.previous, acquired.previous_released),
                         (11, "beta", False))

    def test_a_changed_last_record_is_retried_at_once(self):
        h = Harness()
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        self.assertEqual(txn.body["compare"][1],
                         {"target": "MOD", "key": codec.b64(PREFIX + "_last/A"),
                          "mod_revision": "0", "result": "EQUAL"})
        released = {"node": "beta", "generation": 3, "released": True}
        [txn] = calls(h.reply(txn, 0.02, exists_answer(None, 9, last=released, last_mod=9)),
                      codec.TXN)
        value = json.loads(codec.unb64(txn.body["success"][1]["request_put"]["value"], "v"))
        self.assertEqual(value["previous"], released)
        [acquired] = events(h.reply(txn, 0.03, created_answer(12, released)), LeaseAcquired)
        self.assertEqual((acquired.previous, acquired.previous_released), ("beta", True))

    def test_abandon_revokes_the_lease_so_a_late_txn_leaves_nothing(self):
        h = Harness()
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        [revoke] = calls(h.arbiter.abandon("A", 0.02), codec.REVOKE)
        self.assertEqual(revoke.body, {"ID": str(LEASE_ID)})
        # The txn's success arrives afterwards: ignored (the revoke removes its key).
        self.assertEqual(events(h.reply(txn, 0.03, created_answer(9)), LeaseAcquired), [])


class RenewalTests(unittest.TestCase):
    def test_keepalive_at_a_third_extends_from_its_send_time(self):
        h = Harness()
        acquired, _, _ = h.acquire()
        renew_at = h.arbiter.next_wakeup()
        self.assertAlmostEqual(renew_at, TTL / 3)
        [keepalive] = calls(h.arbiter.tick(renew_at), codec.KEEPALIVE)
        self.assertEqual(keepalive.body, {"ID": str(LEASE_ID)})
        [renewed] = events(h.reply(keepalive, renew_at + 0.4, keepalive_answer()), LeaseRenewed)
        self.assertEqual(renewed.epoch, acquired.epoch)
        self.assertAlmostEqual(renewed.expiry, renew_at + TTL - MARGIN)
        self.assertAlmostEqual(renewed.round_trip, 0.4)

    def test_drift_margin_is_applied(self):
        arbiter = EtcdArbiter("alpha", 1, PREFIX, LeaseTiming(lease=2.0, drift_margin=0.3),
                              random.Random(1))
        [grant] = calls(arbiter.acquire("A", 1.0), codec.GRANT)
        out = arbiter.receive(ETCD_SENDER, EtcdReply(grant.id, 200, grant_answer()), 1.1)
        [txn] = calls(out, codec.TXN)
        out = arbiter.receive(ETCD_SENDER, EtcdReply(txn.id, 200, created_answer(5)), 1.2)
        [acquired] = events(out, LeaseAcquired)
        self.assertAlmostEqual(acquired.expiry, 1.0 + 2 - 0.3)

    def test_etcd_raising_the_ttl_is_used(self):
        """etcd grants at least its minimum TTL; the answer's TTL is the one that counts."""
        h = Harness(lease=1.0)
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        self.assertEqual(grant.body["TTL"], "1")
        [txn] = calls(h.reply(grant, 0.01, grant_answer(ttl=3)), codec.TXN)
        [acquired] = events(h.reply(txn, 0.02, created_answer(5)), LeaseAcquired)
        self.assertAlmostEqual(acquired.expiry, 3 - MARGIN)

    def test_failing_keepalives_end_the_tenure_before_etcd_could(self):
        h = Harness()
        acquired, _, _ = h.acquire()
        now, ending, lost = TTL / 3, None, None
        logs = []
        while now < 3 * TTL and lost is None:
            out = h.arbiter.tick(now)
            for call in calls(out, codec.KEEPALIVE):
                out += h.reply(call, now + 0.05, status=None, error="connection refused")
            logs += events(out, EtcdLog)
            ending = ending or (events(out, LeaseEnding) or [None])[0]
            lost = (events(out, LeaseLost) or [None])[0]
            now = h.arbiter.next_wakeup()
        self.assertIsNotNone(ending)
        timing = LeaseTiming(lease=TTL, drift_margin=MARGIN)
        self.assertAlmostEqual(ending.deadline, timing.holder_expiry(0.0))
        self.assertIsNotNone(lost)
        # The holder's end is strictly before etcd's earliest expiry (grant sent at 0 + TTL).
        self.assertLess(ending.deadline, TTL)
        self.assertEqual(len(logs), 1, "one log line per streak of failures, not per retry")
        self.assertGreaterEqual(h.arbiter.counters["keepalive_failures"], 2)

    def test_lease_not_found_on_keepalive_stops_at_once(self):
        h = Harness()
        h.acquire()
        [keepalive] = calls(h.arbiter.tick(TTL / 3), codec.KEEPALIVE)
        out = h.reply(keepalive, TTL / 3 + 0.01, keepalive_answer(ttl=0))
        [ending] = events(out, LeaseEnding)
        self.assertEqual(ending.deadline, TTL / 3 + 0.01)
        self.assertTrue(events(out, LeaseLost))
        self.assertIsNone(h.arbiter.holding("A", TTL / 3 + 0.02))
        self.assertEqual(h.arbiter.counters["lease_not_found"], 1)

    def test_release_deletes_our_key_and_revokes(self):
        h = Harness()
        h.acquire()
        out = h.arbiter.release("A", 0.5)
        [txn] = calls(out, codec.TXN)
        self.assertEqual(txn.body["compare"][0]["lease"], str(LEASE_ID))
        self.assertIn("request_delete_range", txn.body["success"][0])
        last = json.loads(codec.unb64(txn.body["success"][1]["request_put"]["value"], "v"))
        self.assertEqual(last, {"node": "alpha", "generation": 42, "released": True})
        self.assertEqual(len(calls(out, codec.REVOKE)), 1)
        self.assertIsNone(h.arbiter.holding("A", 0.6))

    def test_our_key_deleted_by_someone_else_stops_at_once(self):
        h = Harness()
        out = h.arbiter.acquire("A", 0.0)
        [watch] = events(out, EtcdWatch)
        [grant] = calls(out, codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        h.reply(txn, 0.02, created_answer(10))
        deleted = {"type": "DELETE", "kv": {"key": codec.b64(PREFIX + "A")},
                   "prev_kv": kv(PREFIX + "A", '{"node": "alpha"}', 10, LEASE_ID)}
        out = h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch.id, watch_line([deleted])),
                                0.5)
        self.assertTrue(events(out, LeaseEnding))
        self.assertIsNone(h.arbiter.holding("A", 0.5))


class BadAnswerTests(unittest.TestCase):
    """Every kind of bad answer: counted, logged, treated as not granted/renewed; no exception."""

    BAD = [
        (None, b"", "timed out"),
        (503, b'{"error": "etcdserver: leader changed", "code": 14}', None),
        (500, b"<html>proxy error</html>", None),
        (200, b"{not json", None),
        (200, b"[1, 2]", None),
        (200, b'{"header": {"revision": "5"}}', None),           # fields missing
        (200, b'{"ID": "abc", "TTL": "2"}', None),               # not an integer
        (200, b'{"result": {"ID": "99", "TTL": "2"}}', None),    # someone else's lease
        (200, b'{"error": "etcdserver: requested lease not found", "code": 5}', None),
    ]

    def test_bad_grant_answers(self):
        for status, body, error in self.BAD:
            h = Harness()
            [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
            out = h.reply(grant, 0.05, body, status=status, error=error)
            self.assertTrue(events(out, EtcdLog), (status, body))
            self.assertEqual(events(out, LeaseAcquired), [])
            self.assertEqual(h.arbiter.counters["grant_failures"], 1)
            # It tries again later.
            [again] = calls(h.arbiter.tick(h.arbiter.next_wakeup()), codec.GRANT)
            self.assertNotEqual(again.id, grant.id)

    def test_bad_txn_answers(self):
        for status, body, error in self.BAD + [
                (200, raw({"header": header(), "succeeded": True, "responses": []}), None),
                (200, raw({"header": header(), "responses": [{"response_range": {
                    "kvs": [{"key": "%%%", "value": "x"}]}}]}), None)]:
            h = Harness()
            [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
            [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
            out = h.reply(txn, 0.05, body, status=status, error=error)
            self.assertTrue(events(out, EtcdLog), (status, body))
            self.assertEqual(events(out, LeaseAcquired), [])
            self.assertIsNone(h.arbiter.holding("A", 0.06))

    def test_bad_keepalive_answers_are_not_renewals(self):
        for status, body, error in self.BAD:
            h = Harness()
            h.acquire()
            [keepalive] = calls(h.arbiter.tick(TTL / 3), codec.KEEPALIVE)
            out = h.reply(keepalive, TTL / 3 + 0.05, body, status=status, error=error)
            self.assertEqual(events(out, LeaseRenewed), [], (status, body))
            self.assertTrue(events(out, EtcdLog))
            # Still held on the old expiry (not extended), until it ends.
            holding = h.arbiter.holding("A", TTL / 3 + 0.06)
            if holding is not None:
                self.assertAlmostEqual(holding[1], TTL - MARGIN)

    def test_bad_watch_messages_are_logged(self):
        h = Harness()
        [watch] = events(h.arbiter.acquire("A", 0.0), EtcdWatch)
        for line in (b"{x", b'{"result": {"events": "no"}}', b'{"error": "boom", "code": 2}',
                     watch_line([{"type": "BOGUS", "kv": kv("k", "v", 1)}])):
            out = h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch.id, line), 0.1)
            self.assertTrue(events(out, EtcdLog), line)
        self.assertEqual(h.arbiter.counters["bad_answers"], 4)

    def test_a_reply_that_never_comes_is_given_up(self):
        h = Harness()
        [grant] = calls(h.arbiter.acquire("A", 0.0), codec.GRANT)
        wake = h.arbiter.next_wakeup()
        self.assertAlmostEqual(wake, call_timeout(TTL) + CALL_GRACE)
        out = h.arbiter.tick(wake)
        self.assertTrue(events(out, EtcdLog))
        # Late answer: counted, ignored.
        h.reply(grant, wake + 1, grant_answer())
        self.assertEqual(h.arbiter.counters["late_replies"], 1)

    def test_watch_closed_is_reopened_and_then_everyone_retries(self):
        h = Harness()
        out = h.arbiter.acquire("A", 0.0)
        [watch] = events(out, EtcdWatch)
        [grant] = calls(out, codec.GRANT)
        [txn] = calls(h.reply(grant, 0.01, grant_answer()), codec.TXN)
        h.reply(txn, 0.02, exists_answer("beta", 7))
        out = h.arbiter.receive(ETCD_SENDER, EtcdWatchClosed(watch.id, "stream lost"), 0.1)
        self.assertTrue(events(out, EtcdLog))
        reopen, [watch2] = tick_until(h, EtcdWatch)
        self.assertGreater(reopen, 0.1)
        out = h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch2.id, watch_line(created=True)),
                                reopen + 0.01)
        self.assertEqual(len(calls(out, codec.TXN)), 1, "events may have been missed: try now")
