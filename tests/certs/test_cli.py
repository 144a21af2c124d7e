"""clsd-certs: init, issue, show; permissions; no overwrite without --force."""

import io
import os
import stat
import subprocess
import sys

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from twisted.trial import unittest

from clsd.certs import authority, store
from clsd.certs.cli import main


def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class InitTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(self.mktemp(), "certs")

    def test_creates_ca_with_private_key_0600(self):
        code, out, err = run("init", self.dir)
        self.assertEqual((code, err), (0, ""))
        ca_pem, ca_key = store.ca_paths(self.dir)
        self.assertEqual(mode(ca_key), 0o600)
        self.assertEqual(mode(ca_pem), 0o644)
        self.assertEqual(mode(self.dir), 0o700)
        loaded = store.load_authority(self.dir)
        self.assertTrue(authority.is_authority(loaded.certificate))
        self.assertIn("keep", out)

    def test_key_is_0600_whatever_the_umask(self):
        old = os.umask(0)
        try:
            run("init", self.dir)
        finally:
            os.umask(old)
        self.assertEqual(mode(store.ca_paths(self.dir)[1]), 0o600)

    def test_never_overwrites_without_force(self):
        run("init", self.dir)
        before = open(store.ca_paths(self.dir)[1], "rb").read()
        code, out, err = run("init", self.dir)
        self.assertEqual(code, 1)
        self.assertIn("already exists; use --force", err)
        self.assertEqual(open(store.ca_paths(self.dir)[1], "rb").read(), before)

    def test_force_replaces(self):
        run("init", self.dir)
        before = open(store.ca_paths(self.dir)[1], "rb").read()
        code, _, _ = run("init", self.dir, "--force")
        self.assertEqual(code, 0)
        self.assertNotEqual(open(store.ca_paths(self.dir)[1], "rb").read(), before)
        self.assertEqual(mode(store.ca_paths(self.dir)[1]), 0o600)

    def test_name_and_days(self):
        run("init", self.dir, "--name", "Test cluster CA", "--days", "30")
        certificate = store.load_certificate(store.ca_paths(self.dir)[0])
        self.assertEqual(authority.common_names(certificate), ["Test cluster CA"])
        lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
        self.assertLess(lifetime.days, 31)

    def test_bad_days(self):
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        with self.assertRaises(SystemExit):
            run("init", self.dir, "--days", "0")
        self.assertIn("--days: must be at least 1", stderr.getvalue())


class IssueTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(self.mktemp(), "certs")
        run("init", self.dir)

    def test_issue_node(self):
        code, out, err = run("issue", self.dir, "alpha", "--ip", "127.0.0.11",
                             "--dns", "alpha.example")
        self.assertEqual((code, err), (0, ""))
        cert_path, key_path = store.node_paths(self.dir, "alpha")
        self.assertEqual(mode(key_path), 0o600)
        certificate = store.load_certificate(cert_path)
        key = store.load_private_key(key_path)
        self.assertEqual(authority.node_name_of(certificate), "alpha")
        self.assertEqual(authority.alt_dns_names(certificate), ["alpha", "alpha.example"])
        self.assertEqual(authority.alt_ip_addresses(certificate), ["127.0.0.11"])
        self.assertTrue(authority.key_matches(key, certificate))
        ca = store.load_certificate(store.ca_paths(self.dir)[0])
        self.assertTrue(authority.signed_by(certificate, ca))
        self.assertEqual(certificate.public_key().curve.name, "secp256r1")
        self.assertEqual(authority.extended_key_usages(certificate),
                         [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH])
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertFalse(constraints.value.ca)

    def test_out_directory(self):
        out_dir = os.path.join(self.mktemp(), "node")
        code, _, _ = run("issue", self.dir, "beta", "--out", out_dir)
        self.assertEqual(code, 0)
        self.assertTrue(os.path.exists(os.path.join(out_dir, "beta.key")))
        self.assertFalse(os.path.exists(os.path.join(self.dir, "beta.key")))

    def test_never_overwrites_without_force(self):
        run("issue", self.dir, "alpha")
        code, _, err = run("issue", self.dir, "alpha")
        self.assertEqual(code, 1)
        self.assertIn("alpha.pem already exists; use --force", err)
        self.assertEqual(run("issue", self.dir, "alpha", "--force")[0], 0)

    def test_invalid_node_name(self):
        code, _, err = run("issue", self.dir, "no spaces")
        self.assertEqual(code, 1)
        self.assertIn("not a valid node name", err)

    def test_invalid_ip(self):
        code, _, err = run("issue", self.dir, "alpha", "--ip", "not-an-ip")
        self.assertEqual(code, 1)
        self.assertIn("'not-an-ip' is not an IP address", err)
        self.assertFalse(os.path.exists(store.node_paths(self.dir, "alpha")[1]))

    def test_missing_ca(self):
        code, _, err = run("issue", self.mktemp(), "alpha")
        self.assertEqual(code, 1)
        self.assertIn("cannot read the certificate", err)

    def test_key_not_matching_ca(self):
        other = os.path.join(self.mktemp(), "other")
        run("init", other)
        os.replace(store.ca_paths(other)[1], store.ca_paths(self.dir)[1])
        code, _, err = run("issue", self.dir, "alpha")
        self.assertEqual(code, 1)
        self.assertIn("this key does not belong to", err)


class ShowTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(self.mktemp(), "certs")
        run("init", self.dir)
        run("issue", self.dir, "alpha", "--ip", "127.0.0.11")

    def test_show_certificate(self):
        cert_path = store.node_paths(self.dir, "alpha")[0]
        code, out, _ = run("show", cert_path)
        self.assertEqual(code, 0)
        certificate = store.load_certificate(cert_path)
        self.assertIn("subject:", out)
        self.assertIn("CN=alpha", out)
        self.assertIn("dns names:    alpha", out)
        self.assertIn("127.0.0.11", out)
        self.assertIn("not after:", out)
        self.assertIn("valid,", out)
        self.assertIn(authority.fingerprint(certificate), out)

    def test_show_key(self):
        code, out, _ = run("show", store.node_paths(self.dir, "alpha")[1])
        self.assertEqual(code, 0)
        self.assertIn("private key", out)
        self.assertIn("mode:       0600", out)

    def test_show_expired(self):
        ca = store.load_authority(self.dir)
        now = authority._utcnow()
        pair = authority.issue_node_certificate(
            ca, "old", not_before=now - 10 * authority.BACKDATE,
            not_after=now - authority.BACKDATE)
        path = os.path.join(self.dir, "old.pem")
        store.write_file(path, pair.certificate_pem(), private=False)
        code, out, _ = run("show", path)
        self.assertIn("has expired", out)

    def test_show_garbage(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("hello\n")
        code, _, err = run("show", path)
        self.assertEqual(code, 1)
        self.assertIn("neither a PEM certificate, a private key nor a revocation list", err)


class ConsoleScriptTests(unittest.TestCase):
    def test_installed_script_runs(self):
        """The clsd-certs entry point is installed next to the interpreter."""
        script = os.path.join(os.path.dirname(sys.executable), "clsd-certs")
        if not os.path.exists(script):
            script = None
        directory = os.path.join(self.mktemp(), "c")
        command = [script] if script else [sys.executable, "-m", "clsd.certs.cli"]
        result = subprocess.run(command + ["init", directory], capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 0, result.stderr)
        result = subprocess.run(command + ["init", directory], capture_output=True, text=True,
                                timeout=60)
        self.assertEqual(result.returncode, 1)
        self.assertIn("clsd-certs: error:", result.stderr)
