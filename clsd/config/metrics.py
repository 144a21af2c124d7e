"""The ``[metrics]`` table: where the Prometheus endpoint listens, if anywhere.

Off unless ``listen`` is set: an HTTP port nobody asked for is an exposure,
and the endpoint carries no authentication (bind it to loopback or a
management network).
"""

import ipaddress

import attrs


@attrs.frozen
class MetricsConfig:
    #: C{(ip, port)} that serves ``/metrics``; C{None}: no metrics endpoint.
    #: Port 0 takes any free port (tests; the ``metrics.listening`` log
    #: event says which).
    listen: tuple | None = None


def parse_metrics(table):
    """Build a L{MetricsConfig} from the ``[metrics]`` L{Table} (C{None}: no such table)."""
    if table is None:
        return MetricsConfig()
    value = table.string("listen", None, nonempty=False)
    table.finish()
    if not value:
        return MetricsConfig()
    return MetricsConfig(listen=_ip_port(table, "listen", value))


def _ip_port(table, key, value):
    """``ip:port`` (IPv6 as ``[ip]:port``) as C{(ip, port)}, like [admin] ssh."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an IPv6 address without brackets: the port is ambiguous
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise table.error(
            key, f"must be IP:PORT such as 127.0.0.1:9400 (IPv6 as [::1]:9400), got {value!r}"
        )
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise table.error(
            key, f"must name an IP address to listen on, not a host name, got {host!r}"
        ) from None
    return (host, int(port))
