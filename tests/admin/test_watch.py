"""``--watch``: the frame (pure), the loop on a fake clock, the command language's part."""

from twisted.internet import defer, task
from twisted.trial import unittest

from clsd.admin import commands
from clsd.admin.backend import HistoryEvent
from clsd.admin.fake import FakeBackend
from clsd.admin.watch import INTERVAL, POLL, WatchLoop, frame

T = 1_700_000_000.0


def events(n):
    return tuple(HistoryEvent(T + i, "alpha:member", f"event {i} " + "x" * 100) for i in range(n))


class FrameTests(unittest.TestCase):

    def test_fits_80_by_24_with_the_events_below(self):
        body = "".join(f"line {i}\n" for i in range(40))
        text = frame("status --watch", body, events(9), T)
        lines = text.rstrip("\n").split("\n")
        self.assertLessEqual(len(lines), 23)
        self.assertTrue(all(len(line) <= 79 for line in lines))
        self.assertTrue(lines[0].startswith("status --watch  2023-11-14 22:13:20Z"))
        self.assertIn("(q or Ctrl-C ends)", lines[0])
        self.assertIn("more lines: a taller terminal shows them", text)
        self.assertEqual(lines[-3], "recent events:")  # the last two, when the body is long
        self.assertTrue(lines[-1].startswith("22:13:28Z  alpha:member  event 8 x"), lines[-1])

    def test_short_body_shows_up_to_five_events(self):
        text = frame("members --watch", "MEMBER  STATE\nalpha   alive\n", events(9), T)
        self.assertEqual(text.count("alpha:member"), 5)
        self.assertIn("alpha   alive", text)

    def test_plain_output_is_not_cut_in_height(self):
        body = "".join(f"line {i}\n" for i in range(40))
        text = frame("status --watch", body, events(2), T, width=80, height=None)
        self.assertIn("line 39", text)
        self.assertNotIn("\x1b", text)

    def test_escape_sequences_from_peers_are_shown_escaped(self):
        evil = (HistoryEvent(T, "x:member", "\x1b[2Jboom"),)
        self.assertNotIn("\x1b", frame("status --watch", "", evil, T))


class LoopTests(unittest.TestCase):

    def setUp(self):
        self.clock = task.Clock()
        self.body = "CLUSTER  STATE\nA        running on alpha\n"
        self.shown = []
        self.subscribers = []
        self.loop = WatchLoop("clusters --watch", self.look, self.shown.append, self.clock,
                              self.clock.seconds, lambda: (80, 24), subscribe=self.subscribe)

    def look(self):
        return defer.succeed((self.body, ()))

    def subscribe(self, callback):
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)

    def event(self, body):
        self.body = body
        for callback in self.subscribers:
            callback()

    def test_an_event_is_shown_at_once_after_a_quiet_time(self):
        self.loop.start()
        self.clock.advance(POLL + INTERVAL / 2)  # a look without a change just now
        self.event("CLUSTER  STATE\nA        moving alpha -> beta\n")
        self.clock.advance(0)
        self.assertEqual(len(self.shown), 2)
        self.assertIn("moving alpha -> beta", self.shown[-1])

    def test_events_redraw_at_most_once_per_interval(self):
        self.loop.start()
        for i in range(8):  # an event every quarter interval, for two intervals
            self.event(f"change {i}\n")
            self.clock.advance(INTERVAL / 4)
        self.assertEqual(len(self.shown), 1 + 2)
        self.assertEqual([c.getTime() - self.clock.seconds()
                          for c in self.clock.getDelayedCalls()], [POLL])

    def test_without_events_it_polls(self):
        self.loop.start()
        self.clock.advance(POLL)
        self.assertEqual(len(self.shown), 1, "nothing changed: no redraw")
        self.body = "published elsewhere\n"
        self.clock.advance(POLL)
        self.assertEqual(len(self.shown), 2)

    def test_an_event_during_a_look_is_not_lost(self):
        pending = defer.Deferred()
        self.look = lambda: pending
        self.loop = WatchLoop("x", lambda: pending, self.shown.append, self.clock,
                              self.clock.seconds, lambda: (80, 24), subscribe=self.subscribe)
        self.loop.start()
        self.event("late\n")
        pending.callback(("first\n", ()))
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [INTERVAL])

    def test_redraw_after_a_resize(self):
        self.loop.start()
        self.clock.advance(INTERVAL)
        self.loop.redraw()
        self.clock.advance(0)
        self.assertEqual(len(self.shown), 2)

    def test_stop_unsubscribes(self):
        self.loop.start()
        self.loop.stop()
        self.assertEqual((self.clock.getDelayedCalls(), self.subscribers), ([], []))

    def test_a_failing_look_shows_the_error(self):
        self.loop = WatchLoop("x", lambda: defer.fail(RuntimeError("gone")), self.shown.append,
                              self.clock, self.clock.seconds, lambda: (80, 24))
        self.loop.start()
        self.assertIn("error: gone", self.shown[0])
        self.assertTrue(self.loop.running)


class WatchCommandTests(unittest.TestCase):

    def run_line(self, line):
        results = []
        commands.run_line(FakeBackend(), commands.ROLE_MONITOR, line).addCallback(results.append)
        return results[0]

    def test_watch_answers_with_the_line_to_watch(self):
        outcome = self.run_line("clusters --watch")
        self.assertEqual((outcome.status, outcome.watch), (commands.EXIT_OK, "clusters"))
        self.assertIn("running on alpha", outcome.stdout)

    def test_only_tables_are_watched(self):
        outcome = self.run_line("history --watch")
        self.assertEqual(outcome.status, commands.EXIT_USAGE)
        self.assertIn("--watch works with status, members, clusters, services", outcome.stderr)
        outcome = self.run_line("status --watch --json")
        self.assertEqual(outcome.status, commands.EXIT_USAGE)

    def test_without_watch_nothing_to_watch(self):
        self.assertIsNone(self.run_line("status").watch)
