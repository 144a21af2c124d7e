"""load_identity: every [tls] file mistake refuses to start with a clear ConfigError."""

import datetime
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from twisted.trial import unittest

from clsd.certs import authority, store
from clsd.certs.identity import load_identity
from clsd.config import ConfigError, parse_config

from tests.support.peer_fixtures import DAY, TestCA, utcnow


class LoadIdentityTests(unittest.TestCase):
    def setUp(self):
        self.ca = TestCA()
        self.dir = os.path.abspath(self.mktemp())
        self.certs = os.path.join(self.dir, "certs")
        self.ca.write_files(self.certs, "alpha")

    def config(self, name="alpha", cert="certs/alpha.pem", key="certs/alpha.key",
               ca="certs/ca.pem"):
        text = (f'[node]\nname = "{name}"\nlisten = "127.0.0.11:7400"\n'
                f'[tls]\nca = "{ca}"\ncert = "{cert}"\nkey = "{key}"\n')
        return parse_config(text, "clsd.toml", base_dir=self.dir)

    def assertRefused(self, config, where, words, now=None):
        with self.assertRaises(ConfigError) as caught:
            load_identity(config, now=now)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"clsd.toml: {where}: "), message)
        self.assertIn(words, message)
        return message

    def test_good_identity(self):
        identity = load_identity(self.config())
        self.assertEqual(identity.name, "alpha")
        self.assertEqual(authority.node_name_of(identity.certificate), "alpha")
        self.assertTrue(authority.key_matches(identity.key, identity.certificate))
        self.assertEqual(identity.ca_certificates, (self.ca.certificate,))

    def test_no_tls_section(self):
        config = parse_config('[node]\nname = "alpha"\n', "clsd.toml")
        self.assertRefused(config, "tls", "is required")

    def test_missing_certificate(self):
        self.assertRefused(self.config(cert="certs/nope.pem"), "tls.cert",
                           "cannot read the certificate: No such file")

    def test_missing_key(self):
        self.assertRefused(self.config(key="certs/nope.key"), "tls.key",
                           "cannot read the private key")

    def test_missing_ca(self):
        self.assertRefused(self.config(ca="certs/nope.pem"), "tls.ca", "cannot read")

    def test_unreadable_key(self):
        if os.geteuid() == 0:
            # root reads any file: simulate with a directory in the key's place
            os.rename(os.path.join(self.certs, "alpha.key"),
                      os.path.join(self.certs, "alpha.key.bak"))
            os.mkdir(os.path.join(self.certs, "alpha.key"))
            self.assertRefused(self.config(), "tls.key", "cannot read the private key")
        else:
            os.chmod(os.path.join(self.certs, "alpha.key"), 0)
            self.assertRefused(self.config(), "tls.key", "Permission denied")

    def test_not_pem(self):
        with open(os.path.join(self.certs, "junk.pem"), "w") as f:
            f.write("junk\n")
        self.assertRefused(self.config(cert="certs/junk.pem"), "tls.cert",
                           "not a PEM certificate")

    def test_key_of_another_certificate(self):
        self.ca.write_files(self.certs, "beta")
        message = self.assertRefused(self.config(key="certs/beta.key"), "tls.key",
                                     "is not the private key of")
        self.assertIn("alpha.pem", message)

    def test_certificate_for_another_node(self):
        self.ca.write_files(self.certs, "beta")
        message = self.assertRefused(
            self.config(cert="certs/beta.pem", key="certs/beta.key"), "tls.cert",
            "is for node 'beta', but node.name is 'alpha'")
        self.assertIn("clsd-certs issue", message)

    def test_expired(self):
        now = utcnow()
        self.ca.write_files(self.certs, "alpha", not_before=now - 10 * DAY,
                            not_after=now - DAY)
        self.assertRefused(self.config(), "tls.cert", "has expired")

    def test_not_yet_valid(self):
        now = utcnow()
        self.ca.write_files(self.certs, "alpha", not_before=now + DAY,
                            not_after=now + 10 * DAY)
        self.assertRefused(self.config(), "tls.cert", "is not valid yet")

    def test_judged_at_the_given_time(self):
        later = utcnow() + datetime.timedelta(days=5000)
        self.assertRefused(self.config(), "tls.ca", "has expired", now=later)

    def test_other_ca(self):
        other = TestCA()
        pair = other.issue("alpha")
        store.write_pair(pair, *store.node_paths(self.certs, "alpha"), force=True)
        self.assertRefused(self.config(), "tls.cert", "was not issued by the CA")

    def test_ca_is_not_a_ca(self):
        self.assertRefused(self.config(ca="certs/alpha.pem"), "tls.ca",
                           "is not a CA certificate")

    def test_ca_given_as_node_certificate(self):
        self.assertRefused(self.config(cert="certs/ca.pem"), "tls.cert",
                           "is a CA certificate")

    def test_world_readable_key(self):
        os.chmod(os.path.join(self.certs, "alpha.key"), 0o644)
        self.assertRefused(self.config(), "tls.key", "chmod 600")

    def test_encrypted_key(self):
        key = ec.generate_private_key(ec.SECP256R1())
        path = os.path.join(self.certs, "locked.key")
        store.write_file(path, key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret")), private=True)
        self.assertRefused(self.config(key="certs/locked.key"), "tls.key", "is encrypted")

    def test_cn_and_san_disagree(self):
        # A certificate whose CN says alpha but whose SAN names only beta.
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        now = utcnow()
        certificate = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alpha")]))
            .issuer_name(self.ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - DAY).not_valid_after(now + DAY)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("beta")]), False)
            .sign(self.ca.authority.key, hashes.SHA256())
        )
        pair = authority.KeyAndCertificate(key=key, certificate=certificate)
        store.write_pair(pair, *store.node_paths(self.certs, "alpha"), force=True)
        self.assertRefused(self.config(), "tls.cert", "is not among its subjectAltName")


class CARotationTests(unittest.TestCase):
    """ca.pem may hold the old and the new CA while certificates are re-issued."""

    def setUp(self):
        self.old, self.new = TestCA(), TestCA()
        self.dir = os.path.abspath(self.mktemp())
        self.certs = os.path.join(self.dir, "certs")
        os.makedirs(self.certs)
        bundle = self.old.authority.certificate_pem() + self.new.authority.certificate_pem()
        store.write_file(os.path.join(self.certs, "ca.pem"), bundle, private=False)

    def config(self):
        text = ('[node]\nname = "alpha"\nlisten = "127.0.0.11:7400"\n'
                '[tls]\nca = "certs/ca.pem"\ncert = "certs/alpha.pem"\nkey = "certs/alpha.key"\n')
        return parse_config(text, "clsd.toml", base_dir=self.dir)

    def test_certificate_from_either_ca_accepted(self):
        for ca in (self.old, self.new):
            store.write_pair(ca.issue("alpha"), *store.node_paths(self.certs, "alpha"),
                             force=True)
            identity = load_identity(self.config())
            self.assertEqual(identity.ca_certificates,
                             (self.old.certificate, self.new.certificate))

    def test_certificate_from_a_third_ca_refused(self):
        store.write_pair(TestCA().issue("alpha"), *store.node_paths(self.certs, "alpha"),
                         force=True)
        with self.assertRaises(ConfigError) as caught:
            load_identity(self.config())
        self.assertIn("was not issued by the CA", str(caught.exception))

    def test_node_certificate_in_the_bundle_refused(self):
        pair = self.new.issue("alpha")
        store.write_pair(pair, *store.node_paths(self.certs, "alpha"), force=True)
        with open(os.path.join(self.certs, "ca.pem"), "ab") as f:
            f.write(pair.certificate_pem())
        with self.assertRaises(ConfigError) as caught:
            load_identity(self.config())
        self.assertIn("certificate 3 of", str(caught.exception))
        self.assertIn("is not a CA certificate", str(caught.exception))
