"""Health checkers with fakes: MemoryReactorClock, StringTransport, a fake spawn.

Real processes and sockets are in test_supervision_health_loopback.
"""

import errno
import os
import signal

import attrs
from twisted.internet import error
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
)
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.config.service import HealthCheck
from clsd.supervision.context import minimal_environment
from clsd.supervision import health
from clsd.supervision.health import (
    CheckResult,
    ExecChecker,
    HTTPChecker,
    TCPChecker,
    client_endpoint,
    make_checker,
)


class FakeMonotonic:
    """A monotonic clock the test moves by hand (the reactor's Clock is separate)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def result_of(d):
    """The L{CheckResult} of a check that must have finished (a check never fails)."""
    results = []

    def keep(result):
        results.append(result)
        return result

    d.addBoth(keep)
    assert results, "the check has not finished"
    assert isinstance(results[0], CheckResult), results[0]
    return results[0]


class MakeCheckerTests(unittest.TestCase):
    def test_dispatch_by_type(self):
        reactor = MemoryReactorClock()
        cases = [
            (HealthCheck("exec", ("true",)), ExecChecker),
            (HealthCheck("tcp", ("127.0.0.1", 80)), TCPChecker),
            (HealthCheck("http", "http://127.0.0.1/"), HTTPChecker),
        ]
        for check, kind in cases:
            checker = make_checker(check, reactor)
            self.assertIsInstance(checker, kind)
            self.assertEqual(checker.timeout, check.timeout)

    def test_unknown_type(self):
        e = self.assertRaises(ValueError, make_checker,
                              HealthCheck("udp", ("127.0.0.1", 53)), MemoryReactorClock())
        self.assertIn("'udp'", str(e))

    def test_result_is_frozen(self):
        result = CheckResult(ok=True, detail="x", latency=0.1)
        self.assertRaises(attrs.exceptions.FrozenInstanceError, setattr, result, "ok", False)


@attrs.define
class FakeProcessTransport:
    pid: int
    lost: bool = False

    def loseConnection(self):
        self.lost = True


class ExecCheckerTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.monotonic = FakeMonotonic()
        self.spawned = []
        self.killed = []
        self.transport = FakeProcessTransport(pid=4242)

    def spawn(self, reactor, protocol, argv, env):
        self.assertIs(reactor, self.reactor)
        self.spawned.append((protocol, argv, env))
        return self.transport

    def kill_group(self, pgid, signum):
        self.killed.append((pgid, signum))
        return True

    def checker(self, argv=("probe", "--quick"), timeout=0.5, env=None):
        return ExecChecker(
            argv, timeout, self.reactor, monotonic=self.monotonic,
            spawn=self.spawn, kill_group=self.kill_group, env=env,
        )

    def start(self, **kwargs):
        d = self.checker(**kwargs).check()
        [(protocol, argv, env)] = self.spawned
        return d, protocol

    def test_runs_argv_without_shell(self):
        self.start(argv=["/usr/lib/check", "a b"], env={"PATH": "/bin"})
        [(_, argv, env)] = self.spawned
        self.assertEqual(argv, ("/usr/lib/check", "a b"))
        self.assertEqual(env, {"PATH": "/bin"})

    def test_minimal_environment_by_default(self):
        os.environ["CLSD_TEST_LEAK"] = "x"
        self.addCleanup(os.environ.pop, "CLSD_TEST_LEAK")
        self.start()
        [(_, _, env)] = self.spawned
        self.assertEqual(env, minimal_environment())
        self.assertNotIn("CLSD_TEST_LEAK", env)

    def test_exit_zero_passes_with_output_tail(self):
        d, protocol = self.start()
        protocol.outReceived(b"all\n")
        protocol.errReceived(b"  good  \n")
        self.monotonic.now += 0.042
        self.assertNoResult(d)
        protocol.processEnded(Failure(error.ProcessDone(0)))
        result = result_of(d)
        self.assertEqual(result, CheckResult(ok=True, detail="exit 0: all good",
                                             latency=result.latency))
        self.assertAlmostEqual(result.latency, 0.042)

    def test_nonzero_exit_fails_with_code_and_output(self):
        d, protocol = self.start()
        protocol.errReceived(b"database unreachable\n")
        protocol.processEnded(Failure(error.ProcessTerminated(exitCode=2)))
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertEqual(result.detail, "exit 2: database unreachable")

    def test_exit_without_output(self):
        d, protocol = self.start()
        protocol.processEnded(Failure(error.ProcessTerminated(exitCode=1)))
        self.assertEqual(result_of(d).detail, "exit 1")

    def test_killed_by_signal_fails(self):
        d, protocol = self.start()
        protocol.processEnded(Failure(error.ProcessTerminated(signal=signal.SIGSEGV)))
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertEqual(result.detail, "killed by SIGSEGV")

    def test_output_tail_is_bounded(self):
        d, protocol = self.start()
        for _ in range(1000):
            protocol.outReceived(b"x" * 100)
        self.assertLessEqual(len(protocol._output), health.OUTPUT_BUFFER_BYTES)
        protocol.outReceived(b"THE END")
        protocol.processEnded(Failure(error.ProcessTerminated(exitCode=1)))
        detail = result_of(d).detail
        self.assertTrue(detail.endswith("xxxTHE END"), detail)
        self.assertLessEqual(len(detail), len("exit 1: ") + health.OUTPUT_TAIL_CHARS)

    def test_timeout_kills_the_group_and_closes_pipes(self):
        d, protocol = self.start(timeout=0.5)
        self.reactor.advance(0.49)
        self.assertNoResult(d)
        self.assertEqual(self.killed, [])
        self.monotonic.now += 0.5
        self.reactor.advance(0.01)
        result = result_of(d)
        self.assertEqual(result, CheckResult(ok=False, detail="timed out after 0.5s",
                                             latency=0.5))
        self.assertEqual(self.killed, [(4242, signal.SIGKILL)])
        self.assertTrue(self.transport.lost)
        # The killed probe is reaped later: that must change nothing.
        protocol.processEnded(Failure(error.ProcessTerminated(signal=signal.SIGKILL)))
        self.assertEqual(result_of(d).detail, "timed out after 0.5s")

    def test_cancel_abandons_the_probe(self):
        d, protocol = self.start()
        d.cancel()
        result = result_of(d)
        self.assertEqual((result.ok, result.detail), (False, "cancelled"))
        self.assertEqual(self.killed, [(4242, signal.SIGKILL)])
        self.assertTrue(self.transport.lost)
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_finished_probe_cancels_its_timer(self):
        d, protocol = self.start()
        protocol.processEnded(Failure(error.ProcessDone(0)))
        self.assertEqual(self.reactor.getDelayedCalls(), [])
        self.reactor.advance(10)
        self.assertEqual(self.killed, [])

    def test_program_not_found(self):
        def spawn(reactor, protocol, argv, env):
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", argv[0])

        checker = ExecChecker(("nosuchprobe",), 0.5, self.reactor, spawn=spawn)
        result = result_of(checker.check())
        self.assertFalse(result.ok)
        self.assertEqual(result.detail,
                         "cannot run 'nosuchprobe': No such file or directory")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_unexpected_spawn_error_is_a_failed_result(self):
        def spawn(reactor, protocol, argv, env):
            raise RuntimeError("reactor cannot spawn")

        result = result_of(ExecChecker(("p",), 0.5, self.reactor, spawn=spawn).check())
        self.assertFalse(result.ok)
        self.assertEqual(result.detail, "probe could not start: reactor cannot spawn")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_each_check_is_a_new_probe(self):
        checker = self.checker()
        first, second = checker.check(), checker.check()
        self.assertEqual(len(self.spawned), 2)
        self.spawned[1][0].processEnded(Failure(error.ProcessDone(0)))
        self.assertTrue(result_of(second).ok)
        self.assertNoResult(first)


class TCPCheckerTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.monotonic = FakeMonotonic()

    def start(self, target=("127.0.0.1", 8080), timeout=0.5):
        checker = TCPChecker(target, timeout, self.reactor, monotonic=self.monotonic)
        return checker.check()

    def test_connects_to_target(self):
        self.start(("127.0.0.1", 8080))
        [(host, port, _, _, _)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 8080))

    def test_connected_passes_and_closes(self):
        d = self.start()
        factory = self.reactor.tcpClients[0][2]
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8080))
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        self.monotonic.now += 0.003
        protocol.makeConnection(transport)
        result = result_of(d)
        self.assertEqual((result.ok, result.detail), (True, "connected"))
        self.assertAlmostEqual(result.latency, 0.003)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_refused_fails(self):
        d = self.start()
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(self.reactor.connectors[0],
                                       Failure(error.ConnectionRefusedError()))
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertEqual(result.detail, "connection refused")

    def test_other_connect_error_fails_with_reason(self):
        d = self.start()
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(
            self.reactor.connectors[0], Failure(error.NoRouteError(string="no route")))
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertIn("cannot connect", result.detail)
        self.assertIn("no route", result.detail)

    def test_timeout_stops_connecting(self):
        d = self.start(timeout=0.25)
        self.reactor.advance(0.2)
        self.assertNoResult(d)
        self.reactor.advance(0.05)
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertEqual(result.detail, "timed out after 0.25s")
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_ipv6_target(self):
        self.start(("::1", 8080))
        self.assertEqual(self.reactor.tcpClients[0][:2], ("::1", 8080))

    def test_endpoint_kinds(self):
        self.assertIsInstance(client_endpoint(self.reactor, "127.0.0.1", 1), TCP4ClientEndpoint)
        self.assertIsInstance(client_endpoint(self.reactor, "::1", 1), TCP6ClientEndpoint)
        self.assertIsInstance(client_endpoint(self.reactor, "localhost", 1), HostnameEndpoint)


class TCPStringTransport(StringTransport):
    """A StringTransport with the TCP option that Agent sets through a TLS layer."""

    def setTcpNoDelay(self, enabled):
        self.no_delay = enabled


class HTTPCheckerTests(unittest.TestCase):
    def setUp(self):
        self.reactor = MemoryReactorClock()
        self.monotonic = FakeMonotonic()

    def start(self, url="http://127.0.0.1:8080/healthz", timeout=0.5):
        checker = HTTPChecker(url, timeout, self.reactor, monotonic=self.monotonic)
        return checker.check()

    def connect(self):
        """Accept the checker's connection; the transport shows what it sent."""
        factory = self.reactor.tcpClients[0][2]
        address = IPv4Address("TCP", "127.0.0.1", 8080)
        protocol = factory.buildProtocol(address)
        transport = TCPStringTransport(peerAddress=address)
        protocol.makeConnection(transport)
        return protocol, transport

    def respond(self, status_line, body=b""):
        d = self.start()
        protocol, transport = self.connect()
        protocol.dataReceived(
            status_line + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
        return result_of(d), transport

    def test_request(self):
        self.start("http://127.0.0.1:8080/healthz?deep=1")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 8080))
        _, transport = self.connect()
        request = transport.value()
        self.assertTrue(request.startswith(b"GET /healthz?deep=1 HTTP/1.1\r\n"), request)
        self.assertIn(b"Host: 127.0.0.1:8080", request)
        self.assertIn(b"User-Agent: clsd-health-check", request)

    def test_2xx_and_3xx_pass(self):
        for status, detail in [(b"HTTP/1.1 200 OK", "HTTP 200 OK"),
                               (b"HTTP/1.1 204 No Content", "HTTP 204 No Content"),
                               (b"HTTP/1.1 302 Found", "HTTP 302 Found")]:
            self.reactor.tcpClients.clear()
            result, transport = self.respond(status, b"body")
            self.assertEqual((result.ok, result.detail), (True, detail))
            self.assertTrue(transport.disconnecting, "connection left open")

    def test_4xx_and_5xx_fail(self):
        for status, detail in [
            (b"HTTP/1.1 503 Service Unavailable", "HTTP 503 Service Unavailable"),
            (b"HTTP/1.1 404 Not Found", "HTTP 404 Not Found"),
            (b"HTTP/1.1 400 Bad Request", "HTTP 400 Bad Request"),
        ]:
            self.reactor.tcpClients.clear()
            result, _ = self.respond(status)
            self.assertEqual((result.ok, result.detail), (False, detail))

    def test_latency(self):
        d = self.start()
        protocol, _ = self.connect()
        self.monotonic.now += 0.125
        protocol.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.assertEqual(result_of(d).latency, 0.125)

    def test_refused(self):
        d = self.start()
        factory = self.reactor.tcpClients[0][2]
        factory.clientConnectionFailed(self.reactor.connectors[0],
                                       Failure(error.ConnectionRefusedError()))
        self.assertEqual(result_of(d).detail, "connection refused")

    def test_connection_closed_before_response(self):
        d = self.start()
        protocol, _ = self.connect()
        protocol.connectionLost(Failure(error.ConnectionDone()))
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertTrue(result.detail.startswith("no HTTP response:"), result.detail)

    def test_garbage_response(self):
        d = self.start()
        protocol, _ = self.connect()
        protocol.dataReceived(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        result = result_of(d)
        self.assertFalse(result.ok)
        self.assertTrue(result.detail.startswith("no HTTP response:"), result.detail)

    def test_timeout_while_connecting(self):
        d = self.start(timeout=0.5)
        self.reactor.advance(0.5)
        self.assertEqual(result_of(d).detail, "timed out after 0.5s")
        self.assertTrue(self.reactor.connectors[0].stoppedConnecting)

    def test_timeout_waiting_for_response_aborts(self):
        d = self.start(timeout=0.5)
        _, transport = self.connect()
        self.reactor.advance(0.4)
        self.assertNoResult(d)
        self.reactor.advance(0.1)
        result = result_of(d)
        self.assertEqual((result.ok, result.detail), (False, "timed out after 0.5s"))
        self.assertTrue(transport.disconnected, "connection not aborted")

    def test_answer_read_in_the_turn_of_the_timeout_passes(self):
        # A daemon woken late runs its due timers before it reads its sockets:
        # the answer read in that same turn, after the timer, still counts.
        d = self.start(timeout=0.5)
        protocol, transport = self.connect()
        self.reactor.callLater(0.5, protocol.dataReceived,
                               b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        self.reactor.advance(0.5)
        result = result_of(d)
        self.assertEqual((result.ok, result.detail), (True, "HTTP 200 OK"))
        self.assertFalse(transport.disconnected, "an answered probe was aborted")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_no_answer_one_turn_after_the_timeout_times_out(self):
        d = self.start(timeout=0.5)
        _, transport = self.connect()
        self.reactor.advance(0.5)
        self.assertEqual(result_of(d).detail, "timed out after 0.5s")
        self.assertTrue(transport.disconnected, "connection not aborted")
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_cancel_aborts_the_connection(self):
        d = self.start()
        _, transport = self.connect()
        d.cancel()
        self.assertEqual(result_of(d).detail, "cancelled")
        self.assertTrue(transport.disconnected)
        self.assertEqual(self.reactor.getDelayedCalls(), [])

    def test_https_uses_tls(self):
        self.start("https://127.0.0.1:8443/")
        self.assertEqual(self.reactor.tcpClients[0][:2], ("127.0.0.1", 8443))
        _, transport = self.connect()
        # The first bytes on the wire are a TLS handshake record, not "GET".
        self.assertEqual(transport.value()[:1], b"\x16")
