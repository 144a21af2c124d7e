"""The SSH host key: made once with mode 0600, kept, refused when unsafe or unreadable."""

import os
import shutil
import stat
import subprocess

from twisted.trial import unittest

from clsd.admin.hostkey import HostKeyError, fingerprint, load_or_create_host_key
from tests.support.admin_rig import new_ed25519_key


class HostKeyTests(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        self.path = os.path.join(self.dir, "data", "ssh_host_ed25519_key")

    def test_created_once_then_kept(self):
        key = load_or_create_host_key(self.path)
        self.assertEqual(key.type(), "Ed25519")
        self.assertFalse(key.isPublic())
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.dirname(self.path)).st_mode), 0o700)
        self.assertEqual(load_or_create_host_key(self.path), key)
        # No temporary file left behind; the public half published for known_hosts.
        self.assertEqual(sorted(os.listdir(os.path.dirname(self.path))),
                         ["ssh_host_ed25519_key", "ssh_host_ed25519_key.pub"])

    def test_existing_key_is_used(self):
        os.makedirs(os.path.dirname(self.path))
        mine = new_ed25519_key()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(mine.toString("openssh"))
        self.assertEqual(load_or_create_host_key(self.path), mine)

    def test_group_readable_key_refused(self):
        load_or_create_host_key(self.path)
        os.chmod(self.path, 0o640)
        with self.assertRaises(HostKeyError) as caught:
            load_or_create_host_key(self.path)
        self.assertIn("permissions 0640 are too open", str(caught.exception))

    def test_garbage_refused(self):
        os.makedirs(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(b"not a key\n")
        with self.assertRaises(HostKeyError) as caught:
            load_or_create_host_key(self.path)
        self.assertIn("not an unencrypted private key", str(caught.exception))
        self.assertIn(self.path, str(caught.exception))

    def test_public_key_refused(self):
        os.makedirs(os.path.dirname(self.path))
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(new_ed25519_key().public().toString("openssh"))
        with self.assertRaises(HostKeyError) as caught:
            load_or_create_host_key(self.path)
        self.assertIn("public key", str(caught.exception))

    def test_fingerprint_matches_ssh_keygen(self):
        key = load_or_create_host_key(self.path)
        printed = fingerprint(key)
        self.assertTrue(printed.startswith("SHA256:"))
        self.assertEqual(len(printed), len("SHA256:") + 43)
        keygen = shutil.which("ssh-keygen")
        if keygen is None:
            if os.environ.get("CI") == "true":
                self.fail("ssh-keygen is not installed; CI=true requires it")
            raise unittest.SkipTest("ssh-keygen is not installed (openssh-client)")
        output = subprocess.run([keygen, "-l", "-f", self.path + ".pub"], check=True,
                                capture_output=True, text=True, timeout=30).stdout
        self.assertEqual(output.split()[1], printed)
