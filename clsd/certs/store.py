"""The on-disk side of certificates: a CA directory's layout, PEM files, safe writes.

A CA directory holds ``ca.pem`` and ``ca.key``; ``issue`` adds ``NODE.pem``
and ``NODE.key`` next to them (or in another directory) and keeps a copy of
every certificate it issues in ``issued/SERIAL.pem``, so that ``revoke`` can
find all of a node's certificates, replaced ones included.  ``revoke`` keeps
the revoked serials in ``revoked.json`` (they accumulate) and writes the
signed list every node is given, ``crl.pem``.  Private keys are written
0600, and no file is ever replaced unless the caller says so: losing a CA
key by a stray ``init`` would strand every node of the cluster.
"""

import datetime
import glob
import json
import os
import stat
import tempfile

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from clsd.certs.authority import (
    DEFAULT_CA_DAYS,
    DEFAULT_CRL_DAYS,
    DEFAULT_NODE_DAYS,
    CertificateError,
    KeyAndCertificate,
    Revoked,
    build_crl,
    check_node_name,
    create_authority,
    is_authority,
    issue_node_certificate,
    key_matches,
    node_name_of,
    signed_by,
)

CA_CERTIFICATE = "ca.pem"
CA_KEY = "ca.key"
#: Copies of every certificate the CA issued, by serial (hex).
ISSUED_DIR = "issued"
#: The record of revoked serials and the number of the last list issued.
REVOKED_RECORD = "revoked.json"
#: The signed revocation list, for every node's ``[tls] crl``.
CRL_FILE = "crl.pem"
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


def load_crl(path):
    """The PEM certificate revocation list at C{path}."""
    data = read_bytes(path, "revocation list")
    try:
        return x509.load_pem_x509_crl(data)
    except ValueError:
        raise CertificateError(
            f"{path}: not a PEM certificate revocation list (clsd-certs revoke writes one)"
        ) from None


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
    _record_issued(directory, pair.certificate)
    return pair, cert_path, key_path


def _record_issued(directory, certificate):
    issued = os.path.join(directory, ISSUED_DIR)
    ensure_directory(issued)
    path = os.path.join(issued, f"{certificate.serial_number:x}.pem")
    write_file(path, certificate.public_bytes(serialization.Encoding.PEM), private=False)


def issued_certificates(directory, node_name):
    """Every certificate the CA in C{directory} issued to C{node_name}, oldest first.

    Read from ``issued/`` and, for certificates issued before that record
    was kept, ``NODE.pem`` in the CA directory itself.
    """
    authority = load_certificate(ca_paths(directory)[0])
    paths = sorted(glob.glob(os.path.join(directory, ISSUED_DIR, "*.pem")))
    paths.append(node_paths(directory, node_name)[0])
    found = {}
    for path in paths:
        if not os.path.exists(path):
            continue
        certificate = load_certificate(path)
        try:
            name = node_name_of(certificate)
        except CertificateError:
            continue
        if name == node_name and signed_by(certificate, authority):
            found[certificate.serial_number] = certificate
    return sorted(found.values(), key=lambda c: c.not_valid_before_utc)


# -- revocation ------------------------------------------------------------------


def _utcnow():
    return datetime.datetime.now(datetime.UTC)


def read_revocations(directory):
    """C{(number, [Revoked, ...])}: the last CRL number and the revoked serials so far."""
    path = os.path.join(directory, REVOKED_RECORD)
    if not os.path.exists(path):
        return 0, []
    try:
        record = json.loads(read_bytes(path, "revocation record"))
        revoked = [Revoked(serial=int(entry["serial"], 16), node=entry["node"],
                           revoked_at=datetime.datetime.fromisoformat(entry["revoked_at"]))
                   for entry in record["revoked"]]
        return int(record["number"]), revoked
    except (ValueError, KeyError, TypeError) as e:
        raise CertificateError(f"{path}: not a revocation record ({e})") from None


def _write_revocations(directory, number, revoked):
    record = {"number": number, "revoked": [
        {"serial": f"{entry.serial:x}", "node": entry.node,
         "revoked_at": entry.revoked_at.isoformat()} for entry in revoked]}
    write_file(os.path.join(directory, REVOKED_RECORD),
               (json.dumps(record, indent=1) + "\n").encode(), private=False, force=True)


def revoke(directory, node_name, *, serial=None, days=DEFAULT_CRL_DAYS, now=None):
    """Revoke C{node_name}'s certificates (or the one with C{serial}); write a fresh CRL.

    @return: C{(newly revoked, every revoked, crl path)}; revoking a serial
        already revoked adds nothing but still re-issues the list.
    @raise CertificateError: no such certificate, or one issued to another node.
    """
    check_node_name(node_name)
    authority = load_authority(directory)
    certificates = issued_certificates(directory, node_name)
    if serial is None:
        if not certificates:
            raise CertificateError(
                f"no certificate issued to {node_name!r} found in {directory} "
                f"({ISSUED_DIR}/ or {node_name}.pem); give its serial with --serial "
                "(clsd-certs show NODE.pem prints it)")
        serials = [c.serial_number for c in certificates]
    else:
        known = _issued_by_serial(directory, serial)
        if known is not None and node_name_of(known) != node_name:
            raise CertificateError(
                f"certificate {serial:x} was issued to {node_name_of(known)!r}, not {node_name!r}")
        serials = [serial]
    number, revoked = read_revocations(directory)
    already = {entry.serial for entry in revoked}
    now = now or _utcnow()
    added = [Revoked(serial=s, node=node_name, revoked_at=now) for s in serials
             if s not in already]
    revoked = revoked + added
    path = _issue_crl(directory, authority, number + 1, revoked, days, now)
    return added, revoked, path


def _issued_by_serial(directory, serial):
    path = os.path.join(directory, ISSUED_DIR, f"{serial:x}.pem")
    return load_certificate(path) if os.path.exists(path) else None


def issue_crl(directory, *, days=DEFAULT_CRL_DAYS, now=None):
    """Write a fresh ``crl.pem`` from the record (to push its next update further out)."""
    authority = load_authority(directory)
    number, revoked = read_revocations(directory)
    return _issue_crl(directory, authority, number + 1, revoked, days, now or _utcnow())


def _issue_crl(directory, authority, number, revoked, days, now):
    crl = build_crl(authority, revoked, number=number, days=days, now=now)
    # The record first: a list is never issued for serials it does not keep.
    _write_revocations(directory, number, revoked)
    path = os.path.join(directory, CRL_FILE)
    write_file(path, crl.public_bytes(serialization.Encoding.PEM), private=False, force=True)
    return path


def file_mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)
