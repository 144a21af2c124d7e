"""The ``[tls]`` table: this node's certificate, its key, the cluster CA, its revocation list.

Only the paths are read here (relative to the config file's directory); the
files themselves are checked by L{clsd.certs.identity.load_identity}, a
separate step, so that parsing stays free of I/O beyond the file itself.
"""

import os

import attrs


@attrs.frozen
class TLSConfig:
    #: The cluster CA certificate: the only certificate peers are checked against.
    ca: str
    #: This node's certificate, issued by C{ca} for the node's name.
    cert: str
    #: This node's private key (mode 0600).
    key: str
    #: A certificate revocation list signed by a CA of C{ca} (``clsd-certs
    #: revoke``), or C{None}. Checked at every handshake, re-read on ``reload``.
    crl: str | None = None


def parse_tls(table, base_dir):
    """Build a L{TLSConfig} from the ``[tls]`` L{clsd.config.reader.Table}."""
    def path(value):
        return os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))

    paths = {key: path(table.string(key)) for key in ("ca", "cert", "key")}
    crl = table.string("crl", None)
    if crl is not None:
        paths["crl"] = path(crl)
    table.finish()
    return TLSConfig(**paths)
