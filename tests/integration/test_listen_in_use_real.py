"""``twistd -n clsd`` against an address that is already taken: one line, no traceback.

The peer port (``node.listen``) and the metrics port (``metrics.listen``)
are taken by a socket of the test; the daemon must exit with status 2 and
say, in a single line, which setting and which address, instead of
twistd's traceback. The admin listeners raise the same error (checked on
the service, which needs no SSH keys).
"""

import os
import socket
import subprocess
import sys

from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial import unittest

from clsd.listener import ListenError, ListeningService
from rig.addresses import reserve

from tests.support.peer_fixtures import TestCA


def occupy(host):
    """A listening socket on C{host}; returns (socket, port)."""
    sock = socket.socket()
    sock.bind((host, 0))
    sock.listen()
    return sock, sock.getsockname()[1]


class TakenAddressTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        lease = reserve(1)
        self.addCleanup(lease.release)
        self.host = lease.addresses[0]

    def start(self, config):
        with open(os.path.join(self.dir, "clsd.toml"), "w") as f:
            f.write(config)
        result = subprocess.run(
            [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
             "-n", "--pidfile=", "clsd", "--config", "clsd.toml"],
            cwd=self.dir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=50)
        return result.returncode, result.stdout.decode("utf-8", "replace")

    def assertOneLine(self, output, expected):
        lines = [line for line in output.splitlines() if "cannot" in line or "Error" in line
                 or "Traceback" in line or "File " in line]
        self.assertEqual(len(lines), 1, output)
        self.assertIn(expected, lines[0])
        self.assertNotIn("Traceback", output)
        # twistd's banner and our "starting" line, then the error: nothing more.
        self.assertLessEqual(len(output.splitlines()), 5, output)

    def test_metrics_port_taken(self):
        sock, port = occupy(self.host)
        self.addCleanup(sock.close)
        code, output = self.start(
            f'[node]\nname = "alpha"\ndata_dir = "data"\n'
            f'[metrics]\nlisten = "{self.host}:{port}"\n')
        self.assertEqual(code, 2, output)
        self.assertOneLine(
            output, "clsd: cannot start: clsd.toml: "
            f"metrics.listen: cannot listen "
            f"on {self.host}:{port}: address already in use")

    def test_peer_port_taken(self):
        sock, port = occupy(self.host)
        self.addCleanup(sock.close)
        ca, cert, key = TestCA().write_files(os.path.join(self.dir, "certs"), "alpha")
        code, output = self.start(
            f'[node]\nname = "alpha"\ndata_dir = "data"\nlisten = "{self.host}:{port}"\n'
            f'[tls]\nca = "{ca}"\ncert = "{cert}"\nkey = "{key}"\n')
        self.assertEqual(code, 2, output)
        self.assertOneLine(
            output, "clsd: cannot start: clsd.toml: "
            f"node.listen: cannot listen "
            f"on {self.host}:{port}: address already in use")


    def test_a_floating_address_on_a_missing_interface(self):
        ca, cert, key = TestCA().write_files(os.path.join(self.dir, "certs"), "alpha")
        code, output = self.start(
            f'[node]\nname = "alpha"\ndata_dir = "data"\nlisten = "{self.host}:7000"\n'
            f'[tls]\nca = "{ca}"\ncert = "{cert}"\nkey = "{key}"\n'
            '[quorum]\nvoters = ["alpha"]\n'
            '[[service]]\nname = "web"\ncommand = ["/bin/true"]\n'
            '[[cluster]]\nid = "A"\nservice = "web"\naddress = ["192.0.2.10/24"]\n'
            'interface = "clsd-noif0"\n')
        self.assertEqual(code, 2, output)
        self.assertOneLine(output, "clsd: cannot start: clsd.toml: cluster[0].interface: "
                                   "there is no interface 'clsd-noif0' on this machine "
                                   "(interfaces: ")


class ListeningServiceTests(unittest.TestCase):
    def test_admin_listener_names_its_setting(self):
        from clsd.admin.service import ListenerService

        sock, port = occupy("127.0.0.1")
        self.addCleanup(sock.close)
        from twisted.internet import reactor

        service = ListenerService("ssh", TCP4ServerEndpoint(reactor, port, interface="127.0.0.1"),
                                  audit=None, setting="admin.ssh")
        e = self.assertRaises(ListenError, service.startService)
        self.assertEqual(str(e), f"admin.ssh: cannot listen on 127.0.0.1:{port}: "
                                 "address already in use")

    def test_other_failures_are_not_hidden(self):
        class Broken:
            def listen(self, factory):
                from twisted.internet import defer

                return defer.fail(RuntimeError("not a listen error"))

        service = ListeningService(Broken())
        self.assertRaises(RuntimeError, service.startService)

