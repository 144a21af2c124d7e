"""The on-disk side of certificates: a CA directory's layout, PEM files, safe writes.

A CA directory holds ``ca.pem`` and ``ca.key``; ``issue`` adds ``NODE.pem``
and ``NODE.key`` next to them (or in another directory).  Private keys are
written 0600, and no file is ever replaced unless the caller says so: losing
a CA key by a stray ``init`` would strand every node of the cluster.
"""

import os
import stat
import tempfile

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clsd.certs.authority import (
    DEFAULT_CA_DAYS,
    DEFAULT_NODE_DAYS,
    CertificateError,
    KeyAndCertificate,
    check_node_name,
    create_authority,
    is_authority,
    issue_node_certificate,
    key_matches,
)

CA_CERTIFICATE = "ca.pem"
CA_KEY = "ca.key"
PRIVATE_MODE = 0o600
PUBLIC_MODE = 0o644


def ca_paths(directory):
    return (os.path.join(directory, CA_CERTIFICATE), os.path.join(directory, CA_KEY))


def node_paths(directory, node_name):
    return (os.path.join(directory, f"{node_name}.pem"),
            os.path.join(directory, f"{node_name}.key"))


# -- reading -------------------------------------------------------------------


def read_bytes(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise CertificateError(f"{path}: cannot read the {what}: {e.strerror}") from None


def load_certificate(path):
    """The first certificate in the PEM file at C{path}."""
    data = read_bytes(path, "certificate")
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(f"{path}: not a PEM certificate") from None


def load_certificates(path):
    """Every certificate in the PEM file at C{path} (a CA bundle), at least one."""
    data = read_bytes(path, "certificate")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{path}: not a PEM certificate") from None
    return certificates


def load_private_key(path):
    """The unencrypted private key in the PEM file at C{path}."""
    data = read_bytes(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise CertificateError(
            f"{path}: the private key is encrypted; clsd needs an unencrypted key "
            "(protect it with file permissions, mode 0600)"
        ) from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CertificateError(f"{path}: not a PEM private key ({e})") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(
            f"{path}: a {type(key).__name__} key; clsd uses ECDSA keys (clsd-certs makes them)"
        )
    return key


def load_authority(directory):
    """The CA of the CA directory C{directory}, checked to be a usable pair."""
    cert_path, key_path = ca_paths(directory)
    certificate = load_certificate(cert_path)
    key = load_private_key(key_path)
    if not is_authority(certificate):
        raise CertificateError(f"{cert_path}: not a CA certificate")
    if not key_matches(key, certificate):
        raise CertificateError(f"{key_path}: this key does not belong to {cert_path}")
    return KeyAndCertificate(key=key, certificate=certificate)


# -- writing -------------------------------------------------------------------


def _refuse_existing(paths, force):
    if force:
        return
    for path in paths:
        if os.path.lexists(path):
            raise CertificateError(f"{path} already exists; use --force to replace it")


def write_file(path, data, *, private, force=False):
    """Write C{data} to C{path} atomically; keys 0600, certificates 0644.

    Without C{force} an existing file is an error (checked with O_EXCL, so a
    race cannot overwrite either).  With C{force} the new file is written
    aside and renamed over the old one, so a crash leaves one or the other.
    """
    mode = PRIVATE_MODE if private else PUBLIC_MODE
    directory = os.path.dirname(os.path.abspath(path))
    if not force:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            raise CertificateError(f"{path} already exists; use --force to replace it") from None
        except OSError as e:
            raise CertificateError(f"{path}: cannot create: {e.strerror}") from None
        _write_and_close(fd, data, mode, path)
        return
    try:
        fd, temporary = tempfile.mkstemp(dir=directory, prefix=".clsd-certs-")
    except OSError as e:
        raise CertificateError(f"{path}: cannot write into {directory}: {e.strerror}") from None
    try:
        _write_and_close(fd, data, mode, path)
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.unlink(temporary)
        raise


def _write_and_close(fd, data, mode, path):
    try:
        os.fchmod(fd, mode)  # exact, whatever the umask
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise CertificateError(f"{path}: cannot write: {e.strerror}") from None


def ensure_directory(directory, mode=0o700):
    """Create C{directory} (0700: it holds keys) unless it exists."""
    if os.path.isdir(directory):
        return
    try:
        os.makedirs(directory, mode=mode)
    except OSError as e:
        raise CertificateError(f"{directory}: cannot create the directory: {e.strerror}") from None


def write_pair(pair, cert_path, key_path, *, force=False):
    """Write a key and its certificate; the key first, so a certificate never exists alone."""
    _refuse_existing((cert_path, key_path), force)
    write_file(key_path, pair.key_pem(), private=True, force=force)
    write_file(cert_path, pair.certificate_pem(), private=False, force=force)


def init_authority(directory, *, name=None, days=DEFAULT_CA_DAYS, force=False):
    """Create a new CA in C{directory}; returns the pair and the two paths."""
    ensure_directory(directory)
    cert_path, key_path = ca_paths(directory)
    _refuse_existing((cert_path, key_path), force)
    authority = create_authority(name, days=days)
    write_pair(authority, cert_path, key_path, force=force)
    return authority, cert_path, key_path


def issue_node(directory, node_name, *, out=None, dns_names=(), ip_addresses=(),
               days=DEFAULT_NODE_DAYS, force=False):
    """Issue C{node_name}'s key and certificate from the CA in C{directory}.

    The files go to C{out} (default: the CA directory itself).
    """
    check_node_name(node_name)
    authority = load_authority(directory)
    out = out or directory
    ensure_directory(out)
    cert_path, key_path = node_paths(out, node_name)
    _refuse_existing((cert_path, key_path), force)
    pair = issue_node_certificate(
        authority, node_name, dns_names=dns_names, ip_addresses=ip_addresses, days=days
    )
    write_pair(pair, cert_path, key_path, force=force)
    return pair, cert_path, key_path


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)
