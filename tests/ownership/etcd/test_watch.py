"""The etcd arbiter's watch: resumed after the last revision it saw, and a PUT of our key
by another lease while we hold it means we no longer hold it."""

import json

from twisted.trial import unittest

from clsd.ownership.core.arbiter_events import LeaseEnding, LeaseLost
from clsd.ownership.etcd.core import codec
from clsd.ownership.etcd.core.actions import ETCD_SENDER, EtcdWatch, EtcdWatchClosed, EtcdWatchMessage
from tests.ownership.etcd.test_arbiter import (
    LEASE_ID, PREFIX, Harness, calls, events, grant_answer, created_answer, header, kv, raw,
    tick_until,
)


def line(events=None, created=False, revision=5, **extra):
    result = {"header": header(revision), **extra}
    if created:
        result["created"] = True
    if events:
        result["events"] = events
    return raw({"result": result})


def put(key, holder, create_revision, mod_revision, lease):
    data = kv(key, json.dumps({"node": holder, "generation": 1}), create_revision, lease)
    data["mod_revision"] = str(mod_revision)
    return {"kv": data}


def deleted(key, mod_revision, prev_holder, prev_create, prev_lease):
    return {"type": "DELETE", "kv": {"key": codec.b64(key), "mod_revision": str(mod_revision)},
            "prev_kv": kv(key, json.dumps({"node": prev_holder}), prev_create, prev_lease)}


class WatchResumeTests(unittest.TestCase):
    def setUp(self):
        self.h = Harness()
        out = self.h.arbiter.acquire("A", 0.0)
        [self.watch] = events(out, EtcdWatch)
        self.now = 0.0

    def send(self, watch, body, dt=0.01):
        self.now += dt
        return self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch.id, body), self.now)

    def reopen(self, watch):
        self.now += 0.01
        self.h.arbiter.receive(ETCD_SENDER, EtcdWatchClosed(watch.id, "stream lost"), self.now)
        self.now, [watch2] = tick_until(self.h, EtcdWatch)
        return watch2

    def test_the_first_watch_has_no_start_revision(self):
        self.assertNotIn("start_revision", self.watch.body["create_request"])

    def test_a_broken_watch_resumes_after_its_created_revision(self):
        self.send(self.watch, line(created=True, revision=40))
        watch2 = self.reopen(self.watch)
        self.assertEqual(watch2.body["create_request"]["start_revision"], "41")

    def test_a_broken_watch_resumes_after_the_last_event_it_saw(self):
        self.send(self.watch, line(created=True, revision=40))
        self.send(self.watch, line([put(PREFIX + "B", "beta", 44, 44, 77)], revision=44))
        self.send(self.watch, line([deleted(PREFIX + "B", 47, "beta", 44, 77)], revision=47))
        watch2 = self.reopen(self.watch)
        self.assertEqual(watch2.body["create_request"]["start_revision"], "48")
        # The resumed stream goes on from there.
        self.send(watch2, line(created=True, revision=60))
        self.send(watch2, line([put(PREFIX + "B", "beta", 50, 50, 77)], revision=60))
        watch3 = self.reopen(watch2)
        self.assertEqual(watch3.body["create_request"]["start_revision"], "51")


class TakenKeyTests(unittest.TestCase):
    """A holder whose key is PUT by another lease no longer holds it."""

    def setUp(self):
        self.h = Harness()
        out = self.h.arbiter.acquire("A", 0.0)
        [self.watch] = events(out, EtcdWatch)
        self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(
            self.watch.id, line(created=True, revision=5)), 0.005)
        [grant] = calls(out, codec.GRANT)
        [txn] = calls(self.h.reply(grant, 0.01, grant_answer()), codec.TXN)
        self.h.reply(txn, 0.02, created_answer(10))
        self.assertIsNotNone(self.h.arbiter.holding("A", 0.03))

    def test_a_put_by_another_lease_ends_the_tenure_at_once(self):
        # Our key deleted and created again by another lease (e.g. by hand).
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(self.watch.id, line(
            [put(PREFIX + "A", "beta", 12, 12, 999)], revision=12)), 0.3)
        self.assertEqual(events(out, LeaseEnding), [LeaseEnding("A", 10, 0.3)])
        self.assertEqual(events(out, LeaseLost), [LeaseLost("A", 10)])
        self.assertIsNone(self.h.arbiter.holding("A", 0.3))
        self.assertEqual(self.h.arbiter.counters["key_taken"], 1)

    def test_a_put_by_another_lease_with_a_value_we_cannot_read_ends_it_too(self):
        event = put(PREFIX + "A", "beta", 12, 12, 999)
        event["kv"]["value"] = codec.b64("not json")
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(self.watch.id, line(
            [event], revision=12)), 0.3)
        self.assertEqual(events(out, LeaseLost), [LeaseLost("A", 10)])

    def test_a_put_by_another_lease_missed_while_the_watch_was_down_is_replayed(self):
        self.h.arbiter.receive(ETCD_SENDER, EtcdWatchClosed(self.watch.id, "stream lost"), 0.1)
        now, [watch2] = tick_until(self.h, EtcdWatch)
        self.assertEqual(watch2.body["create_request"]["start_revision"], "6")
        # etcd replays from revision 6: our own create at 10, then someone else's.
        replay = line([put(PREFIX + "A", "alpha", 10, 10, LEASE_ID),
                       put(PREFIX + "A", "beta", 12, 12, 999)], revision=12)
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch2.id, replay), now)
        self.assertEqual(events(out, LeaseLost), [LeaseLost("A", 10)])

    def test_a_replayed_put_from_before_our_tenure_is_history(self):
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(self.watch.id, line(
            [put(PREFIX + "A", "beta", 7, 8, 999)], revision=12)), 0.3)
        self.assertEqual(events(out, LeaseLost), [])
        self.assertIsNotNone(self.h.arbiter.holding("A", 0.3))

    def test_a_put_on_our_own_lease_is_ours(self):
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(self.watch.id, line(
            [put(PREFIX + "A", "alpha", 10, 10, LEASE_ID)], revision=12)), 0.3)
        self.assertEqual(events(out, LeaseLost), [])
        self.assertIsNotNone(self.h.arbiter.holding("A", 0.3))

    def test_a_compacted_resume_point_checks_our_key(self):
        self.h.arbiter.receive(ETCD_SENDER, EtcdWatchClosed(self.watch.id, "stream lost"), 0.1)
        now, [watch2] = tick_until(self.h, EtcdWatch)
        # The revisions we would resume from are gone: etcd cancels the watch.
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch2.id, line(
            revision=90, canceled=True, compact_revision="50")), now + 0.01)
        [check] = calls(out, codec.RANGE)
        self.assertEqual(check.body, {"key": codec.b64(PREFIX + "A")})
        [watch3] = events(out, EtcdWatch)
        self.assertNotIn("start_revision", watch3.body["create_request"])
        # The key is on another lease now: we do not hold it.
        answer = raw({"header": header(90), "kvs": [
            kv(PREFIX + "A", json.dumps({"node": "beta"}), 60, 999)], "count": "1"})
        out = self.h.reply(check, now + 0.02, answer)
        self.assertEqual(events(out, LeaseLost), [LeaseLost("A", 10)])

    def test_a_compacted_resume_point_keeps_a_key_still_ours(self):
        self.h.arbiter.receive(ETCD_SENDER, EtcdWatchClosed(self.watch.id, "stream lost"), 0.1)
        now, [watch2] = tick_until(self.h, EtcdWatch)
        out = self.h.arbiter.receive(ETCD_SENDER, EtcdWatchMessage(watch2.id, line(
            revision=90, canceled=True, compact_revision="50")), now + 0.01)
        [check] = calls(out, codec.RANGE)
        answer = raw({"header": header(90), "kvs": [
            kv(PREFIX + "A", json.dumps({"node": "alpha"}), 10, LEASE_ID)], "count": "1"})
        out = self.h.reply(check, now + 0.02, answer)
        self.assertEqual(events(out, LeaseLost), [])
        self.assertIsNotNone(self.h.arbiter.holding("A", now + 0.02))
