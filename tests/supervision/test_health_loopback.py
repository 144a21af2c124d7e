"""Health checkers against real processes and real sockets on 127.0.0.1 (trial's reactor).

Each type: success, failure, timeout -- and after a timeout, that the probe
was really abandoned (its processes gone, its connection closed).
"""

import datetime
import ipaddress
import os
import socket
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from twisted.internet import defer, ssl
from twisted.internet import reactor as real_reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.trial import unittest
from twisted.web import resource, server
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import implementer

from clsd.config.service import HealthCheck
from clsd.supervision.health import HTTPChecker, make_checker
from clsd.polling import poll as wait_until
from clsd.supervision.pgroups import pid_alive

LOOPBACK = "127.0.0.1"


def check(kind, target, timeout=2.0):
    return make_checker(HealthCheck(kind, target, interval=timeout, timeout=timeout),
                        real_reactor).check()


def unused_port():
    """A loopback port that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


class ExecLoopbackTests(unittest.TestCase):
    timeout = 20

    async def test_success(self):
        result = await check("exec", ("/bin/sh", "-c", "echo ready"))
        self.assertEqual((result.ok, result.detail), (True, "exit 0: ready"))
        self.assertGreater(result.latency, 0)

    async def test_failure(self):
        result = await check("exec", ("/bin/sh", "-c", "echo 'no quorum' >&2; exit 3"))
        self.assertEqual((result.ok, result.detail), (False, "exit 3: no quorum"))

    async def test_no_shell(self):
        # The argv goes to the program as it is: no word splitting, no $VARS.
        result = await check("exec", (sys.executable, "-c",
                                      "import sys; print(sys.argv[1:])", "$HOME", "a b"))
        self.assertEqual(result.detail, "exit 0: ['$HOME', 'a b']")

    async def test_missing_program(self):
        result = await check("exec", ("/nonexistent/clsd-probe",))
        self.assertFalse(result.ok)
        self.assertIn("cannot run '/nonexistent/clsd-probe'", result.detail)

    async def test_timeout_kills_the_probe_and_its_children(self):
        marker = os.path.abspath(self.mktemp())
        script = f"sleep 30 & echo $$ $! > {marker}; exec sleep 30"
        result = await check("exec", ("/bin/sh", "-c", script), timeout=0.5)
        self.assertEqual((result.ok, result.detail), (False, "timed out after 0.5s"))
        self.assertGreaterEqual(result.latency, 0.45)
        self.assertLess(result.latency, 5)
        pids = [int(pid) for pid in open(marker).read().split()]
        self.assertEqual(len(pids), 2)
        await wait_until(real_reactor, lambda: not any(pid_alive(p) for p in pids))


class TCPLoopbackTests(unittest.TestCase):
    timeout = 20

    async def test_success(self):
        connections = []

        class Recorder(Protocol):
            def connectionMade(self):
                connections.append(self)

        port = real_reactor.listenTCP(0, Factory.forProtocol(Recorder), interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        result = await check("tcp", (LOOPBACK, port.getHost().port))
        self.assertEqual((result.ok, result.detail), (True, "connected"))
        await wait_until(real_reactor, lambda: connections)

    async def test_refused(self):
        result = await check("tcp", (LOOPBACK, unused_port()))
        self.assertEqual((result.ok, result.detail), (False, "connection refused"))

    async def test_timeout(self):
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("relies on Linux dropping SYNs to a full accept queue")
        # A listener that never accepts, its queue already full: Linux drops
        # further SYNs, so a connect hangs -- a service frozen before accept().
        listener = socket.socket()
        self.addCleanup(listener.close)
        listener.bind((LOOPBACK, 0))
        listener.listen(0)
        for _ in range(4):
            filler = socket.socket()
            self.addCleanup(filler.close)
            filler.setblocking(False)
            filler.connect_ex(listener.getsockname())
        result = await check("tcp", listener.getsockname(), timeout=0.5)
        self.assertEqual((result.ok, result.detail), (False, "timed out after 0.5s"))
        self.assertGreaterEqual(result.latency, 0.45)


class Status(resource.Resource):
    isLeaf = True

    def render_GET(self, request):
        code = int(request.path.strip(b"/") or b"200")
        request.setResponseCode(code)
        return b"status %d\n" % code * 1000


class Silent(Protocol):
    """Accepts a connection and never answers: a hung HTTP service."""

    def connectionMade(self):
        self.factory.opened.append(self)
        self.closed = defer.Deferred()

    def connectionLost(self, reason):
        self.closed.callback(None)


class HTTPLoopbackTests(unittest.TestCase):
    timeout = 20

    def listen(self, factory, tls=None):
        if tls is None:
            port = real_reactor.listenTCP(0, factory, interface=LOOPBACK)
        else:
            port = real_reactor.listenSSL(0, factory, tls, interface=LOOPBACK)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def site(self):
        site = server.Site(Status())
        site.timeOut = None  # no idle-connection timer left behind
        return site

    async def test_success(self):
        port = self.listen(self.site())
        result = await check("http", f"http://{LOOPBACK}:{port}/200")
        self.assertEqual((result.ok, result.detail), (True, "HTTP 200 OK"))
        result = await check("http", f"http://{LOOPBACK}:{port}/301")
        self.assertEqual((result.ok, result.detail), (True, "HTTP 301 Moved Permanently"))

    async def test_failure(self):
        port = self.listen(self.site())
        result = await check("http", f"http://{LOOPBACK}:{port}/503")
        self.assertEqual((result.ok, result.detail), (False, "HTTP 503 Service Unavailable"))

    async def test_refused(self):
        result = await check("http", f"http://{LOOPBACK}:{unused_port()}/")
        self.assertEqual((result.ok, result.detail), (False, "connection refused"))

    async def test_timeout_aborts_the_connection(self):
        factory = Factory.forProtocol(Silent)
        factory.opened = []
        port = self.listen(factory)
        result = await check("http", f"http://{LOOPBACK}:{port}/", timeout=0.5)
        self.assertEqual((result.ok, result.detail), (False, "timed out after 0.5s"))
        self.assertEqual(len(factory.opened), 1)
        # The checker closed the connection: the server side sees it go.
        await factory.opened[0].closed

    async def test_https_untrusted_certificate_fails(self):
        private, cert = self_signed_for_loopback()
        port = self.listen(self.site(), tls=private.options())
        result = await check("http", f"https://{LOOPBACK}:{port}/200")
        self.assertFalse(result.ok)
        self.assertIn("certificate verify failed", result.detail)

    async def test_https_with_trusted_certificate(self):
        private, cert = self_signed_for_loopback()
        port = self.listen(self.site(), tls=private.options())
        checker = HTTPChecker(f"https://{LOOPBACK}:{port}/204", 2.0, real_reactor,
                              tls_policy=TrustOnly(cert))
        result = await checker.check()
        self.assertEqual((result.ok, result.detail), (True, "HTTP 204 No Content"))


@implementer(IPolicyForHTTPS)
class TrustOnly:
    def __init__(self, cert):
        self._cert = cert

    def creatorForNetloc(self, hostname, port):
        return ssl.optionsForClientTLS(hostname.decode("ascii"), trustRoot=self._cert)


def self_signed_for_loopback():
    """A throwaway self-signed certificate for IP 127.0.0.1: (with its key, alone)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "clsd health test")])
    now = datetime.datetime.now(datetime.UTC)

    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(LOOPBACK))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    return ssl.PrivateCertificate.loadPEM(key_pem + cert_pem), ssl.Certificate.loadPEM(cert_pem)
