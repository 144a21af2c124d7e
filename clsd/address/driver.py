"""The portability seam for floating addresses: add, remove and list an interface's addresses.

L{IAddressDriver} is what the daemon needs from the operating system; one
provider per OS family, each running the system's own tool through the
injected reactor: L{IpCommandDriver} on Linux (``ip``), L{IpadmDriver} on
Solaris 11 and illumos (``ipadm``; built from its manual, not run on a
Solaris machine here). L{UnsupportedDriver} stands for every other OS.

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

from clsd.address import ipadm as ipadm_commands
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


class _CommandDriver:
    """What the drivers that run a system tool share: spawning it, and its failures.

    @param run: C{run(argv) -> Deferred[(stdout, stderr, exit status)]};
        by default the program is spawned through C{reactor}. Tests give a fake.
    """

    #: The tool's path, for messages.
    tool = ""

    def __init__(self, reactor, run=None):
        self._reactor = reactor
        self._run = run or self._spawn

    def _spawn(self, argv):
        return getProcessOutputAndValue(argv[0], argv[1:], env=ipcmd.IP_ENVIRONMENT,
                                        reactor=self._reactor)

    def interface_exists(self, interface):
        return interface_index_exists(interface)

    def _fail(self, operation, interface, address, err, status):
        message = err.decode(errors="replace").strip() or f"{self.tool} exited with status {status}"
        kind = AddressError if self.interface_exists(interface) else InterfaceMissing
        if kind is InterfaceMissing:
            message = f"no interface named {interface!r} ({message})"
        raise kind(operation, interface, address, message)


@implementer(IAddressDriver)
class IpCommandDriver(_CommandDriver):
    """Linux: iproute2's ``ip`` command, spawned through C{reactor}."""

    def __init__(self, reactor, ip=None, run=None):
        super().__init__(reactor, run)
        self.ip = self.tool = ip or ipcmd.find_ip() or "/sbin/ip"
        self._json = True

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


@implementer(IAddressDriver)
class IpadmDriver(_CommandDriver):
    """Solaris 11 and illumos: ``ipadm`` address objects, spawned through C{reactor}.

    Each address is a temporary static object named after the address
    (L{clsd.address.ipadm.address_object}); a removal deletes that object,
    or whatever object holds the address when it was added by other hands.
    Built from the ipadm(8) manual and tested against a fake C{run}; not run
    on a Solaris machine here.
    """

    def __init__(self, reactor, ipadm=None, run=None):
        super().__init__(reactor, run)
        self.ipadm = self.tool = ipadm or ipadm_commands.find_ipadm() or "/usr/sbin/ipadm"

    @defer.inlineCallbacks
    def _objects(self, interface):
        """C{{address: address object}} on C{interface}."""
        out, err, status = yield self._run(ipadm_commands.show_argv(self.ipadm, interface))
        if status != 0:
            self._fail("list the addresses of", interface, None, err, status)
        return ipadm_commands.parse_show(out.decode(errors="replace"))

    @defer.inlineCallbacks
    def present(self, interface):
        try:
            ipcmd.check_interface_name(interface)
        except ValueError as e:
            raise AddressError("list the addresses of", interface, None, str(e)) from None
        objects = yield self._objects(interface)
        return set(objects)

    @defer.inlineCallbacks
    def add(self, interface, address):
        address = _check_arguments("add", interface, address)
        out, err, status = yield self._run(ipadm_commands.add_argv(self.ipadm, interface, address))
        if status == 0:
            return None
        if self.interface_exists(interface):
            try:
                objects = yield self._objects(interface)
            except AddressError:
                objects = {}
            if address in objects:
                return None  # already there (an earlier run's object): idempotent success
        self._fail("add", interface, address, err, status)

    @defer.inlineCallbacks
    def remove(self, interface, address):
        address = _check_arguments("remove", interface, address)
        own = ipadm_commands.address_object(interface, address)
        out, err, status = yield self._run(ipadm_commands.remove_argv(self.ipadm, own))
        if status == 0:
            return None
        if not self.interface_exists(interface):
            self._fail("remove", interface, address, err, status)
        objects = yield self._objects(interface)
        other = objects.get(address)
        if other is None:
            return None  # not there: idempotent success
        out, err, status = yield self._run(ipadm_commands.remove_argv(self.ipadm, other))
        if status != 0:
            self._fail("remove", interface, address, err, status)


#: What an operator reads when the OS has no driver yet.
UNSUPPORTED = ("floating addresses are not supported on {os} yet "
               "(Linux: ip; Solaris 11 and illumos: ipadm; see doc/address.md)")


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
    """The driver for this OS: L{IpCommandDriver} on Linux, L{IpadmDriver} on Solaris/illumos
    (``sunos5``), else L{UnsupportedDriver}."""
    platform = platform or sys.platform
    if platform.startswith("linux"):
        return IpCommandDriver(reactor)
    if platform.startswith("sunos"):
        return IpadmDriver(reactor)
    return UnsupportedDriver(platform)
