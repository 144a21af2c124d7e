"""The address driver seam: the ``ip`` commands, their output, idempotency and errors.

The driver runs against a fake ``run`` (canned outputs, no processes); the
guard's blocking removal and the spawning glue run a fake ``ip`` script. The
real thing, inside network namespaces, is tests/integration/test_address_netns_real.py.
"""

import ipaddress
import json
import os
import subprocess
import sys
import textwrap

from twisted.internet import defer, reactor
from twisted.trial import unittest
from zope.interface.verify import verifyObject

from clsd.address import ipcmd
from clsd.address.driver import (
    AddressError, IAddressDriver, InterfaceMissing, IpCommandDriver, UnsupportedDriver,
    default_driver,
)

V4 = ipaddress.ip_interface("192.0.2.10/24")
V6 = ipaddress.ip_interface("2001:db8::10/64")

SHOW_JSON = json.dumps([{
    "ifindex": 2, "ifname": "eth0", "address": "02:00:5e:10:00:01",
    "addr_info": [
        {"family": "inet", "local": "192.0.2.1", "prefixlen": 24, "scope": "global"},
        {"family": "inet", "local": "192.0.2.10", "prefixlen": 24, "scope": "global"},
        {"family": "inet6", "local": "2001:db8::10", "prefixlen": 64, "nodad": True},
        {"family": "inet6", "local": "fe80::1", "prefixlen": 64, "scope": "link"},
    ],
}])

SHOW_TEXT = textwrap.dedent("""\
    2: eth0    inet 192.0.2.1/24 brd 192.0.2.255 scope global eth0\\       valid_lft forever
    2: eth0    inet 192.0.2.10/24 brd 192.0.2.255 scope global secondary eth0\\       valid_lft forever
    2: eth0    inet6 2001:db8::10/64 scope global nodad \\       valid_lft forever
    2: eth0    inet6 fe80::1/64 scope link \\       valid_lft forever
""")

LISTED = {ipaddress.ip_interface(a) for a in
          ("192.0.2.1/24", "192.0.2.10/24", "2001:db8::10/64", "fe80::1/64")}


class CommandTests(unittest.TestCase):
    def test_add_argv(self):
        self.assertEqual(ipcmd.add_argv("/sbin/ip", "eth0", V4),
                         ["/sbin/ip", "-4", "addr", "add", "192.0.2.10/24", "dev", "eth0",
                          "brd", "+"])
        host = ipaddress.ip_interface("192.0.2.10/32")
        self.assertEqual(ipcmd.add_argv("/sbin/ip", "eth0", host),
                         ["/sbin/ip", "-4", "addr", "add", "192.0.2.10/32", "dev", "eth0"])
        self.assertEqual(ipcmd.add_argv("/sbin/ip", "eth0", V6),
                         ["/sbin/ip", "-6", "addr", "add", "2001:db8::10/64", "dev", "eth0",
                          "nodad"])

    def test_remove_and_show_argv(self):
        self.assertEqual(ipcmd.remove_argv("ip", "eth0", V6),
                         ["ip", "-6", "addr", "del", "2001:db8::10/64", "dev", "eth0"])
        self.assertEqual(ipcmd.show_argv("ip", "eth0"), ["ip", "-j", "addr", "show", "dev", "eth0"])
        self.assertEqual(ipcmd.show_argv("ip", "eth0", json_output=False),
                         ["ip", "-o", "addr", "show", "dev", "eth0"])

    def test_parse_show(self):
        self.assertEqual(ipcmd.parse_show_json(SHOW_JSON), LISTED)
        self.assertEqual(ipcmd.parse_show_text(SHOW_TEXT), LISTED)
        self.assertEqual(ipcmd.parse_show_json(""), set())
        self.assertEqual(ipcmd.parse_show_text(""), set())

    def test_interface_names(self):
        for good in ("eth0", "enp3s0f1", "br-1234567890ab", "veth.10"):
            self.assertEqual(ipcmd.check_interface_name(good), good)
        for bad, why in [("", "non-empty"), ("a" * 16, "longer than 15"), ("eth0:1", "not valid"),
                         ("a/b", "not valid"), ("..", "not valid"), ("e th0", "not valid"),
                         (None, "non-empty string")]:
            with self.assertRaises(ValueError) as caught:
                ipcmd.check_interface_name(bad)
            self.assertIn(why, str(caught.exception))

    def test_addresses_need_a_prefix(self):
        self.assertEqual(ipcmd.as_interface_address("192.0.2.10/24"), V4)
        self.assertIs(ipcmd.as_interface_address(V6), V6)
        with self.assertRaises(ValueError) as caught:
            ipcmd.as_interface_address("192.0.2.10")
        self.assertIn("must carry its prefix length", str(caught.exception))
        with self.assertRaises(ValueError):
            ipcmd.as_interface_address("192.0.2.300/24")

    def test_find_ip(self):
        found = ipcmd.find_ip(path="")
        if found is not None:
            self.assertIn(found, ipcmd.IP_CANDIDATES)
        directory = self.mktemp()
        os.mkdir(directory)
        fake = os.path.join(directory, "ip")
        with open(fake, "w") as f:
            f.write("#!/bin/sh\n")
        os.chmod(fake, 0o755)
        self.patch(ipcmd, "IP_CANDIDATES", ())
        self.assertEqual(ipcmd.find_ip(path=directory), fake)
        self.assertIsNone(ipcmd.find_ip(path=self.mktemp()))


class FakeIp:
    """C{run} for the driver: answers per (operation word, address or device) and records."""

    def __init__(self):
        self.calls = []
        self.answers = {}
        self.listing = SHOW_JSON

    def __call__(self, argv):
        self.calls.append(argv)
        if argv[1] == "-j":
            return defer.succeed(self.answers.get("show", (self.listing.encode(), b"", 0)))
        if argv[1] == "-o":
            return defer.succeed(self.answers.get("show-text", (SHOW_TEXT.encode(), b"", 0)))
        return defer.succeed(self.answers.get(argv[3], (b"", b"", 0)))


class IpCommandDriverTests(unittest.TestCase):
    def setUp(self):
        self.ip = FakeIp()
        self.driver = IpCommandDriver(reactor=None, ip="/sbin/ip", run=self.ip)
        self.exists = True
        self.patch(IpCommandDriver, "interface_exists", lambda _, interface: self.exists)

    def test_provides_the_interface(self):
        verifyObject(IAddressDriver, self.driver)
        verifyObject(IAddressDriver, UnsupportedDriver("openbsd7"))

    def test_present(self):
        self.assertEqual(self.successResultOf(self.driver.present("eth0")), LISTED)
        self.assertEqual(self.ip.calls, [["/sbin/ip", "-j", "addr", "show", "dev", "eth0"]])

    def test_present_without_json_falls_back_to_text_once(self):
        self.ip.answers["show"] = (b"", b'Option "-j" is unknown, try "ip -help".\n', 255)
        self.assertEqual(self.successResultOf(self.driver.present("eth0")), LISTED)
        self.assertEqual(self.successResultOf(self.driver.present("eth0")), LISTED)
        self.assertEqual([argv[1] for argv in self.ip.calls], ["-j", "-o", "-o"])

    def test_add_and_remove(self):
        self.assertIsNone(self.successResultOf(self.driver.add("eth0", V4)))
        self.assertIsNone(self.successResultOf(self.driver.remove("eth0", "2001:db8::10/64")))
        self.assertEqual(self.ip.calls, [
            ["/sbin/ip", "-4", "addr", "add", "192.0.2.10/24", "dev", "eth0", "brd", "+"],
            ["/sbin/ip", "-6", "addr", "del", "2001:db8::10/64", "dev", "eth0"],
        ])

    def test_adding_an_address_already_there_succeeds(self):
        self.ip.answers["add"] = (b"", b"Error: ipv4: Address already assigned.\n", 2)
        self.assertIsNone(self.successResultOf(self.driver.add("eth0", V4)))
        self.assertEqual(self.ip.calls[-1][1], "-j")  # judged by the listing

    def test_removing_an_absent_address_succeeds(self):
        self.ip.answers["del"] = (b"", b"RTNETLINK answers: Cannot assign requested address\n", 2)
        absent = ipaddress.ip_interface("192.0.2.11/24")
        self.assertIsNone(self.successResultOf(self.driver.remove("eth0", absent)))

    def test_a_failed_add_is_an_error(self):
        self.ip.answers["add"] = (b"", b"RTNETLINK answers: Operation not permitted\n", 2)
        absent = ipaddress.ip_interface("192.0.2.11/24")
        failure = self.failureResultOf(self.driver.add("eth0", absent), AddressError)
        self.assertNotIsInstance(failure.value, InterfaceMissing)
        self.assertEqual(str(failure.value), "cannot add 192.0.2.11/24 on eth0: "
                                             "RTNETLINK answers: Operation not permitted")
        self.assertEqual((failure.value.interface, failure.value.address), ("eth0", absent))

    def test_a_failed_remove_is_an_error(self):
        self.ip.answers["del"] = (b"", b"", 1)
        failure = self.failureResultOf(self.driver.remove("eth0", V4), AddressError)
        self.assertEqual(str(failure.value),
                         "cannot remove 192.0.2.10/24 on eth0: /sbin/ip exited with status 1")

    def test_a_failed_listing_after_a_failure_is_the_first_error(self):
        self.ip.answers["add"] = (b"", b"Error: something\n", 2)
        self.ip.answers["show"] = (b"", b"Error: listing broken\n", 2)
        failure = self.failureResultOf(self.driver.add("eth0", V4), AddressError)
        self.assertIn("Error: something", str(failure.value))

    def test_missing_interface(self):
        self.exists = False
        self.ip.answers["add"] = (b"", b'Cannot find device "eth9"\n', 1)
        failure = self.failureResultOf(self.driver.add("eth9", V4), InterfaceMissing)
        self.assertEqual(str(failure.value), "cannot add 192.0.2.10/24 on eth9: no interface "
                                             "named 'eth9' (Cannot find device \"eth9\")")
        self.ip.answers["show"] = (b"", b'Device "eth9" does not exist.\n', 1)
        self.failureResultOf(self.driver.present("eth9"), InterfaceMissing)

    def test_bad_arguments_fail_before_running_anything(self):
        self.failureResultOf(self.driver.add("eth0", "192.0.2.10"), AddressError)
        self.failureResultOf(self.driver.remove("bad/name", V4), AddressError)
        self.failureResultOf(self.driver.present("x" * 20), AddressError)
        self.assertEqual(self.ip.calls, [])


class UnsupportedDriverTests(unittest.TestCase):
    def test_every_change_fails_with_one_sentence(self):
        driver = UnsupportedDriver("openbsd7")
        failure = self.failureResultOf(driver.add("em0", V4), AddressError)
        self.assertEqual(str(failure.value),
                         "cannot add 192.0.2.10/24 on em0: floating addresses are not supported "
                         "on openbsd7 yet (Linux: ip; Solaris 11 and illumos: ipadm; "
                         "see doc/address.md)")
        self.failureResultOf(driver.remove("em0", V4), AddressError)
        self.failureResultOf(driver.present("em0"), AddressError)

    def test_default_driver(self):
        self.assertIsInstance(default_driver(reactor, "linux"), IpCommandDriver)
        unsupported = default_driver(reactor, "openbsd7")
        self.assertIsInstance(unsupported, UnsupportedDriver)
        self.assertIn("on openbsd7 yet", unsupported.message)

    def test_interface_exists(self):
        for driver in (IpCommandDriver(reactor, ip="/sbin/ip"), UnsupportedDriver("openbsd7")):
            self.assertTrue(driver.interface_exists("lo"))
            self.assertFalse(driver.interface_exists("nosuch0"))
            self.assertFalse(driver.interface_exists("bad/name"))


#: A fake ``ip``: records its arguments in $FAKE_IP_LOG, then acts per $FAKE_IP_MODE.
FAKE_IP = """\
#!/bin/sh
echo "$*" >> {log}
case "$(cat {mode})" in
ok) exit 0 ;;
absent) case "$*" in *del*) echo "Error: ipv4: Address not found." >&2; exit 2 ;; esac
        echo '2: eth0    inet 192.0.2.1/24 scope global eth0' ; exit 0 ;;
stuck) case "$*" in *del*) echo "RTNETLINK answers: Device or resource busy" >&2; exit 2 ;; esac
       echo '2: eth0    inet 192.0.2.10/24 scope global eth0' ; exit 0 ;;
hang) exec sleep 30 ;;
esac
"""


class FakeIpProgram:
    def __init__(self, test):
        directory = test.mktemp()
        os.mkdir(directory)
        self.log = os.path.join(directory, "log")
        self.mode = os.path.join(directory, "mode")
        self.path = os.path.join(directory, "ip")
        with open(self.path, "w") as f:
            f.write(FAKE_IP.format(log=self.log, mode=self.mode))
        os.chmod(self.path, 0o755)
        self.set("ok")

    def set(self, mode):
        with open(self.mode, "w") as f:
            f.write(mode)

    def calls(self):
        with open(self.log) as f:
            return f.read().splitlines()


class RemoveNowTests(unittest.TestCase):
    """The lease guard's blocking removal: True when the address is gone, never raises."""

    def setUp(self):
        self.ip = FakeIpProgram(self)

    def test_removed(self):
        self.assertTrue(ipcmd.remove_now("eth0", "192.0.2.10/24", ip=self.ip.path))
        self.assertEqual(self.ip.calls(), ["-4 addr del 192.0.2.10/24 dev eth0"])

    def test_not_there(self):
        self.ip.set("absent")
        self.assertEqual(ipcmd.try_remove("eth0", V4, ip=self.ip.path), (True, "was not there"))
        self.assertEqual(self.ip.calls(), ["-4 addr del 192.0.2.10/24 dev eth0",
                                           "-o addr show dev eth0"])

    def test_still_there(self):
        self.ip.set("stuck")
        self.assertEqual(ipcmd.try_remove("eth0", V4, ip=self.ip.path),
                         (False, "RTNETLINK answers: Device or resource busy"))

    def test_never_raises(self):
        self.ip.set("hang")
        gone, message = ipcmd.try_remove("eth0", V4, ip=self.ip.path, timeout=0.2)
        self.assertFalse(gone)
        self.assertIn("timed out", message)
        self.assertFalse(ipcmd.remove_now("eth0", V4, ip="/nonexistent/ip"))
        self.assertFalse(ipcmd.remove_now("eth0", "not an address", ip=self.ip.path))
        self.assertFalse(ipcmd.remove_now("bad/name", V4, ip=self.ip.path))
        self.assertFalse(ipcmd.remove_now(None, None))

    def test_loads_without_site_packages(self):
        """The guard imports ipcmd.py from its directory under python -I -S: stdlib only."""
        directory = os.path.dirname(ipcmd.__file__)
        script = (f"import sys; sys.path.append({directory!r}); import ipcmd; "
                  f"print(ipcmd.remove_now('eth0', '192.0.2.10/24', ip={self.ip.path!r}), "
                  "sorted(m for m in sys.modules if m.startswith(('clsd', 'twisted', 'zope'))))")
        result = subprocess.run([sys.executable, "-I", "-S", "-c", script],
                                capture_output=True, text=True, timeout=30)
        self.assertEqual((result.stdout, result.stderr), ("True []\n", ""))


class SpawnTests(unittest.TestCase):
    """The driver's default C{run}: the program spawned through the reactor, a clean environment."""

    @defer.inlineCallbacks
    def test_spawns_ip_through_the_reactor(self):
        ip = FakeIpProgram(self)
        driver = IpCommandDriver(reactor, ip=ip.path)
        self.patch(IpCommandDriver, "interface_exists", lambda _, interface: True)
        yield driver.add("eth0", V6)
        ip.set("stuck")
        found = yield driver.present("eth0")
        self.assertEqual(found, {ipaddress.ip_interface("192.0.2.10/24")})
        self.assertEqual(ip.calls(), ["-6 addr add 2001:db8::10/64 dev eth0 nodad",
                                      "-j addr show dev eth0", "-o addr show dev eth0"])
