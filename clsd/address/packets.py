"""Announcement frames as bytes: gratuitous ARP (IPv4), unsolicited neighbour advertisement (IPv6).

Pure functions: a MAC and an address in, a whole Ethernet frame out, ready
for an ``AF_PACKET``/``SOCK_RAW`` socket (the kernel adds nothing but the
padding to 60 bytes and the frame check sequence).

Gratuitous ARP comes in two forms, and an announcement sends both, as
keepalived and ``arping -U``/``arping -A`` do: hosts and switches differ in
which one refreshes their caches (RFC 5227 section 3 prefers the request;
older stacks only learn from replies). Both are broadcast, and both carry the
address as sender and target protocol address. The request's target hardware
address is the broadcast address (as ``arping -U`` sends), the reply's is the
sender's own MAC (as ``arping -A`` sends).

The neighbour advertisement (RFC 4861 section 7.2.6) goes to all nodes
(``ff02::1``) with hop limit 255, the override flag set (so receivers replace
the link-layer address they hold), the solicited flag clear (it answers no
solicitation) and the target link-layer address option; its source is the
announced address itself, as the Linux kernel's own unsolicited
advertisements are.
"""

import ipaddress
import struct

BROADCAST_MAC = b"\xff" * 6

ETHERTYPE_ARP = 0x0806
ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD

ARP_HARDWARE_ETHERNET = 1
ARP_REQUEST = 1
ARP_REPLY = 2

ICMPV6 = 58
ICMPV6_NEIGHBOR_ADVERTISEMENT = 136
NA_FLAG_OVERRIDE = 0x20000000
OPTION_TARGET_LINK_LAYER_ADDRESS = 2

ALL_NODES = ipaddress.IPv6Address("ff02::1")
#: Receivers drop neighbour discovery messages whose hop limit is not 255:
#: proof that they were not routed.
ND_HOP_LIMIT = 255


def parse_mac(text: str) -> bytes:
    """``02:00:5e:00:01:02`` -> 6 bytes; ValueError for anything else."""
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 for p in parts):
        raise ValueError(f"not a MAC address: {text!r}")
    try:
        return bytes(int(p, 16) for p in parts)
    except ValueError:
        raise ValueError(f"not a MAC address: {text!r}") from None


def format_mac(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _check_mac(mac):
    if len(mac) != 6:
        raise ValueError(f"a MAC address is 6 bytes, got {len(mac)}")
    return bytes(mac)


def ethernet_header(destination: bytes, source: bytes, ethertype: int) -> bytes:
    return _check_mac(destination) + _check_mac(source) + struct.pack("!H", ethertype)


def _arp(operation, mac, address, target_mac):
    address = ipaddress.IPv4Address(address)
    body = struct.pack("!HHBBH", ARP_HARDWARE_ETHERNET, ETHERTYPE_IPV4, 6, 4, operation)
    body += _check_mac(mac) + address.packed + _check_mac(target_mac) + address.packed
    return ethernet_header(BROADCAST_MAC, mac, ETHERTYPE_ARP) + body


def gratuitous_arp_request(mac: bytes, address) -> bytes:
    """The request form (``arping -U``): "who has ADDRESS? tell ADDRESS at MAC", broadcast."""
    return _arp(ARP_REQUEST, mac, address, BROADCAST_MAC)


def gratuitous_arp_reply(mac: bytes, address) -> bytes:
    """The reply form (``arping -A``): "ADDRESS is at MAC", broadcast."""
    return _arp(ARP_REPLY, mac, address, mac)


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def icmpv6_checksum(source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address,
                    message: bytes) -> int:
    """The ICMPv6 checksum of C{message} (its checksum field zero) over the IPv6 pseudo-header."""
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", len(message), ICMPV6)
    return internet_checksum(pseudo + message)


def unsolicited_neighbor_advertisement(mac: bytes, address) -> bytes:
    """An unsolicited NA for C{address} at C{mac}, to all nodes, override flag set."""
    address = ipaddress.IPv6Address(address)
    option = struct.pack("!BB", OPTION_TARGET_LINK_LAYER_ADDRESS, 1) + _check_mac(mac)
    unsummed = (struct.pack("!BBHI", ICMPV6_NEIGHBOR_ADVERTISEMENT, 0, 0, NA_FLAG_OVERRIDE)
                + address.packed + option)
    checksum = icmpv6_checksum(address, ALL_NODES, unsummed)
    message = unsummed[:2] + struct.pack("!H", checksum) + unsummed[4:]
    ipv6_header = (struct.pack("!IHBB", 6 << 28, len(message), ICMPV6, ND_HOP_LIMIT)
                   + address.packed + ALL_NODES.packed)
    return ethernet_header(multicast_mac(ALL_NODES), mac, ETHERTYPE_IPV6) + ipv6_header + message


def multicast_mac(group) -> bytes:
    """The Ethernet address of an IPv6 multicast group: 33:33 and its last 32 bits (RFC 2464)."""
    return b"\x33\x33" + ipaddress.IPv6Address(group).packed[-4:]


def announcement_frames(mac: bytes, address) -> list[bytes]:
    """Every frame one announcement of C{address} (any IP address or interface) sends."""
    if isinstance(address, (ipaddress.IPv4Interface, ipaddress.IPv6Interface)):
        ip = address.ip
    elif isinstance(address, str) and "/" in address:
        ip = ipaddress.ip_interface(address).ip
    else:
        ip = ipaddress.ip_address(address)
    if ip.version == 4:
        return [gratuitous_arp_request(mac, ip), gratuitous_arp_reply(mac, ip)]
    return [unsolicited_neighbor_advertisement(mac, ip)]
