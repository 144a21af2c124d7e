"""The notary: signatures on membership statements, and what it refuses."""

import datetime

import attrs
from cryptography.hazmat.primitives.asymmetric import rsa
from twisted.trial import unittest

from clsd.certs.authority import create_authority, issue_node_certificate
from clsd.certs.identity import NodeIdentity
from clsd.config import ConfigError
from clsd.daemon import _membership_notary
from clsd.membership.core.messages import Report, report_statement
from clsd.membership.core.notary import (
    MAX_CERTIFICATE, MAX_SIGNATURE, FakeNotary, NotaryError, VerifiedCache, X509Notary,
)

CA = create_authority("test cluster CA")


def identity(name, authority=CA, **issue):
    pair = issue_node_certificate(authority, name, **issue)
    return NodeIdentity(name=name, key=pair.key, certificate=pair.certificate,
                        ca_certificates=(authority.certificate,))


BETA = identity("beta")
MALLORY = identity("mallory")


class X509NotaryTests(unittest.TestCase):
    def setUp(self):
        self.verifier = X509Notary(identity("alpha"))
        self.report = Report("alpha", 17, 3, "beta")

    def test_a_report_signed_by_its_observer_verifies(self):
        signed = self.report.signed(X509Notary(BETA))
        self.assertTrue(signed.verified(self.verifier))
        self.assertLessEqual(len(signed.signature), MAX_SIGNATURE)
        self.assertLessEqual(len(signed.certificate), MAX_CERTIFICATE)

    def test_a_relay_cannot_sign_for_the_observer(self):
        # Mallory holds a certificate of the cluster CA, but for its own name.
        forged = self.report.signed(X509Notary(MALLORY))
        self.assertFalse(forged.verified(self.verifier))
        # Its signature with beta's certificate attached does not check either.
        beta_certificate = X509Notary(BETA).certificate
        self.assertFalse(attrs.evolve(forged, certificate=beta_certificate).verified(
            self.verifier))

    def test_a_signature_is_for_one_statement(self):
        signed = self.report.signed(X509Notary(BETA))
        for change in ({"incarnation": 4}, {"generation": 18}, {"subject": "gamma"},
                       {"observer": "gamma"}):
            self.assertFalse(attrs.evolve(signed, **change).verified(self.verifier), change)

    def test_missing_or_garbled_proofs_are_refused(self):
        signed = self.report.signed(X509Notary(BETA))
        for change in ({"signature": ""}, {"certificate": ""}, {"signature": "!!"},
                       {"certificate": "bm90IGEgY2VydGlmaWNhdGU="},
                       {"signature": signed.signature[:-8] + "AAAAAAA="}):
            self.assertFalse(attrs.evolve(signed, **change).verified(self.verifier), change)

    def test_certificates_of_another_ca_or_expired_ones_are_refused(self):
        other = identity("beta", create_authority("another CA"))
        self.assertFalse(self.report.signed(X509Notary(other)).verified(self.verifier))
        past = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
        expired = identity("beta", not_before=past, not_after=past + datetime.timedelta(days=1))
        self.assertFalse(self.report.signed(X509Notary(expired)).verified(self.verifier))

    def test_each_certificate_and_statement_is_checked_once(self):
        beta = X509Notary(BETA)
        first, second = Report("alpha", 17, 3, "beta"), Report("gamma", 5, 0, "beta")
        counts = self.verifier.cache.counts
        for _ in range(3):
            self.assertTrue(first.signed(beta).verified(self.verifier))
        # ECDSA signatures are randomised: each signing is a new statement proof.
        signed = second.signed(beta)
        for _ in range(3):
            self.assertTrue(signed.verified(self.verifier))
        self.assertEqual(counts["certificates"], 1)
        self.assertEqual(counts["signatures"], 4)

    def test_a_shared_cache_serves_every_node_of_a_process(self):
        cache = VerifiedCache()
        signed = self.report.signed(X509Notary(BETA))
        for name in ("alpha", "gamma", "delta"):
            self.assertTrue(signed.verified(X509Notary(identity(name), cache)))
        self.assertEqual(cache.counts, {"certificates": 1, "signatures": 1})

    def test_the_caches_are_bounded_and_keep_no_forgery(self):
        cache = VerifiedCache(certificate_limit=4, statement_limit=8)
        notary = X509Notary(identity("alpha"), cache)
        beta = X509Notary(BETA)
        for incarnation in range(20):
            self.assertTrue(Report("alpha", 1, incarnation, "beta").signed(beta)
                            .verified(notary))
            self.assertFalse(Report("alpha", 1, incarnation, "beta").signed(
                X509Notary(MALLORY)).verified(notary))
        self.assertLessEqual(len(cache.statements), 8)
        for name in ("c1", "c2", "c3", "c4", "c5", "c6"):
            Report("alpha", 1, 0, name).signed(X509Notary(identity(name))).verified(notary)
        self.assertLessEqual(len(cache.certificates), 4)

    def test_only_elliptic_curve_keys_can_sign(self):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        rsa_identity = attrs.evolve(BETA, key=key)
        with self.assertRaises(NotaryError) as caught:
            X509Notary(rsa_identity)
        self.assertIn("elliptic-curve", str(caught.exception))


class FakeNotaryTests(unittest.TestCase):
    def test_it_catches_missing_altered_and_misattributed_proofs(self):
        verifier = FakeNotary("alpha")
        report = Report("alpha", 17, 3, "beta")
        self.assertTrue(report.signed(FakeNotary("beta")).verified(verifier))
        self.assertFalse(report.verified(verifier))
        self.assertFalse(report.signed(FakeNotary("mallory")).verified(verifier))
        self.assertFalse(attrs.evolve(report.signed(FakeNotary("beta")), incarnation=4)
                         .verified(verifier))

    def test_the_statement_is_tagged_and_names_every_field(self):
        statement = report_statement("alpha", 17, 3, "beta")
        self.assertEqual(statement, b"clsd.membership.report\x00alpha\x0017\x003\x00beta")


class DaemonNotary(unittest.TestCase):
    def test_a_key_that_cannot_sign_stops_the_daemon_with_one_line(self):
        class Config:
            source = "/etc/clsd/clsd.toml"

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        with self.assertRaises(ConfigError) as caught:
            _membership_notary(Config(), attrs.evolve(BETA, key=key))
        self.assertEqual(caught.exception.path, "tls.key")
        self.assertNotIn("\n", str(caught.exception))
        self.assertIsInstance(_membership_notary(Config(), BETA), X509Notary)
