"""Peer addresses in the configuration: ``host:port`` with IPv6 in brackets."""

import ipaddress

from clsd.config.service import parse_host_port

__all__ = ["format_host_port", "ip_version", "is_wildcard", "parse_host_port"]


def format_host_port(address):
    """``(host, port)`` back into the ``host:port`` form (``[v6]:port``)."""
    host, port = address
    if ":" in host:
        return f"[{host}]:{port}"
    return f"{host}:{port}"


def ip_version(host):
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
