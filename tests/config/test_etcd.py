"""[quorum] arbiter = "etcd" and [etcd]: a valid file loads; each kind of mistake is named."""

from twisted.trial import unittest

from clsd.config import ConfigError, parse_config
from clsd.config.changes import plan_reload
from clsd.daemon import cluster_settings

HEAD = """
[node]
name = "alpha"
data_dir = "/tmp/clsd-test"

[[service]]
name = "web"
command = ["/bin/true"]

[[cluster]]
id = "A"
service = "web"
"""

ETCD = """
[etcd]
endpoints = ["https://127.0.0.5:2379", "https://127.0.0.6:2379"]
ca = "certs/ca.pem"
cert = "certs/alpha.pem"
key = "certs/alpha.key"
"""

QUORUM = '[quorum]\narbiter = "etcd"\n'


def parse(text):
    return parse_config(HEAD + text, "clsd.toml", base_dir="/etc/clsd")


class EtcdConfigTests(unittest.TestCase):
    def test_valid(self):
        config = parse(QUORUM + "lease = 3\n" + ETCD + 'prefix = "/clsd/site1/"\n')
        self.assertEqual(config.quorum.arbiter, "etcd")
        self.assertEqual(config.quorum.voters, ())
        self.assertEqual(config.quorum.lease, 3.0)
        self.assertEqual(config.etcd.endpoints,
                         ("https://127.0.0.5:2379", "https://127.0.0.6:2379"))
        self.assertEqual(config.etcd.prefix, "/clsd/site1/")
        self.assertEqual((config.etcd.ca, config.etcd.cert, config.etcd.key),
                         ("/etc/clsd/certs/ca.pem", "/etc/clsd/certs/alpha.pem",
                          "/etc/clsd/certs/alpha.key"))

    def test_defaults(self):
        config = parse(QUORUM + ETCD)
        self.assertEqual(config.etcd.prefix, "/clsd/")
        self.assertEqual(config.quorum.lease, 2.0)

    def test_voters_stay_the_default(self):
        config = parse('[quorum]\nvoters = ["alpha"]\n')
        self.assertEqual(config.quorum.arbiter, "voters")
        self.assertIsNone(config.etcd)

    def test_the_prefix_is_a_cluster_setting(self):
        a = cluster_settings(parse(QUORUM + ETCD))
        b = cluster_settings(parse(QUORUM + ETCD + 'prefix = "/other/"\n'))
        self.assertNotEqual(a, b)
        self.assertNotIn("etcd", cluster_settings(parse('[quorum]\nvoters = ["alpha"]\n')))

    def test_etcd_changes_need_a_restart(self):
        old = parse(QUORUM + ETCD)
        new = parse(QUORUM + ETCD + 'prefix = "/other/"\n')
        self.assertIn("etcd.prefix", plan_reload(old, new).restart_only)

    def assertMistake(self, text, path, *words):
        with self.assertRaises(ConfigError) as raised:
            parse(text)
        e = raised.exception
        self.assertEqual(e.path, path, str(e))
        self.assertNotIn("\n", str(e))
        for word in words:
            self.assertIn(word, str(e))

    def test_both_arbiters_are_refused(self):
        self.assertMistake('[quorum]\narbiter = "etcd"\nvoters = ["alpha"]\n' + ETCD,
                           "quorum.voters", 'quorum.arbiter = "etcd"', "never both")
        self.assertMistake('[quorum]\nvoters = ["alpha"]\n' + ETCD, "etcd",
                           "quorum.voters", 'quorum.arbiter is not "etcd"')

    def test_mistakes(self):
        def etcd(**changes):
            lines = {"endpoints": '["https://127.0.0.5:2379"]', "ca": '"ca.pem"',
                     "cert": '"a.pem"', "key": '"a.key"'}
            lines.update(changes)
            return "[etcd]\n" + "".join(f"{k} = {v}\n" for k, v in lines.items()
                                        if v is not None)
        cases = [
            (QUORUM, "etcd", "is required", 'quorum.arbiter = "etcd"'),
            ('[quorum]\narbiter = "zookeeper"\n' + ETCD, "quorum.arbiter", "voters | etcd"),
            (ETCD, "etcd", 'quorum.arbiter is not "etcd"'),
            (QUORUM + "lease = 2.5\n" + ETCD, "quorum.lease", "whole number of seconds"),
            (QUORUM + "lease = 0.5\n" + ETCD, "quorum.lease", "whole number of seconds"),
            (QUORUM + etcd(endpoints="[]"), "etcd.endpoints", "must not be empty"),
            (QUORUM + etcd(endpoints='"https://127.0.0.5:2379"'), "etcd.endpoints",
             "array of strings"),
            (QUORUM + etcd(endpoints='["http://127.0.0.5:2379"]'), "etcd.endpoints[0]",
             "https://"),
            (QUORUM + etcd(endpoints='["https://127.0.0.5"]'), "etcd.endpoints[0]",
             "HOST:PORT"),
            (QUORUM + etcd(endpoints='["https://127.0.0.5:99999"]'), "etcd.endpoints[0]",
             "HOST:PORT"),
            (QUORUM + etcd(endpoints='["https://127.0.0.5:2379/v3"]'), "etcd.endpoints[0]",
             "nothing after the port"),
            (QUORUM + etcd(endpoints='["https://a:1", "https://a:1"]'), "etcd.endpoints",
             "twice"),
            (QUORUM + etcd(prefix='"clsd"'), "etcd.prefix", "start and end with '/'"),
            (QUORUM + etcd(prefix='"/clsd"'), "etcd.prefix", "start and end with '/'"),
            (QUORUM + etcd(prefix='"/"'), "etcd.prefix", "start and end with '/'"),
            (QUORUM + etcd(ca=None), "etcd.ca", "is required"),
            (QUORUM + etcd(cert=None), "etcd.cert", "is required"),
            (QUORUM + etcd(key='""'), "etcd.key", "must not be empty"),
            (QUORUM + etcd(timeout="3"), "etcd.timeout", "unknown key"),
        ]
        for text, path, *words in cases:
            self.assertMistake(text, path, *words)
