"""Stable event names (L{clsd.logs.emit}) and the JSON-lines log, parsed line by line."""

import io
import json
import os
import re
import sys

from twisted.internet.testing import MemoryReactor
from twisted.logger import LogLevel, LogPublisher, Logger, eventAsText
from twisted.trial import unittest

from clsd import logs
from clsd.config import LogConfig, parse_config
from clsd.tap import Options, start_json_log_or_exit

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                   "doc", "logging.md")


def read_lines(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert text.endswith("\n") or not text, f"{path} does not end with a newline"
    return [json.loads(line) for line in text.splitlines()]


class EmitTests(unittest.TestCase):
    def setUp(self):
        self.events = []
        self.log = Logger(namespace="clsd.test", observer=self.events.append)

    def test_name_fields_and_text(self):
        logs.emit(self.log, "service.restarted", "{service} restarted: {reason}",
                  service="web", reason="exited code=1")
        [event] = self.events
        self.assertEqual(event["event"], "service.restarted")
        self.assertEqual(event["service"], "web")
        self.assertEqual(event["reason"], "exited code=1")
        self.assertEqual(event["log_level"], LogLevel.warn)  # the catalogue's level
        self.assertEqual(eventAsText(event, includeTimestamp=False, includeSystem=False),
                         "[service.restarted] web restarted: exited code=1")

    def test_without_format_the_fields_are_listed(self):
        logs.emit(self.log, "member.dead", node="beta", observers=3)
        [event] = self.events
        self.assertEqual(eventAsText(event, includeTimestamp=False, includeSystem=False),
                         "[member.dead] node=beta observers=3")
        self.assertEqual(event["log_level"], LogLevel.error)

    def test_no_fields(self):
        logs.emit(self.log, "daemon.stopping")
        self.assertEqual(eventAsText(self.events[0], includeTimestamp=False,
                                          includeSystem=False), "[daemon.stopping]")

    def test_level_override(self):
        logs.emit(self.log, "lease.renewed", level=LogLevel.debug, resource="A")
        self.assertEqual(self.events[0]["log_level"], LogLevel.debug)

    def test_unknown_name_is_refused(self):
        error = self.assertRaises(ValueError, logs.emit, self.log, "service.exploded")
        self.assertIn("'service.exploded'", str(error))
        self.assertEqual(self.events, [])

    def test_twisted_keys_are_refused(self):
        self.assertRaises(ValueError, logs.emit, self.log, "member.dead", log_time=1)

    def test_catalogue_names_are_dotted_lowercase(self):
        for name, (level, meaning) in logs.EVENTS.items():
            self.assertRegex(name, r"^[a-z]+\.[a-z_]+$")
            self.assertIs(LogLevel.lookupByName(level.name), level)
            self.assertTrue(meaning)

    def test_doc_lists_exactly_the_catalogue(self):
        with open(DOC, encoding="utf-8") as f:
            documented = set(re.findall(r"^\| `([a-z]+\.[a-z_]+)` \|", f.read(), re.M))
        self.assertEqual(documented, set(logs.EVENTS))


class JsonLogTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        self.path = os.path.join(self.dir, "clsd.json")
        self.publisher = LogPublisher()
        self.log = Logger(namespace="clsd.test", observer=self.publisher)

    def test_one_json_event_per_line(self):
        json_log = logs.open_json_log(self.path, self.publisher)
        logs.emit(self.log, "member.dead", "{node} is dead", node="beta")
        logs.emit(self.log, "lease.acquired", resource="A", epoch=7)
        self.log.info("an ordinary message about {thing}", thing=object())
        json_log.close()
        lines = read_lines(self.path)
        self.assertEqual([line.get("event") for line in lines],
                         ["member.dead", "lease.acquired", None])
        dead, acquired, ordinary = lines
        self.assertEqual(dead["node"], "beta")
        self.assertEqual(dead["text"], "[member.dead] beta is dead")
        self.assertEqual(dead["log_level"]["name"], "error")
        self.assertEqual(dead["log_namespace"], "clsd.test")
        self.assertIsInstance(dead["log_time"], float)
        self.assertEqual((acquired["resource"], acquired["epoch"]), ("A", 7))
        self.assertTrue(ordinary["text"].startswith("an ordinary message about <object"))

    def test_failures_carry_their_traceback_text(self):
        json_log = logs.open_json_log(self.path, self.publisher)
        try:
            1 / 0  # noqa: B018 (raises on purpose)
        except ZeroDivisionError:
            self.log.failure("while dividing")
        json_log.close()
        [line] = read_lines(self.path)
        self.assertIn("while dividing", line["text"])
        self.assertIn("ZeroDivisionError", line["text"])

    def test_appends_and_stops_at_close(self):
        for n in range(2):
            json_log = logs.open_json_log(self.path, self.publisher)
            logs.emit(self.log, "daemon.started", run=n)
            json_log.close()
            json_log.close()  # idempotent
        logs.emit(self.log, "daemon.stopped")  # after close: not written
        self.assertEqual([line["run"] for line in read_lines(self.path)], [0, 1])

    def test_other_observers_see_the_event_unchanged(self):
        seen = []
        self.publisher.addObserver(seen.append)
        json_log = logs.open_json_log(self.path, self.publisher)
        self.addCleanup(json_log.close)
        logs.emit(self.log, "daemon.started")
        self.assertNotIn("text", seen[0])

    def test_rotates_whole_lines(self):
        self.patch(logs, "JSON_LOG_MAX_BYTES", 600)
        json_log = logs.open_json_log(self.path, self.publisher)
        for n in range(20):
            logs.emit(self.log, "lease.renewed", resource="A", n=n)
        json_log.close()
        self.assertTrue(os.path.exists(self.path + ".1"))
        rotated = sorted((name for name in os.listdir(self.dir) if name != "clsd.json"),
                         key=lambda name: -int(name.rsplit(".", 1)[1]))
        self.assertLessEqual(len(rotated), logs.JSON_LOG_BACKUPS)
        numbers = []
        for name in rotated + ["clsd.json"]:  # oldest first
            numbers += [line["n"] for line in read_lines(os.path.join(self.dir, name))]
        # Every line whole and parsed; the oldest may be gone, none in between.
        self.assertEqual(numbers, list(range(20 - len(numbers), 20)))

    def test_dash_writes_to_the_original_standard_output(self):
        out = io.StringIO()
        self.patch(sys, "__stdout__", out)
        json_log = logs.open_json_log("-", self.publisher)
        logs.emit(self.log, "peer.rejected", reason="bad-certificate")
        json_log.close()
        self.assertFalse(out.closed)
        [line] = [json.loads(text) for text in out.getvalue().splitlines()]
        self.assertEqual((line["event"], line["reason"]), ("peer.rejected", "bad-certificate"))

    def test_cannot_open(self):
        self.assertRaises(OSError, logs.open_json_log,
                          os.path.join(self.dir, "missing", "x.json"), self.publisher)


class StartJsonLogTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_nothing_configured(self):
        reactor = MemoryReactor()
        self.assertIsNone(logs.start_json_log(LogConfig(), reactor, LogPublisher()))
        self.assertEqual(reactor.triggers, {})

    def test_closed_after_the_reactor_shut_down(self):
        reactor = MemoryReactor()
        publisher = LogPublisher()
        path = os.path.join(self.dir, "clsd.json")
        json_log = logs.start_json_log(LogConfig(json=path), reactor, publisher)
        [(close, args, kwargs)] = reactor.triggers["after"]["shutdown"]
        self.assertEqual(close, json_log.close)
        logs.emit(Logger(observer=publisher), "daemon.stopped")
        close(*args, **kwargs)
        self.assertEqual([line["event"] for line in read_lines(path)], ["daemon.stopped"])

    def test_unopenable_file_is_a_one_line_exit(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        config = parse_config('[node]\nname = "a"\n[log]\njson = "nowhere/x.json"\n',
                              "clsd.toml", base_dir=self.dir)
        error = self.assertRaises(SystemExit, start_json_log_or_exit, config, MemoryReactor())
        self.assertEqual(error.code, 2)
        self.assertIn("cannot open the JSON log", stderr.getvalue())
        self.assertIn("nowhere/x.json", stderr.getvalue())
        self.assertEqual(stderr.getvalue().count("\n"), 1)


class TapOptionTests(unittest.TestCase):
    def test_json_log_relative_to_the_working_directory(self):
        options = Options()
        options.parseOptions(["--json-log", "logs/clsd.json"])
        self.assertEqual(options.overrides(),
                         {"log.json": os.path.join(os.getcwd(), "logs", "clsd.json")})

    def test_json_log_dash(self):
        options = Options()
        options.parseOptions(["--json-log", "-"])
        self.assertEqual(options.overrides(), {"log.json": "-"})

    def test_no_option_no_override(self):
        options = Options()
        options.parseOptions([])
        self.assertNotIn("log.json", options.overrides())
