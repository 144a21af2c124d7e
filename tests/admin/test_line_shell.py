"""The shell without a terminal, fed by hand: line framing, end of input, the line bound."""

from twisted.internet import defer
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clsd.admin.commands import EXIT_OK, EXIT_USAGE, Outcome
from clsd.admin.shell import MAX_LINE_BYTES, LineShell


class Host:
    """Answers each command at once, or holds it when C{hold} is set."""

    def __init__(self):
        self.ran, self.errors, self.ended = [], [], []
        self.hold = False
        self.held = []

    def run(self, line):
        self.ran.append(line)
        status = EXIT_USAGE if line == "bogus" else EXIT_OK
        outcome = Outcome(status, stdout=f"ran {line}\n")
        if self.hold:
            d = defer.Deferred()
            self.held.append((d, outcome))
            return d
        return defer.succeed(outcome)

    def write_error(self, text):
        if text:
            self.errors.append(text)

    def end(self, status):
        self.ended.append(status)


class LineShellTests(unittest.TestCase):
    def setUp(self):
        self.host = Host()
        self.shell = LineShell(self.host)
        self.transport = StringTransport()
        self.shell.makeConnection(self.transport)

    def test_lines_split_across_chunks_run_in_order(self):
        for chunk in (b"sta", b"tus\n\n  members \nbo", b"gus\n"):
            self.shell.dataReceived(chunk)
        self.assertEqual(self.host.ran, ["status", "members", "bogus"])
        self.assertEqual(self.transport.value(), b"ran status\nran members\nran bogus\n")
        self.assertEqual(self.host.ended, [])

    def test_end_of_input_runs_the_last_partial_line_and_ends_with_its_status(self):
        self.shell.dataReceived(b"status\nbogus")
        self.shell.eofReceived()
        self.assertEqual(self.host.ran, ["status", "bogus"])
        self.assertEqual(self.host.ended, [EXIT_USAGE])

    def test_commands_wait_for_the_one_running(self):
        self.host.hold = True
        self.shell.dataReceived(b"status\nmembers\n")
        self.assertEqual(self.host.ran, ["status"])
        d, outcome = self.host.held.pop()
        d.callback(outcome)
        self.assertEqual(self.host.ran, ["status", "members"])

    def test_an_over_long_line_ends_the_session_without_running_its_chunk(self):
        self.shell.dataReceived(b"status\n")
        self.shell.dataReceived(b"members\n" + b"x" * (MAX_LINE_BYTES + 1))
        self.assertEqual(self.host.ran, ["status"])
        self.assertEqual(self.host.errors, [f"error: line longer than {MAX_LINE_BYTES} bytes\n"])
        self.assertEqual(self.host.ended, [EXIT_OK])
        # Nothing more is buffered or run once the session has ended.
        self.shell.dataReceived(b"x" * MAX_LINE_BYTES + b"\nstatus\n")
        self.assertEqual(self.shell._buffer, b"")
        self.assertEqual(self.host.ran, ["status"])
        self.assertEqual(self.host.ended, [EXIT_OK])

    def test_an_over_long_line_arriving_whole_is_refused_too(self):
        self.shell.dataReceived(b"y" * (MAX_LINE_BYTES + 1) + b"\nstatus\n")
        self.assertEqual(self.host.ran, [])
        self.assertEqual(len(self.host.errors), 1)
        self.assertEqual(self.host.ended, [EXIT_OK])
