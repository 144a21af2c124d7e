"""The worker's bookkeeping: cluster-wide facts reported once, at the event's own time."""

import json

from twisted.internet.task import Clock
from twisted.trial import unittest

from rig.nodeworker import ReportingTracker, WorkerControl
from clsd.wire.core.lag import ReactorLag


class TrackerTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.reports = []
        self.tracker = ReportingTracker(self.clock.seconds, self.reports.append)
        self.tracker.expected = 3
        self.logs = {name: self.tracker.log_for(name) for name in ("a", "b")}

    def member(self, observer, subject, state, reason="why"):
        self.logs[observer].record("member", subject, reason, state=state)

    def events(self, kind):
        return [r for r in self.reports if r["event"] == kind]

    def test_all_alive_is_reported_once_when_the_last_observer_sees_everyone(self):
        self.member("a", "b", "alive")
        self.member("a", "c", "alive")
        self.member("b", "a", "alive")
        self.assertEqual(self.events("all_alive"), [])
        self.clock.advance(2.5)
        self.member("b", "c", "alive")
        self.assertEqual(self.events("all_alive"), [{"event": "all_alive", "t": 2.5, "nodes": 2}])
        self.member("b", "c", "suspect")
        self.member("b", "c", "alive")
        self.assertEqual(len(self.events("all_alive")), 1)

    def test_dead_at_all_waits_for_every_live_observer_and_names_first_and_last(self):
        for observer in ("a", "b"):
            self.member(observer, "c", "alive")
        self.clock.advance(1.0)
        self.member("a", "c", "dead")
        self.assertEqual(self.events("dead_at_all"), [])
        self.clock.advance(0.5)
        self.member("b", "c", "dead")
        self.assertEqual(self.events("dead_at_all"), [
            {"event": "dead_at_all", "subject": "c", "observers": 2, "t": 1.5, "first": 1.0}])
        self.member("b", "c", "removed")
        self.assertEqual(len(self.events("dead_at_all")), 1)

    def test_a_crashed_observer_no_longer_holds_back_dead_at_all(self):
        self.member("a", "c", "dead")
        self.tracker.forget("b")
        self.tracker.check_dead("c")
        self.assertEqual([r["observers"] for r in self.events("dead_at_all")], [1])

    def test_declarations_are_counted_and_streamed_with_their_reason(self):
        self.tracker.declarations = True
        self.member("a", "c", "alive")
        self.member("a", "c", "suspect", reason="reported unreachable by b")
        self.member("a", "c", "suspect", reason="again")  # no change: not a declaration
        self.assertEqual(dict(self.tracker.counts["suspect"]), {"c": 1})
        [state] = self.events("state")
        self.assertEqual((state["observer"], state["subject"], state["state"], state["previous"],
                          state["reason"]), ("a", "c", "suspect", "alive",
                                             "reported unreachable by b"))


class CommandTests(unittest.TestCase):
    def setUp(self):
        self.lines = []
        self.control = WorkerControl(Clock(), self.lines.append, monotonic=lambda: 7.0)

    def replies(self):
        return [json.loads(line) for line in self.lines]

    def test_unknown_command_gets_an_error_reply_naming_it(self):
        self.control.command({"cmd": "dance", "id": 4})
        self.assertEqual(self.replies(), [{"id": 4, "ok": False,
                                           "error": "unknown command 'dance'"}])

    def test_commands_before_prepare_are_refused(self):
        self.control.command({"cmd": "kill", "name": "n0001", "id": 1})
        self.control.command({"cmd": "status"})
        self.assertEqual(self.replies(), [
            {"id": 1, "ok": False, "error": "not prepared"},
            {"event": "error", "cmd": "status", "error": "not prepared"}])

    def test_shutdown_without_nodes_is_fine(self):
        self.control.command({"cmd": "shutdown", "id": 2})
        self.assertEqual(self.replies(), [{"id": 2, "ok": True, "t": 7.0}])


class ReactorLagTests(unittest.TestCase):
    def test_the_worst_lateness_since_the_last_status_is_reported_then_reset(self):
        clock = Clock()
        control = WorkerControl(clock, [].append, monotonic=clock.seconds)
        control.host = _NoNodes(ReactorLag(clock, clock.seconds))
        control.tracker = control.host.tracker
        control.host.lag.start()
        clock.advance(0.25)  # on time
        clock.advance(2.25)  # the probe due at 0.5 runs at 2.5: 2 s late
        clock.advance(0.25)
        self.assertEqual(control.do_status({})["reactor_lag_max_s"], 2.0)
        self.assertEqual(control.do_status({})["reactor_lag_max_s"], 0.0)
        control.host.lag.stop()


class _NoNodes:
    """A prepared host with no nodes (what do_status reads)."""

    def __init__(self, lag):
        self.lag = lag

    class tracker:
        alive_counts = {}
        all_alive_at = None

    def live(self):
        return []

    def connection_count(self):
        return 0
