"""Unit tests of the small pieces: broadcast queue, awareness, cut rule, detector."""

import itertools

import attrs
from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.membership.core.awareness import Awareness
from clsd.membership.core.broadcast import BroadcastQueue
from clsd.membership.core.cut import Reports, is_failed
from clsd.membership.core.detector import Detector


@attrs.frozen
class Item:
    key: str
    payload: int = 0


class ModelQueue:
    """The queue's rule spelt out slowly: least sent first; among equals, the
    one that reached its send count last; dropped after C{limit} sends; when
    full, the oldest of the most sent is dropped."""

    def __init__(self, max_items):
        self.max_items = max_items
        self.entries = {}  # key -> [item, sent, seq]
        self.seq = itertools.count()

    def put(self, item):
        self.entries[item.key] = [item, 0, next(self.seq)]
        if len(self.entries) > self.max_items:
            most = max(e[1] for e in self.entries.values())
            oldest = min((e[2], k) for k, e in self.entries.items() if e[1] == most)[1]
            del self.entries[oldest]

    def discard(self, key):
        self.entries.pop(key, None)

    def heard(self, key, limit, keep=2):
        entry = self.entries.get(key)
        if entry is not None and entry[1] + 1 <= limit - keep:
            entry[1] += 1
            entry[2] = next(self.seq)

    def take(self, count, limit):
        order = sorted(self.entries.items(), key=lambda kv: (kv[1][1], -kv[1][2]))[:count]
        for key, entry in order:
            entry[1] += 1
            if entry[1] >= limit:
                del self.entries[key]
            else:
                entry[2] = next(self.seq)
        return [entry[0] for _, entry in order]


class Broadcasts(unittest.TestCase):
    @settings(max_examples=300, deadline=None, derandomize=True)
    @given(st.integers(1, 30), st.lists(st.tuples(
        st.sampled_from(["put", "put", "take", "take", "discard", "heard"]),
        st.integers(0, 40), st.integers(1, 6), st.integers(1, 16)), min_size=10, max_size=200))
    @example(10, [("put", 1, 1, 5), ("put", 2, 1, 5), ("put", 3, 1, 5), ("take", 0, 1, 5),
                  ("take", 0, 3, 5)])
    def test_same_as_the_rule_spelt_out(self, max_items, steps):
        queue, model = BroadcastQueue(max_items), ModelQueue(max_items)
        for op, key, count, limit in steps:
            if op == "put":
                queue.put(Item(str(key), count))
                model.put(Item(str(key), count))
            elif op == "discard":
                queue.discard(str(key))
                model.discard(str(key))
            elif op == "heard":
                queue.heard(str(key), limit)
                model.heard(str(key), limit)
            else:
                self.assertEqual(queue.take(count, limit), model.take(count, limit))
            self.assertEqual(len(queue), len(model.entries))

    def test_newer_news_replaces_older_with_the_same_key(self):
        queue = BroadcastQueue()
        queue.put(Item("a", 1))
        queue.put(Item("a", 2))
        self.assertEqual(queue.take(10, 5), [Item("a", 2)])

    def test_least_sent_first_newest_first(self):
        queue = BroadcastQueue()
        queue.put(Item("old"))
        queue.put(Item("new"))
        self.assertEqual(queue.take(1, 5), [Item("new")])
        queue.put(Item("newest"))
        self.assertEqual(queue.take(3, 5), [Item("newest"), Item("old"), Item("new")])

    def test_dropped_after_limit_sends(self):
        queue = BroadcastQueue()
        queue.put(Item("a"))
        sent = 0
        while queue:
            sent += len(queue.take(1, 3))
        self.assertEqual(sent, 3)

    def test_bounded(self):
        queue = BroadcastQueue(max_items=3)
        for key in "abcd":
            queue.put(Item(key))
        self.assertEqual(len(queue), 3)
        queue.take(1, 5)  # "d", the newest, is sent once: now the most sent
        queue.put(Item("e"))  # full: "d" is dropped
        self.assertEqual(sorted(i.key for i in queue.take(10, 5)), ["b", "c", "e"])

    def test_a_piece_heard_from_others_is_sent_fewer_times(self):
        queue = BroadcastQueue()
        queue.put(Item("a"))
        queue.heard("nothing queued", 5)
        for _ in range(5):
            queue.heard("a", 5)  # counts as sends 1, 2 and 3 only
        self.assertEqual(queue.get("a"), Item("a"))
        self.assertEqual(queue.take(5, 5), [Item("a")])
        self.assertEqual(queue.take(5, 5), [Item("a")])  # its own two sends
        self.assertFalse(queue)
        self.assertIsNone(queue.get("a"))

    def test_discard(self):
        queue = BroadcastQueue()
        queue.put(Item("a"))
        queue.discard("a")
        self.assertEqual(queue.take(5, 5), [])


class LocalHealth(unittest.TestCase):
    def test_late_ticks_widen_timeouts_on_time_ticks_narrow_them(self):
        awareness = Awareness(max_multiplier=8)
        self.assertEqual(awareness.scale(4.0), 4.0)
        awareness.tick(late=2.5, interval=1.0)
        self.assertEqual(awareness.score, 2)
        self.assertEqual(awareness.scale(4.0), 12.0)
        awareness.tick(late=0.1, interval=1.0)
        self.assertEqual(awareness.score, 1)

    def test_bounded(self):
        awareness = Awareness(max_multiplier=4)
        for _ in range(10):
            awareness.refuted()
        self.assertEqual(awareness.score, 3)
        for _ in range(10):
            awareness.tick(0.0, 1.0)
        self.assertEqual(awareness.score, 0)


OBS = ["o1", "o2", "o3", "o4", "o5", "o6", "o7", "o8"]


class CutRule(unittest.TestCase):
    def test_table(self):
        everyone = set(OBS)
        for reporters, healthy, expected in [
            (set(), everyone, False),
            ({"o1"}, everyone, False),                      # one flaky observer
            (set(OBS[:5]), everyone, False),                # H - 1
            (set(OBS[:6]), everyone, True),                 # H of K
            ({"o1", "o2"}, {"o1", "o2"}, True),             # all healthy observers agree
            ({"o1"}, {"o1", "o2"}, False),
            ({"o1"}, {"o1"}, False),                        # one report, the others suspect
            ({"o1", "o2"}, {"o1", "o2", "x"}, True),        # non-observers' health is no matter
            (set(OBS[:6]), set(OBS[6:]), False),            # reports of suspects do not count
            ({"o7", "x", "y", "z", "w", "v"}, everyone, False),  # non-observers do not count
        ]:
            self.assertEqual(is_failed(OBS, reporters, healthy, 6), expected, reporters)

    def test_small_clusters_need_all_their_observers(self):
        self.assertTrue(is_failed(["a"], {"a"}, {"a"}, 6))
        self.assertFalse(is_failed(["a", "b"], {"a"}, {"a", "b"}, 6))
        self.assertTrue(is_failed(["a", "b"], {"a", "b"}, {"a", "b"}, 6))

    def test_reports_belong_to_one_life(self):
        reports = Reports()
        self.assertTrue(reports.add("s", (1, 0), "o1"))
        self.assertFalse(reports.add("s", (1, 0), "o1"))
        self.assertTrue(reports.add("s", (1, 1), "o2"))   # a newer incarnation: a fresh set
        self.assertEqual(reports.reporters("s", (1, 1)), {"o2"})
        self.assertEqual(reports.reporters("s", (1, 0)), set())
        self.assertFalse(reports.add("s", (1, 0), "o3"))  # stale
        reports.clear("s")
        self.assertNotIn("s", reports)


class Links(unittest.TestCase):
    def test_silence_fails_a_link(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=True)
        self.assertEqual(detector.check(3.9, 4.0, 1.0, 100.0)[0], [])
        detector.heard("s", 3.0)
        self.assertEqual(detector.check(6.9, 4.0, 1.0, 100.0)[0], [])
        self.assertEqual([s for s, _ in detector.check(7.1, 4.0, 1.0, 100.0)[0]], ["s"])

    def test_a_closed_connection_fails_after_the_grace(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=True)
        detector.link_down("s", 1.0)
        self.assertEqual(detector.check(1.9, 4.0, 1.0, 100.0)[0], [])
        self.assertEqual(len(detector.check(2.1, 4.0, 1.0, 100.0)[0]), 1)
        detector.link_up("s", 2.2)
        detector.heard("s", 2.2)
        self.assertEqual(detector.check(2.3, 4.0, 1.0, 100.0)[0], [])

    def test_a_link_never_up_is_judged_by_silence_not_the_grace(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=False)
        # Twice the failure timeout: the first dial may take seconds under load.
        self.assertEqual(detector.check(7.9, 4.0, 1.0, 100.0)[0], [])
        self.assertEqual(len(detector.check(8.1, 4.0, 1.0, 100.0)[0]), 1)

    def test_a_link_once_up_is_judged_by_the_plain_timeout(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=True)
        self.assertEqual(detector.check(3.9, 4.0, 1.0, 100.0)[0], [])
        self.assertEqual(len(detector.check(4.1, 4.0, 1.0, 100.0)[0]), 1)

    def test_a_link_that_opens_late_gets_a_whole_timeout_from_then(self):
        """The handshake is news of the subject: silence counts from it."""
        detector = Detector()
        detector.watch("s", 0.0, link_up=False)
        detector.link_up("s", 3.0)  # the dial took 3 s
        self.assertEqual(detector.check(6.9, 4.0, 1.0, 100.0)[0], [])
        self.assertEqual(len(detector.check(7.1, 4.0, 1.0, 100.0)[0]), 1)
        # A reconnect does not move last_heard back.
        detector.heard("s", 8.0)
        detector.link_up("s", 7.5)
        self.assertEqual(detector.check(11.9, 4.0, 1.0, 100.0)[0], [])

    def test_the_grace_applies_once_the_link_was_up(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=False)
        detector.link_up("s", 0.5)
        detector.link_down("s", 1.0)
        self.assertEqual(len(detector.check(2.1, 4.0, 1.0, 100.0)[0]), 1)

    def test_our_own_stall_is_not_their_silence(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=True)
        detector.credit_stall(10.0)
        self.assertEqual(detector.check(11.0, 4.0, 1.0, 100.0)[0], [])

    def test_quiet_links_are_probed_once_per_period(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=True)
        self.assertEqual(detector.check(2.5, 4.0, 1.0, 2.0)[1], ["s"])
        self.assertEqual(detector.check(3.0, 4.0, 1.0, 2.0)[1], [])
        self.assertEqual(detector.check(4.6, 5.0, 1.0, 2.0)[1], ["s"])

    def test_restart_gives_a_fresh_timeout(self):
        detector = Detector()
        detector.watch("s", 0.0, link_up=True)
        detector.restart("s", 5.0)
        self.assertEqual(detector.check(8.0, 4.0, 1.0, 100.0)[0], [])
        detector.unwatch("s")
        self.assertNotIn("s", detector)
