"""``status --watch`` through the real OpenSSH client against the demo cluster.

The demo's three ``twistd -n clsd`` daemons (lease 0.6 s, loopback addresses reserved from
the rig's pool). ``ssh -tt`` (a pty) watches beta's status while alpha, the owner of A,
is killed with -9: the screen (a frame per redraw, each starting by clearing the screen)
changes within 1 s of the kill (the first sign: beta's membership events under the tables),
shows A moving and then running on beta, and ``q`` ends the session with status 0; then
``why A`` on beta gives the move with its cause chain. Without a pty (``ssh HOST status --watch``, its output a pipe) the
frames come as plain text, no escape sequences, and ``q`` on its input ends it too.
"""

import os
import re
import shutil
import tempfile
import time

from twisted.internet import defer, protocol, reactor, task
from twisted.trial import unittest

from clsd.demo.cluster import SSH_PORT, ClusterDemo
from tests.integration.test_demo import reserved_first_address
from tests.support.rig_support import require_tool

CLEAR = b"\x1b[2J"
#: The screen changes within this long of the kill (the issue's bound).
CHANGE_BOUND = 1.0
#: Lease (s) of the cluster here (the demo's fast profile is 1 s).
LEASE = 0.6


class Watching(protocol.ProcessProtocol):
    """An ssh process: every chunk of output with its arrival time (monotonic)."""

    def __init__(self):
        self.chunks = []
        self.err = b""
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.chunks.append((time.monotonic(), data))

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.ended.callback(reason.value.exitCode)

    @property
    def output(self):
        return b"".join(data for _, data in self.chunks)

    def frames(self):
        """(arrival time, text) of each frame drawn on the pty (cut at each clear)."""
        found = []
        for when, data in self.chunks:
            parts = data.split(CLEAR)
            if found and parts[0]:
                found[-1] = (found[-1][0], found[-1][1] + parts[0])
            found.extend((when, part) for part in parts[1:])
        return [(when, text.decode("utf-8", "replace")) for when, text in found]


def row(text, first_word):
    """The line of a table whose first word is C{first_word} (a cluster, a member)."""
    for line in text.replace("\r", "").split("\n"):
        if line.split()[:1] == [first_word]:
            return " ".join(line.split())
    return None


class WatchOverSSHTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        require_tool("ssh", "openssh-client")
        self.workdir = tempfile.mkdtemp(prefix="clsd-watch-")
        self.addCleanup(shutil.rmtree, self.workdir, True)
        self.demo = ClusterDemo(self.workdir, lambda line: None, fast=True,
                                first_address=reserved_first_address(self))
        # The failover bench's fast profile: the lease ends within 0.6 s of the kill, so what
        # the bound measures is the view's own delay, not the lease's.
        self.demo.lease = LEASE
        self.addCleanup(self.demo.close)
        self.demo.start()

    def spawn(self, node, *command, pty):
        watching = Watching()
        args = ["ssh", *(["-tt"] if pty else ["-T"]), "-i", self.demo.key, "-p", str(SSH_PORT),
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
                f"admin@{self.demo.nodes.address(node)}", *command]
        process = reactor.spawnProcess(watching, shutil.which("ssh"), args,
                                       env={"PATH": os.environ.get("PATH", ""),
                                            "HOME": self.workdir})
        self.addCleanup(lambda: watching.ended.called or process.signalProcess("KILL"))
        return watching, process

    @defer.inlineCallbacks
    def until(self, predicate, bound, what):
        deadline = time.monotonic() + bound
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"not within {bound} s: {what}")
            yield task.deferLater(reactor, 0.05, lambda: None)

    @defer.inlineCallbacks
    def test_the_screen_follows_a_failover_and_q_ends_it(self):
        watching, process = self.spawn("beta", "status", "--watch", pty=True)
        yield self.until(lambda: any(row(t, "A") and "running on alpha" in row(t, "A")
                                     for _, t in watching.frames()), 30,
                         f"a first frame with A on alpha: {watching.output[-2000:]!r}")
        before = watching.frames()[-1][1]
        for line in before.replace("\r", "").split("\n"):
            self.assertLessEqual(len(line), 79, line)
        self.assertLessEqual(len(before.replace("\r", "").rstrip("\n").split("\n")), 23)
        seen = len(watching.frames())
        killed = time.monotonic()
        self.demo.nodes.kill("alpha")

        def changed():
            return [(when, text) for when, text in watching.frames()[seen:]
                    if (row(text, "A"), row(text, "alpha"))
                    != (row(before, "A"), row(before, "alpha"))]
        yield self.until(changed, 10, "a frame where A or alpha changed")
        first, first_text = watching.frames()[seen]
        when, text = changed()[0]
        news = [line for line in first_text.replace("\r", "").split("\n")
                if line not in before.replace("\r", "").split("\n")]
        print(f"\nscreen changed {first - killed:.3f} s after the kill ({news}); "
              f"A or alpha's row {when - killed:.3f} s after it: "
              f"A: {row(text, 'A')!r}; alpha: {row(text, 'alpha')!r}")
        self.assertLess(first - killed, CHANGE_BOUND, news)
        yield self.until(lambda: "running on beta" in (row(watching.frames()[-1][1], "A") or ""),
                         20, "A shown running on beta")
        process.write(b"q")
        status = yield watching.ended.addTimeout(10, reactor)
        self.assertEqual(status, 0, watching.err)
        # why A on beta, which took it over: the move and its cause chain.
        why, _ = self.spawn("beta", "why", "A", pty=False)
        status = yield why.ended.addTimeout(30, reactor)
        text = why.output.decode()
        print(text)
        self.assertEqual(status, 0, why.err)
        self.assertRegex(text, r"latest change: .*moved from alpha to beta \(epoch \d+\)")
        self.assertIn("  <- ", text)
        self.assertRegex(text, r"<- lease epoch \d+ of alpha expired")

    @defer.inlineCallbacks
    def test_plain_frames_without_a_pty(self):
        watching, process = self.spawn("witness", "clusters", "--watch", pty=False)
        yield self.until(lambda: b"recent events:" in watching.output, 30,
                         f"a plain frame: {watching.output!r}")
        process.write(b"q\n")
        status = yield watching.ended.addTimeout(10, reactor)
        self.assertEqual(status, 0, watching.err)
        text = watching.output.decode()
        self.assertNotIn("\x1b", text)
        self.assertRegex(text, r"clusters --watch  \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ")
        self.assertTrue(re.search(r"\nA +running on alpha +alpha +\d+ +not registered\n", text),
                        text)
