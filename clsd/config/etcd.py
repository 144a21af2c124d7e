"""The ``[etcd]`` table: where etcd is and how to reach it, when it arbitrates leases.

Used only with ``[quorum] arbiter = "etcd"``; ``[quorum] lease`` stays the
lease length (etcd lease TTLs are whole seconds, see L{check_etcd_lease}).
Paths are resolved against the config file's directory; the files are
read when the daemon starts (like ``[tls]``).
"""

import os
from urllib.parse import urlsplit

import attrs

#: The default key prefix.  Several CLSD clusters sharing one etcd must each
#: set their own (e.g. ``/clsd/<cluster-name>/``): the cluster IDs are the
#: keys under it.
DEFAULT_PREFIX = "/clsd/"


@attrs.frozen
class EtcdConfig:
    #: ``https://host:port`` URLs of etcd members, tried in order on failure.
    endpoints: tuple
    #: Every key CLSD writes starts with it; ends with ``/``.
    prefix: str = DEFAULT_PREFIX
    #: CA certificate that etcd's server certificate must chain to.
    ca: str = ""
    #: Client certificate and key presented to etcd (``--client-cert-auth``).
    cert: str = ""
    key: str = ""


def parse_etcd(table, base_dir):
    """Build an L{EtcdConfig} from the ``[etcd]`` L{clsd.config.reader.Table}."""
    endpoints = table.string_list("endpoints", nonempty=True)
    for index, url in enumerate(endpoints):
        key = f"endpoints[{index}]"
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise table.error(key, f"must be an https:// URL (etcd is reached over TLS with "
                                   f"a client certificate), got {url!r}")
        try:
            port = parts.port
        except ValueError:
            port = None
        if not parts.hostname or port is None:
            raise table.error(key, f"must be https://HOST:PORT, got {url!r}")
        if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
            raise table.error(key, f"must be https://HOST:PORT with nothing after the port, "
                                   f"got {url!r}")
    if len(set(endpoints)) != len(endpoints):
        raise table.error("endpoints", "lists the same URL twice")
    prefix = table.string("prefix", DEFAULT_PREFIX)
    if not prefix.startswith("/") or not prefix.endswith("/") or len(prefix) < 2:
        raise table.error("prefix", f"must start and end with '/' and name something "
                                    f"(e.g. \"/clsd/site1/\"), got {prefix!r}")
    paths = {}
    for key in ("ca", "cert", "key"):
        value = table.string(key)
        paths[key] = os.path.normpath(os.path.join(base_dir, os.path.expanduser(value)))
    table.finish()
    return EtcdConfig(endpoints=tuple(url.rstrip("/") for url in endpoints), prefix=prefix,
                      **paths)
