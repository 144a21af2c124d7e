"""Announcing a floating address: gratuitous ARP / unsolicited NA, repeated on the reactor's clock.

Right after the owner adds an address, its neighbours (the clients, the
router, the switches' forwarding tables) still know the previous owner's MAC.
L{Announcer} sends the frames of L{clsd.address.packets} C{count} times,
C{interval} seconds apart (the first at once), so that they learn the new MAC
without waiting for their cache entries to age out; repeats cover a lost
frame and a switch port that was still coming up. A lost lease cancels the
announcements (C{Deferred.cancel}).

The sender is the OS seam: L{PacketSender} on Linux (an ``AF_PACKET`` raw
socket bound to the interface), L{UnsupportedSender} elsewhere.
"""

import fcntl
import socket
import struct
import sys

from twisted.internet import defer
from zope.interface import Interface, implementer

from clsd.address import ipcmd, packets

#: Repeats and their spacing when the configuration says nothing
#: (keepalived's garp_master_repeat is 5).
DEFAULT_COUNT = 5
DEFAULT_INTERVAL = 0.2

#: The hardware type of Ethernet (ARPHRD_ETHER), and the ioctl that reads an
#: interface's hardware type and address (linux/sockios.h).
ARPHRD_ETHER = 1
SIOCGIFHWADDR = 0x8927
IFNAMSIZ = 16


class AnnounceError(Exception):
    """An announcement could not be sent; names the interface, address and cause."""

    def __init__(self, interface, address, message):
        self.interface = interface
        self.address = address
        self.message = message
        super().__init__(f"cannot announce {address} on {interface}: {message}")


class IAnnounceSender(Interface):
    def send(interface, address):
        """Send one announcement of C{address} on C{interface} now; raises L{AnnounceError}."""

    def close():
        """Release what the sender holds (at shutdown)."""


@implementer(IAnnounceSender)
class PacketSender:
    """Linux: whole Ethernet frames through one ``AF_PACKET``/``SOCK_RAW`` socket.

    The socket has protocol 0 and no binding, so it receives nothing; each
    frame names its interface in C{sendto}, and the source MAC is the one the
    kernel reports for the interface now (C{SIOCGIFHWADDR}), which is right in
    any network namespace (``/sys/class/net`` may show another namespace's
    interfaces, and an interface's MAC can change).

    The socket stays open until L{close}: closing a packet socket waits for
    an RCU grace period (10 to 20 ms measured here), which must not stall
    the reactor at every round.

    @param frames: C{frames(mac, address) -> [frame bytes]}; by default every
        frame of an announcement (L{packets.announcement_frames}).
    """

    def __init__(self, frames=packets.announcement_frames):
        self._frames = frames
        self._socket = None

    def hardware_address(self, interface):
        """C{(hardware type, MAC bytes)} of C{interface}; OSError when it does not exist."""
        request = struct.pack("256s", interface.encode()[:IFNAMSIZ - 1])
        reply = fcntl.ioctl(self._open().fileno(), SIOCGIFHWADDR, request)
        hardware_type, = struct.unpack_from("H", reply, IFNAMSIZ)  # sa_family, host order
        return hardware_type, reply[IFNAMSIZ + 2:IFNAMSIZ + 8]

    def send(self, interface, address):
        try:
            ipcmd.check_interface_name(interface)
        except ValueError as e:
            raise AnnounceError(interface, address, str(e)) from None
        try:
            hardware_type, mac = self.hardware_address(interface)
            if hardware_type != ARPHRD_ETHER:
                raise AnnounceError(interface, address,
                                    f"not an Ethernet interface (hardware type {hardware_type})")
            for frame in self._frames(mac, address):
                self._socket.sendto(frame, (interface, 0))
        except OSError as e:
            raise AnnounceError(interface, address, e.strerror or str(e)) from None

    def _open(self):
        if self._socket is None:
            self._socket = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
        return self._socket

    def close(self):
        """Release the socket (blocks for an RCU grace period: call it once, at shutdown)."""
        if self._socket is not None:
            self._socket, sock = None, self._socket
            sock.close()


@implementer(IAnnounceSender)
class UnsupportedSender:
    """Every OS without a sender yet: one clear sentence."""

    def __init__(self, os_name=None):
        self.os_name = os_name or sys.platform

    def send(self, interface, address):
        raise AnnounceError(interface, address,
                            f"address announcements are not supported on {self.os_name} yet "
                            "(Linux: AF_PACKET; Solaris announces by itself, see doc/address.md)")

    def close(self):
        pass


def default_sender(platform=None):
    platform = platform or sys.platform
    return PacketSender() if platform.startswith("linux") else UnsupportedSender(platform)


def check_schedule(count, interval):
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"announce count must be a whole number >= 1, not {count!r}")
    if not isinstance(interval, (int, float)) or isinstance(interval, bool) or not interval > 0:
        raise ValueError(f"announce interval must be a number of seconds > 0, not {interval!r}")


class Announcer:
    """Sends announcements on C{reactor}'s clock through C{sender} (an L{IAnnounceSender})."""

    def __init__(self, reactor, sender):
        self._reactor = reactor
        self._sender = sender

    def announce(self, interface: str, addresses, count: int = DEFAULT_COUNT,
                 interval: float = DEFAULT_INTERVAL) -> defer.Deferred:
        """Announce every one of C{addresses} C{count} times, the first round now.

        @return: a Deferred firing with C{count} when the last round is sent,
            failing with the sender's error (L{AnnounceError}) at the first
            send that fails (no more rounds follow). Cancelling it stops the
            rounds still to come.
        """
        check_schedule(count, interval)
        rounds = _Rounds(self._reactor, self._sender, interface, list(addresses), count, interval)
        rounds.send(0)
        return rounds.done


class _Rounds:
    """One announcement in progress: the next round's timer and the Deferred to fire."""

    def __init__(self, reactor, sender, interface, addresses, count, interval):
        self._reactor = reactor
        self._sender = sender
        self._interface = interface
        self._addresses = addresses
        self._count = count
        self._interval = interval
        self._next = None
        self.done = defer.Deferred(self._cancel)

    def send(self, sent_before):
        self._next = None
        try:
            for address in self._addresses:
                self._sender.send(self._interface, address)
        except Exception:
            self.done.errback()  # an AnnounceError, or a bug in the sender: no more rounds
            return
        if sent_before + 1 == self._count:
            self.done.callback(self._count)
        else:
            self._next = self._reactor.callLater(self._interval, self.send, sent_before + 1)

    def _cancel(self, _):
        if self._next is not None:
            self._next.cancel()
            self._next = None
