"""The manhole's reactor-time budget: blocking input is interrupted, the rest unaffected.

These tests use the real SIGALRM timer (that is the mechanism under test) with
a 0.2 s budget, so each interrupted call costs about 0.2 s of real time.
"""

import signal
import sys
import threading
import time

from twisted.conch.insults import insults
from twisted.internet import task
from twisted.internet.testing import StringTransport
from twisted.trial import unittest

from clsd.admin.budget import (
    REPEAT, ManholeInterrupted, ReactorTimeBudget, budget_limit,
)
from clsd.admin.shell import AdminManhole

BUDGET = 0.1
#: Generous bound for "returned in about the budget" on a loaded 2-core machine.
SLACK = 1.0


class _Host:
    role = "admin"

    def __init__(self):
        self.lines = []
        self.quit = False

    def manhole_line(self, line):
        self.lines.append(line)


class ItimerHygiene:
    """Every test must leave no timer armed and the handler as it found it."""

    def setUp(self):
        self.handler_before = signal.getsignal(signal.SIGALRM)
        self.assertEqual(signal.getitimer(signal.ITIMER_REAL), (0.0, 0.0))

    def assertClean(self):
        self.assertEqual(signal.getitimer(signal.ITIMER_REAL), (0.0, 0.0))
        self.assertIs(signal.getsignal(signal.SIGALRM), self.handler_before)


class ReactorTimeBudgetTests(ItimerHygiene, unittest.TestCase):
    def test_sleep_is_interrupted_after_the_budget(self):
        budget = ReactorTimeBudget(BUDGET)
        started = time.monotonic()
        with self.assertRaises(ManholeInterrupted) as caught:
            budget.run(time.sleep, 10)
        elapsed = time.monotonic() - started
        self.assertGreaterEqual(elapsed, BUDGET * 0.9)
        self.assertLess(elapsed, BUDGET + SLACK)
        self.assertIn("interrupted after 0.1 s", str(caught.exception))
        self.assertIn("reactor thread", str(caught.exception))
        self.assertClean()

    def test_busy_python_loop_is_interrupted(self):
        budget = ReactorTimeBudget(BUDGET)

        def spin():
            while True:
                pass

        started = time.monotonic()
        self.assertRaises(ManholeInterrupted, budget.run, spin)
        self.assertLess(time.monotonic() - started, BUDGET + SLACK)
        self.assertClean()

    def test_quick_code_returns_its_value_and_exceptions(self):
        budget = ReactorTimeBudget(BUDGET)
        self.assertEqual(budget.run(lambda a, b=0: a + b, 1, b=2), 3)
        self.assertClean()
        self.assertRaises(ZeroDivisionError, budget.run, lambda: 1 / 0)
        self.assertClean()

    def test_no_alarm_after_the_call(self):
        budget = ReactorTimeBudget(BUDGET)
        budget.run(lambda: None)
        time.sleep(BUDGET * 1.5)  # an alarm left armed would raise here
        self.assertClean()

    def test_swallowing_code_is_interrupted_again(self):
        budget = ReactorTimeBudget(BUDGET)
        caught = []

        def stubborn():
            while len(caught) < 3:
                try:
                    time.sleep(10)
                except ManholeInterrupted as e:
                    caught.append(e)
            return len(caught)

        started = time.monotonic()
        self.assertEqual(budget.run(stubborn), 3)
        self.assertLess(time.monotonic() - started, BUDGET + 2 * REPEAT + SLACK)
        self.assertClean()

    def test_previous_handler_and_timer_restored(self):
        fired = []

        def previous(signum, frame):
            fired.append(signum)

        signal.signal(signal.SIGALRM, previous)
        self.addCleanup(signal.signal, signal.SIGALRM, self.handler_before)
        self.addCleanup(signal.setitimer, signal.ITIMER_REAL, 0)
        signal.setitimer(signal.ITIMER_REAL, 5.0)
        ReactorTimeBudget(BUDGET).run(lambda: None)
        self.assertIs(signal.getsignal(signal.SIGALRM), previous)
        remaining, interval = signal.getitimer(signal.ITIMER_REAL)
        self.assertGreater(remaining, 4.0)
        self.assertLessEqual(remaining, 5.0)
        self.assertEqual(fired, [])

    def test_unavailable_outside_the_main_thread(self):
        answers = []

        def in_thread():
            budget = ReactorTimeBudget(BUDGET)
            answers.append((budget.unavailable(), budget.run(lambda: "ran")))

        thread = threading.Thread(target=in_thread)
        thread.start()
        thread.join(10)
        [(why_not, result)] = answers
        self.assertIn("main thread", why_not)
        self.assertEqual(result, "ran")
        self.assertIsNone(ReactorTimeBudget(BUDGET).unavailable())

    def test_budget_must_be_positive(self):
        self.assertRaises(ValueError, ReactorTimeBudget, 0)

    def test_limit_from_timing(self):
        # The lease round: T/8 = 0.25 s, half of it.
        self.assertAlmostEqual(budget_limit(2.0, 0.1, 1.0, 4.0), 2.0 / 16)
        # The renewal slack: a large drift margin, half of T/3 - m.
        self.assertAlmostEqual(budget_limit(2.0, 0.45, 1.0, 4.0), (2.0 / 3 - 0.45) / 2)
        self.assertAlmostEqual(budget_limit(None, None, 1.0, 4.0), 0.75)
        self.assertAlmostEqual(budget_limit(30.0, 0.1, 1.0, 4.0), 0.75)


class ManholeTerminal:
    """An AdminManhole on an insults terminal over a StringTransport, with a Clock."""

    def __init__(self, budget=BUDGET, namespace=None):
        self.clock = task.Clock()
        self.host = _Host()
        self.budget = ReactorTimeBudget(budget)
        self.protocol = insults.ServerProtocol(
            AdminManhole, namespace or {}, self.host, self.quit, self.clock, self.budget
        )
        self.transport = StringTransport()
        self.protocol.makeConnection(self.transport)
        self.manhole = self.protocol.terminalProtocol

    def quit(self):
        self.host.quit = True

    def turn(self):
        """One reactor turn: run the calls due now, not those they schedule (as the reactor does)."""
        due, self.clock.calls = self.clock.calls, []
        for call in due:
            call.called = 1
            call.func(*call.args, **call.kw)

    def type(self, data):
        self.transport.clear()
        self.protocol.dataReceived(data)
        return self.transport.value()


class AdminManholeBudgetTests(ItimerHygiene, unittest.TestCase):
    def test_banner_names_the_budget_and_the_escape_hatch(self):
        terminal = ManholeTerminal()
        banner = terminal.transport.value()
        self.assertIn(b"interrupted after 0.1 s", banner)
        self.assertIn(b"defer_to_thread", banner)

    def test_sleep_typed_in_the_manhole_returns_with_the_message(self):
        terminal = ManholeTerminal()
        started = time.monotonic()
        output = terminal.type(b"import time; time.sleep(10)\r")
        elapsed = time.monotonic() - started
        self.assertLess(elapsed, BUDGET + SLACK)
        self.assertIn(b"ManholeInterrupted: interrupted after 0.1 s: manhole code runs on "
                      b"the reactor thread", output)
        self.assertIn(b"defer_to_thread", output)
        self.assertEqual(terminal.host.lines, ["import time; time.sleep(10)"])
        self.assertClean()
        # The manhole goes on working afterwards.
        terminal.clock.advance(1)
        self.assertIn(b"42", terminal.type(b"6 * 7\r"))
        self.assertClean()

    def test_normal_code_unaffected(self):
        namespace = {"state": {"epoch": 7}}
        terminal = ManholeTerminal(namespace=namespace)
        output = terminal.type(b"state['epoch'] + 1\r")
        self.assertIn(b"8", output)
        terminal.clock.advance(1)
        terminal.type(b"state['seen'] = sum(range(1000))\r")
        self.assertEqual(terminal.manhole.namespace["state"]["seen"], 499500)
        self.assertClean()

    def test_ordinary_exceptions_still_show_their_traceback(self):
        terminal = ManholeTerminal()
        output = terminal.type(b"1 / 0\r")
        self.assertIn(b"ZeroDivisionError", output)
        self.assertNotIn(b"interrupted", output)

    def test_input_after_an_interrupted_one_waits_four_times_as_long(self):
        terminal = ManholeTerminal()
        terminal.type(b"import time; time.sleep(10)\rx = 1\r")
        [call] = terminal.clock.getDelayedCalls()
        spent = terminal.budget.last_spent
        self.assertGreaterEqual(spent, BUDGET * 0.9)
        self.assertAlmostEqual(call.getTime(), 4 * spent)
        terminal.clock.advance(4 * spent - 0.01)
        self.assertNotIn("x", terminal.manhole.namespace)
        terminal.clock.advance(0.01)
        self.assertEqual(terminal.manhole.namespace["x"], 1)

    def test_alarm_never_cuts_the_clean_up(self):
        # The handler refuses to raise in run()'s own frames.
        budget = ReactorTimeBudget(BUDGET)
        budget._armed = True
        frame = sys._getframe()
        budget._alarm(signal.SIGALRM, type("F", (), {"f_code": ReactorTimeBudget.run.__code__})())
        budget._alarm(signal.SIGALRM,
                      type("F", (), {"f_code": ReactorTimeBudget._disarm.__code__})())
        self.assertRaises(ManholeInterrupted, budget._alarm, signal.SIGALRM, frame)
        budget._armed = False
        budget._alarm(signal.SIGALRM, frame)

    def test_pasted_lines_wait_for_a_reactor_turn_each(self):
        terminal = ManholeTerminal()
        terminal.type(b"a = 1\rb = a + 1\rc = b + 1\r")
        namespace = terminal.manhole.namespace
        self.assertEqual((namespace.get("a"), namespace.get("b")), (1, None))
        terminal.turn()
        self.assertEqual((namespace.get("b"), namespace.get("c")), (2, None))
        terminal.turn()
        self.assertEqual(namespace.get("c"), 3)
        terminal.turn()
        self.assertEqual(terminal.clock.getDelayedCalls(), [])
        self.assertEqual(terminal.host.lines, ["a = 1", "b = a + 1", "c = b + 1"])

    def test_held_keys_dropped_when_the_connection_goes(self):
        terminal = ManholeTerminal()
        terminal.type(b"a = 1\rb = 2\r")
        terminal.protocol.connectionLost(None)
        self.assertEqual(terminal.clock.getDelayedCalls(), [])
        self.assertNotIn("b", terminal.manhole.namespace)

    def test_defer_to_thread_is_offered(self):
        terminal = ManholeTerminal()
        self.assertTrue(callable(terminal.manhole.namespace["defer_to_thread"]))


class DeferToThreadTests(unittest.TestCase):
    """The escape hatch on a real reactor: long work runs off the reactor thread."""

    def test_result_arrives_and_the_reactor_runs_meanwhile(self):
        from twisted.internet import reactor

        protocol = insults.ServerProtocol(
            AdminManhole, {}, _Host(), lambda: None, reactor, ReactorTimeBudget(BUDGET)
        )
        protocol.makeConnection(StringTransport())
        manhole = protocol.terminalProtocol
        self.addCleanup(protocol.connectionLost, None)
        where = []

        def slow():
            where.append(threading.current_thread() is threading.main_thread())
            time.sleep(BUDGET * 2)  # longer than the budget: fine in a thread
            return "done"

        d = manhole.namespace["defer_to_thread"](slow)
        d.addCallback(self.assertEqual, "done")
        d.addCallback(lambda _: self.assertEqual(where, [False]))
        return d
