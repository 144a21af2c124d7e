"""The [membership] table: defaults, every key, and each kind of mistake."""

from twisted.trial import unittest

from clsd.config import ConfigError, MembershipConfig, parse_config

NODE = '[node]\nname = "alpha"\n'


def parse(text):
    return parse_config(NODE + text, "clsd.toml", base_dir="/tmp").membership


class Defaults(unittest.TestCase):
    def test_absent_table_gives_lan_defaults(self):
        config = parse("")
        self.assertEqual(config, MembershipConfig())
        self.assertEqual((config.observers, config.quorum), (8, 6))
        self.assertLessEqual(config.quorum, config.observers)
        self.assertGreaterEqual(config.failure_timeout, 2 * config.heartbeat_interval)

    def test_every_key(self):
        config = parse("""
[membership]
heartbeat_interval = 0.5
failure_timeout = 3
link_down_grace = 0.5
suspicion_timeout = 20
observers = 10
quorum = 9
gossip_interval = 0.1
gossip_fanout = 4
retransmit_mult = 3
max_piggyback = 32
sync_interval = 5
reconnect_interval = 60
reap_after = 3600
awareness_max = 4
join_retry_interval = 1
leave_timeout = 2
""")
        self.assertEqual(config, MembershipConfig(
            heartbeat_interval=0.5, failure_timeout=3.0, link_down_grace=0.5,
            suspicion_timeout=20.0, observers=10, quorum=9, gossip_interval=0.1,
            gossip_fanout=4, retransmit_mult=3, max_piggyback=32, sync_interval=5.0,
            reconnect_interval=60.0, reap_after=3600.0, awareness_max=4,
            join_retry_interval=1.0, leave_timeout=2.0))


class Mistakes(unittest.TestCase):
    def assertMistake(self, text, message):
        with self.assertRaises(ConfigError) as caught:
            parse("[membership]\n" + text)
        self.assertEqual(str(caught.exception), f"clsd.toml: {message}")

    def test_each_kind(self):
        self.assertMistake("observer = 8",
                           "membership.observer: unknown key")
        self.assertMistake('observers = "8"',
                           "membership.observers: must be a whole number, got string '8'")
        self.assertMistake("observers = 0", "membership.observers: must be at least 1, got 0")
        self.assertMistake("observers = 4\nquorum = 5",
                           "membership.quorum: must not exceed observers (4), got 5")
        self.assertMistake("heartbeat_interval = 2\nfailure_timeout = 3",
                           "membership.failure_timeout: must be at least twice "
                           "heartbeat_interval (4.0), got 3.0")
        self.assertMistake("failure_timeout = 0",
                           "membership.failure_timeout: must be greater than 0, got 0.0")
        self.assertMistake("heartbeat_interval = true",
                           "membership.heartbeat_interval: must be a number, got boolean true")
        self.assertMistake("link_down_grace = -1",
                           "membership.link_down_grace: must be at least 0.0, got -1.0")
        self.assertMistake("max_piggyback = 100",
                           "membership.max_piggyback: must be at most 32, got 100")
        self.assertMistake("observers = 17",
                           "membership.observers: must be at most 16, got 17")
        self.assertMistake("reap_after = 0.5",
                           "membership.reap_after: must be at least 1.0, got 0.5")
        self.assertMistake("gossip_fanout = 1.5",
                           "membership.gossip_fanout: must be a whole number, got number 1.5")

    def test_not_a_table(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config("membership = 3\n" + NODE, "clsd.toml")
        self.assertEqual(str(caught.exception), "clsd.toml: membership: must be a table, got number 3")
