"""A cluster's floating service address: ``address``, ``interface``, ``announce``, ``address_order``.

The address moves with the lease (doc/address.md): the owner adds it to
``interface`` only while it holds the lease, and announces it. Parsed here
into a L{FloatingAddress}; the rules across clusters (no two share an
address, none on an n-active cluster) are in L{check_floating}.
"""

import ipaddress

import attrs

from clsd.address.ipcmd import MAX_INTERFACE_NAME, check_interface_name
from clsd.config.reader import ConfigError

ORDERS = ("before", "after")
#: Gratuitous ARP / unsolicited NA repeats: keepalived's and arping's habit.
DEFAULT_ANNOUNCE_COUNT = 5
DEFAULT_ANNOUNCE_INTERVAL = 0.2


@attrs.frozen
class FloatingAddress:
    """The addresses of one cluster, where they go and how they are announced."""

    #: ``ipaddress.IPv4Interface`` / ``IPv6Interface`` values (address with prefix).
    addresses: tuple
    interface: str
    announce_count: int = DEFAULT_ANNOUNCE_COUNT
    announce_interval: float = DEFAULT_ANNOUNCE_INTERVAL
    #: "before": added before the service starts (it may bind to it), removed
    #: after it stopped; "after": added once it runs, removed before it stops.
    order: str = "before"

    def shape(self):
        """What nodes must agree on (compared with the cluster's mode and count)."""
        return {"addresses": sorted(str(a) for a in self.addresses),
                "interface": self.interface, "address_order": self.order}


def parse_floating(table):
    """The cluster table's address keys as a L{FloatingAddress}, or None without ``address``."""
    if "address" not in table:
        for key in ("interface", "announce", "address_order"):
            if key in table:
                raise table.error(key, "needs address (the floating address it is about)")
        return None
    raw = table.string_list("address", nonempty=True)
    addresses = []
    for index, text in enumerate(raw):
        addresses.append(_address(table, f"address[{index}]", text))
    seen = set()
    for index, address in enumerate(addresses):
        if address.ip in seen:
            raise table.error(f"address[{index}]", f"{address.ip} is listed twice")
        seen.add(address.ip)
    interface = _interface(table)
    count, interval = _announce(table)
    order = table.choice("address_order", ORDERS, "before")
    return FloatingAddress(addresses=tuple(addresses), interface=interface,
                           announce_count=count, announce_interval=interval, order=order)


def _address(table, key, text):
    if "/" not in text:
        raise table.error(key, f"must be ADDRESS/PREFIX such as 192.0.2.10/24 or "
                               f"2001:db8::10/64 (the prefix of the interface's subnet), "
                               f"got {text!r}")
    try:
        address = ipaddress.ip_interface(text)
    except ValueError as e:
        raise table.error(key, f"is not an IP address with a prefix: {e}") from None
    ip = address.ip
    if ip.is_unspecified or ip.is_multicast or ip.is_loopback or ip.is_link_local:
        kind = ("unspecified" if ip.is_unspecified else "multicast" if ip.is_multicast
                else "loopback" if ip.is_loopback else "link-local")
        raise table.error(key, f"{ip} is a {kind} address: a floating address must be one "
                               "clients can reach on the interface's subnet")
    if address.version == 4 and address.network.prefixlen < 32 \
            and ip in (address.network.network_address, address.network.broadcast_address):
        raise table.error(key, f"{ip} is the network or broadcast address of {address.network}")
    return address


def _interface(table):
    """The interface name, checked by the same rule the driver and the lease guard use."""
    interface = table.string("interface")
    try:
        return check_interface_name(interface)
    except ValueError:
        raise table.error("interface", f"{interface!r} is not an interface name "
                                       f"(at most {MAX_INTERFACE_NAME} bytes, no '/', ':' "
                                       "or spaces)") from None


def _announce(table):
    announce = table.table("announce")
    if announce is None:
        return DEFAULT_ANNOUNCE_COUNT, DEFAULT_ANNOUNCE_INTERVAL
    count = announce.integer("count", DEFAULT_ANNOUNCE_COUNT, minimum=0, maximum=100)
    interval = announce.number("interval", DEFAULT_ANNOUNCE_INTERVAL, minimum=0.01,
                               maximum=10.0)
    announce.finish()
    return count, interval


def local_interfaces():
    """The names of this machine's network interfaces (POSIX if_nameindex)."""
    import socket

    try:
        return sorted(name for _, name in socket.if_nameindex())
    except OSError:
        return []


def check_interfaces(source, clusters, interfaces):
    """At start: every floating address's interface exists (C{interfaces}: the names here)."""
    for index, cluster in enumerate(clusters):
        floating = cluster.floating
        if floating is not None and floating.interface not in interfaces:
            raise ConfigError(
                source, f"cluster[{index}].interface",
                f"there is no interface {floating.interface!r} on this machine "
                f"(interfaces: {', '.join(interfaces) or 'none found'})")


def check_floating(source, clusters):
    """Across clusters: no address on an n-active cluster, no address on two clusters."""
    owners = {}
    for index, cluster in enumerate(clusters):
        floating = cluster.floating
        if floating is None:
            continue
        if cluster.mode == "n-active":
            raise ConfigError(
                source, f"cluster[{index}].address",
                f"cluster {cluster.id!r} is n-active ({cluster.count} copies): every copy "
                "would claim the one address; give the address to an active-standby "
                "cluster (per-copy addresses are not supported yet)")
        for address in floating.addresses:
            if address.ip in owners:
                other = owners[address.ip]
                raise ConfigError(
                    source, f"cluster[{index}].address",
                    f"{address.ip} is also cluster {clusters[other].id!r}'s "
                    f"(cluster[{other}]): two clusters would fight over it")
            owners[address.ip] = index
