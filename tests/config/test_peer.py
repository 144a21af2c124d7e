"""[node] listen / advertise / join and the [tls] table: values and every kind of mistake."""

from twisted.trial import unittest

from clsd.config import ConfigError, parse_config

TLS = """
[tls]
ca = "certs/ca.pem"
cert = "certs/alpha.pem"
key = "certs/alpha.key"
"""


def parse(node_lines, tls=TLS):
    text = '[node]\nname = "alpha"\n' + node_lines + "\n" + tls
    return parse_config(text, "clsd.toml", base_dir="/etc/clsd")


class ValuesTests(unittest.TestCase):
    def test_alone_needs_nothing(self):
        config = parse_config('[node]\nname = "alpha"\n', "clsd.toml")
        self.assertIsNone(config.node.listen)
        self.assertIsNone(config.node.advertise)
        self.assertEqual(config.node.join, ())
        self.assertIsNone(config.tls)
        self.assertIsNone(config.node.source_host)

    def test_full_example(self):
        config = parse('listen = "127.0.0.11:7400"\n'
                       'advertise = "127.0.0.11:7400"\n'
                       'join = ["127.0.0.12:7400", "127.0.0.13:7400"]')
        self.assertEqual(config.node.listen, ("127.0.0.11", 7400))
        self.assertEqual(config.node.advertise, ("127.0.0.11", 7400))
        self.assertEqual(config.node.join, (("127.0.0.12", 7400), ("127.0.0.13", 7400)))
        self.assertEqual(config.node.source_host, "127.0.0.11")

    def test_tls_paths_relative_to_the_config_file(self):
        config = parse('listen = "127.0.0.11:7400"')
        self.assertEqual(config.tls.ca, "/etc/clsd/certs/ca.pem")
        self.assertEqual(config.tls.cert, "/etc/clsd/certs/alpha.pem")
        self.assertEqual(config.tls.key, "/etc/clsd/certs/alpha.key")

    def test_absolute_tls_path_kept(self):
        config = parse('listen = "127.0.0.11:7400"',
                       tls='[tls]\nca = "/srv/ca.pem"\ncert = "a.pem"\nkey = "a.key"\n')
        self.assertEqual(config.tls.ca, "/srv/ca.pem")

    def test_advertise_defaults_to_listen(self):
        config = parse('listen = "127.0.0.11:7400"')
        self.assertEqual(config.node.advertise, ("127.0.0.11", 7400))

    def test_ipv6_in_brackets(self):
        config = parse('listen = "[::1]:7400"\njoin = ["[::1]:7401"]')
        self.assertEqual(config.node.listen, ("::1", 7400))
        self.assertEqual(config.node.join, (("::1", 7401),))

    def test_wildcard_listen_with_advertise(self):
        config = parse('listen = "0.0.0.0:7400"\nadvertise = "127.0.0.11:7400"')
        self.assertEqual(config.node.source_host, "127.0.0.11")

    def test_join_by_host_name(self):
        config = parse('listen = "127.0.0.11:7400"\njoin = ["beta.example:7400"]')
        self.assertEqual(config.node.join, (("beta.example", 7400),))


class MistakeTests(unittest.TestCase):
    def assertMistake(self, node_lines, where, words, tls=TLS):
        with self.assertRaises(ConfigError) as caught:
            parse(node_lines, tls)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"clsd.toml: {where}: "), message)
        self.assertIn(words, message)

    def test_listen_not_host_port(self):
        self.assertMistake('listen = "127.0.0.11"', "node.listen", "must be host:port")

    def test_listen_bad_port(self):
        self.assertMistake('listen = "127.0.0.11:70000"', "node.listen", "must be host:port")

    def test_listen_ipv6_without_brackets(self):
        self.assertMistake('listen = "::1:7400"', "node.listen", "IPv6 as [addr]:port")

    def test_listen_not_a_string(self):
        self.assertMistake("listen = 7400", "node.listen", "must be a string")

    def test_listen_host_name(self):
        self.assertMistake('listen = "localhost:7400"', "node.listen",
                           "must be an IP address")

    def test_wildcard_listen_without_advertise(self):
        self.assertMistake('listen = "0.0.0.0:7400"', "node.advertise",
                           "is required when listen is the wildcard")

    def test_wildcard_advertise(self):
        self.assertMistake('listen = "127.0.0.11:7400"\nadvertise = "0.0.0.0:7400"',
                           "node.advertise", "must be an address others can dial")

    def test_advertise_without_listen(self):
        self.assertMistake('advertise = "127.0.0.11:7400"', "node.advertise",
                           "needs node.listen")

    def test_join_without_listen(self):
        self.assertMistake('join = ["127.0.0.12:7400"]', "node.join", "needs node.listen")

    def test_join_not_a_list(self):
        self.assertMistake('listen = "127.0.0.11:7400"\njoin = "127.0.0.12:7400"',
                           "node.join", "must be an array of strings")

    def test_join_entry_bad(self):
        self.assertMistake('listen = "127.0.0.11:7400"\njoin = ["127.0.0.12:7400", "x"]',
                           "node.join[1]", "must be host:port")

    def test_join_other_family(self):
        self.assertMistake('listen = "127.0.0.11:7400"\njoin = ["[::1]:7400"]',
                           "node.join[0]", "IPv6 address but listen is IPv4")

    def test_listen_without_tls(self):
        self.assertMistake('listen = "127.0.0.11:7400"', "tls",
                           "is required when node.listen is set", tls="")

    def test_tls_missing_key(self):
        self.assertMistake('listen = "127.0.0.11:7400"', "tls.key", "is required",
                           tls='[tls]\nca = "ca.pem"\ncert = "a.pem"\n')

    def test_tls_unknown_key(self):
        self.assertMistake('listen = "127.0.0.11:7400"', "tls.certificate", "unknown key",
                           tls='[tls]\nca = "c"\ncert = "a"\nkey = "k"\ncertificate = "x"\n')

    def test_tls_empty_path(self):
        self.assertMistake('listen = "127.0.0.11:7400"', "tls.ca", "must not be empty",
                           tls='[tls]\nca = ""\ncert = "a"\nkey = "k"\n')

    def test_tls_not_a_table(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config('tls = "x"\n[node]\nname = "alpha"\n', "clsd.toml")
        self.assertIn("clsd.toml: tls: must be a table", str(caught.exception))
