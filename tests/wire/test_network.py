"""The peer network: de-duplication, dialers, restarts, shutdown.

The de-duplication rule is first checked with stand-in connections (no
sockets), then everything on real TLS sockets on 127.0.0.21/22.
"""

from twisted.internet import reactor, task
from twisted.internet.address import IPv4Address
from twisted.trial import unittest

from clsd.wire.core.messages import MessageType, peer_registry
from clsd.wire.core.session import State, Timeouts
from clsd.wire.core.versions import ProtocolRange
from clsd.wire.network import PeerNetwork
from clsd.wire.tls import PeerTLS
from clsd.polling import poll as wait_for

from tests.support.peer_fixtures import RecordingHandler, TestCA

ALPHA_HOST = "127.0.0.21"
BETA_HOST = "127.0.0.22"
NOTE = MessageType("note", {"text": str})
REGISTRY = peer_registry(NOTE)


class FakeTransport:
    def __init__(self, host, peer):
        self.host = host
        self.peer = peer

    def getHost(self):
        return IPv4Address("TCP", *self.host)

    def getPeer(self):
        return IPv4Address("TCP", *self.peer)


class FakeConnection:
    """Just what the de-duplication rule looks at."""

    def __init__(self, name, generation, initiator, host, peer):
        self.name = name
        self.generation = generation
        self.initiator = initiator
        self.transport = FakeTransport(host, peer)
        self.closed = None

    def close(self, key, detail=""):
        self.closed = key


def tcp_pair(dialler, dialler_port, acceptor, acceptor_port, names, generations):
    """The two ends of one TCP connection: (dialler's end, acceptor's end)."""
    dialler_name, acceptor_name = names
    out = FakeConnection(acceptor_name, generations[acceptor_name], True,
                         (dialler, dialler_port), (acceptor, acceptor_port))
    into = FakeConnection(dialler_name, generations[dialler_name], False,
                          (acceptor, acceptor_port), (dialler, dialler_port))
    return out, into


class DeduplicationRuleTests(unittest.TestCase):
    """Both ends of a duplicate pair pick the same connection, in any order."""

    def network(self, name):
        handler = RecordingHandler()
        network = PeerNetwork(reactor=None, tls=None, name=name, listen=("127.0.0.1", 0),
                              handler=handler)
        return network, handler

    def test_crossed_dials_keep_the_smaller_names_connection(self):
        generations = {"alpha": 1, "beta": 1}
        for order in ((0, 1), (1, 0)):
            for beta_order in ((0, 1), (1, 0)):
                alpha, _ = self.network("alpha")
                beta, _ = self.network("beta")
                a_out, b_in = tcp_pair(ALPHA_HOST, 40001, BETA_HOST, 7400,
                                       ("alpha", "beta"), generations)
                b_out, a_in = tcp_pair(BETA_HOST, 40002, ALPHA_HOST, 7400,
                                       ("beta", "alpha"), generations)
                for index in order:
                    alpha.peer_connected((a_out, a_in)[index])
                for index in beta_order:
                    beta.peer_connected((b_in, b_out)[index])
                self.assertIs(alpha.peer("beta"), a_out)
                self.assertIs(beta.peer("alpha"), b_in)
                self.assertEqual((a_out.closed, a_in.closed), (None, "duplicate"))
                self.assertEqual((b_in.closed, b_out.closed), (None, "duplicate"))

    def test_two_dials_by_the_same_node_keep_the_lower_source_port(self):
        generations = {"alpha": 1, "beta": 1}
        first_out, first_in = tcp_pair(ALPHA_HOST, 40009, BETA_HOST, 7400,
                                       ("alpha", "beta"), generations)
        second_out, second_in = tcp_pair(ALPHA_HOST, 40003, BETA_HOST, 7400,
                                         ("alpha", "beta"), generations)
        alpha, _ = self.network("alpha")
        beta, _ = self.network("beta")
        alpha.peer_connected(first_out)
        alpha.peer_connected(second_out)
        beta.peer_connected(second_in)
        beta.peer_connected(first_in)
        self.assertIs(alpha.peer("beta"), second_out)
        self.assertIs(beta.peer("alpha"), second_in)

    def test_restarted_peer_replaces_its_ghost(self):
        alpha, handler = self.network("alpha")
        ghost = FakeConnection("beta", 1, True, (ALPHA_HOST, 40001), (BETA_HOST, 7400))
        fresh = FakeConnection("beta", 2, False, (ALPHA_HOST, 7400), (BETA_HOST, 40002))
        alpha.peer_connected(ghost)
        alpha.peer_connected(fresh)
        self.assertIs(alpha.peer("beta"), fresh)
        self.assertEqual(ghost.closed, "duplicate")
        self.assertEqual(handler.events, [
            ("connected", "beta"), ("disconnected", "beta", "replaced"), ("connected", "beta")])
        # The ghost's own end, when it comes, is not reported again.
        from clsd.wire.core.session import CloseReason

        alpha.peer_disconnected(ghost, CloseReason("duplicate", "", "local"))
        self.assertEqual(len(handler.events), 3)
        self.assertIs(alpha.peer("beta"), fresh)


    def test_an_older_generation_never_replaces_the_live_connection(self):
        """A ghost of an earlier start (or a replayed hello) loses to the live connection."""
        alpha, handler = self.network("alpha")
        live = FakeConnection("beta", 2, True, (ALPHA_HOST, 40001), (BETA_HOST, 7400))
        older = FakeConnection("beta", 1, False, (ALPHA_HOST, 7400), (BETA_HOST, 40002))
        alpha.peer_connected(live)
        alpha.peer_connected(older)
        self.assertIs(alpha.peer("beta"), live)
        self.assertEqual((live.closed, older.closed), (None, "stale-generation"))
        self.assertEqual(handler.events, [("connected", "beta")])


class DialerBackoffTests(unittest.TestCase):
    """Connections refused before the hello lengthen the backoff like failed connects."""

    def test_failures_add_to_the_attempt_count(self):
        from twisted.internet.task import Clock

        from clsd.wire.network import _Dialer
        from clsd.wire.core.session import PEER, CloseReason

        class StubNetwork:
            reactor = Clock()

            @staticmethod
            def backoff(attempt):
                return float(attempt)

        class Ended:
            def __init__(self, hello):
                self.hello = hello
                self.name = "beta" if hello else None

        dialer = _Dialer(StubNetwork(), (BETA_HOST, 7400), endpoint=None)
        self.assertEqual(dialer._retry_delay(1), 1.0)
        refused = CloseReason("tls-expired", "expired", PEER)
        dialer._closed(Ended(None), refused)
        dialer._closed(Ended(None), refused)
        self.assertEqual(dialer._retry_delay(1), 3.0)
        dialer._closed(Ended({"name": "beta"}), CloseReason("connection-lost", "", "network"))
        self.assertEqual(dialer._retry_delay(1), 1.0)
        self.assertEqual(dialer.peer_name, "beta")


def fast_backoff(attempt):
    return 0.05


class NetworkTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.ca = TestCA()

    def network(self, name, host, *, port=0, start=True, **kwargs):
        handler = RecordingHandler()
        network = PeerNetwork(
            reactor=reactor, tls=PeerTLS(self.ca.identity(name)), name=name,
            listen=(host, port), handler=handler, registry=REGISTRY,
            settings={"voters": ["alpha", "beta"]}, backoff=fast_backoff,
            timeouts=Timeouts(handshake=5.0), **kwargs)
        network.recorded = handler
        if start:
            network.startService()
        self.addCleanup(lambda: network.stopService() if network.running else None)
        return network

    def address(self, network):
        return (network.listen_address[0], network.listening_port)


def live(network):
    return [c for c in network.connections() if c.state is not State.CLOSED]


class SimultaneousDialTests(NetworkTestCase):
    async def test_crossed_dials_end_with_one_shared_connection(self):
        for _round in range(3):
            alpha = self.network("alpha", ALPHA_HOST)
            beta = self.network("beta", BETA_HOST)
            alpha.connect(self.address(beta))
            beta.connect(self.address(alpha))

            def settled():
                return (alpha.peers() == ["beta"] and beta.peers() == ["alpha"]
                        and len(live(alpha)) == 1 and len(live(beta)) == 1)

            await wait_for(reactor, settled, what="one connection each")
            # Several backoff periods later it is still the same single connection:
            # the losing dialer waits instead of redialling.
            await task.deferLater(reactor, 0.5, lambda: None)
            self.assertTrue(settled())
            kept_at_alpha, kept_at_beta = alpha.peer("beta"), beta.peer("alpha")
            self.assertTrue(kept_at_alpha.initiator, "alpha (the smaller name) dialled it")
            self.assertFalse(kept_at_beta.initiator)
            self.assertEqual(kept_at_alpha.transport.getHost().port,
                             kept_at_beta.transport.getPeer().port, "the same TCP connection")
            self.assertLessEqual(beta.stats.connections, 3, "no redial storm")
            # The race really happened: a second connection was made and refused.
            self.assertGreaterEqual(
                alpha.stats.closed["duplicate"] + beta.stats.closed["duplicate"], 1)
            self.assertEqual(alpha.recorded.events[0], ("connected", "beta"))
            self.assertEqual(beta.recorded.events[0], ("connected", "alpha"))
            await alpha.stopService()
            await beta.stopService()

    async def test_waiting_dialer_takes_over_when_the_kept_connection_goes(self):
        alpha = self.network("alpha", ALPHA_HOST)
        beta = self.network("beta", BETA_HOST)
        alpha.connect(self.address(beta))
        beta.connect(self.address(alpha))
        await wait_for(reactor, lambda: alpha.peers() == ["beta"] and len(live(beta)) == 1
                       and beta.peers() == ["alpha"])
        await alpha.disconnect(self.address(beta))
        # beta still wants alpha: its dialer now connects the other way.
        await wait_for(reactor, lambda: beta.peers() == ["alpha"]
                       and beta.peer("alpha").initiator, what="beta's own connection")
        await wait_for(reactor, lambda: alpha.peers() == ["beta"])
        self.assertFalse(alpha.peer("beta").initiator)


class DialerTests(NetworkTestCase):
    async def test_outgoing_source_address_is_the_node_address(self):
        alpha = self.network("alpha", ALPHA_HOST)
        beta = self.network("beta", BETA_HOST)
        alpha.connect(self.address(beta))
        await wait_for(reactor, lambda: beta.peers() == ["alpha"])
        connection = beta.peer("alpha")
        self.assertFalse(connection.initiator)
        self.assertEqual(connection.address[0], ALPHA_HOST)

    async def test_join_addresses_dialled_at_start(self):
        beta = self.network("beta", BETA_HOST)
        alpha = self.network("alpha", ALPHA_HOST, join=[self.address(beta)])
        await wait_for(reactor, lambda: alpha.peers() == ["beta"] and beta.peers() == ["alpha"])
        self.assertEqual(alpha.dialing(), [self.address(beta)])

    async def test_reconnects_after_the_peer_restarts(self):
        alpha = self.network("alpha", ALPHA_HOST)
        beta = self.network("beta", BETA_HOST)
        address = self.address(beta)
        alpha.connect(address)
        await wait_for(reactor, lambda: alpha.peers() == ["beta"])
        first_generation = alpha.peer("beta").generation
        await beta.stopService()
        await wait_for(reactor, lambda: alpha.peers() == [])
        await task.deferLater(reactor, 0.2, lambda: None)  # a few failed redials
        reborn = self.network("beta", BETA_HOST, port=address[1])
        await wait_for(reactor, lambda: alpha.peers() == ["beta"]
                       and reborn.peers() == ["alpha"], what="redial to the restarted beta")
        self.assertNotEqual(alpha.peer("beta").generation, first_generation)
        self.assertEqual([e[0] for e in alpha.recorded.events],
                         ["connected", "disconnected", "connected"])
        self.assertEqual(alpha.recorded.events[1], ("disconnected", "beta", "peer-closed"))

    async def test_self_connection_stops_dialling(self):
        alpha = self.network("alpha", ALPHA_HOST)
        alpha.connect(self.address(alpha))
        await wait_for(reactor, lambda: alpha.stats.closed["self-connection"] >= 1)
        await wait_for(reactor, lambda: alpha.dialing() == [])
        self.assertEqual(alpha.peers(), [])
        self.assertEqual(alpha.recorded.events, [])

    async def test_send_to_unknown_peer(self):
        alpha = self.network("alpha", ALPHA_HOST)
        self.assertFalse(alpha.send_to("nobody", NOTE.build(text="x")))

    async def test_shutdown_says_goodbye(self):
        alpha = self.network("alpha", ALPHA_HOST)
        beta = self.network("beta", BETA_HOST)
        alpha.connect(self.address(beta))
        await wait_for(reactor, lambda: alpha.peers() == ["beta"] and beta.peers() == ["alpha"])
        started = reactor.seconds()
        await alpha.stopService()
        self.assertLess(reactor.seconds() - started, 2.0, "closed without waiting for a timeout")
        await wait_for(reactor, lambda: beta.peers() == [])
        self.assertEqual(beta.recorded.events[-1], ("disconnected", "alpha", "peer-closed"))
        self.assertEqual(live(alpha), [])

    async def test_counters(self):
        alpha = self.network("alpha", ALPHA_HOST)
        beta = self.network("beta", BETA_HOST)
        alpha.connect(self.address(beta))
        await wait_for(reactor, lambda: alpha.peers() == ["beta"] and beta.peers() == ["alpha"])
        for index in range(10):
            alpha.send_to("beta", NOTE.build(text=str(index)))
        await wait_for(reactor, lambda: len(beta.recorded.messages) == 10)
        self.assertEqual([m["text"] for _, m in beta.recorded.messages],
                         [str(i) for i in range(10)])
        self.assertEqual(alpha.stats.messages_out, 11)  # hello + 10
        self.assertGreaterEqual(beta.stats.messages_in, 11)
        self.assertEqual(alpha.stats.bytes_out, beta.stats.bytes_in)
        snapshot = alpha.stats.snapshot()
        self.assertEqual(snapshot["established"], 1)


class VersionTests(NetworkTestCase):
    """Real TLS sockets: the hello negotiates a version and refuses disjoint ranges."""

    async def test_mixed_ranges_talk_on_the_highest_common_version(self):
        alpha = self.network("alpha", ALPHA_HOST, protocols=ProtocolRange(2, 2),
                             software="1.0.0")
        beta = self.network("beta", BETA_HOST, protocols=ProtocolRange(2, 3),
                            software="1.1.0")
        alpha.connect(self.address(beta))
        await wait_for(reactor, lambda: alpha.peers() == ["beta"] and beta.peers() == ["alpha"])
        self.assertEqual((alpha.peer("beta").protocol, alpha.peer("beta").software),
                         (2, "1.1.0"))
        self.assertEqual((beta.peer("alpha").protocol, beta.peer("alpha").software),
                         (2, "1.0.0"))
        self.assertTrue(alpha.send_to("beta", NOTE.build(text="hi")))
        await wait_for(reactor, lambda: [(name, m["text"]) for name, m in beta.recorded.messages]
                       == [("alpha", "hi")], what="the note to arrive")

    async def test_disjoint_ranges_are_refused_and_remembered(self):
        alpha = self.network("alpha", ALPHA_HOST, protocols=ProtocolRange(2, 2),
                             software="1.0.0")
        beta = self.network("beta", BETA_HOST, protocols=ProtocolRange(3, 3),
                            software="2.0.0")
        alpha.connect(self.address(beta))
        await wait_for(reactor, lambda: "beta" in alpha.incompatible
                       and "alpha" in beta.incompatible, what="both to refuse")
        self.assertEqual(alpha.peers(), [])
        self.assertGreaterEqual(alpha.stats.rejected["incompatible"], 1)
        self.assertIn("peer 'beta' (clsd 2.0.0) speaks protocol 3, this node (clsd 1.0.0) "
                      "speaks 2", alpha.incompatible["beta"])
        self.assertIn("peer 'alpha' (clsd 1.0.0) speaks protocol 2, this node (clsd 2.0.0) "
                      "speaks 3", beta.incompatible["alpha"])
