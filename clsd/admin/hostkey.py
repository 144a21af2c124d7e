"""The SSH server's host key: generated once on first start, then kept.

Operators pin the host key in their known_hosts, so it must survive
restarts; a new key would make every ssh client cry "host key changed".
Like sshd, a private key readable by group or others is refused.
"""

import os
import stat

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import keys


class HostKeyError(Exception):
    """The host key cannot be used; ``str()`` says which file and why."""


def load_or_create_host_key(path):
    """The private L{keys.Key} at C{path}, generating an ed25519 key there if absent."""
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return _create(path)
    except OSError as e:
        raise HostKeyError(f"{path}: cannot read the SSH host key: {e.strerror}") from None
    if mode & 0o077:
        raise HostKeyError(
            f"{path}: permissions {mode:04o} are too open: the SSH host key must be "
            f"readable by its owner only (chmod 600 {path})"
        )
    try:
        key = keys.Key.fromFile(path)
    except Exception as e:  # BadKeyError, EncryptedKeyError, OSError, ValueError, ...
        raise HostKeyError(
            f"{path}: not an unencrypted private key in OpenSSH or PEM format ({e})"
        ) from None
    if key.isPublic():
        raise HostKeyError(f"{path}: holds a public key; the host key must be a private key")
    return key


def _create(path):
    directory = os.path.dirname(path) or "."
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except OSError as e:
        raise HostKeyError(f"{directory}: cannot create the directory: {e.strerror}") from None
    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    # Write a temporary file, then link it into place: a crash never leaves a
    # half-written key, and a key another process linked first wins.
    temporary = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key.toString("openssh"))
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return load_or_create_host_key(path)
    except OSError as e:
        raise HostKeyError(f"{path}: cannot write the SSH host key: {e.strerror}") from None
    finally:
        try:
            os.unlink(temporary)
        except OSError:
            pass
    _write_public(path, key)
    return key


def _write_public(path, key):
    """``PATH.pub``: what an operator copies into known_hosts (best effort)."""
    try:
        with open(path + ".pub", "wb") as f:
            f.write(key.public().toString("openssh") + b" clsd-admin\n")
    except OSError:
        pass


def fingerprint(key):
    """``SHA256:...`` exactly as ``ssh-keygen -l`` and the ssh client print it."""
    return "SHA256:" + key.fingerprint(keys.FingerprintFormats.SHA256_BASE64).rstrip("=")
