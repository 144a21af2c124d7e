"""``twistd -n clsd --config F`` with unusable [tls] files: exit non-zero, one line, no traceback.

Real twistd processes (the venv's), a node listening on loopback; each case
breaks one thing an operator can get wrong.  The process must exit by itself
within a bound, before listening, naming the file at fault.
"""

import datetime
import os
import subprocess

from twisted.trial import unittest

from clsd.certs.authority import issue_node_certificate
from clsd.certs.store import (
    init_authority, issue_node, load_authority, node_paths, write_pair,
)
from rig import tomlgen
from rig.launcher import free_port, twistd_command

#: twistd's start-up and a certificate check, on a loaded machine.
EXIT_BOUND = 60.0


class BadTLSTests(unittest.TestCase):
    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        self.certs = os.path.join(self.base, "certs")
        init_authority(self.certs)
        issue_node(self.certs, "alpha", ip_addresses=["127.0.0.1"])
        issue_node(self.certs, "beta", ip_addresses=["127.0.0.1"])
        self.ca = os.path.join(self.certs, "ca.pem")
        self.cert, self.key = node_paths(self.certs, "alpha")

    def write_config(self, *, ca=None, cert=None, key=None):
        path = os.path.join(self.base, "clsd.toml")
        with open(path, "w") as f:
            f.write(tomlgen.dumps({
                "node": {"name": "alpha", "data_dir": os.path.join(self.base, "data"),
                         "listen": f"127.0.0.1:{free_port('127.0.0.1')}"},
                "tls": {"ca": ca or self.ca, "cert": cert or self.cert, "key": key or self.key},
            }))
        return path

    def run_daemon(self, **files):
        """Run twistd with these [tls] files; (status, output lines)."""
        path = self.write_config(**files)
        result = subprocess.run(
            [*twistd_command(), "-n", "--pidfile", "", "--logfile", "-", "clsd",
             "--config", path],
            cwd=self.base, stdin=subprocess.DEVNULL, capture_output=True,
            timeout=EXIT_BOUND)
        output = (result.stdout + result.stderr).decode("utf-8", "replace")
        return result.returncode, output.strip().splitlines()

    def assertRefused(self, expected_in_line, **files):
        status, lines = self.run_daemon(**files)
        self.assertNotEqual(status, 0, lines)
        self.assertEqual(len(lines), 1, lines)
        self.assertNotIn("Traceback", lines[0])
        self.assertIn("configuration error", lines[0])
        for text in expected_in_line:
            self.assertIn(text, lines[0])
        return lines[0]

    def test_missing_file(self):
        missing = os.path.join(self.base, "nosuch.pem")
        self.assertRefused(["tls.cert", missing], cert=missing)

    def test_key_of_another_certificate(self):
        _, other_key = node_paths(self.certs, "beta")
        self.assertRefused(["tls.key", other_key], key=other_key)

    def test_certificate_for_another_name(self):
        cert, key = node_paths(self.certs, "beta")
        self.assertRefused(["tls.cert", cert, "'beta'", "'alpha'"], cert=cert, key=key)

    def test_expired_certificate(self):
        authority = load_authority(self.certs)
        now = datetime.datetime.now(datetime.UTC)
        pair = issue_node_certificate(
            authority, "alpha", ip_addresses=["127.0.0.1"],
            not_before=now - datetime.timedelta(days=30),
            not_after=now - datetime.timedelta(days=1))
        out = os.path.join(self.base, "expired")
        os.makedirs(out)
        cert, key = node_paths(out, "alpha")
        write_pair(pair, cert, key)
        self.assertRefused(["tls.cert", cert, "expired"], cert=cert, key=key)

    def test_good_files_start(self):
        """The control: the same config with good files gets past the check (and listens)."""
        path = self.write_config()
        process = subprocess.Popen(
            [*twistd_command(), "-n", "--pidfile", "", "--logfile", "-", "clsd",
             "--config", path],
            cwd=self.base, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT)
        try:
            with self.assertRaises(subprocess.TimeoutExpired):
                process.wait(3.0)
        finally:
            process.terminate()
            output, _ = process.communicate(timeout=EXIT_BOUND)
        self.assertNotIn(b"configuration error", output)
