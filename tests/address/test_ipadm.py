"""The Solaris/illumos driver: the ``ipadm`` commands it builds, their output, idempotency, errors.

Against a fake ``run`` (canned outputs) and, for the guard's blocking
removal, a fake ``ipadm`` script: built from the ipadm(8) manual, not run on
a Solaris machine here.
"""

import ipaddress
import os

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.address import ipadm, ipcmd
from clsd.address.driver import (
    AddressError, IAddressDriver, InterfaceMissing, IpadmDriver, default_driver,
)

V4 = ipaddress.ip_interface("192.0.2.10/24")
V6 = ipaddress.ip_interface("2001:db8::10/64")
OWN_V4 = ipadm.address_object("net0", V4)

#: ``ipadm show-addr -p -o addrobj,addr net0``: colons in a field are escaped.
SHOW = (
    "net0/v4:192.0.2.1/24\n"
    f"{OWN_V4}:192.0.2.10/24\n"
    "net0/v6:fe80\\:\\:8\\:20ff\\:fe93\\:1234/10\n"
    "net0/byhand:2001\\:db8\\:\\:10/64\n"
    "net0/dhcp:?\n"
)


class CommandTests(unittest.TestCase):
    def test_address_objects_are_named_after_the_address(self):
        self.assertRegex(OWN_V4, r"^net0/clsd[0-9a-f]{10}$")
        self.assertLess(len(OWN_V4), 32)
        self.assertEqual(OWN_V4, ipadm.address_object("net0", "192.0.2.10/24"), "stable")
        others = {ipadm.address_object("net0", a)
                  for a in ("192.0.2.10/25", "192.0.2.11/24", "2001:db8::10/64")}
        self.assertEqual(len(others | {OWN_V4}), 4)

    def test_add_argv(self):
        self.assertEqual(ipadm.add_argv("/usr/sbin/ipadm", "net0", V4),
                         ["/usr/sbin/ipadm", "create-addr", "-t", "-T", "static",
                          "-a", "local=192.0.2.10/24", OWN_V4])
        self.assertEqual(ipadm.add_argv("/usr/sbin/ipadm", "net0", V6),
                         ["/usr/sbin/ipadm", "create-addr", "-t", "-T", "static",
                          "-a", "local=2001:db8::10/64", ipadm.address_object("net0", V6)])

    def test_remove_and_show_argv(self):
        self.assertEqual(ipadm.remove_argv("/usr/sbin/ipadm", OWN_V4),
                         ["/usr/sbin/ipadm", "delete-addr", OWN_V4])
        self.assertEqual(ipadm.show_argv("/usr/sbin/ipadm", "net0"),
                         ["/usr/sbin/ipadm", "show-addr", "-p", "-o", "addrobj,addr", "net0"])

    def test_parse_show(self):
        self.assertEqual(ipadm.parse_show(SHOW), {
            ipaddress.ip_interface("192.0.2.1/24"): "net0/v4",
            V4: OWN_V4,
            ipaddress.ip_interface("fe80::8:20ff:fe93:1234/10"): "net0/v6",
            V6: "net0/byhand",
        })
        self.assertEqual(ipadm.parse_show("garbage\nnet0/x:not-an-address/24\n\n"), {})


class FakeIpadm:
    """C{run} for the driver: answers per subcommand, listing L{SHOW}; records the calls."""

    def __init__(self):
        self.calls = []
        self.answers = {}
        self.listing = SHOW

    def __call__(self, argv):
        self.calls.append(argv[1:])
        if argv[1] == "show-addr":
            return defer.succeed(self.answers.get("show-addr", (self.listing.encode(), b"", 0)))
        return defer.succeed(self.answers.get(argv[1], (b"", b"", 0)))


class IpadmDriverTests(unittest.TestCase):
    def setUp(self):
        self.ipadm = FakeIpadm()
        self.driver = IpadmDriver(reactor=None, ipadm="/usr/sbin/ipadm", run=self.ipadm)
        self.exists = True
        self.patch(IpadmDriver, "interface_exists", lambda _, interface: self.exists)

    def test_provides_the_interface_and_is_solaris_default(self):
        verifyObject(IAddressDriver, self.driver)
        self.assertIsInstance(default_driver(reactor, "sunos5"), IpadmDriver)

    def test_present(self):
        found = self.successResultOf(self.driver.present("net0"))
        self.assertEqual(found, set(ipadm.parse_show(SHOW)))

    def test_add_and_remove(self):
        self.successResultOf(self.driver.add("net0", V4))
        self.successResultOf(self.driver.remove("net0", V4))
        self.assertEqual(self.ipadm.calls, [
            ["create-addr", "-t", "-T", "static", "-a", "local=192.0.2.10/24", OWN_V4],
            ["delete-addr", OWN_V4]])

    def test_adding_an_address_already_there_succeeds(self):
        self.ipadm.answers["create-addr"] = (
            b"", b"ipadm: cannot create address: Address object already exists", 1)
        self.successResultOf(self.driver.add("net0", V4))
        self.assertEqual(self.ipadm.calls[-1][0], "show-addr")

    def test_a_failed_add_is_an_error(self):
        self.ipadm.answers["create-addr"] = (
            b"", b"ipadm: cannot create address: Permission denied", 1)
        failure = self.failureResultOf(self.driver.add("net0", "192.0.2.20/24"), AddressError)
        self.assertEqual(str(failure.value), "cannot add 192.0.2.20/24 on net0: ipadm: cannot "
                                             "create address: Permission denied")

    def test_removing_an_absent_address_succeeds(self):
        self.ipadm.answers["delete-addr"] = (
            b"", b"ipadm: could not delete address: Address object not found", 1)
        self.successResultOf(self.driver.remove("net0", "192.0.2.20/24"))
        self.assertEqual([c[0] for c in self.ipadm.calls], ["delete-addr", "show-addr"])

    def test_an_address_held_by_another_object_is_removed_through_it(self):
        deletes = []

        def run(argv):
            if argv[1] == "delete-addr":
                deletes.append(argv[2])
                if argv[2] != "net0/byhand":
                    return defer.succeed((b"", b"ipadm: Address object not found", 1))
            return self.ipadm(argv)

        self.driver._run = run
        self.successResultOf(self.driver.remove("net0", V6))
        self.assertEqual(deletes, [ipadm.address_object("net0", V6), "net0/byhand"])

    def test_a_removal_that_fails_for_good_is_an_error(self):
        self.ipadm.answers["delete-addr"] = (b"", b"ipadm: Permission denied", 1)
        failure = self.failureResultOf(self.driver.remove("net0", V4), AddressError)
        self.assertIn("cannot remove 192.0.2.10/24 on net0: ipadm: Permission denied",
                      str(failure.value))

    def test_missing_interface(self):
        self.exists = False
        self.ipadm.answers["create-addr"] = (b"", b"ipadm: Interface does not exist", 1)
        failure = self.failureResultOf(self.driver.add("net9", V4), InterfaceMissing)
        self.assertIn("no interface named 'net9'", str(failure.value))
        self.ipadm.answers["delete-addr"] = (b"", b"ipadm: Interface does not exist", 1)
        self.failureResultOf(self.driver.remove("net9", V4), InterfaceMissing)

    def test_bad_arguments_fail_before_running_anything(self):
        self.failureResultOf(self.driver.add("net0", "192.0.2.10"), AddressError)
        self.failureResultOf(self.driver.remove("bad/name", V4), AddressError)
        self.failureResultOf(self.driver.present("bad/name"), AddressError)
        self.assertEqual(self.ipadm.calls, [])


#: A fake ``ipadm`` for the guard's removal: logs its arguments, acts per the mode file.
FAKE_IPADM = """\
#!/bin/sh
echo "$*" >> {log}
case "$(cat {mode})" in
ok) exit 0 ;;
absent) case "$1" in delete-addr) echo "ipadm: Address object not found" >&2; exit 1 ;; esac
        echo 'net0/v4:192.0.2.1/24' ; exit 0 ;;
byhand) case "$1$2" in delete-addrnet0/byhand) exit 0 ;;
        delete-addr*) echo "ipadm: Address object not found" >&2; exit 1 ;; esac
        echo 'net0/byhand:192.0.2.10/24' ; exit 0 ;;
esac
"""


class GuardRemovalTests(unittest.TestCase):
    """C{ipcmd.try_remove} on Solaris: the guard's blocking removal goes through ipadm."""

    def setUp(self):
        directory = self.mktemp()
        os.mkdir(directory)
        self.log = os.path.join(directory, "log")
        self.mode = os.path.join(directory, "mode")
        self.path = os.path.join(directory, "ipadm")
        with open(self.path, "w") as f:
            f.write(FAKE_IPADM.format(log=self.log, mode=self.mode))
        os.chmod(self.path, 0o755)
        self.patch(ipadm, "IPADM_CANDIDATES", (self.path,))

    def run_mode(self, mode):
        with open(self.mode, "w") as f:
            f.write(mode)
        result = ipcmd.try_remove("net0", "192.0.2.10/24", platform="sunos5")
        with open(self.log) as f:
            return result, f.read().splitlines()

    def test_removed(self):
        self.assertEqual(self.run_mode("ok"), ((True, "removed"), [f"delete-addr {OWN_V4}"]))

    def test_not_there(self):
        result, calls = self.run_mode("absent")
        self.assertEqual(result, (True, "was not there"))
        self.assertEqual(calls, [f"delete-addr {OWN_V4}",
                                 "show-addr -p -o addrobj,addr net0"])

    def test_held_by_another_object(self):
        result, calls = self.run_mode("byhand")
        self.assertEqual(result, (True, "removed (address object net0/byhand)"))
        self.assertEqual(calls[-1], "delete-addr net0/byhand")

    def test_no_ipadm(self):
        self.patch(ipadm, "IPADM_CANDIDATES", ())
        self.assertEqual(ipcmd.try_remove("net0", V4, platform="sunos5"),
                         (False, "the ipadm command is not installed"))

    def test_linux_is_not_sent_to_ipadm(self):
        gone, message = ipcmd.try_remove("net0", V4, ip="/nonexistent/ip", platform="linux")
        self.assertFalse(gone)
        self.assertFalse(os.path.exists(self.log))
        self.assertNotIn("ipadm", message)
