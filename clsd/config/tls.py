"""The ``[tls]`` table: this node's certificate, its key, and the cluster CA.

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


def parse_tls(table, base_dir):
    """Build a L{TLSConfig} from the ``[tls]`` L{clsd.config.reader.Table}."""
    paths = {}
    for key in ("ca", "cert", "key"):
        value = table.string(key)
        paths[key] = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    table.finish()
    return TLSConfig(**paths)
