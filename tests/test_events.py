"""Tests for L{clsd.events.EventLog}."""

import json
import os

from twisted.logger import Logger, eventAsText
from twisted.trial import unittest

from clsd.events import EventLog


class EventLogTests(unittest.TestCase):
    def setUp(self):
        self.wall = 1700000000.25
        self.mono = 5.0
        self.events = EventLog(history=3, wall=lambda: self.wall, monotonic=lambda: self.mono)
        self.logged = []
        self.events.log = Logger(namespace="test", observer=self.logged.append)

    def test_record_returns_the_event(self):
        event = self.events.record("exited", "web", "exited code=1", code=1, pid=7)
        self.assertEqual(event, {
            "ts": "2023-11-14T22:13:20.250Z", "mono": 5.0, "kind": "exited",
            "subject": "web", "reason": "exited code=1", "fields": {"code": 1, "pid": 7},
        })

    def test_listeners_hear_every_event_until_removed(self):
        """The admin's live views (``--watch``) redraw on events."""
        heard = []
        stop = self.events.add_listener(lambda event: heard.append(event["reason"]))

        def broken(event):
            raise RuntimeError("a broken listener")
        self.events.add_listener(broken)
        self.events.record("exited", "web", "one")
        stop()
        self.events.record("exited", "web", "two")
        self.assertEqual(heard, ["one"])
        self.assertEqual([e["reason"] for e in self.events.recent()], ["one", "two"])
        # The broken listener's failure is logged; recording went on.
        self.assertTrue(any(e.get("log_failure") for e in self.logged))

    def test_history_is_bounded_and_ordered(self):
        for i in range(5):
            self.mono = float(i)
            self.events.record("k", "s", f"r{i}")
        self.assertEqual([e["reason"] for e in self.events.recent()], ["r2", "r3", "r4"])
        self.assertEqual([e["reason"] for e in self.events.recent(2)], ["r3", "r4"])
        self.assertEqual(self.events.recent(0), [])

    def test_recent_by_subject(self):
        self.events.record("k", "a", "1")
        self.events.record("k", "b", "2")
        self.assertEqual([e["reason"] for e in self.events.recent(subject="b")], ["2"])

    def test_json_lines_file(self):
        path = os.path.join(self.mktemp(), "events.jsonl")
        self.events.open(path)
        self.events.record("state", "web", "exited code=1", **{"from": "running", "to": "backoff"})
        self.events.record("odd", "web", "non-JSON field", value=object())
        self.events.close()
        with open(path) as f:
            lines = [json.loads(line) for line in f]
        self.assertEqual(lines[0]["reason"], "exited code=1")
        self.assertEqual(lines[0]["fields"], {"from": "running", "to": "backoff"})
        self.assertIn("object object", lines[1]["fields"]["value"])

    def test_file_appends_across_runs(self):
        path = os.path.join(self.mktemp(), "events.jsonl")
        for reason in ("first", "second"):
            log = EventLog()
            log.open(path)
            log.record("k", "s", reason)
            log.close()
        with open(path) as f:
            self.assertEqual([json.loads(line)["reason"] for line in f], ["first", "second"])

    def test_logged_through_twisted_logger(self):
        self.events.record("orphan", "web", "leftover group 42 terminated")
        (entry,) = self.logged
        self.assertEqual(entry["log_format"], "{subject}: {kind}: {reason}")
        self.assertEqual(entry["reason"], "leftover group 42 terminated")
        self.assertEqual(entry["clsd_event"]["subject"], "web")

    def test_state_changes_logged_as_transitions(self):
        self.events.record("state", "web", "spawned pid=7", **{"from": "starting", "to": "running"})
        (entry,) = self.logged
        self.assertEqual(entry["log_format"], "{subject}: {previous} -> {state}: {reason}")
        self.assertEqual((entry["previous"], entry["state"]), ("starting", "running"))

    def test_named_records_are_logged_under_their_stable_name(self):
        self.events.record("state", "web", "exited code=1",
                           **{"from": "running", "to": "backoff", "delay": 0.5, "failures": 2})
        (entry,) = self.logged
        self.assertEqual(entry["event"], "service.backoff")
        self.assertEqual((entry["service"], entry["delay"], entry["failures"]), ("web", 0.5, 2))
        self.assertEqual(entry["clsd_event"]["subject"], "web")
        self.assertIn("running -> backoff: exited code=1", eventAsText(entry))

    def test_write_failure_does_not_raise(self):
        path = os.path.join(self.mktemp(), "events.jsonl")
        self.events.open(path)

        class Broken:
            def write(self, data):
                raise OSError(28, "No space left on device")

        self.events._file = Broken()
        self.events.record("k", "s", "one")
        self.events.record("k", "s", "two")
        self.assertEqual(len(self.events.recent()), 2, "memory history still kept")
        errors = [e for e in self.logged if e["log_level"].name == "error"]
        self.assertEqual(len(errors), 1, "the failure is reported once")
