"""Admission on real loopback sockets (127.0.0.21 and 127.0.0.22): allow lists and revocation.

A node refuses a CA-signed peer whose certificate name matches none of its
``[membership] allow`` patterns (``not-allowed``) or whose certificate is on
its revocation list (``tls-revoked``), whichever side dialled, right after
the TLS handshake and before any hello; a changed admission expels
established peers at once.
"""


from twisted.internet import reactor
from twisted.trial import unittest

from clsd.certs.authority import Revoked, build_crl
from clsd.certs.identity import NodeIdentity, revoked_serials
from clsd.wire.core.admission import Admission
from clsd.wire.core.session import PEER, Disconnect, Send, State, Timeouts
from clsd.wire.network import PeerNetwork
from clsd.wire.tls import PeerTLS, peer_certificate
from clsd.polling import poll as wait_for

from tests.support.peer_fixtures import RecordingHandler, TestCA, utcnow
from tests.wire.test_session import session
from tests.wire.test_tls import ALPHA_HOST, BETA_HOST, REGISTRY, TLSTestCase, fast_backoff


def revoking(ca, *certificates):
    """The revoked set of a CRL from C{ca} listing C{certificates}."""
    now = utcnow()
    crl = build_crl(ca.authority, [Revoked(c.serial_number, "x", now) for c in certificates],
                    number=1)
    return revoked_serials(crl)


def with_revocations(identity, revoked):
    return NodeIdentity(name=identity.name, key=identity.key, certificate=identity.certificate,
                        ca_certificates=identity.ca_certificates, revoked=revoked)


class AdmissionTestCase(TLSTestCase):
    def restart_alpha(self, *, allow=None, revoked=frozenset()):
        """alpha again, with an allow list and revocation list."""
        identity = with_revocations(self.ca.identity("alpha"), revoked)
        network = PeerNetwork(
            reactor=reactor, tls=PeerTLS(identity, allow=allow), name="alpha",
            listen=(ALPHA_HOST, 0), handler=self.alpha_handler, registry=REGISTRY,
            settings={"voters": ["alpha"]}, backoff=fast_backoff,
            timeouts=Timeouts(handshake=5.0))
        network.startService()
        self.addCleanup(lambda: network.stopService() if network.running else None)
        return network

    async def replace_alpha(self, **kwargs):
        await self.alpha.stopService()
        self.alpha = self.restart_alpha(**kwargs)
        self.alpha_port = self.alpha.listening_port


class AllowTests(AdmissionTestCase):
    async def test_a_name_outside_allow_is_refused(self):
        await self.replace_alpha(allow=("alpha", "web-*"))
        beta, handler = self.beta(self.ca.identity("beta"))
        await self.assertRejected("not-allowed", beta, handler, "peer-closed")
        # beta was told why (the bye before any hello).
        await wait_for(reactor, lambda: beta.stats.refused["peer-closed"] >= 1)

    async def test_a_matching_pattern_admits(self):
        await self.replace_alpha(allow=("alpha", "web-*"))
        web, _ = self.beta(self.ca.identity("web-1"), name="web-1")
        await wait_for(reactor, lambda: self.alpha.peers() == ["web-1"]
                       and web.peers() == ["alpha"], what="web-1 admitted")
        self.assertEqual(self.alpha.stats.rejected["not-allowed"], 0)

    async def test_the_dialling_side_refuses_too(self):
        """beta allows only itself and gamma: alpha, which it dials, is refused."""
        handler = RecordingHandler()
        beta = PeerNetwork(
            reactor=reactor, tls=PeerTLS(self.ca.identity("beta"), allow=("beta", "gamma")),
            name="beta", listen=(BETA_HOST, 0), handler=handler, registry=REGISTRY,
            settings={"voters": ["alpha"]}, backoff=fast_backoff)
        beta.startService()
        self.addCleanup(beta.stopService)
        beta.connect((ALPHA_HOST, self.alpha_port))
        await wait_for(reactor, lambda: beta.stats.rejected["not-allowed"] >= 1,
                       what="beta to refuse alpha")
        self.assertEqual(beta.peers(), [])
        self.assertEqual(handler.events, [])
        self.assertEqual(self.alpha_handler.events, [])


class RevocationTests(AdmissionTestCase):
    async def test_a_revoked_certificate_is_refused(self):
        beta_identity = self.ca.identity("beta")
        await self.replace_alpha(revoked=revoking(self.ca, beta_identity.certificate))
        beta, handler = self.beta(beta_identity)
        await self.assertRejected("tls-revoked", beta, handler, "peer-closed")
        # beta's own log says why: the bye carries the reason.
        await wait_for(reactor, lambda: beta.stats.refused["peer-closed"] >= 1)

    async def test_another_certificate_of_the_same_node_is_admitted(self):
        """Revocation is per certificate: beta re-issued a new key gets in."""
        old = self.ca.identity("beta")
        await self.replace_alpha(revoked=revoking(self.ca, old.certificate))
        beta, _ = self.beta(self.ca.identity("beta"))
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"], what="new beta in")

    async def test_the_dialling_side_refuses_a_revoked_listener(self):
        alpha_certificate = self.alpha.tls.identity.certificate
        identity = with_revocations(self.ca.identity("beta"),
                                    revoking(self.ca, alpha_certificate))
        handler = RecordingHandler()
        beta = PeerNetwork(
            reactor=reactor, tls=PeerTLS(identity), name="beta", listen=(BETA_HOST, 0),
            handler=handler, registry=REGISTRY, settings={"voters": ["alpha"]},
            backoff=fast_backoff)
        beta.startService()
        self.addCleanup(beta.stopService)
        beta.connect((ALPHA_HOST, self.alpha_port))
        await wait_for(reactor, lambda: beta.stats.rejected["tls-revoked"] >= 1,
                       what="beta to refuse the revoked alpha")
        self.assertEqual(beta.peers(), [])
        self.assertEqual(self.alpha_handler.events, [])


class ExpelTests(AdmissionTestCase):
    async def test_revoking_an_established_peer_closes_it_at_once(self):
        beta_identity = self.ca.identity("beta")
        beta, beta_handler = self.beta(beta_identity)
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"]
                       and beta.peers() == ["alpha"], what="both connected")
        tls = self.alpha.tls
        tls.admission = Admission(revoked=revoking(self.ca, beta_identity.certificate))

        def refusal(protocol):
            return tls.admission.refusal(protocol.name, peer_certificate(protocol.transport))

        self.assertEqual(self.alpha.expel(refusal), ["beta"])
        await wait_for(reactor, lambda: self.alpha.peers() == [] and beta.peers() == [],
                       what="the connection closed")
        self.assertEqual(self.alpha.stats.dropped["tls-revoked"], 1)
        self.assertIn(("disconnected", "beta", "tls-revoked"), self.alpha_handler.events)
        # beta redials (fast backoff) and is refused in the handshake each time.
        await wait_for(reactor, lambda: self.alpha.stats.rejected["tls-revoked"] >= 2,
                       what="beta's redials refused")
        self.assertEqual(self.alpha.peers(), [])

    async def test_narrowing_allow_expels_and_keeps_the_others(self):
        beta, _ = self.beta(self.ca.identity("beta"))
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"], what="connected")
        tls = self.alpha.tls
        tls.admission = Admission(allow=("alpha", "beta"))
        def refusal(p):
            return tls.admission.refusal(p.name, peer_certificate(p.transport))
        self.assertEqual(self.alpha.expel(refusal), [])
        self.assertEqual(self.alpha.peers(), ["beta"])
        tls.admission = Admission(allow=("alpha",))
        self.assertEqual(self.alpha.expel(refusal), ["beta"])
        await wait_for(reactor, lambda: self.alpha.peers() == [], what="beta expelled")
        self.assertEqual(self.alpha.stats.dropped["not-allowed"], 1)
        await wait_for(reactor, lambda: self.alpha.stats.rejected["not-allowed"] >= 1,
                       what="beta's redial refused")


class AdmissionValueTests(unittest.TestCase):
    def test_refusal(self):
        ca = TestCA()
        a, b = ca.issue("a").certificate, ca.issue("b").certificate
        admission = Admission(allow=("a", "b*"), revoked=revoking(ca, b))
        self.assertIsNone(admission.refusal("a", a))
        self.assertEqual(admission.refusal("b", b)[0], "tls-revoked")
        self.assertEqual(admission.refusal("c", a)[0], "not-allowed")
        self.assertIsNone(Admission().refusal("anyone", a))
        # A serial revoked by another CA is not this CA's certificate.
        other = TestCA()
        self.assertFalse(Admission(revoked=revoking(other, b)).is_revoked(b))


class SessionAdmissionTests(unittest.TestCase):
    """The pure session's decision at tls_ready (no sockets)."""

    def setUp(self):
        self.ca = TestCA()

    def test_admitted_sends_our_hello(self):
        beta = self.ca.issue("beta").certificate
        actions = session().tls_ready("beta", 100.0, Admission(allow=("alpha", "beta")), beta)
        self.assertEqual([type(a) for a in actions], [Send])
        self.assertEqual(actions[0].message.type, "hello")

    def test_refused_before_any_hello_with_a_bye(self):
        beta = self.ca.issue("beta").certificate
        cases = [(Admission(allow=("alpha",)), "not-allowed"),
                 (Admission(revoked=revoking(self.ca, beta)), "tls-revoked")]
        for admission, key in cases:
            s = session()
            actions = s.tls_ready("beta", 100.0, admission, beta)
            self.assertEqual([type(a) for a in actions], [Send, Disconnect], key)
            self.assertEqual(actions[0].message.type, "bye")
            self.assertEqual(actions[0].message["reason"], key)
            self.assertEqual(actions[1].reason.key, key)
            self.assertEqual(actions[1].reason.blame, PEER)
            self.assertIs(s.state, State.CLOSING)
            self.assertIsNone(s.peer_hello)
