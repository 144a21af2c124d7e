"""clsd-certs revoke and crl; the [tls] crl checks at start and at reload."""

import io
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from twisted.trial import unittest

from clsd.certs import authority, store
from clsd.certs.cli import main
from clsd.certs.identity import check_identity, load_identity
from clsd.config import ConfigError, parse_config

from tests.support.peer_fixtures import DAY, TestCA, utcnow


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


class RevokeTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(os.path.abspath(self.mktemp()), "ca")
        self.assertEqual(run("init", self.dir)[0], 0)
        for name in ("alpha", "beta"):
            self.assertEqual(run("issue", self.dir, name)[0], 0)
        self.ca = store.load_authority(self.dir)

    def crl(self):
        return store.load_crl(os.path.join(self.dir, store.CRL_FILE))

    def serial(self, name, directory=None):
        return store.load_certificate(store.node_paths(directory or self.dir, name)[0]).serial_number

    def test_revoke_writes_a_crl_signed_by_the_ca(self):
        beta = self.serial("beta")
        code, out, err = run("revoke", self.dir, "beta")
        self.assertEqual((code, err), (0, ""))
        self.assertIn(f"revoked beta: serial {beta:x}", out)
        crl = self.crl()
        self.assertTrue(authority.crl_signed_by(crl, self.ca.certificate))
        self.assertEqual([entry.serial_number for entry in crl], [beta])
        self.assertIsNone(authority.crl_validity_problem(crl))
        # Far enough ahead: the default is a year.
        self.assertGreater(crl.next_update_utc - utcnow(), 364 * DAY)
        self.assertFalse(authority.crl_signed_by(crl, TestCA().certificate))

    def test_revocations_accumulate_and_the_number_grows(self):
        run("revoke", self.dir, "beta")
        first = authority.crl_number(self.crl())
        code, out, _ = run("revoke", self.dir, "alpha")
        self.assertEqual(code, 0)
        crl = self.crl()
        self.assertEqual({e.serial_number for e in crl},
                         {self.serial("alpha"), self.serial("beta")})
        self.assertEqual(authority.crl_number(crl), first + 1)
        record = json.load(open(os.path.join(self.dir, store.REVOKED_RECORD)))
        self.assertEqual(sorted(e["node"] for e in record["revoked"]), ["alpha", "beta"])
        # Again: nothing new, but a fresh list all the same.
        code, out, _ = run("revoke", self.dir, "beta")
        self.assertEqual(code, 0)
        self.assertIn("already revoked", out)
        self.assertEqual(len(list(self.crl())), 2)

    def test_every_certificate_of_the_node_even_replaced_or_elsewhere(self):
        old = self.serial("beta")
        run("issue", self.dir, "beta", "--force")
        new = self.serial("beta")
        out_dir = os.path.join(os.path.dirname(self.dir), "elsewhere")
        run("issue", self.dir, "beta", "--out", out_dir)
        elsewhere = self.serial("beta", out_dir)
        code, out, _ = run("revoke", self.dir, "beta")
        self.assertEqual(code, 0)
        self.assertEqual({e.serial_number for e in self.crl()}, {old, new, elsewhere})
        self.assertNotIn(self.serial("alpha"), {e.serial_number for e in self.crl()})

    def test_one_serial(self):
        old = self.serial("beta")
        run("issue", self.dir, "beta", "--force")
        code, out, _ = run("revoke", self.dir, "beta", "--serial", f"{old:x}")
        self.assertEqual(code, 0)
        self.assertEqual([e.serial_number for e in self.crl()], [old])

    def test_mistakes(self):
        code, _, err = run("revoke", self.dir, "gamma")
        self.assertEqual(code, 1)
        self.assertIn("no certificate issued to 'gamma' found", err)
        code, _, err = run("revoke", self.dir, "alpha", "--serial", f"{self.serial('beta'):x}")
        self.assertEqual(code, 1)
        self.assertIn("was issued to 'beta', not 'alpha'", err)
        self.assertFalse(os.path.exists(os.path.join(self.dir, store.CRL_FILE)))
        self.patch(sys, "stderr", io.StringIO())
        with self.assertRaises(SystemExit):
            run("revoke", self.dir, "beta", "--serial", "xyz")
        self.assertIn("must be a certificate serial in hex", sys.stderr.getvalue())

    def test_crl_refreshes_the_next_update(self):
        run("revoke", self.dir, "beta", "--days", "1")
        self.assertLess(self.crl().next_update_utc - utcnow(), 2 * DAY)
        code, out, _ = run("crl", self.dir, "--days", "30")
        self.assertEqual(code, 0)
        crl = self.crl()
        self.assertGreater(crl.next_update_utc - utcnow(), 29 * DAY)
        self.assertEqual([e.serial_number for e in crl], [self.serial("beta")])

    def test_show_a_crl(self):
        run("revoke", self.dir, "beta")
        code, out, _ = run("show", os.path.join(self.dir, store.CRL_FILE))
        self.assertEqual(code, 0)
        self.assertIn("certificate revocation list", out)
        self.assertIn(f"{self.serial('beta'):x}", out)
        self.assertIn("current", out)


class CRLAtStartTests(unittest.TestCase):
    """The daemon's [tls] crl checks (load_identity), each refusal one clear line."""

    def setUp(self):
        self.ca = TestCA()
        self.dir = os.path.abspath(self.mktemp())
        self.certs = os.path.join(self.dir, "certs")
        self.ca.write_files(self.certs, "alpha")
        self.beta = self.ca.issue("beta").certificate

    def write_crl(self, ca, certificates, name="crl.pem", **kwargs):
        now = utcnow()
        crl = authority.build_crl(ca.authority, [authority.Revoked(c.serial_number, "x", now)
                                                 for c in certificates], number=1, **kwargs)
        path = os.path.join(self.certs, name)
        with open(path, "wb") as f:
            f.write(crl.public_bytes(serialization.Encoding.PEM))
        return path

    def config(self, crl="certs/crl.pem"):
        text = ('[node]\nname = "alpha"\nlisten = "127.0.0.11:7400"\n'
                '[tls]\nca = "certs/ca.pem"\ncert = "certs/alpha.pem"\nkey = "certs/alpha.key"\n'
                f'crl = "{crl}"\n')
        return parse_config(text, "clsd.toml", base_dir=self.dir)

    def assertRefused(self, words, now=None):
        with self.assertRaises(ConfigError) as caught:
            load_identity(self.config(), now=now)
        message = str(caught.exception)
        self.assertTrue(message.startswith("clsd.toml: tls.crl: "), message)
        self.assertIn(words, message)

    def test_revoked_set_loaded(self):
        self.write_crl(self.ca, [self.beta])
        identity = load_identity(self.config())
        self.assertEqual(identity.revoked,
                         {(self.beta.issuer.public_bytes(), self.beta.serial_number)})

    def test_missing(self):
        self.assertRefused("cannot read the revocation list")

    def test_not_a_crl(self):
        with open(os.path.join(self.certs, "crl.pem"), "w") as f:
            f.write("hello\n")
        self.assertRefused("not a PEM certificate revocation list")

    def test_from_another_ca(self):
        self.write_crl(TestCA("evil"), [self.beta])
        self.assertRefused("is not signed by the CA in")

    def test_expired(self):
        self.write_crl(self.ca, [self.beta], days=1)
        self.assertRefused("has expired", now=utcnow() + 2 * DAY)

    def test_revokes_this_node_itself(self):
        alpha = store.load_certificate(os.path.join(self.certs, "alpha.pem"))
        self.write_crl(self.ca, [alpha])
        self.assertRefused("revokes this node's own certificate")

    def test_reread_when_the_file_changes(self):
        """What reload does: check_identity again sees the new list."""
        self.write_crl(self.ca, [])
        config = self.config()
        self.assertEqual(check_identity("alpha", config.tls).revoked, frozenset())
        self.write_crl(self.ca, [self.beta])
        self.assertEqual(len(check_identity("alpha", config.tls).revoked), 1)
