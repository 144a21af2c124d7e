"""Warm start gates: the next instance's gate shell, started before it is needed.

Real processes on trial's reactor (no root needed): a warm gate runs
nothing until it is claimed, runs the hooks before the program, and an
unclaimed or refused one exits without running the program.
"""

import os

from twisted.internet import defer, reactor, task
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.supervision.context import ExecContext
from clsd.supervision.spawn import GATE_CLOSED_STATUS, GateReserve, WarmGate
from clsd.polling import poll
from clsd.supervision.pgroups import pid_alive


class Recorder(ProcessProtocol):
    def __init__(self):
        self.connected_pid = None
        self.exit = None
        self.ended = defer.Deferred()

    def connectionMade(self):
        self.connected_pid = self.transport.pid

    def processExited(self, reason):
        self.exit = reason.value.exitCode

    def processEnded(self, reason):
        self.ended.callback(None)


class WarmGateTests(unittest.TestCase):
    timeout = 30

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.marker = os.path.join(self.base, "ran")

    def context(self, word="first"):
        return ExecContext(argv=("/bin/sh", "-c", f'echo {word} $$ > "$0"', self.marker),
                           env={"PATH": "/usr/bin:/bin"})

    def ran(self):
        try:
            with open(self.marker) as f:
                return f.read().split()
        except FileNotFoundError:
            return None

    @defer.inlineCallbacks
    def test_nothing_runs_before_the_claim_then_hooks_run_first(self):
        gate = WarmGate(reactor, self.context())
        yield poll(reactor, lambda: pid_alive(gate.pid), 5, what="the gate")
        yield task.deferLater(reactor, 0.2, lambda: None)  # time enough to misbehave
        self.assertIsNone(self.ran(), "the program ran before its claim")
        self.assertTrue(gate.usable)
        seen = []
        protocol = Recorder()
        transport = gate.claim(protocol, [lambda pid: seen.append(("place", pid, self.ran())),
                                          lambda pid: seen.append(("arm", pid, self.ran()))])
        self.assertEqual(seen, [("place", gate.pid, None), ("arm", gate.pid, None)])
        self.assertEqual(protocol.connected_pid, gate.pid)
        self.assertIs(transport, gate.transport)
        yield protocol.ended
        self.assertEqual(self.ran(), ["first", str(gate.pid)], "the program keeps the pid")
        self.assertEqual(protocol.exit, 0)
        self.assertFalse(gate.usable)

    @defer.inlineCallbacks
    def test_a_discarded_gate_exits_unreported_without_running(self):
        gate = WarmGate(reactor, self.context())
        yield gate.discard()
        self.assertIsNone(self.ran())
        self.assertEqual(gate._relay.reason.value.exitCode, GATE_CLOSED_STATUS)
        self.assertFalse(pid_alive(gate.pid))
        self.assertFalse(gate.usable)

    @defer.inlineCallbacks
    def test_a_failing_hook_keeps_the_gate_shut(self):
        gate = WarmGate(reactor, self.context())

        def refuse(pid):
            raise OSError(13, "Permission denied")
        self.assertRaises(OSError, gate.claim, Recorder(), [refuse])
        yield gate._relay.ended
        self.assertIsNone(self.ran())
        self.assertEqual(gate._relay.reason.value.exitCode, GATE_CLOSED_STATUS)

    @defer.inlineCallbacks
    def test_the_reserve_hands_out_a_gate_only_for_the_same_context(self):
        reserve = GateReserve(reactor, delay=0.0)
        reserve.refill(self.context("first"))
        yield poll(reactor, lambda: reserve._gate is not None, 5, what="the refill")
        gate = reserve._gate
        self.assertIsNone(reserve.take(self.context("second")), "another environment")
        yield gate._relay.ended          # that one was discarded
        reserve.refill(self.context("first"))
        yield poll(reactor, lambda: reserve._gate is not None, 5, what="the refill")
        same = reserve.take(self.context("first"))
        self.assertIsNotNone(same)
        protocol = Recorder()
        same.claim(protocol, [])
        yield protocol.ended
        self.assertEqual(self.ran(), ["first", str(same.pid)])
        yield reserve.close()

    @defer.inlineCallbacks
    def test_a_refill_for_another_context_replaces_the_waiting_gate(self):
        # A group's next member is warmed for the new tenure while an earlier
        # tenure's gate still waits: that one is discarded, not kept.
        reserve = GateReserve(reactor, delay=0.0)
        reserve.refill(self.context("first"))
        yield poll(reactor, lambda: reserve._gate is not None, 5, what="the refill")
        stale = reserve._gate
        reserve.refill(self.context("second"))
        yield stale._relay.ended
        yield poll(reactor, lambda: reserve._gate is not None, 5, what="the new gate")
        self.assertEqual(reserve._gate.context, self.context("second"))
        self.assertIsNone(self.ran(), "the stale gate ran its program")
        yield reserve.close()

    def test_a_closed_reserve_starts_nothing(self):
        clock = Clock()
        reserve = GateReserve(clock, delay=0.05)
        reserve.refill(self.context())
        self.successResultOf(reserve.close())
        clock.advance(1.0)
        self.assertIsNone(reserve._gate)
        self.assertEqual(clock.getDelayedCalls(), [])
