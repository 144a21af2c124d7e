"""[[cluster]] address, interface, announce, address_order: what loads, and each mistake named."""

import ipaddress

from twisted.trial import unittest

from clsd.config import ConfigError
from clsd.config.floating import DEFAULT_ANNOUNCE_COUNT, DEFAULT_ANNOUNCE_INTERVAL
from tests.config.test_ownership import QUORUM3, parse

CLUSTER = '[[cluster]]\nid = "A"\nservice = "web"\n'


class FloatingTests(unittest.TestCase):
    def test_no_address_no_floating(self):
        (cluster,) = parse(QUORUM3 + CLUSTER).clusters
        self.assertIsNone(cluster.floating)

    def test_defaults(self):
        (cluster,) = parse(QUORUM3 + CLUSTER + 'address = ["192.0.2.10/24"]\n'
                           'interface = "eth0"\n').clusters
        floating = cluster.floating
        self.assertEqual(floating.addresses, (ipaddress.ip_interface("192.0.2.10/24"),))
        self.assertEqual((floating.interface, floating.order, floating.announce_count,
                          floating.announce_interval),
                         ("eth0", "before", DEFAULT_ANNOUNCE_COUNT, DEFAULT_ANNOUNCE_INTERVAL))

    def test_every_key(self):
        (cluster,) = parse(QUORUM3 + CLUSTER + """
address = ["192.0.2.10/24", "2001:db8::10/64"]
interface = "br-clients"
announce = { count = 3, interval = 0.5 }
address_order = "after"
""").clusters
        floating = cluster.floating
        self.assertEqual([a.version for a in floating.addresses], [4, 6])
        self.assertEqual((floating.announce_count, floating.announce_interval, floating.order),
                         (3, 0.5, "after"))
        self.assertEqual(floating.shape(), {
            "addresses": ["192.0.2.10/24", "2001:db8::10/64"], "interface": "br-clients",
            "address_order": "after"})

    def assertMistake(self, text, path, *words):
        e = self.assertRaises(ConfigError, parse, QUORUM3 + text)
        self.assertTrue(str(e).startswith(f"test.toml: {path}: "), str(e))
        for word in words:
            self.assertIn(word, str(e))

    def test_mistakes(self):
        with_if = 'interface = "eth0"\n'
        cases = [
            ('address = ["192.0.2.10"]\n' + with_if, "cluster[0].address[0]",
             "ADDRESS/PREFIX", "'192.0.2.10'"),
            ('address = ["192.0.2.300/24"]\n' + with_if, "cluster[0].address[0]",
             "not an IP address"),
            ('address = ["127.0.0.5/8"]\n' + with_if, "cluster[0].address[0]", "loopback"),
            ('address = ["fe80::1/64"]\n' + with_if, "cluster[0].address[0]", "link-local"),
            ('address = ["192.0.2.255/24"]\n' + with_if, "cluster[0].address[0]",
             "broadcast"),
            ('address = ["192.0.2.10/24", "192.0.2.10/25"]\n' + with_if,
             "cluster[0].address[1]", "listed twice"),
            ('address = []\n' + with_if, "cluster[0].address", "must not be empty"),
            ('address = ["192.0.2.10/24"]\n', "cluster[0].interface", "is required"),
            ('address = ["192.0.2.10/24"]\ninterface = "a/b"\n', "cluster[0].interface",
             "not an interface name"),
            ('address = ["192.0.2.10/24"]\ninterface = "a-very-long-interface"\n',
             "cluster[0].interface", "at most 15"),
            ('interface = "eth0"\n', "cluster[0].interface", "needs address"),
            ('address = ["192.0.2.10/24"]\n' + with_if + 'address_order = "during"\n',
             "cluster[0].address_order", "before | after"),
            ('address = ["192.0.2.10/24"]\n' + with_if + 'announce = { count = -1 }\n',
             "cluster[0].announce.count", "at least 0"),
            ('address = ["192.0.2.10/24"]\n' + with_if + 'announce = { every = 1 }\n',
             "cluster[0].announce.every", "unknown key"),
        ]
        for text, path, *words in cases:
            self.assertMistake(CLUSTER + text, path, *words)

    def test_two_clusters_may_not_share_an_address(self):
        self.assertMistake(
            CLUSTER + 'address = ["192.0.2.10/24"]\ninterface = "eth0"\n'
            '[[cluster]]\nid = "B"\nservice = "db"\naddress = ["192.0.2.10/24"]\n'
            'interface = "eth1"\n',
            "cluster[1].address", "192.0.2.10", "cluster 'A'")

    def test_the_interface_must_exist_at_start(self):
        from clsd.config.floating import check_interfaces

        config = parse(QUORUM3 + CLUSTER + 'address = ["192.0.2.10/24"]\n'
                       'interface = "eth9"\n')
        check_interfaces("test.toml", config.clusters, ["eth9", "lo"])
        e = self.assertRaises(ConfigError, check_interfaces, "test.toml", config.clusters,
                              ["eth0", "lo"])
        self.assertEqual(str(e), "test.toml: cluster[0].interface: there is no interface "
                                 "'eth9' on this machine (interfaces: eth0, lo)")

    def test_an_n_active_cluster_may_not_have_one(self):
        self.assertMistake(
            '[[cluster]]\nid = "A"\nservice = "web"\nmode = "n-active"\ncount = 2\n'
            'address = ["192.0.2.10/24"]\ninterface = "eth0"\n',
            "cluster[0].address", "n-active", "every copy")
