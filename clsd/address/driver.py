"""The portability seam for floating addresses: add, remove and list an interface's addresses.

L{IAddressDriver} is what the daemon needs from the operating system; one
provider per OS family. L{IpCommandDriver} is Linux's (the ``ip`` command,
run through the injected reactor); L{UnsupportedDriver} stands for every other
OS until it has its own (doc/address.md maps Solaris's ``ipadm`` and
``ifconfig addif`` onto the same four calls).

Adding and removing are idempotent: the daemon re-applies what it wants after
a restart or a lost reply without first asking what is there. Whether a
failed command left the wanted state anyway is decided by listing the
interface afterwards, not by the wording of the tool's error message.
"""

import socket
import sys

from twisted.internet import defer
from twisted.internet.utils import getProcessOutputAndValue
from zope.interface import Interface, implementer

from clsd.address import ipcmd


class AddressError(Exception):
    """An address could not be added, removed or listed; names the interface, address and cause."""

    def __init__(self, operation, interface, address, message):
        self.operation = operation
        self.interface = interface
        self.address = address
        self.message = message
        target = f"{address} on {interface}" if address is not None else interface
        super().__init__(f"cannot {operation} {target}: {message}")


class InterfaceMissing(AddressError):
    """The interface does not exist (on this node, in this network namespace)."""


class IAddressDriver(Interface):
    """Adds, removes and lists the IP addresses of a network interface."""

    def interface_exists(interface):
        """Whether C{interface} exists now (synchronous: for config checks at start)."""

    def present(interface):
        """A Deferred firing with the set of C{IPv4Interface}/C{IPv6Interface} on C{interface}."""

    def add(interface, address):
        """Add C{address} (an C{IPv4Interface}/C{IPv6Interface}); a Deferred.

        Succeeds when it is there afterwards, also when it already was;
        otherwise fails with L{AddressError} (L{InterfaceMissing} when the
        interface does not exist).
        """

    def remove(interface, address):
        """Remove C{address}; a Deferred. Succeeds when it is not there afterwards."""


def interface_index_exists(interface):
    """Whether the kernel knows C{interface} in this network namespace (POSIX if_nametoindex)."""
    try:
        ipcmd.check_interface_name(interface)
        socket.if_nametoindex(interface)
    except (ValueError, OSError):
        return False
    return True


def _check_arguments(operation, interface, address):
    """The normalized address; raises L{AddressError} for a bad name or address."""
    try:
        ipcmd.check_interface_name(interface)
        return ipcmd.as_interface_address(address)
    except ValueError as e:
        raise AddressError(operation, interface, address, str(e)) from None


@implementer(IAddressDriver)
class IpCommandDriver:
    """Linux: iproute2's ``ip`` command, spawned through C{reactor}.

    @param run: C{run(argv) -> Deferred[(stdout, stderr, exit status)]};
        by default the program is spawned through C{reactor}. Tests give a fake.
    """

    def __init__(self, reactor, ip=None, run=None):
        self._reactor = reactor
        self.ip = ip or ipcmd.find_ip() or "/sbin/ip"
        self._run = run or self._spawn
        self._json = True

    def _spawn(self, argv):
        return getProcessOutputAndValue(argv[0], argv[1:], env=ipcmd.IP_ENVIRONMENT,
                                        reactor=self._reactor)

    def interface_exists(self, interface):
        return interface_index_exists(interface)

    @defer.inlineCallbacks
    def present(self, interface):
        try:
            ipcmd.check_interface_name(interface)
        except ValueError as e:
            raise AddressError("list the addresses of", interface, None, str(e)) from None
        if self._json:
            out, err, status = yield self._run(ipcmd.show_argv(self.ip, interface))
            if status == 0:
                try:
                    return ipcmd.parse_show_json(out.decode())
                except ValueError:
                    pass
            elif b'"-j"' not in err:  # not: Option "-j" is unknown
                self._fail("list the addresses of", interface, None, err, status)
            self._json = False  # iproute2 older than 4.13 has no JSON output
        out, err, status = yield self._run(ipcmd.show_argv(self.ip, interface, json_output=False))
        if status != 0:
            self._fail("list the addresses of", interface, None, err, status)
        return ipcmd.parse_show_text(out.decode())

    def add(self, interface, address):
        return self._change("add", interface, address, ipcmd.add_argv, wanted=True)

    def remove(self, interface, address):
        return self._change("remove", interface, address, ipcmd.remove_argv, wanted=False)

    @defer.inlineCallbacks
    def _change(self, operation, interface, address, argv_of, wanted):
        address = _check_arguments(operation, interface, address)
        out, err, status = yield self._run(argv_of(self.ip, interface, address))
        if status == 0:
            return None
        if not self.interface_exists(interface):
            self._fail(operation, interface, address, err, status)
        try:
            now = yield self.present(interface)
        except AddressError:
            now = None
        if now is not None and (address in now) == wanted:
            return None  # already as wanted: idempotent success
        self._fail(operation, interface, address, err, status)

    def _fail(self, operation, interface, address, err, status):
        message = err.decode(errors="replace").strip() or f"{self.ip} exited with status {status}"
        kind = AddressError if self.interface_exists(interface) else InterfaceMissing
        if kind is InterfaceMissing:
            message = f"no interface named {interface!r} ({message})"
        raise kind(operation, interface, address, message)


#: What an operator reads when the OS has no driver yet.
UNSUPPORTED = ("floating addresses are not supported on {os} yet "
               "(Linux: ip; Solaris: ipadm/ifconfig addif, see doc/address.md)")


@implementer(IAddressDriver)
class UnsupportedDriver:
    """Every OS without a driver: each change fails with one clear sentence."""

    def __init__(self, os_name=None):
        self.os_name = os_name or sys.platform

    @property
    def message(self):
        return UNSUPPORTED.format(os=self.os_name)

    def interface_exists(self, interface):
        return interface_index_exists(interface)

    def present(self, interface):
        return defer.fail(AddressError("list the addresses of", interface, None, self.message))

    def add(self, interface, address):
        return defer.fail(AddressError("add", interface, address, self.message))

    def remove(self, interface, address):
        return defer.fail(AddressError("remove", interface, address, self.message))


def default_driver(reactor, platform=None):
    """The driver for this OS: L{IpCommandDriver} on Linux, else L{UnsupportedDriver}."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return IpCommandDriver(reactor)
    return UnsupportedDriver(platform)
