"""The announcement frames byte for byte, and the Announcer's schedule on a Clock."""

import ipaddress
import os
import socket

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.address import packets
from clsd.address.announce import (
    DEFAULT_COUNT, DEFAULT_INTERVAL, Announcer, AnnounceError, IAnnounceSender, PacketSender,
    UnsupportedSender, default_sender,
)

MAC = packets.parse_mac("02:00:5e:10:00:01")


def hexbytes(text):
    """Bytes from hex written in groups (spaces and newlines ignored)."""
    return bytes.fromhex("".join(text.split()))


# Laid out by hand from RFC 826 and RFC 5227 (ARP) and RFC 4861 / RFC 2464 (NA).
GARP_REQUEST = hexbytes("""
    ff ff ff ff ff ff   02 00 5e 10 00 01   08 06
    00 01  08 00  06  04  00 01
    02 00 5e 10 00 01   c0 00 02 0a
    ff ff ff ff ff ff   c0 00 02 0a
""")
GARP_REPLY = hexbytes("""
    ff ff ff ff ff ff   02 00 5e 10 00 01   08 06
    00 01  08 00  06  04  00 02
    02 00 5e 10 00 01   c0 00 02 0a
    02 00 5e 10 00 01   c0 00 02 0a
""")
# Checksum by hand: pseudo-header 2dc9 (source) + ff03 (ff02::1) + 0020 (length 32)
# + 003a (next header 58); message 8800 + 2000 (override flag) + 2dc9 (target)
# + 0201 0200 5e10 0001 (option 2, length 1, MAC: 6212) = 0x26501 -> folded 6503
# -> complement 9afc.
NEIGHBOR_ADVERTISEMENT = hexbytes("""
    33 33 00 00 00 01   02 00 5e 10 00 01   86 dd
    60 00 00 00  00 20  3a  ff
    20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
    ff 02 00 00 00 00 00 00 00 00 00 00 00 00 00 01
    88 00 9a fc  20 00 00 00
    20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 10
    02 01 02 00 5e 10 00 01
""")


class FrameTests(unittest.TestCase):
    def test_gratuitous_arp_request(self):
        self.assertEqual(packets.gratuitous_arp_request(MAC, "192.0.2.10"), GARP_REQUEST)

    def test_gratuitous_arp_reply(self):
        self.assertEqual(packets.gratuitous_arp_reply(MAC, "192.0.2.10"), GARP_REPLY)

    def test_unsolicited_neighbor_advertisement(self):
        self.assertEqual(packets.unsolicited_neighbor_advertisement(MAC, "2001:db8::10"),
                         NEIGHBOR_ADVERTISEMENT)

    def test_advertisement_checksum_verifies(self):
        """The receiver's check: the sum over pseudo-header and message, checksum included, is 0."""
        frame = packets.unsolicited_neighbor_advertisement(MAC, "2001:db8::42:1")
        message = frame[14 + 40:]
        source = ipaddress.IPv6Address(frame[14 + 8:14 + 24])
        self.assertEqual(packets.icmpv6_checksum(source, packets.ALL_NODES, message), 0)
        self.assertNotEqual(message[2:4], b"\0\0")

    def test_rfc1071_example(self):
        # RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2.
        self.assertEqual(packets.internet_checksum(hexbytes("0001 f203 f4f5 f6f7")),
                         0xFFFF - 0xDDF2)

    def test_odd_length_is_padded_with_zero(self):
        self.assertEqual(packets.internet_checksum(b"\x01"), packets.internet_checksum(b"\x01\x00"))

    def test_multicast_mac(self):
        self.assertEqual(packets.multicast_mac("ff02::1"), hexbytes("33 33 00 00 00 01"))
        self.assertEqual(packets.multicast_mac("ff02::1:ff00:10"), hexbytes("33 33 ff 00 00 10"))

    def test_announcement_frames_per_family(self):
        self.assertEqual(packets.announcement_frames(MAC, ipaddress.ip_interface("192.0.2.10/24")),
                         [GARP_REQUEST, GARP_REPLY])
        self.assertEqual(packets.announcement_frames(MAC, "192.0.2.10/24"),
                         [GARP_REQUEST, GARP_REPLY])
        self.assertEqual(packets.announcement_frames(MAC, "2001:db8::10/64"),
                         [NEIGHBOR_ADVERTISEMENT])
        self.assertEqual(packets.announcement_frames(MAC, ipaddress.ip_address("2001:db8::10")),
                         [NEIGHBOR_ADVERTISEMENT])

    def test_mac_text(self):
        self.assertEqual(packets.format_mac(MAC), "02:00:5e:10:00:01")
        for bad in ("02:00:5e:10:00", "02:00:5e:10:00:0g", "0200.5e10.0001", "2:0:5e:10:0:1"):
            with self.assertRaises(ValueError) as caught:
                packets.parse_mac(bad)
            self.assertIn(repr(bad), str(caught.exception))

    def test_wrong_mac_length_is_refused(self):
        with self.assertRaises(ValueError):
            packets.gratuitous_arp_request(b"\x02\x00", "192.0.2.10")

    def test_wrong_family_is_refused(self):
        with self.assertRaises(ValueError):
            packets.gratuitous_arp_request(MAC, "2001:db8::10")
        with self.assertRaises(ValueError):
            packets.unsolicited_neighbor_advertisement(MAC, "192.0.2.10")


class RecordingSender:
    def __init__(self, clock, fail_at=None):
        self.clock = clock
        self.sent = []
        self.fail_at = fail_at

    def send(self, interface, address):
        if self.fail_at is not None and len(self.sent) == self.fail_at:
            raise AnnounceError(interface, address, "Network is down")
        self.sent.append((self.clock.seconds(), interface, address))


class AnnouncerTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.sender = RecordingSender(self.clock)
        self.announcer = Announcer(self.clock, self.sender)

    def test_defaults(self):
        self.assertEqual((DEFAULT_COUNT, DEFAULT_INTERVAL), (5, 0.2))
        done = self.announcer.announce("eth0", ["192.0.2.10/24"])
        self.clock.pump([0.2] * 4)
        self.assertEqual(self.successResultOf(done), 5)
        self.assertEqual([round(t, 6) for t, _, _ in self.sender.sent], [0, 0.2, 0.4, 0.6, 0.8])

    def test_first_round_is_sent_at_once(self):
        self.announcer.announce("eth0", ["192.0.2.10/24"], count=3, interval=1.0)
        self.assertEqual(self.sender.sent, [(0, "eth0", "192.0.2.10/24")])

    def test_every_address_in_every_round(self):
        done = self.announcer.announce("eth0", ["192.0.2.10/24", "2001:db8::10/64"],
                                       count=2, interval=0.5)
        self.assertNoResult(done)
        self.clock.advance(0.49)
        self.assertEqual(len(self.sender.sent), 2)
        self.clock.advance(0.01)
        self.assertEqual(self.successResultOf(done), 2)
        self.assertEqual([(t, a) for t, _, a in self.sender.sent],
                         [(0, "192.0.2.10/24"), (0, "2001:db8::10/64"),
                          (0.5, "192.0.2.10/24"), (0.5, "2001:db8::10/64")])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_count_one_fires_at_once(self):
        done = self.announcer.announce("eth0", ["192.0.2.10/24"], count=1)
        self.assertEqual(self.successResultOf(done), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel_stops_the_rounds(self):
        """A lost lease: no announcement after the cancel."""
        done = self.announcer.announce("eth0", ["192.0.2.10/24"], count=5, interval=0.2)
        self.clock.advance(0.2)
        done.cancel()
        self.failureResultOf(done, defer.CancelledError)
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(len(self.sender.sent), 2)

    def test_a_failed_send_ends_the_announcement(self):
        self.sender.fail_at = 2
        done = self.announcer.announce("eth0", ["192.0.2.10/24"], count=5, interval=0.2)
        self.clock.advance(0.2)
        self.assertNoResult(done)
        self.clock.advance(0.2)
        failure = self.failureResultOf(done, AnnounceError)
        self.assertEqual(str(failure.value),
                         "cannot announce 192.0.2.10/24 on eth0: Network is down")
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(len(self.sender.sent), 2)

    def test_a_sender_bug_fails_the_deferred(self):
        def broken(interface, address):
            raise KeyError("bug")
        self.sender.send = broken
        self.failureResultOf(self.announcer.announce("eth0", ["192.0.2.10/24"]), KeyError)

    def test_bad_schedule_is_refused(self):
        for count, interval in [(0, 0.2), (1.5, 0.2), (True, 0.2), (3, 0), (3, -1), (3, "1")]:
            with self.assertRaises(ValueError, msg=f"{count!r}, {interval!r}"):
                self.announcer.announce("eth0", ["192.0.2.10/24"], count, interval)
        self.assertEqual(self.sender.sent, [])


class SenderTests(unittest.TestCase):
    def test_providers(self):
        verifyObject(IAnnounceSender, PacketSender())
        verifyObject(IAnnounceSender, UnsupportedSender("sunos5"))

    def test_default_sender(self):
        self.assertIsInstance(default_sender("linux"), PacketSender)
        self.assertIsInstance(default_sender("sunos5"), UnsupportedSender)
        self.assertIsInstance(default_sender("freebsd14"), UnsupportedSender)

    def test_unsupported_says_so(self):
        with self.assertRaises(AnnounceError) as caught:
            UnsupportedSender("sunos5").send("net0", "192.0.2.10/24")
        self.assertEqual(str(caught.exception),
                         "cannot announce 192.0.2.10/24 on net0: address announcements are not "
                         "supported on sunos5 yet (Linux: AF_PACKET; Solaris announces by itself, "
                         "see doc/address.md)")

    def test_packet_sender_errors_name_the_interface(self):
        """No such interface, or not Ethernet (loopback), or no permission: an AnnounceError."""
        if not hasattr(socket, "AF_PACKET"):
            raise unittest.SkipTest("no AF_PACKET on this OS")
        for interface in ("nosuch0", "lo"):
            with self.assertRaises(AnnounceError) as caught:
                PacketSender().send(interface, "192.0.2.10/24")
            self.assertIn(f"cannot announce 192.0.2.10/24 on {interface}: ", str(caught.exception))

    def test_packet_sender_refuses_a_bad_interface_name(self):
        with self.assertRaises(AnnounceError) as caught:
            PacketSender().send("x" * 16, "192.0.2.10/24")
        self.assertIn("longer than 15 bytes", str(caught.exception))

    def test_packet_sender_refuses_loopback_and_keeps_its_socket(self):
        """One socket for every send: closing a packet socket costs an RCU grace period."""
        if not hasattr(socket, "AF_PACKET") or os.geteuid() != 0:
            raise unittest.SkipTest("needs AF_PACKET and root (a raw socket)")
        sender = PacketSender()
        self.addCleanup(sender.close)
        self.assertEqual(sender.hardware_address("lo"), (772, b"\0" * 6))
        opened = sender._socket
        with self.assertRaises(AnnounceError) as caught:
            sender.send("lo", "192.0.2.10/24")
        self.assertIn("not an Ethernet interface (hardware type 772)", str(caught.exception))
        self.assertIs(sender._socket, opened)
        sender.close()
        self.assertIsNone(sender._socket)
        sender.close()
