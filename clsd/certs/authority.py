"""The cluster certificate authority: make a CA, issue node certificates, read names back.

Pure library code on C{cryptography}, no files and no command line, so that
tests can mint any certificate they need (expired, not yet valid, from
another CA, for another name) exactly as the C{clsd-certs} tool does.

A node's name is the subject common name of its certificate; the same name
is also the first DNS entry of the subjectAltName.  Every node certificate
is good for both ends of a connection (serverAuth and clientAuth), because
each node both accepts and dials peer connections.
"""

import datetime
import hashlib
import ipaddress
import os

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# The same rule as ``[node] name``: a name that cannot be configured must not
# be issuable either.
from clsd.config.reader import NAME_PATTERN as NODE_NAME_PATTERN

#: A CA lives long: replacing it means re-issuing every node certificate.
DEFAULT_CA_DAYS = 3650
#: Node certificates are cheap to re-issue; two years keeps a stolen key's
#: usefulness bounded without forcing yearly work on small clusters.
DEFAULT_NODE_DAYS = 730
#: Certificates start this long before "now", so that a node whose wall
#: clock is a little behind the issuing machine's accepts a fresh certificate.
BACKDATE = datetime.timedelta(minutes=5)

_SHA256 = hashes.SHA256()


class CertificateError(Exception):
    """A certificate or key that cannot be used; ``str()`` says what and where."""


@attrs.frozen
class KeyAndCertificate:
    """A private key with the certificate for it (a CA, or one node)."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    def key_pem(self):
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate_pem(self):
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def new_private_key():
    """A fresh ECDSA P-256 key: small, fast handshakes, supported everywhere."""
    return ec.generate_private_key(ec.SECP256R1())


def _utcnow():
    return datetime.datetime.now(datetime.UTC)


def _validity(now, days, not_before, not_after):
    """The (not_before, not_after) pair; explicit bounds win over C{days}."""
    now = now or _utcnow()
    start = not_before if not_before is not None else now - BACKDATE
    end = not_after if not_after is not None else now + datetime.timedelta(days=days)
    if end <= start:
        raise CertificateError(f"validity ends ({end:%Y-%m-%d %H:%M}) before it starts")
    return start, end


def _key_identifiers(builder, public_key, issuer_public_key):
    return builder.add_extension(
        x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
    ).add_extension(
        x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_public_key),
        critical=False,
    )


def create_authority(name=None, *, days=DEFAULT_CA_DAYS, now=None,
                     not_before=None, not_after=None, key=None):
    """A new self-signed cluster CA.

    @param name: the CA's common name; by default ``CLSD cluster CA`` with a
        random suffix, so that two clusters' CAs are told apart in logs.
    """
    key = key or new_private_key()
    name = name or f"CLSD cluster CA {os.urandom(4).hex()}"
    start, end = _validity(now, days, not_before, not_after)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        # pathlen 0: the CA signs node certificates only, never another CA.
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
    )
    builder = _key_identifiers(builder, key.public_key(), key.public_key())
    return KeyAndCertificate(key=key, certificate=builder.sign(key, _SHA256))


def check_node_name(name):
    """Raise L{CertificateError} unless C{name} is a valid node name."""
    if not isinstance(name, str) or not NODE_NAME_PATTERN.match(name):
        raise CertificateError(
            f"{name!r} is not a valid node name (letters, digits, '_', '.', '-'; "
            "starts with a letter or digit; at most 63)"
        )


def issue_node_certificate(authority, node_name, *, dns_names=(), ip_addresses=(),
                           days=DEFAULT_NODE_DAYS, now=None, not_before=None,
                           not_after=None, key=None):
    """A key and certificate for node C{node_name}, signed by C{authority}.

    @param dns_names: extra DNS names for the subjectAltName (the node name
        is always the first).
    @param ip_addresses: IP addresses (strings) for the subjectAltName.
    """
    check_node_name(node_name)
    key = key or new_private_key()
    start, end = _validity(now, days, not_before, not_after)
    names = [node_name] + [n for n in dns_names if n != node_name]
    alt_names = [x509.DNSName(n) for n in names]
    for address in ip_addresses:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            raise CertificateError(f"{address!r} is not an IP address") from None
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)]))
        .issuer_name(authority.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False,
                key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    )
    builder = _key_identifiers(builder, key.public_key(), authority.key.public_key())
    return KeyAndCertificate(key=key, certificate=builder.sign(authority.key, _SHA256))


# -- reading certificates back -------------------------------------------------


def common_names(certificate):
    return [
        attribute.value
        for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    ]


def alt_dns_names(certificate):
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return []
    return extension.value.get_values_for_type(x509.DNSName)


def alt_ip_addresses(certificate):
    try:
        extension = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
    except x509.ExtensionNotFound:
        return []
    return [str(a) for a in extension.value.get_values_for_type(x509.IPAddress)]


def node_name_of(certificate: x509.Certificate) -> str:
    """The node name a certificate vouches for, or L{CertificateError}.

    The name is the single subject common name; when the certificate has a
    subjectAltName, the name must be among its DNS names too, so that a
    certificate whose CN and SAN disagree is refused rather than guessed at.
    """
    names = common_names(certificate)
    if len(names) != 1:
        raise CertificateError(
            f"the certificate has {len(names)} subject common names; a node "
            "certificate has exactly one (the node name)"
        )
    name = names[0]
    check_node_name(name)
    dns = alt_dns_names(certificate)
    if dns and name not in dns:
        raise CertificateError(
            f"the certificate's common name {name!r} is not among its "
            f"subjectAltName DNS names {dns!r}"
        )
    return name


def is_authority(certificate: x509.Certificate) -> bool:
    try:
        constraints = certificate.extensions.get_extension_for_class(x509.BasicConstraints)
    except x509.ExtensionNotFound:
        return False
    return constraints.value.ca


def extended_key_usages(certificate):
    """The EKU OIDs, or C{None} when the certificate does not restrict usage."""
    try:
        extension = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
    except x509.ExtensionNotFound:
        return None
    return list(extension.value)


def fingerprint(certificate):
    """SHA-256 of the DER certificate, as colon-separated hex (what ``openssl x509 -fingerprint`` shows)."""
    digest = certificate.fingerprint(_SHA256).hex().upper()
    return ":".join(digest[i:i + 2] for i in range(0, len(digest), 2))


def public_key_fingerprint(public_key):
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return "SHA256:" + hashlib.sha256(der).hexdigest()


def key_matches(key, certificate):
    """Whether C{key} is the private half of C{certificate}'s public key."""
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    return (key.public_key().public_bytes(der, spki)
            == certificate.public_key().public_bytes(der, spki))


def signed_by(certificate: x509.Certificate, authority_certificate: x509.Certificate) -> bool:
    """Whether C{authority_certificate} issued and signed C{certificate}."""
    try:
        certificate.verify_directly_issued_by(authority_certificate)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def validity_problem(certificate: x509.Certificate,
                     now: datetime.datetime | None = None) -> str | None:
    """C{None} when valid at C{now} (wall clock), else a sentence saying why not.

    Certificates are the one place where wall-clock time is right: their
    bounds are calendar dates shared by every machine.
    """
    now = now or _utcnow()
    start = certificate.not_valid_before_utc
    end = certificate.not_valid_after_utc
    if now < start:
        return f"is not valid yet (valid from {start:%Y-%m-%d %H:%M:%S} UTC)"
    if now > end:
        return f"has expired (valid until {end:%Y-%m-%d %H:%M:%S} UTC)"
    return None


def key_description(public_key):
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return f"EC {public_key.curve.name} ({public_key.key_size} bits)"
    return f"{type(public_key).__name__.replace('_', '')} ({public_key.key_size} bits)"


def describe_certificate(certificate, now=None):
    """``(label, value)`` lines for a human: what ``clsd-certs show`` prints."""
    now = now or _utcnow()
    start = certificate.not_valid_before_utc
    end = certificate.not_valid_after_utc
    problem = validity_problem(certificate, now)
    if problem is None:
        left = end - now
        status = f"valid, {left.days} days left"
    else:
        status = problem
    kind = "certificate authority" if is_authority(certificate) else "node certificate"
    usages = extended_key_usages(certificate)
    lines = [
        ("kind", kind),
        ("subject", certificate.subject.rfc4514_string()),
        ("issuer", certificate.issuer.rfc4514_string()),
        ("dns names", ", ".join(alt_dns_names(certificate)) or "-"),
        ("ip addresses", ", ".join(alt_ip_addresses(certificate)) or "-"),
        ("not before", f"{start:%Y-%m-%d %H:%M:%S} UTC"),
        ("not after", f"{end:%Y-%m-%d %H:%M:%S} UTC"),
        ("status", status),
        ("serial", f"{certificate.serial_number:x}"),
        ("key", key_description(certificate.public_key())),
        ("usage", ", ".join(u._name for u in usages) if usages is not None else "any"),
        ("sha256", fingerprint(certificate)),
    ]
    return lines


# -- revocation ------------------------------------------------------------------

#: A revocation list is valid this long: nodes refuse to start with an
#: expired one, so it must outlive the gaps between revocations; refresh it
#: with ``clsd-certs crl`` well before then.
DEFAULT_CRL_DAYS = 365


@attrs.frozen
class Revoked:
    """One revoked certificate: its serial, whom it was issued to, and when it was revoked."""

    serial: int
    node: str
    revoked_at: datetime.datetime


def build_crl(authority, revoked, *, number, days=DEFAULT_CRL_DAYS, now=None):
    """A CRL listing every L{Revoked} of C{revoked}, signed by C{authority}.

    @param number: the CRL number (grows with every list the CA issues, so
        that two lists are ordered).
    """
    now = now or _utcnow()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.certificate.subject)
        .last_update(now - BACKDATE)
        .next_update(now + datetime.timedelta(days=days))
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(authority.key.public_key()),
            critical=False,
        )
    )
    for entry in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(entry.serial)
            .revocation_date(entry.revoked_at)
            .build()
        )
    return builder.sign(authority.key, _SHA256)


def crl_signed_by(crl, authority_certificate):
    """Whether C{authority_certificate} issued and signed C{crl}."""
    if crl.issuer != authority_certificate.subject:
        return False
    try:
        return crl.is_signature_valid(authority_certificate.public_key())
    except (TypeError, ValueError):
        return False


def crl_validity_problem(crl, now=None):
    """C{None} when C{crl} is current at C{now} (wall clock), else a sentence saying why not."""
    now = now or _utcnow()
    end = crl.next_update_utc
    if end is not None and now > end:
        return (f"has expired (next update was due {end:%Y-%m-%d %H:%M:%S} UTC); issue a "
                "fresh one with: clsd-certs crl CA_DIR")
    start = crl.last_update_utc
    if now < start:
        return f"is not valid yet (issued for {start:%Y-%m-%d %H:%M:%S} UTC)"
    return None


def crl_number(crl):
    try:
        return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
    except x509.ExtensionNotFound:
        return None


def describe_crl(crl, now=None):
    """``(label, value)`` lines for a human: what ``clsd-certs show crl.pem`` prints."""
    problem = crl_validity_problem(crl, now)
    serials = sorted(entry.serial_number for entry in crl)
    next_update = crl.next_update_utc
    return [
        ("kind", "certificate revocation list"),
        ("issuer", crl.issuer.rfc4514_string()),
        ("number", str(crl_number(crl))),
        ("last update", f"{crl.last_update_utc:%Y-%m-%d %H:%M:%S} UTC"),
        ("next update", f"{next_update:%Y-%m-%d %H:%M:%S} UTC" if next_update else "-"),
        ("status", problem or "current"),
        ("revoked", ", ".join(f"{serial:x}" for serial in serials) or "none"),
    ]
