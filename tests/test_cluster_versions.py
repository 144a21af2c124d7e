"""Mixed versions in one cluster: each member's version is known everywhere, the cluster's
effective protocol is the highest all members speak, and a node with no protocol in common is
refused and shown as ``incompatible``.

Real in-process Daemons on trial's reactor, mutual TLS on 127.0.0.x; the protocol range of
each node is set with the test hook (L{clsd.version.PROTOCOL_RANGE_ENV}) while it is built.
"""

import os

from twisted.internet import defer, reactor
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from clsd import version
from clsd.admin.commands import render_status
from clsd.admin.daemon_backend import DaemonBackend
from clsd.wire.core.versions import ClusterProtocol, ProtocolRange, enabled

from tests.support.cluster_rig import ClusterRig, poll

QUORUM = {"voters": ["alpha", "beta"], "lease": 4.0}


class ClusterVersionTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.lines = []

        def observer(event):
            text = formatEvent(event)
            if text:
                self.lines.append(text)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def build(self, rig, name, protocols):
        saved = os.environ.pop(version.PROTOCOL_RANGE_ENV, None)
        if protocols is not None:
            os.environ[version.PROTOCOL_RANGE_ENV] = protocols
        try:
            daemon = rig.daemon(name, {"quorum": QUORUM})
        finally:
            os.environ.pop(version.PROTOCOL_RANGE_ENV, None)
            if saved is not None:
                os.environ[version.PROTOCOL_RANGE_ENV] = saved
        daemon.startService()
        self.addCleanup(lambda: daemon.stopService() if daemon.running else None)
        return daemon

    @defer.inlineCallbacks
    def test_mixed_versions_and_an_incompatible_node(self):
        low, high = version.PROTOCOL_MIN, version.PROTOCOL_MAX
        nxt = f"{high}-{high + 1}"
        rig = ClusterRig(self, ["alpha", "beta", "odd"], reactor=reactor)
        alpha = self.build(rig, "alpha", None)
        beta = self.build(rig, "beta", nxt)
        yield poll(reactor, lambda: rig.all_see(["alpha", "beta"],
                                                {"alpha": "alive", "beta": "alive"}),
                   30, "alpha and beta to join")
        yield poll(reactor, lambda: len(alpha.member_versions()) == 2
                   and None not in [r for _, r in alpha.member_versions().values()],
                   15, "beta's version to reach alpha")
        self.assertEqual(alpha.member_versions()["beta"],
                         (f"{version.VERSION}+protocol{high}.{high + 1}",
                          ProtocolRange(high, high + 1)))
        self.assertEqual(alpha.network.peer("beta").protocol, high)
        # The cluster speaks the old protocol until alpha speaks the new one.
        self.assertEqual(alpha.cluster_protocol(), ClusterProtocol(high, ("alpha",)))
        yield poll(reactor, lambda: beta.cluster_protocol() == ClusterProtocol(high, ("alpha",)),
                   15, "beta to see the same")
        self.assertFalse(enabled(high + 1, beta.cluster_protocol()))

        # A node that speaks only a protocol nobody else does.
        self.build(rig, "odd", f"{high + 2}-{high + 2}")
        yield poll(reactor, lambda: "odd" in alpha.network.incompatible, 15,
                   "alpha to refuse odd")
        members = {m.name: m for m in DaemonBackend(alpha).members()}
        self.assertEqual(members["odd"].state, "incompatible")
        self.assertEqual(members["beta"].version, f"{version.VERSION}+protocol{high}.{high + 1}")
        self.assertEqual(members["beta"].protocols, (high, high + 1))
        self.assertEqual(members["alpha"].protocols, (low, high))
        self.assertGreaterEqual(alpha.network.stats.rejected["incompatible"], 1)
        text = render_status(DaemonBackend(alpha).status())
        self.assertIn(f"protocol: {high}; held back by alpha\n", text)
        self.assertRegex(text, r"\nodd +incompatible +- +-\n")
        # Logged as one line naming both ranges.
        wanted = (f"incompatible: peer 'odd' (clsd {version.VERSION}+protocol{high + 2}."
                  f"{high + 2}) speaks protocol {high + 2}, this node (clsd {version.VERSION}) "
                  f"speaks {low if low == high else f'{low} to {high}'}: no common protocol")
        self.assertTrue(any(wanted in line for line in self.lines),
                        [line for line in self.lines if "incompatible" in line])
