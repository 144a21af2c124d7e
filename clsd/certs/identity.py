"""This node's TLS identity, checked before the daemon starts.

Every mistake an operator can make with the ``[tls]`` files (a missing or
unreadable file, a key that belongs to another certificate, a certificate for
another node or from another CA, one that has expired or is not valid yet)
would otherwise surface as handshake failures on every peer connection, far
from its cause.  L{load_identity} finds them first and raises a
L{ConfigError} that names the file, so the daemon refuses to start with one
clear line.
"""

import datetime
import os
import stat
from typing import TYPE_CHECKING

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from clsd.certs import authority, store
from clsd.certs.authority import CertificateError
from clsd.config.reader import ConfigError

if TYPE_CHECKING:
    from clsd.config import Config

_NEEDED_USAGES = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH)


@attrs.frozen
class NodeIdentity:
    """What this node proves and whom it trusts: its name, key and certificate, the CA."""

    name: str
    key: object
    certificate: x509.Certificate
    #: The trusted cluster CA certificates: normally one; two while the CA
    #: is being rotated (see certs/README.md).
    ca_certificates: tuple
    #: Revoked peer certificates, as C{(issuer name DER, serial)} pairs,
    #: from the ``[tls] crl`` list (empty without one).
    revoked: frozenset = frozenset()


def load_identity(config: "Config", *, now: datetime.datetime | None = None) -> NodeIdentity:
    """Load and check the ``[tls]`` files of C{config} for node C{config.node.name}.

    @param now: the wall-clock time (aware datetime) to judge validity at;
        certificates carry calendar dates, so wall time is right here.
    @raise ConfigError: naming the file and what is wrong with it.
    """
    if config.tls is None:
        raise ConfigError(config.source, "tls", "is required for peer connections (ca, cert, key)")
    return check_identity(config.node.name, config.tls, source=config.source, now=now)


def check_identity(name, tls, *, source="<tls>", now=None):
    """L{load_identity} for explicit paths: C{tls} has C{ca}, C{cert} and C{key}."""

    def fail(key, message):
        return ConfigError(source, f"tls.{key}", message)

    def attempt(key, function, *args):
        try:
            return function(*args)
        except CertificateError as e:
            raise fail(key, str(e)) from None

    cas = attempt("ca", store.load_certificates, tls.ca)
    for index, ca in enumerate(cas):
        which = f"{tls.ca}" if len(cas) == 1 else f"certificate {index + 1} of {tls.ca}"
        if not authority.is_authority(ca):
            raise fail("ca", f"{which} is not a CA certificate (use the cluster's ca.pem)")
        problem = authority.validity_problem(ca, now)
        if problem is not None:
            raise fail("ca", f"the CA {which} {problem}")

    certificate = attempt("cert", store.load_certificate, tls.cert)
    if authority.is_authority(certificate):
        raise fail("cert", f"{tls.cert} is a CA certificate; give this node's certificate")
    certificate_name = attempt("cert", _name_of, tls.cert, certificate)
    if certificate_name != name:
        raise fail(
            "cert",
            f"{tls.cert} is for node {certificate_name!r}, but node.name is {name!r} "
            f"(issue one with: clsd-certs issue CA_DIR {name})",
        )
    if not any(authority.signed_by(certificate, ca) for ca in cas):
        trusted = ", ".join(repr(ca.subject.rfc4514_string()) for ca in cas)
        raise fail(
            "cert",
            f"{tls.cert} was not issued by the CA in {tls.ca} (its issuer is "
            f"{certificate.issuer.rfc4514_string()!r}, the CA is {trusted})",
        )
    problem = authority.validity_problem(certificate, now)
    if problem is not None:
        raise fail("cert", f"{tls.cert} {problem}")
    usages = authority.extended_key_usages(certificate)
    if usages is not None and not all(u in usages for u in _NEEDED_USAGES):
        raise fail(
            "cert",
            f"{tls.cert} is not usable for both ends of a connection "
            "(needs extended key usages serverAuth and clientAuth)",
        )

    key = attempt("key", store.load_private_key, tls.key)
    _check_key_permissions(tls.key, fail)
    if not authority.key_matches(key, certificate):
        raise fail("key", f"{tls.key} is not the private key of {tls.cert}")
    revoked = frozenset()
    if getattr(tls, "crl", None) is not None:
        revoked = _check_crl(tls, cas, certificate, now, fail, attempt)
    return NodeIdentity(name=name, key=key, certificate=certificate,
                        ca_certificates=tuple(cas), revoked=revoked)


def revoked_serials(crl):
    """C{{(issuer name DER, serial)}} of a checked revocation list."""
    issuer = crl.issuer.public_bytes()
    return frozenset((issuer, entry.serial_number) for entry in crl)


def _check_crl(tls, cas, certificate, now, fail, attempt):
    """The revoked set of ``[tls] crl``: signed by a trusted CA, current, not revoking us."""
    crl = attempt("crl", store.load_crl, tls.crl)
    if not any(authority.crl_signed_by(crl, ca) for ca in cas):
        raise fail(
            "crl",
            f"{tls.crl} is not signed by the CA in {tls.ca} (its issuer is "
            f"{crl.issuer.rfc4514_string()!r}): a list from another CA revokes nothing here")
    problem = authority.crl_validity_problem(crl, now)
    if problem is not None:
        raise fail("crl", f"{tls.crl} {problem}")
    revoked = revoked_serials(crl)
    if (certificate.issuer.public_bytes(), certificate.serial_number) in revoked:
        raise fail(
            "crl",
            f"{tls.crl} revokes this node's own certificate {tls.cert} (serial "
            f"{certificate.serial_number:x}): every peer would refuse it; issue a new one")
    return revoked


def _name_of(path, certificate):
    try:
        return authority.node_name_of(certificate)
    except CertificateError as e:
        raise CertificateError(f"{path}: {e}") from None


def _check_key_permissions(path, fail):
    """Refuse a key every local user can read: it is the node's identity."""
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & stat.S_IROTH:
        raise fail(
            "key",
            f"{path} is readable by every user (mode {mode:04o}); run: chmod 600 {path}",
        )
