"""Tests for L{clsd.supervision.process}: output files and exit statuses."""

import os

from twisted.internet import error
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.config import LogFiles
from clsd.supervision.process import (
    DiscardedOutput, ServiceOutput, ServiceProcessProtocol, exit_status,
)


class ExitStatusTests(unittest.TestCase):
    def test_statuses(self):
        self.assertEqual(exit_status(Failure(error.ProcessDone(0))), (0, None))
        self.assertEqual(exit_status(Failure(error.ProcessTerminated(3, None, 768))),
                         (3, None))
        self.assertEqual(exit_status(Failure(error.ProcessTerminated(None, 9, 9))),
                         (None, 9))


class ServiceOutputTests(unittest.TestCase):
    def test_shared_file_and_directory_creation(self):
        base = self.mktemp()
        path = os.path.join(base, "logs", "web.log")
        output = ServiceOutput(LogFiles(stdout=path, stderr=path))
        output.out(b"out\n")
        output.err(b"err\n")
        output.close()
        with open(path, "rb") as f:
            self.assertEqual(f.read(), b"out\nerr\n")

    def test_separate_files(self):
        base = self.mktemp()
        out, err = os.path.join(base, "o.log"), os.path.join(base, "e.log")
        output = ServiceOutput(LogFiles(stdout=out, stderr=err))
        output.out(b"1")
        output.err(b"2")
        output.close()
        with open(out, "rb") as f:
            self.assertEqual(f.read(), b"1")
        with open(err, "rb") as f:
            self.assertEqual(f.read(), b"2")

    def test_rotation_keeps_backups(self):
        base = self.mktemp()
        path = os.path.join(base, "web.log")
        output = ServiceOutput(LogFiles(stdout=path, stderr=path, max_bytes=1024, backups=2))
        for i in range(5):
            output.out(bytes([65 + i]) * 1024)
        output.close()
        self.assertEqual(sorted(os.listdir(base)), ["web.log", "web.log.1", "web.log.2"])
        with open(path + ".1", "rb") as f:
            self.assertEqual(f.read(), b"D" * 1024)

    def test_zero_backups_keeps_none(self):
        base = self.mktemp()
        path = os.path.join(base, "web.log")
        output = ServiceOutput(LogFiles(stdout=path, stderr=path, max_bytes=1024, backups=0))
        for _ in range(3):
            output.out(b"x" * 1024)
        output.close()
        self.assertEqual(os.listdir(base), ["web.log"])

    def test_writes_after_close_are_dropped(self):
        path = os.path.join(self.mktemp(), "web.log")
        output = ServiceOutput(LogFiles(stdout=path, stderr=path))
        output.close()
        output.out(b"late")  # no exception
        self.assertEqual(os.path.getsize(path), 0)

    def test_unwritable_directory_raises_oserror(self):
        base = self.mktemp()
        with open(base, "w"):
            pass  # a file where the directory should be
        self.assertRaises(OSError, ServiceOutput,
                          LogFiles(stdout=os.path.join(base, "x.log"),
                                   stderr=os.path.join(base, "x.log")))


class ProtocolTests(unittest.TestCase):
    def test_events(self):
        seen = []

        class Transport:
            pid = 42
            closed = False

            def closeStdin(self):
                self.closed = True

        protocol = ServiceProcessProtocol(
            DiscardedOutput(), lambda p, pid: seen.append(("started", pid)),
            lambda p, code, sig: seen.append(("exited", code, sig)))
        transport = Transport()
        protocol.makeConnection(transport)
        self.assertTrue(transport.closed)
        protocol.processExited(Failure(error.ProcessTerminated(None, 15, 15)))
        self.assertTrue(protocol.exited)
        self.assertFalse(protocol.ended.called)
        protocol.processEnded(Failure(error.ProcessTerminated(None, 15, 15)))
        self.assertTrue(protocol.ended.called)
        self.assertEqual(seen, [("started", 42), ("exited", None, 15)])
