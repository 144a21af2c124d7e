"""The ``[admin]`` table: defaults, valid forms, and every kind of mistake."""

import os

import bcrypt
from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import keys
from twisted.trial import unittest

from clsd.config import ConfigError, parse_config

#: Cost 4, the cheapest bcrypt allows: these tests check the format, not the strength.
HASH = bcrypt.hashpw(b"secret", bcrypt.gensalt(rounds=4)).decode()


def public_line(comment=b"someone@example"):
    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    return key.public().toString("openssh") + b" " + comment


class AdminConfigTests(unittest.TestCase):
    def setUp(self):
        self.dir = self.mktemp()
        os.makedirs(self.dir)
        self.admin_keys = self.write("admin_keys", public_line() + b"\n")
        self.monitor_keys = self.write("monitor_keys", b"# monitors\n\n" + public_line() + b"\n")

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def parse(self, admin_toml):
        text = f'[node]\nname = "alpha"\ndata_dir = "data"\n\n[admin]\n{admin_toml}\n'
        return parse_config(text, "clsd.toml", base_dir=self.dir).admin

    def assertMistake(self, admin_toml, path, *fragments):
        with self.assertRaises(ConfigError) as caught:
            self.parse(admin_toml)
        error = caught.exception
        self.assertEqual(error.path, path, str(error))
        self.assertTrue(str(error).startswith(f"clsd.toml: {path}: "), str(error))
        for fragment in fragments:
            self.assertIn(fragment, str(error))
        return error

    # -- valid ----------------------------------------------------------------

    def test_absent_table_means_no_listener(self):
        text = '[node]\nname = "alpha"\ndata_dir = "/var/lib/x"\n'
        admin = parse_config(text, "clsd.toml").admin
        self.assertIsNone(admin.ssh)
        self.assertIsNone(admin.telnet)
        self.assertEqual(admin.host_key, "/var/lib/x/ssh_host_ed25519_key")

    def test_full_table(self):
        admin = self.parse(
            'ssh = "127.0.0.1:7422"\n'
            'host_key = "keys/host"\n'
            'authorized_keys = "admin_keys"\n'
            'monitor_keys = "monitor_keys"\n'
            'telnet = "127.0.0.5:7423"\n'
            f'telnet_password_hash = "{HASH}"\n'
        )
        self.assertEqual(admin.ssh, ("127.0.0.1", 7422))
        self.assertEqual(admin.host_key, os.path.join(os.path.abspath(self.dir), "keys/host"))
        self.assertEqual(admin.authorized_keys, os.path.abspath(self.admin_keys))
        self.assertEqual(admin.monitor_keys, os.path.abspath(self.monitor_keys))
        self.assertEqual(admin.telnet, ("127.0.0.5", 7423))
        self.assertEqual(admin.telnet_password_hash, HASH)

    def test_host_key_defaults_into_data_dir(self):
        admin = self.parse('ssh = "127.0.0.1:7422"\nauthorized_keys = "admin_keys"')
        expected = os.path.join(os.path.abspath(self.dir), "data", "ssh_host_ed25519_key")
        self.assertEqual(admin.host_key, expected)

    def test_monitor_keys_alone_suffice(self):
        admin = self.parse('ssh = "127.0.0.1:0"\nmonitor_keys = "monitor_keys"')
        self.assertEqual(admin.ssh, ("127.0.0.1", 0))
        self.assertIsNone(admin.authorized_keys)

    def test_ipv6_addresses(self):
        admin = self.parse(
            'ssh = "[::1]:7422"\nauthorized_keys = "admin_keys"\n'
            f'telnet = "[::1]:7423"\ntelnet_password_hash = "{HASH}"'
        )
        self.assertEqual(admin.ssh, ("::1", 7422))
        self.assertEqual(admin.telnet, ("::1", 7423))

    def test_empty_strings_mean_off(self):
        admin = self.parse('ssh = ""\ntelnet = ""')
        self.assertIsNone(admin.ssh)
        self.assertIsNone(admin.telnet)

    # -- mistakes -------------------------------------------------------------

    def test_ssh_not_a_string(self):
        self.assertMistake("ssh = 7422", "admin.ssh", "must be a string")

    def test_ssh_malformed(self):
        for value in ("7422", "127.0.0.1", "127.0.0.1:", "127.0.0.1:x", "127.0.0.1:70000",
                      "::1:7422"):
            self.assertMistake(f'ssh = "{value}"', "admin.ssh", "IP:PORT", repr(value))

    def test_ssh_host_name_refused(self):
        self.assertMistake('ssh = "localhost:7422"\nauthorized_keys = "admin_keys"',
                           "admin.ssh", "not a host name", "'localhost'")

    def test_ssh_without_any_key_file(self):
        self.assertMistake('ssh = "127.0.0.1:7422"', "admin.ssh", "no one could log in")

    def test_key_file_missing(self):
        self.assertMistake('authorized_keys = "nowhere"', "admin.authorized_keys",
                           "cannot read", "nowhere", "No such file")

    def test_key_file_with_a_bad_line(self):
        self.write("bad_keys", public_line() + b"\nssh-ed25519\n")
        self.assertMistake('monitor_keys = "bad_keys"', "admin.monitor_keys",
                           "bad_keys line 2", "not a public key")

    def test_key_file_with_options_refused(self):
        self.write("opt_keys", b'from="127.0.0.1" ' + public_line() + b"\n")
        self.assertMistake('authorized_keys = "opt_keys"', "admin.authorized_keys",
                           "line 1", "key options such as from= are not supported")

    def test_telnet_not_loopback(self):
        for address in ("0.0.0.0:7423", "10.1.2.3:7423", "[::]:7423", "192.168.1.1:23"):
            self.assertMistake(
                f'telnet = "{address}"\ntelnet_password_hash = "{HASH}"',
                "admin.telnet", "must be a loopback address", "clear text",
            )

    def test_telnet_host_name_refused(self):
        self.assertMistake(f'telnet = "localhost:7423"\ntelnet_password_hash = "{HASH}"',
                           "admin.telnet", "not a host name")

    def test_telnet_needs_password_hash(self):
        self.assertMistake('telnet = "127.0.0.1:7423"', "admin.telnet_password_hash",
                           "is required when telnet is on")

    def test_password_hash_malformed(self):
        for value in ("secret", HASH[:-1], "$1$abcdefgh$" + "x" * 22,
                      HASH.replace("$2b$", "$2c$")):
            error = self.assertMistake(
                f'telnet = "127.0.0.1:7423"\ntelnet_password_hash = "{value}"',
                "admin.telnet_password_hash", "must be a bcrypt hash",
            )
            self.assertNotIn(value, str(error), "the value itself is not echoed")

    def test_unknown_key(self):
        self.assertMistake('ssh_port = 7422', "admin.ssh_port", "unknown key")

    def test_admin_not_a_table(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config('admin = 3\n[node]\nname = "alpha"\n', "clsd.toml")
        self.assertEqual(caught.exception.path, "admin")
        self.assertIn("must be a table", str(caught.exception))


class ManholeBudgetConfigTests(unittest.TestCase):
    """``admin.manhole_budget``: default, limits from the lease and membership timing."""

    def parse(self, admin_toml="", extra=""):
        text = (f'[node]\nname = "alpha"\ndata_dir = "/var/lib/x"\n\n[admin]\n{admin_toml}\n'
                f"{extra}")
        return parse_config(text, "clsd.toml").admin

    def assertMistake(self, admin_toml, extra, *fragments):
        with self.assertRaises(ConfigError) as caught:
            self.parse(admin_toml, extra)
        error = caught.exception
        self.assertEqual(error.path, "admin.manhole_budget", str(error))
        for fragment in fragments:
            self.assertIn(fragment, str(error))

    def test_default(self):
        self.assertEqual(self.parse().manhole_budget, 0.1)
        text = '[node]\nname = "alpha"\ndata_dir = "/var/lib/x"\n'
        self.assertEqual(parse_config(text, "clsd.toml").admin.manhole_budget, 0.1)

    def test_default_lowered_for_a_short_lease(self):
        # T = 1 s: T/16 = 0.0625 s.
        admin = self.parse(extra='[quorum]\nvoters = ["alpha"]\nlease = 1.0\n')
        self.assertAlmostEqual(admin.manhole_budget, 1.0 / 16)

    def test_explicit_value_kept(self):
        self.assertEqual(self.parse("manhole_budget = 0.1").manhole_budget, 0.1)
        self.assertEqual(self.parse("manhole_budget = 0.5",
                                    '[quorum]\nvoters = ["alpha"]\nlease = 10.0\n').manhole_budget,
                         0.5)

    def test_too_long_for_the_default_lease(self):
        self.assertMistake("manhole_budget = 0.2", '[quorum]\nvoters = ["alpha"]\n',
                           "must be at most 0.125 s", "quorum.lease/16", "got 0.2")

    def test_too_long_for_membership(self):
        # No quorum: only membership bounds it, (4 - 1) / 4 = 0.75 s.
        self.assertEqual(self.parse("manhole_budget = 0.75").manhole_budget, 0.75)
        self.assertMistake("manhole_budget = 0.8", "", "must be at most 0.75 s",
                           "failure_timeout")

    def test_not_a_number(self):
        self.assertMistake('manhole_budget = "fast"', "", "must be a number")

    def test_too_short(self):
        self.assertMistake("manhole_budget = 0", "", "must be at least 0.01")
        self.assertMistake("manhole_budget = -1", "", "must be at least 0.01")
