"""Security negatives against a running 3-node cluster of real daemons (issue 7).

An intruder on 127.0.0.x (an address of the rig's own reserved block) dials
the owner's peer port with: a certificate from another CA, an expired
certificate from the cluster CA, a valid certificate whose hello claims
another node's name, no client certificate, plaintext, and floods of 10,000
malformed lines over TLS (valid certificate) and over plaintext. Each must be
refused (the daemon closes the connection), counted in the daemon's
``clsd_peer_connections_rejected_total{reason=...}`` (scraped from its
``[metrics]`` endpoint), and change nothing: the same service instance owns
the cluster under the same epoch, no member changes state, every daemon is
the same process and no log shows a traceback.
"""

import datetime
import json
import os
import socket
import ssl
import time

from twisted.trial import unittest

from clsd.certs import store
from clsd.certs.authority import create_authority, issue_node_certificate
from rig.failover import MEMBER_STATE
from rig.metered import MeteredCluster
from rig.faults.cleanup import Cleanups
from clsd.polling import wait_for

DAY = datetime.timedelta(days=1)
#: The intruder's lines: many, and each one garbage.
FLOOD_LINES = 10_000
#: How long the daemon has to close a refused connection.
CLOSE_TIMEOUT = 10.0
#: Protocol version and message shape of a hello (clsd.wire.core.messages.HELLO).
HELLO = {"v": 1, "type": "hello", "protocol": 1, "generation": 1, "settings": "x"}


def _now():
    return datetime.datetime.now(datetime.UTC)


class Intruder:
    """Dials a node from its own loopback address; blocking sockets with timeouts."""

    def __init__(self, address, directory):
        self.address = address
        self.directory = directory
        os.makedirs(directory, exist_ok=True)

    def write(self, name, pair):
        cert, key = store.node_paths(self.directory, name)
        store.write_pair(pair, cert, key, force=True)
        return cert, key

    def connect(self, target):
        return socket.create_connection(target, timeout=CLOSE_TIMEOUT,
                                        source_address=(self.address, 0))

    def tls(self, target, cert=None, key=None):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # an intruder does not care who answers
        if cert is not None:
            context.load_cert_chain(cert, key)
        return context.wrap_socket(self.connect(target))

    @staticmethod
    def send_and_wait_close(sock, data):
        """Send C{data} (the daemon may cut us off midway) and read until it closes.

        @return: what ended it (``closed``, or the error's name); raises
            AssertionError when the daemon keeps the connection open.
        """
        try:
            try:
                sock.sendall(data)
            except (OSError, ssl.SSLError):
                pass  # cut off while we were still writing: read why below
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while time.monotonic() < deadline:
                try:
                    if not sock.recv(65536):
                        return "closed"
                except TimeoutError:
                    break
                except (OSError, ssl.SSLError) as e:
                    return type(e).__name__
            raise AssertionError(f"the daemon kept the connection open for {CLOSE_TIMEOUT} s")
        finally:
            sock.close()


class SecurityNegativeTests(unittest.TestCase):
    timeout = 180

    def setUp(self):
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.cluster = MeteredCluster(self.mktemp(), cleanups=self.cleanups)
        self.cluster_rig, self.launcher = self.cluster.rig, self.cluster.launcher
        self.nodes = self.cluster.nodes
        self.addCleanup(self.launcher.teardown)
        self.intruder = Intruder(self.cluster.spare_addresses(1)[0],
                                 os.path.abspath(self.mktemp()))
        self.cluster.start()

    # -- reading the cluster from outside ---------------------------------------------

    def rejected(self, node):
        return self.cluster.by_label(node, "clsd_peer_connections_rejected_total", "reason")

    def established(self, node):
        return self.cluster.scrape(node)[("clsd_peer_connections_established_total", ())]

    def state(self):
        """Owners with their epochs and instances, daemon pids: all that must not move."""
        running = [(i.cluster, i.node, i.epoch, i.instance)
                   for i in self.launcher.running_instances()]
        pids = {name: self.launcher.node(name).pid for name in self.nodes}
        return sorted(running), pids

    # -- the attacks ------------------------------------------------------------------------

    def target(self):
        return self.cluster_rig.peer_address(self.launcher, "alpha")

    def assert_refused(self, attack, reason):
        """Run C{attack()}; the owner must close it and count one more C{reason}."""
        before = self.rejected("alpha")
        established = self.established("alpha")
        ended = attack()
        self.assertIn(ended, ("closed", "SSLError", "SSLEOFError", "SSLZeroReturnError",
                              "ConnectionResetError", "BrokenPipeError"))

        def counted():
            return self.rejected("alpha").get(reason, 0) >= before.get(reason, 0) + 1

        try:
            wait_for(counted, timeout=10, what=f"rejected{{reason={reason}}} to grow")
        except Exception:
            self.fail(f"{reason} not counted: before {before}, after {self.rejected('alpha')}")
        self.assertEqual(self.established("alpha"), established,
                         "the intruder's connection was established")

    def test_intruders_are_refused_counted_and_change_nothing(self):
        offsets = {name: len(self.launcher.log_text(name)) for name in self.nodes}
        state = self.state()
        intruder, target = self.intruder, self.target()
        ca = store.load_authority(self.cluster_rig.ca_dir(self.launcher))
        hello_as_beta = (json.dumps({**HELLO, "name": "beta",
                                     "advertise": f"{intruder.address}:1"}) + "\n").encode()
        garbage = b"".join(b"garbage %d {{{ not json\n" % i for i in range(FLOOD_LINES))

        # A certificate from another CA.
        other = intruder.write("mallory", issue_node_certificate(create_authority("evil CA"),
                                                                 "mallory"))
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.tls(target, *other), hello_as_beta),
            "tls-unknown-ca")
        # An expired certificate from the cluster's own CA.
        expired = intruder.write("expired", issue_node_certificate(
            ca, "expired", not_before=_now() - 10 * DAY, not_after=_now() - DAY))
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.tls(target, *expired), hello_as_beta),
            "tls-expired")
        # A valid certificate for another name, whose hello claims to be beta.
        valid = intruder.write("mallory", issue_node_certificate(ca, "mallory"))
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.tls(target, *valid), hello_as_beta),
            "name-mismatch")
        # TLS without a client certificate.
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.tls(target), hello_as_beta),
            "tls-no-client-cert")
        # Plaintext: a hello without TLS.
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.connect(target), hello_as_beta),
            "tls-plaintext")
        # Floods of malformed lines: over TLS with a valid certificate, and plaintext.
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.tls(target, *valid), garbage),
            "malformed-json")
        self.assert_refused(
            lambda: intruder.send_and_wait_close(intruder.connect(target), garbage),
            "tls-plaintext")

        # Nothing moved: same owner, instance and epoch, same daemons, nobody
        # suspected, no traceback. Wait more than a lease so a late effect shows.
        time.sleep(2 * self.cluster_rig.timing.lease_seconds)
        self.assertEqual(self.state(), state)
        for name in self.nodes:
            changes = MEMBER_STATE.findall(self.launcher.log_text(name)[offsets[name]:])
            self.assertEqual(changes, [], f"{name} saw members change during the attacks")
        self.assertEqual(self.launcher.log_problems(), [])
        report = self.launcher.check()
        self.assertEqual([v.describe() for v in report.violations], [])
