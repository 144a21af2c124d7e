"""Peer addresses in the configuration: ``host:port`` with IPv6 in brackets."""

import ipaddress

from clsd.config.service import parse_host_port

__all__ = ["format_host_port", "ip_version", "is_wildcard", "parse_host_port",
           "parse_listen_address"]


def format_host_port(address: tuple[str, int | None]) -> str:
    """``(host, port)`` back into the ``host:port`` form (``[v6]:port``)."""
    host, port = address
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def ip_version(host: str) -> int | None:
    """4 or 6 for an IP literal, C{None} for a host name."""
    try:
        return ipaddress.ip_address(host).version
    except ValueError:
        return None


def is_wildcard(host):
    """Whether C{host} means "every address" (0.0.0.0 or ::)."""
    try:
        return ipaddress.ip_address(host).is_unspecified
    except ValueError:
        return False


def parse_listen_address(table, key, value, example):
    """``ip:port`` of a local listener (port 0: any free port) as C{(ip, port)}.

    Unlike peer addresses, a listener must name an IP address, not a host
    name. C{example} (e.g. ``7422``) is the port shown in the error message.
    """
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an IPv6 address without brackets: the port is ambiguous
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise table.error(
            key, f"must be IP:PORT such as 127.0.0.1:{example} "
            f"(IPv6 as [::1]:{example}), got {value!r}"
        )
    if ip_version(host) is None:
        raise table.error(
            key, f"must name an IP address to listen on, not a host name, got {host!r}"
        )
    return (host, int(port))
