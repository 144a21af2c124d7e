"""Mutual TLS on real loopback sockets (127.0.0.21 and 127.0.0.22 only).

Certificates come from the clsd-certs library.  For every way a connection
must be refused (plaintext, another CA, expired, not yet valid, no client
certificate, a hello naming someone else, other cluster settings) the
listening node counts the reason, its upper layer hears nothing, and no
message is processed; the happy path establishes and carries messages.
"""

import io
import os
import socket

from twisted.internet import endpoints, protocol, reactor, ssl
from twisted.internet.interfaces import IHandshakeListener
from twisted.trial import unittest
from zope.interface import implementer

from clsd.certs.cli import main
from clsd.certs.identity import NodeIdentity
from clsd.config import ConfigError, load_config, parse_config
from clsd.wire.core.messages import MessageType, peer_registry
from clsd.wire.core.session import Timeouts
from clsd.wire.network import PeerNetwork
from clsd.wire.tls import PeerTLS
from clsd.polling import poll as wait_for

from tests.support.peer_fixtures import RecordingHandler, TestCA

ALPHA_HOST = "127.0.0.21"
BETA_HOST = "127.0.0.22"
NOTE = MessageType("note", {"text": str})
REGISTRY = peer_registry(NOTE)


def fast_backoff(attempt):
    return 0.05


class TLSTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.ca = TestCA()
        self.alpha_handler = RecordingHandler()
        self.alpha = self.network("alpha", ALPHA_HOST, self.ca.identity("alpha"),
                                  self.alpha_handler)
        self.alpha.startService()
        self.alpha_port = self.alpha.listening_port

    def network(self, name, host, identity, handler, *, settings=None, start=False,
                timeouts=Timeouts(handshake=5.0)):
        network = PeerNetwork(
            reactor=reactor, tls=PeerTLS(identity), name=name, listen=(host, 0),
            handler=handler, registry=REGISTRY, settings=settings or {"voters": ["alpha"]},
            backoff=fast_backoff, timeouts=timeouts,
        )
        if start:
            network.startService()
        self.addCleanup(lambda: network.stopService() if network.running else None)
        return network

    def beta(self, identity, name="beta", settings=None):
        handler = RecordingHandler()
        beta = self.network(name, BETA_HOST, identity, handler, settings=settings, start=True)
        beta.connect((ALPHA_HOST, self.alpha_port))
        return beta, handler

    async def assertRejected(self, reason, beta=None, beta_handler=None, beta_reason=None):
        await wait_for(reactor, lambda: self.alpha.stats.rejected[reason] >= 1,
                       what=f"alpha to count {reason}")
        self.assertEqual(self.alpha_handler.events, [], "alpha's upper layer heard nothing")
        self.assertEqual(self.alpha_handler.messages, [])
        self.assertEqual(self.alpha.peers(), [])
        self.assertEqual(self.alpha.stats.established, 0)
        if beta is not None:
            self.assertEqual(beta_handler.events, [])
            self.assertEqual(beta.peers(), [])
            if beta_reason is not None:
                await wait_for(reactor, lambda: beta.stats.closed[beta_reason] >= 1,
                               what=f"beta to see {beta_reason}")


class HappyPathTests(TLSTestCase):
    async def test_connect_and_exchange(self):
        beta, beta_handler = self.beta(self.ca.identity("beta"))
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"]
                       and beta.peers() == ["alpha"], what="both connected")
        self.assertTrue(self.alpha.send_to("beta", NOTE.build(text="hello beta")))
        self.assertTrue(beta.send_to("alpha", NOTE.build(text="hello alpha")))
        await wait_for(reactor, lambda: beta_handler.messages and self.alpha_handler.messages)
        self.assertEqual(beta_handler.messages, [("alpha", NOTE.build(text="hello beta"))])
        self.assertEqual(self.alpha_handler.messages, [("beta", NOTE.build(text="hello alpha"))])
        self.assertEqual(self.alpha_handler.events, [("connected", "beta")])
        peer = self.alpha.peer("beta")
        self.assertFalse(peer.initiator)
        self.assertEqual(peer.advertise, f"{BETA_HOST}:{beta.listening_port}")
        self.assertEqual(peer.generation, beta.generation)

    async def test_tls_1_3_negotiated(self):
        beta, _ = self.beta(self.ca.identity("beta"))
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"])
        handle = self.alpha.peer("beta").transport.getHandle()
        self.assertEqual(handle.get_protocol_version_name(), "TLSv1.3")

    async def test_outgoing_connection_leaves_from_the_node_address(self):
        beta, _ = self.beta(self.ca.identity("beta"))
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"]
                       and beta.peers() == ["alpha"])
        # Without bindAddress the kernel would pick 127.0.0.1 for 127.0.0.21.
        self.assertEqual(self.alpha.peer("beta").address[0], BETA_HOST)
        self.assertEqual(beta.peer("alpha").transport.getHost().host, BETA_HOST)


class RejectionTests(TLSTestCase):
    async def test_plaintext(self):
        received = []

        class Plain(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(b'{"v":1,"type":"ping"}\n')

            def dataReceived(self, data):
                received.append(data)

        endpoint = endpoints.TCP4ClientEndpoint(reactor, ALPHA_HOST, self.alpha_port,
                                                bindAddress=(BETA_HOST, 0))
        client = await endpoints.connectProtocol(endpoint, Plain())
        self.addCleanup(client.transport.abortConnection)
        await self.assertRejected("tls-plaintext")
        self.assertNotIn(b"ping", b"".join(received))

    async def test_client_hello_then_garbage_is_not_plaintext(self):
        """A real ClientHello followed by bytes that are not TLS: ``tls-garbage``."""
        from OpenSSL import SSL

        client_tls = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        client_tls.set_connect_state()
        with self.assertRaises(SSL.WantReadError):
            client_tls.do_handshake()
        client_hello = client_tls.bio_read(65536)

        class HelloThenGarbage(protocol.Protocol):
            def connectionMade(self):
                self.transport.write(client_hello)

            def dataReceived(self, data):  # the server's hello: now the garbage
                self.transport.write(b"garbage that is not a TLS record\n" * 4)

        endpoint = endpoints.TCP4ClientEndpoint(reactor, ALPHA_HOST, self.alpha_port,
                                                bindAddress=(BETA_HOST, 0))
        client = await endpoints.connectProtocol(endpoint, HelloThenGarbage())
        self.addCleanup(client.transport.abortConnection)
        await self.assertRejected("tls-garbage")
        self.assertEqual(self.alpha.stats.rejected["tls-plaintext"], 0)

    async def test_silent_client_dropped(self):
        """A client that connects and never speaks TLS is cut off (no slowloris)."""
        await self.alpha.stopService()
        self.alpha = self.network("alpha", ALPHA_HOST, self.ca.identity("alpha"),
                                  self.alpha_handler, start=True,
                                  timeouts=Timeouts(handshake=0.3))
        lost = []

        class Silent(protocol.Protocol):
            def connectionLost(self, reason):
                lost.append(reason)

        endpoint = endpoints.TCP4ClientEndpoint(reactor, ALPHA_HOST,
                                                self.alpha.listening_port,
                                                bindAddress=(BETA_HOST, 0))
        await endpoints.connectProtocol(endpoint, Silent())
        await wait_for(reactor, lambda: lost, what="the server to drop the silent client")
        self.assertEqual(self.alpha.stats.rejected["handshake-timeout"], 1)

    async def test_other_ca(self):
        stranger = TestCA()
        beta, handler = self.beta(stranger.identity("beta", trust=self.ca))
        await self.assertRejected("tls-unknown-ca", beta, handler, "tls-refused-unknown-ca")

    async def test_server_from_other_ca_refused_by_the_client(self):
        stranger = TestCA()
        mallory = self.network("alpha", "127.0.0.23", stranger.identity("alpha"),
                               RecordingHandler(), start=True)
        beta, handler = self.beta(self.ca.identity("beta"))
        beta.disconnect((ALPHA_HOST, self.alpha_port))
        beta.connect(("127.0.0.23", mallory.listening_port))
        await wait_for(reactor, lambda: beta.stats.rejected["tls-unknown-ca"] >= 1)
        self.assertEqual(handler.events, [])

    async def test_expired(self):
        beta, handler = self.beta(self.ca.expired_identity("beta"))
        await self.assertRejected("tls-expired", beta, handler, "tls-refused-expired")

    async def test_not_yet_valid(self):
        beta, handler = self.beta(self.ca.future_identity("beta"))
        await self.assertRejected("tls-not-yet-valid", beta, handler)

    async def test_missing_client_certificate(self):
        options = ssl.CertificateOptions(trustRoot=ssl.Certificate.loadPEM(
            self.ca.authority.certificate_pem()))
        outcome = []

        @implementer(IHandshakeListener)
        class NoCert(protocol.Protocol):
            def handshakeCompleted(self):
                # TLS 1.3: the client finishes first; the server still refuses.
                self.transport.write(b'{"v":1,"type":"ping"}\n')

            def connectionLost(self, reason):
                outcome.append(reason)

        endpoint = endpoints.SSL4ClientEndpoint(reactor, ALPHA_HOST, self.alpha_port, options,
                                                bindAddress=(BETA_HOST, 0))
        await endpoints.connectProtocol(endpoint, NoCert())
        await self.assertRejected("tls-no-client-cert")
        await wait_for(reactor, lambda: outcome)

    async def test_name_mismatch(self):
        # beta's hello says "beta" but its (valid) certificate says "mallory".
        beta, _ = self.beta(self.ca.identity("mallory"), name="beta")
        await self.assertRejected("name-mismatch")
        # The liar heard why (alpha's hello was fine, so it got that far).
        await wait_for(reactor, lambda: beta.stats.refused["peer-closed"] >= 1)

    async def test_settings_mismatch(self):
        beta, handler = self.beta(self.ca.identity("beta"), settings={"voters": ["zeta"]})
        await self.assertRejected("settings-mismatch", beta, handler)
        # beta, too, refused alpha for the same reason.
        self.assertGreaterEqual(beta.stats.rejected["settings-mismatch"]
                                + beta.stats.refused["peer-closed"], 1)

    async def test_old_tls_versions(self):
        pair = self.ca.issue("beta")
        options = ssl.CertificateOptions(
            privateKey=pair.key, certificate=pair.certificate,
            trustRoot=ssl.Certificate.loadPEM(self.ca.authority.certificate_pem()),
            insecurelyLowerMinimumTo=ssl.TLSVersion.TLSv1_0,
            lowerMaximumSecurityTo=ssl.TLSVersion.TLSv1_1)
        lost = []

        class Old(protocol.Protocol):
            def connectionLost(self, reason):
                lost.append(reason)

        endpoint = endpoints.SSL4ClientEndpoint(reactor, ALPHA_HOST, self.alpha_port, options,
                                                bindAddress=(BETA_HOST, 0))
        await endpoints.connectProtocol(endpoint, Old())
        await wait_for(reactor, lambda: lost and sum(self.alpha.stats.rejected.values()) >= 1)
        self.assertEqual(self.alpha.stats.established, 0)
        self.assertEqual(self.alpha_handler.events, [])


class FromConfigTests(unittest.TestCase):
    """The operator's path: clsd-certs files, a config, PeerNetwork.from_config."""

    timeout = 60

    def write_node(self, directory, certs, name, host, join=()):
        self.assertEqual(main(["issue", certs, name], out=io.StringIO(), err=io.StringIO()), 0)
        join_list = ", ".join(f'"{h}:{p}"' for h, p in join)
        path = os.path.join(directory, f"{name}.toml")
        with open(path, "w") as f:
            f.write(f'[node]\nname = "{name}"\nlisten = "{host}:{self.port_for(host)}"\n'
                    f"join = [{join_list}]\n"
                    f'[tls]\nca = "certs/ca.pem"\ncert = "certs/{name}.pem"\n'
                    f'key = "certs/{name}.key"\n')
        return path

    def port_for(self, host):
        with socket.socket() as s:
            s.bind((host, 0))
            return s.getsockname()[1]

    async def test_nodes_from_config_files(self):
        directory = os.path.abspath(self.mktemp())
        certs = os.path.join(directory, "certs")
        self.assertEqual(main(["init", certs], out=io.StringIO(), err=io.StringIO()), 0)
        beta_config = load_config(self.write_node(directory, certs, "beta", BETA_HOST))
        alpha_config = load_config(self.write_node(directory, certs, "alpha", ALPHA_HOST,
                                                   join=[beta_config.node.listen]))
        handlers = {}
        networks = {}
        for config in (beta_config, alpha_config):
            handlers[config.node.name] = RecordingHandler()
            network = PeerNetwork.from_config(
                config, reactor=reactor, handler=handlers[config.node.name],
                registry=REGISTRY, settings={"voters": ["alpha", "beta"]})
            network.startService()
            self.addCleanup(network.stopService)
            networks[config.node.name] = network
        await wait_for(reactor, lambda: networks["alpha"].peers() == ["beta"]
                       and networks["beta"].peers() == ["alpha"])
        self.assertEqual(networks["beta"].peer("alpha").address[0], ALPHA_HOST)
        self.assertEqual(networks["alpha"].peer("beta").advertise,
                         f"{BETA_HOST}:{beta_config.node.listen[1]}")

    def test_bad_identity_refuses_to_build(self):
        directory = os.path.abspath(self.mktemp())
        certs = os.path.join(directory, "certs")
        main(["init", certs], out=io.StringIO(), err=io.StringIO())
        path = self.write_node(directory, certs, "alpha", ALPHA_HOST)
        os.rename(os.path.join(certs, "alpha.key"), os.path.join(certs, "gone.key"))
        with self.assertRaises(ConfigError) as caught:
            PeerNetwork.from_config(load_config(path), reactor=reactor)
        self.assertIn("tls.key", str(caught.exception))

    def test_alone_has_no_network(self):
        config = parse_config('[node]\nname = "alpha"\n', "clsd.toml")
        self.assertIsNone(PeerNetwork.from_config(config, reactor=reactor))


class CARotationTLSTests(TLSTestCase):
    async def test_old_and_new_ca_both_trusted_during_rotation(self):
        """alpha trusts old+new; beta, re-issued by the new CA, still connects."""
        new = TestCA()
        pair = self.ca.issue("alpha")
        both = NodeIdentity(name="alpha", key=pair.key, certificate=pair.certificate,
                            ca_certificates=(self.ca.certificate, new.certificate))
        await self.alpha.stopService()
        self.alpha = self.network("alpha", ALPHA_HOST, both, self.alpha_handler, start=True)
        self.alpha_port = self.alpha.listening_port
        rotated = new.identity("beta")
        rotated = NodeIdentity(name="beta", key=rotated.key, certificate=rotated.certificate,
                               ca_certificates=(self.ca.certificate, new.certificate))
        beta, _ = self.beta(rotated)
        await wait_for(reactor, lambda: self.alpha.peers() == ["beta"]
                       and beta.peers() == ["alpha"])
