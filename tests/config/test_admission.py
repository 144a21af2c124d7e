"""``[membership] allow`` and ``[tls] crl``: reading, glob rules, reload plans."""

from twisted.trial import unittest

from clsd.config import ConfigError, parse_config
from clsd.config.changes import plan_reload
from clsd.config.membership import allows, pattern_problem

NODE = '[node]\nname = "alpha"\n'
TLS = '[tls]\nca = "c/ca.pem"\ncert = "c/alpha.pem"\nkey = "c/alpha.key"\n'


def parse(text, node=NODE):
    return parse_config(node + text, "clsd.toml", base_dir="/etc/clsd")


class AllowTests(unittest.TestCase):
    def assertMistake(self, text, message, node=NODE):
        with self.assertRaises(ConfigError) as caught:
            parse("[membership]\n" + text, node)
        self.assertEqual(str(caught.exception), f"clsd.toml: {message}")

    def test_absent_means_every_name(self):
        self.assertIsNone(parse("").membership.allow)
        self.assertIsNone(parse("[membership]\n").membership.allow)
        self.assertTrue(allows(None, "anything"))

    def test_patterns_kept_in_order(self):
        config = parse('[membership]\nallow = ["alpha", "beta", "web-*"]\n')
        self.assertEqual(config.membership.allow, ("alpha", "beta", "web-*"))

    def test_glob_matching(self):
        patterns = ("alpha", "web-*", "db-?", "cache-[0-3]", "x[!a-c]")
        for name in ("alpha", "web-", "web-12", "db-1", "cache-2", "xd"):
            self.assertTrue(allows(patterns, name), name)
        for name in ("Alpha", "alpha2", "db-12", "cache-4", "xa", "beta", "web"):
            self.assertFalse(allows(patterns, name), name)

    def test_mistakes(self):
        self.assertMistake('allow = "alpha"',
                           "membership.allow: must be an array of strings, got string 'alpha'")
        self.assertMistake('allow = ["alpha", 3]',
                           "membership.allow[1]: must be a string, got number 3")
        self.assertMistake("allow = []", "membership.allow: must not be empty (leave it out "
                                         "to admit every node the cluster CA signed)")
        self.assertMistake('allow = ["alpha", ""]',
                           "membership.allow[1]: the pattern '' is empty")
        self.assertMistake('allow = ["alpha", "web-[12"]',
                           "membership.allow[1]: the pattern 'web-[12' has a '[' that is "
                           "never closed (at 5)")
        self.assertMistake('allow = ["alpha", "web-1]"]',
                           "membership.allow[1]: the pattern 'web-1]' has a ']' without '[' "
                           "(at 6)")

    def test_sane_syntax(self):
        for good in ("a", "*", "web-*", "n[0-9][0-9]", "x[!ab]", "a?c", "[]a]"):
            self.assertIsNone(pattern_problem(good), good)
        for bad in ("web 1", "web/1", "a!b", "[a*]", "we[b", "b]", "é"):
            self.assertIsNotNone(pattern_problem(bad), bad)

    def test_own_name_must_be_admitted(self):
        self.assertMistake(
            'allow = ["beta", "web-*"]',
            "membership.allow: does not admit this node's own name 'alpha': the other nodes, "
            "sharing this list, would refuse it (add the name or a pattern that matches it)")
        # A pattern that matches it is enough.
        self.assertEqual(parse('[membership]\nallow = ["a*"]\n').membership.allow, ("a*",))


class CRLPathTests(unittest.TestCase):
    def test_relative_to_the_config_directory(self):
        config = parse(TLS + 'crl = "c/crl.pem"\n')
        self.assertEqual(config.tls.crl, "/etc/clsd/c/crl.pem")

    def test_optional(self):
        self.assertIsNone(parse(TLS).tls.crl)

    def test_mistakes(self):
        for value, message in (('""', "must not be empty"),
                               ("1", "must be a string, got number 1")):
            with self.assertRaises(ConfigError) as caught:
                parse(TLS + f"crl = {value}\n")
            self.assertEqual(str(caught.exception), f"clsd.toml: tls.crl: {message}")


class ReloadPlanTests(unittest.TestCase):
    def test_allow_and_crl_change_at_a_reload(self):
        old = parse(TLS)
        new = parse(TLS + 'crl = "c/crl.pem"\n[membership]\nallow = ["alpha", "web-*"]\n')
        plan = plan_reload(old, new)
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.admission, ("tls.crl", "membership.allow"))
        self.assertFalse(plan.empty)
        self.assertEqual(plan.summary(), "~tls.crl, ~membership.allow")

    def test_other_tls_and_membership_keys_stay_restart_only(self):
        old = parse(TLS)
        new = parse(TLS.replace("alpha.key", "other.key")
                    + '[membership]\nallow = ["alpha"]\nobservers = 4\nquorum = 3\n')
        plan = plan_reload(old, new)
        self.assertFalse(plan.allowed)
        self.assertEqual(plan.restart_only,
                         ("tls.key", "membership.observers", "membership.quorum"))
        self.assertEqual(plan.admission, ("membership.allow",))
