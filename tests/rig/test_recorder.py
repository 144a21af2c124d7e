"""Records: the file format, reading, and the protected service with its lifeline."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

from twisted.trial import unittest

from rig import recorder
from rig.checker import check, intervals
from clsd.polling import wait_for
from rig.recorder import (
    Identity, LifelineCollector, RecordError, RecordWriter, read_records,
)

IDENTITY = Identity(instance="i1", node="alpha", cluster="A", epoch=4, pid=123)


class FakeClock:
    def __init__(self, t=100.0):
        self.t = t

    def __call__(self):
        self.t += 0.5
        return self.t


class WriterAndReaderTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)

    def test_round_trip_in_time_order(self):
        writer = RecordWriter(self.dir, IDENTITY, clock=FakeClock())
        writer.record("start", lifeline=True)
        writer.record("heartbeat")
        writer.record("stop")
        writer.close()
        result = read_records(self.dir)
        self.assertEqual(result.problems, ())
        self.assertEqual([(r.kind, r.t) for r in result.records],
                         [("start", 100.5), ("heartbeat", 101.0), ("stop", 101.5)])
        first = result.records[0]
        self.assertEqual((first.node, first.cluster, first.epoch, first.pid, first.lifeline),
                         ("alpha", "A", 4, 123, True))

    def test_file_is_named_after_the_instance(self):
        writer = RecordWriter(self.dir, IDENTITY)
        self.assertEqual(os.path.basename(writer.path), "alpha.A.123.i1.jsonl")
        writer.close()

    def test_unknown_kind_is_refused(self):
        writer = RecordWriter(self.dir, IDENTITY)
        self.addCleanup(writer.close)
        self.assertRaises(ValueError, writer.record, "resume")

    def test_torn_last_line_is_ignored_bad_lines_are_reported(self):
        writer = RecordWriter(self.dir, IDENTITY, clock=FakeClock())
        writer.record("start")
        writer.close()
        with open(writer.path, "ab") as f:
            f.write(b'{"v": 1, "kind": "heartbeat", "t": 3}\n')  # no instance
            f.write(b"not json\n")
            f.write(b'{"v": 1, "kind": "heartb')  # kill -9 mid-write
        result = read_records(self.dir)
        self.assertEqual([r.kind for r in result.records], ["start"])
        self.assertEqual(len(result.problems), 2)
        self.assertIn("alpha.A.123.i1.jsonl:2: instance must be a non-empty string",
                      result.problems[0])
        self.assertIn("alpha.A.123.i1.jsonl:3: not JSON", result.problems[1])

    def test_identity_from_environment(self):
        env = {"CLSD_NODE": "beta", "CLSD_CLUSTER": "B", "CLSD_EPOCH": "7"}
        identity = recorder.identity_from_env(env, 42)
        self.assertEqual((identity.node, identity.cluster, identity.epoch, identity.pid),
                         ("beta", "B", 7, 42))
        self.assertIsNone(recorder.identity_from_env({**env, "CLSD_EPOCH": ""}, 1).epoch)
        self.assertEqual(recorder.identity_from_env(env, 1, node="gamma").node, "gamma")
        self.assertIsNone(recorder.identity_from_env(env, 1).slot)

    def test_slot_is_recorded_and_read_back(self):
        env = {"CLSD_NODE": "beta", "CLSD_CLUSTER": "N", "CLSD_EPOCH": "7", "CLSD_SLOT": "1"}
        identity = recorder.identity_from_env(env, 42)
        self.assertEqual(identity.slot, 1)
        directory = self.mktemp()
        os.makedirs(directory)
        writer = recorder.RecordWriter(directory, identity)
        writer.record("start")
        writer.close()
        [record] = recorder.read_records(directory).records
        self.assertEqual((record.slot, record.resource), (1, "N/1"))
        e = self.assertRaises(RecordError, recorder.identity_from_env, {**env, "CLSD_SLOT": "x"}, 1)
        self.assertIn("CLSD_SLOT must be an integer", str(e))

    def test_identity_errors_name_the_variable(self):
        e = self.assertRaises(RecordError, recorder.identity_from_env, {"CLSD_CLUSTER": "A"}, 1)
        self.assertIn("CLSD_NODE", str(e))
        e = self.assertRaises(RecordError, recorder.identity_from_env, {"CLSD_NODE": "a"}, 1)
        self.assertIn("CLSD_CLUSTER", str(e))
        e = self.assertRaises(
            RecordError, recorder.identity_from_env,
            {"CLSD_NODE": "a", "CLSD_CLUSTER": "A", "CLSD_EPOCH": "x"}, 1,
        )
        self.assertIn("CLSD_EPOCH must be an integer", str(e))


class ProtectedServiceTests(unittest.TestCase):
    """The real service in a real process, watched by a real collector."""

    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.collector = LifelineCollector(self.dir).start()
        self.addCleanup(self.collector.stop)

    def spawn(self, *extra, env=None):
        process = subprocess.Popen(
            [sys.executable, "-m", "rig.protected_service", "--record", self.dir,
             *extra],
            env={**os.environ, "CLSD_NODE": "alpha", "CLSD_CLUSTER": "A", "CLSD_EPOCH": "2",
                 **(env or {})},
            stderr=subprocess.PIPE,
        )

        def reap():
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stderr.close()
        self.addCleanup(reap)
        return process

    def records_of(self, pid):
        return [r for r in read_records(self.dir).records if r.pid == pid]

    def wait_heartbeats(self, pid, count):
        wait_for(lambda: sum(r.kind == "heartbeat" for r in self.records_of(pid)) >= count,
                 15, what=f"{count} heartbeats from pid {pid}")

    def test_sigterm_writes_stop_and_the_collector_sees_the_exit(self):
        process = self.spawn()
        self.wait_heartbeats(process.pid, 3)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(10), 0)
        wait_for(lambda: any(r.kind == "exit" for r in self.records_of(process.pid)), 5,
                 what="the exit record")
        kinds = [r.kind for r in self.records_of(process.pid)]
        self.assertEqual(kinds[0], "start")
        self.assertEqual(kinds[-2:], ["stop", "exit"])
        start = self.records_of(process.pid)[0]
        self.assertEqual((start.node, start.cluster, start.epoch, start.lifeline),
                         ("alpha", "A", 2, True))
        [interval] = intervals(self.records_of(process.pid))
        self.assertEqual(interval.end_kind, "stop")

    def test_sigkill_ends_the_interval_no_earlier_than_the_kill(self):
        process = self.spawn()
        self.wait_heartbeats(process.pid, 2)
        sent = time.monotonic()
        process.kill()
        process.wait(10)
        wait_for(lambda: any(r.kind == "exit" for r in self.records_of(process.pid)), 5,
                 what="the exit record")
        records = self.records_of(process.pid)
        self.assertNotIn("stop", [r.kind for r in records])
        [interval] = intervals(records)
        self.assertEqual(interval.end_kind, "exit")
        # The safety property: the recorded end is not before the process died,
        # and so not before we sent the signal that killed it.
        self.assertGreaterEqual(interval.end, sent)
        self.assertGreater(interval.end, interval.last_seen)
        self.assertEqual(self.collector.watched(), set())

    def test_heartbeats_every_interval(self):
        process = self.spawn("--interval", "0.05")
        self.wait_heartbeats(process.pid, 10)
        process.kill()
        process.wait(10)
        beats = [r.t for r in self.records_of(process.pid) if r.kind == "heartbeat"]
        gaps = [b - a for a, b in zip(beats, beats[1:])]
        self.assertGreaterEqual(min(gaps), 0.045)

    def test_http_answers_with_the_identity(self):
        port = _free_port("127.0.0.31")
        process = self.spawn("--http", f"127.0.0.31:{port}")
        self.wait_heartbeats(process.pid, 1)
        with urllib.request.urlopen(f"http://127.0.0.31:{port}/", timeout=5) as response:
            body = json.load(response)
        self.assertEqual((body["node"], body["cluster"], body["epoch"], body["pid"]),
                         ("alpha", "A", 2, process.pid))
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(10), 0)

    def test_two_overlapping_real_instances_are_flagged(self):
        first = self.spawn()
        self.wait_heartbeats(first.pid, 1)
        second = self.spawn(env={"CLSD_NODE": "beta"})
        self.wait_heartbeats(second.pid, 1)
        first.kill()
        second.kill()
        first.wait(10)
        second.wait(10)
        self.assertTrue(self.collector.wait_idle(5))
        report = check(read_records(self.dir))
        [overlap] = report.overlaps
        self.assertEqual(overlap.nodes, ("alpha", "beta"))

    def test_escaping_copy_records_in_a_session_of_its_own_and_outlives_a_term(self):
        # What process-group containment cannot stop: the copy that records
        # is a grandchild in its own session; TERM to the started process
        # ends it alone.
        process = self.spawn("--escape")
        wait_for(lambda: any(r.kind == "heartbeat" for r in read_records(self.dir).records),
                 15, what="a heartbeat of the escaped copy")
        [start] = [r for r in read_records(self.dir).records if r.kind == "start"]
        self.assertNotEqual(start.pid, process.pid)
        self.assertTrue(start.lifeline)
        self.assertNotEqual(os.getsid(start.pid), os.getsid(process.pid))
        self.addCleanup(_kill_quietly, start.pid)
        process.send_signal(signal.SIGTERM)
        self.assertEqual(process.wait(10), 0)
        self.wait_heartbeats(start.pid, len([r for r in self.records_of(start.pid)
                                             if r.kind == "heartbeat"]) + 3)
        self.assertNotIn("stop", [r.kind for r in self.records_of(start.pid)])
        os.kill(start.pid, signal.SIGTERM)
        wait_for(lambda: [r.kind for r in self.records_of(start.pid)][-2:] == ["stop", "exit"],
                 10, what="the escaped copy's stop and exit")

    def test_started_process_of_an_escaping_service_exits_1_when_its_copy_dies(self):
        process = self.spawn("--escape")
        wait_for(lambda: any(r.kind == "start" for r in read_records(self.dir).records),
                 15, what="the escaped copy's start")
        [start] = [r for r in read_records(self.dir).records if r.kind == "start"]
        os.kill(start.pid, signal.SIGKILL)
        self.assertEqual(process.wait(10), 1)

    def test_missing_identity_is_a_clear_error(self):
        process = subprocess.Popen(
            [sys.executable, "-m", "rig.protected_service", "--record", self.dir],
            env={k: v for k, v in os.environ.items() if not k.startswith("CLSD_")},
            stderr=subprocess.PIPE,
        )
        _, err = process.communicate(timeout=20)
        self.assertEqual(process.returncode, 2)
        self.assertIn(b"no node name: set CLSD_NODE or pass --node", err)

    def test_without_a_collector_start_says_so(self):
        self.collector.stop()
        process = self.spawn()
        self.wait_heartbeats(process.pid, 1)
        process.send_signal(signal.SIGTERM)
        process.wait(10)
        start = self.records_of(process.pid)[0]
        self.assertFalse(start.lifeline)


def _kill_quietly(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _free_port(host):
    import socket

    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
