"""The ``[peer]`` table: bounds on unauthenticated peer connections, and every mistake."""

from twisted.trial import unittest

from clsd.config import ConfigError, parse_config
from clsd.config.changes import plan_reload
from clsd.wire.core.preauth import PreauthLimits


def parse(peer_lines):
    return parse_config('[node]\nname = "alpha"\n[peer]\n' + peer_lines, "clsd.toml")


class PeerTableTests(unittest.TestCase):
    def test_defaults(self):
        peer = parse_config('[node]\nname = "alpha"\n', "clsd.toml").peer
        self.assertEqual(peer.limits, PreauthLimits())
        self.assertEqual(peer.handshake_timeout, 10.0)

    def test_values(self):
        peer = parse("max_pending = 200\nmax_pending_per_address = 8\n"
                     "handshake_timeout = 4\nrefused_log_interval = 30\n").peer
        self.assertEqual(peer.limits, PreauthLimits(max_pending=200, max_pending_per_address=8,
                                                    log_interval=30.0))
        self.assertEqual(peer.handshake_timeout, 4.0)

    def assertRefused(self, lines, message):
        e = self.assertRaises(ConfigError, parse, lines)
        self.assertIn(message, str(e))
        self.assertTrue(str(e).startswith("clsd.toml: peer."), str(e))

    def test_mistakes(self):
        self.assertRefused("max_pending = 0\n", "peer.max_pending: must be at least 1, got 0")
        self.assertRefused("max_pending = 1.5\n", "must be a whole number")
        self.assertRefused("max_pending = 10\nmax_pending_per_address = 11\n",
                           "peer.max_pending_per_address: must not exceed max_pending (10), got 11")
        self.assertRefused("handshake_timeout = 0.1\n", "peer.handshake_timeout: must be at least 0.5")
        self.assertRefused("handshake_timeout = 1e308\n", "must be at most 300.0")
        self.assertRefused("refused_log_interval = nan\n", "must be a finite number")
        self.assertRefused("max_pendin = 3\n", "max_pendin")

    def test_a_change_needs_a_restart(self):
        old = parse("max_pending = 200\n")
        new = parse("max_pending = 300\n")
        self.assertEqual(plan_reload(old, new).restart_only, ("peer.max_pending",))
