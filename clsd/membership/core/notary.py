"""Signatures on membership statements that a relay cannot forge.

Gossip relays pieces on purpose, so the authenticated sender of a message is
usually not the node a piece speaks for. A statement that can do harm (a
report "observer O cannot reach S") therefore carries its author's signature,
and every node checks it before it believes or relays the statement.

A notary signs this node's statements and verifies others'. The core is
given one (it stays pure: signing and checking are function calls, no I/O):

- L{X509Notary}, the daemon's: an ECDSA P-256 (SHA-256) signature with the
  node's TLS key over the statement's canonical bytes, verified with the
  signer's certificate, which travels with the statement (a node holds
  connections only to its ring neighbours, so it seldom has the author's
  certificate otherwise). The certificate must be issued by the cluster CA,
  valid now, not a CA, and name the signer.
- L{FakeNotary}, for the simulator and unit tests: the same protocol with a
  keyed hash that proves nothing against an attacker who reads this code.

Both cache what they verified: each certificate once (by SHA-256
fingerprint) and each statement once (by its bytes and signature), so gossip
that repeats a statement costs one set lookup per copy. The caches
may be shared by the nodes of one process (the scale benchmark hosts
hundreds), since a verdict does not depend on who asks.
"""

import base64
import binascii
import datetime
import hashlib
import hmac
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clsd.certs import authority
from clsd.certs.authority import CertificateError

if TYPE_CHECKING:
    from clsd.certs.identity import NodeIdentity

#: Bounds of the base64 text on the wire (see clsd.membership.core.messages):
#: an ECDSA P-256 signature is at most 72 bytes of DER (96 characters), a
#: clsd-certs node certificate about 480 bytes (640 characters); the bounds
#: leave room for longer names and alternative names while keeping a
#: message of MAX_UPDATES signed reports under 64 KiB.
MAX_SIGNATURE = 128
MAX_CERTIFICATE = 1536

#: Verdicts kept: certificates (one per member, and refused ones: a
#: fingerprint and None; when full, the oldest half goes), and statements
#: that verified (a report about 0.8 KB, a crash makes K of them; a
#: member's record about 0.4 KB, one per member and change; when full, all
#: go).
CERTIFICATE_LIMIT = 1 << 16
STATEMENT_LIMIT = 1 << 15


def fingerprint_of(certificate: str) -> str:
    """The short name of a certificate (its wire text): 24 characters of base64 SHA-256.

    Only a lookup key: a record whose fingerprint finds a certificate is still
    verified with that certificate, which must name the record's signer.
    """
    digest = hashlib.sha256(certificate.encode("ascii", "replace")).digest()[:18]
    return base64.b64encode(digest).decode("ascii")


FINGERPRINT_LENGTH = 24

#: The verdict on a certificate: C{(node name, public key)}, or None (refused).
CertificateVerdict = tuple[str, ec.EllipticCurvePublicKey] | None
#: A statement that verified: (signer, statement, signature, certificate).
StatementKey = tuple[str, bytes, str, str]


class Notary(Protocol):
    """What the membership core asks of a notary (L{X509Notary}, L{FakeNotary})."""

    name: str
    certificate: str
    fingerprint: str

    def sign(self, statement: bytes) -> tuple[str, str]: ...

    def verify(self, signer: str, statement: bytes, signature: str,
               certificate: str) -> bool: ...

    def sign_life(self, statement: bytes) -> tuple[str, str]: ...

    def learn(self, certificate: str) -> str | None: ...

    def certificate_by(self, fingerprint: str) -> str | None: ...

    def verify_life(self, signer: str, statement: bytes, signature: str,
                    fingerprint: str) -> bool | None: ...


class _Signer(Protocol):
    """What L{_Lives} needs of the notary it is mixed into."""

    cache: "VerifiedCache"
    fingerprint: str

    def sign(self, statement: bytes) -> tuple[str, str]: ...

    def verify(self, signer: str, statement: bytes, signature: str,
               certificate: str) -> bool: ...

    def _certificate_name(self, certificate: str) -> str | None: ...


class _Lives:
    """Life statements: records signed by their member, naming its certificate by fingerprint.

    A member's own record (name, address, generation, incarnation, meta) is
    relayed by everyone and changes rarely; carrying a certificate with each
    copy would multiply list sizes, so a record carries the signature and the
    certificate's fingerprint, and a node that does not know that certificate
    asks the peer that sent the record (L{learn} takes the answer).
    """

    def sign_life(self: _Signer, statement: bytes) -> tuple[str, str]:
        """C{(signature, fingerprint)} of this node's own record C{statement}."""
        return self.sign(statement)[0], self.fingerprint

    def learn(self: _Signer, certificate: str) -> str | None:
        """The fingerprint of C{certificate} if the cluster CA vouches for it (then kept), else None."""
        fingerprint = fingerprint_of(certificate)
        if fingerprint in self.cache.known:
            return fingerprint
        name = self._certificate_name(certificate)
        if name is None:
            return None
        self.cache.remember(fingerprint, certificate, name)
        return fingerprint

    def certificate_by(self: _Signer, fingerprint: str) -> str | None:
        """The text of a known certificate, or None."""
        known = self.cache.known.get(fingerprint)
        return None if known is None else known[0]

    def verify_life(self: _Signer, signer: str, statement: bytes, signature: str,
                    fingerprint: str) -> bool | None:
        """True or False: whether C{signer} signed C{statement} with the certificate
        C{fingerprint} names; None: that certificate is not known here (ask for it)."""
        known = self.cache.known.get(fingerprint)
        if known is None:
            return None
        certificate, name = known
        if name != signer:
            return False
        return self.verify(signer, statement, signature, certificate)


class NotaryError(ValueError):
    """This node's identity cannot sign membership statements (the message says why)."""


class VerifiedCache:
    """Verdicts on certificates and statements, bounded; shareable between notaries.

    Only good statements are kept: a bad one closes its sender's connection
    (L{clsd.wire.core.errors.Forged}), so repeating it costs the sender a new TLS
    handshake each time, and it cannot fill the cache.
    """

    def __init__(self, certificate_limit: int = CERTIFICATE_LIMIT,
                 statement_limit: int = STATEMENT_LIMIT) -> None:
        self.certificate_limit = certificate_limit
        self.statement_limit = statement_limit
        #: SHA-256 of a certificate -> (name, public key), or None (refused).
        self.certificates: dict[bytes, CertificateVerdict] = {}
        #: Certificates that verified, by L{fingerprint_of} their text:
        #: (text, node name). Records name their signer's certificate by
        #: fingerprint; a node passes the text on to a peer that asks.
        self.known: dict[str, tuple[str, str]] = {}
        #: (signer, statement, signature, certificate) that verified.
        self.statements: set[StatementKey] = set()
        #: Work done: certificates parsed and checked, signatures checked.
        self.counts = {"certificates": 0, "signatures": 0}

    def certificate(self, fingerprint: bytes,
                    check: Callable[[], CertificateVerdict]) -> CertificateVerdict:
        """The verdict on the certificate with C{fingerprint}; C{check()} makes it once."""
        certificates = self.certificates
        if fingerprint in certificates:
            return certificates[fingerprint]
        self.counts["certificates"] += 1
        verdict = check()
        if len(certificates) >= self.certificate_limit:
            for old in list(certificates)[: self.certificate_limit // 2]:
                del certificates[old]
        certificates[fingerprint] = verdict
        return verdict

    def remember(self, fingerprint: str, certificate: str, name: str) -> None:
        """Keep a verified certificate by fingerprint (bounded like the verdicts)."""
        known = self.known
        if len(known) >= self.certificate_limit:
            for old in list(known)[: self.certificate_limit // 2]:
                del known[old]
        known[fingerprint] = (certificate, name)

    def statement(self, key: StatementKey, check: Callable[[], bool]) -> bool:
        """Whether the statement C{key} verifies; C{check()} is called until it does."""
        statements = self.statements
        if key in statements:
            return True
        if not check():
            return False
        if len(statements) >= self.statement_limit:
            statements.clear()  # a set keeps no order: start again (rare)
        statements.add(key)
        return True


class X509Notary(_Lives):
    """Signs with this node's TLS key; verifies with certificates from the cluster CA.

    @param identity: a L{clsd.certs.identity.NodeIdentity} (name, key,
        certificate, CA certificates).
    @param cache: a L{VerifiedCache} (default: a private one).
    @param now: the wall-clock time as an aware datetime, for certificate
        validity (calendar dates are the one right use of wall time).
    @raise NotaryError: the key is not an elliptic-curve key, or the
        certificate is too large to travel with a statement.
    """

    def __init__(self, identity: "NodeIdentity", cache: VerifiedCache | None = None, *,
                 now: Callable[[], datetime.datetime] | None = None) -> None:
        if not isinstance(identity.key, ec.EllipticCurvePrivateKey):
            raise NotaryError(
                "membership statements are signed with ECDSA: the [tls] key must be an "
                "elliptic-curve key (clsd-certs issues P-256 keys)")
        self.name = identity.name
        self._key = identity.key
        der = identity.certificate.public_bytes(serialization.Encoding.DER)
        self.certificate = base64.b64encode(der).decode("ascii")
        if len(self.certificate) > MAX_CERTIFICATE:
            raise NotaryError(
                f"the node certificate is {len(der)} bytes; membership carries at most "
                f"{MAX_CERTIFICATE * 3 // 4} with each signed statement")
        self._cas: tuple[x509.Certificate, ...] = tuple(identity.ca_certificates)
        self.cache = cache if cache is not None else VerifiedCache()
        self._now = now or (lambda: datetime.datetime.now(datetime.UTC))
        self.fingerprint = fingerprint_of(self.certificate)
        self.cache.remember(self.fingerprint, self.certificate, self.name)

    def sign(self, statement: bytes) -> tuple[str, str]:
        """C{(signature, certificate)}: base64 texts proving this node said C{statement}."""
        signature = self._key.sign(statement, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii"), self.certificate

    def verify(self, signer: str, statement: bytes, signature: str, certificate: str) -> bool:
        """Whether C{signer} signed C{statement}: C{signature} checks with C{certificate},
        a certificate of the cluster CA for the node named C{signer}."""
        return self.cache.statement(
            (signer, statement, signature, certificate),
            lambda: self._check(signer, statement, signature, certificate))

    def _check(self, signer: str, statement: bytes, signature: str, certificate: str) -> bool:
        if not signature or not certificate:
            return False
        try:
            der = base64.b64decode(certificate, validate=True)
            raw_signature = base64.b64decode(signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        known = self._certificate(der)
        if known is None or known[0] != signer:
            return False
        self.cache.counts["signatures"] += 1
        try:
            known[1].verify(raw_signature, statement, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, ValueError):
            return False
        return True

    def _certificate(self, der: bytes) -> CertificateVerdict:
        """C{(node name, public key)} of a certificate the cluster CA vouches for, or None.

        Checked when first seen (validity too: a certificate that expires
        later stays accepted in this process; its node's connections do not).
        """
        return self.cache.certificate(hashlib.sha256(der).digest(),
                                      lambda: self._check_certificate(der))

    def _certificate_name(self, certificate: str) -> str | None:
        try:
            der = base64.b64decode(certificate, validate=True)
        except (binascii.Error, ValueError):
            return None
        known = self._certificate(der)
        return None if known is None else known[0]

    def _check_certificate(self, der: bytes) -> CertificateVerdict:
        try:
            certificate = x509.load_der_x509_certificate(der)
            if authority.is_authority(certificate):
                return None
            if not any(authority.signed_by(certificate, ca) for ca in self._cas):
                return None
            if authority.validity_problem(certificate, self._now()) is not None:
                return None
            public_key = certificate.public_key()
            if not isinstance(public_key, ec.EllipticCurvePublicKey):
                return None
            return authority.node_name_of(certificate), public_key
        except (ValueError, TypeError, CertificateError):
            return None


#: The default cache of fake notaries: every fake certificate made in this
#: process is known to every fake notary (tests of the certificate exchange
#: give their notaries caches of their own).
_FAKE_SHARED = VerifiedCache()


class FakeNotary(_Lives):
    """The notary protocol without cryptography, for the simulator and unit tests.

    A signature is a keyed hash of the signer's name and the statement; the
    "certificate" is the signer's name. It catches a piece whose proof is
    missing, altered or made for another statement or signer, but anyone who
    reads this code can make one: never used by the daemon.
    """

    _KEY = b"clsd-membership-fake-notary"

    def __init__(self, name: str, cache: VerifiedCache | None = None) -> None:
        self.name = name
        self.certificate = f"fake:{name}"
        self.cache = cache if cache is not None else _FAKE_SHARED
        self.fingerprint = fingerprint_of(self.certificate)
        self.cache.remember(self.fingerprint, self.certificate, self.name)

    @classmethod
    def signature_of(cls, signer: str, statement: bytes) -> str:
        return hmac.new(cls._KEY, signer.encode() + b"\0" + statement,
                        hashlib.blake2b).hexdigest()[:64]

    def sign(self, statement: bytes) -> tuple[str, str]:
        return self.signature_of(self.name, statement), self.certificate

    def verify(self, signer: str, statement: bytes, signature: str, certificate: str) -> bool:
        def check() -> bool:
            self.cache.counts["signatures"] += 1
            return (certificate == f"fake:{signer}"
                    and hmac.compare_digest(signature, self.signature_of(signer, statement)))

        return self.cache.statement((signer, statement, signature, certificate), check)

    @staticmethod
    def _certificate_name(certificate: str) -> str | None:
        if certificate.startswith("fake:") and 0 < len(certificate) - 5 <= 63:
            return certificate[5:]
        return None
