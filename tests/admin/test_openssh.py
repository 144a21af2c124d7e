"""The SSH admin listener driven by the real OpenSSH client, as operators use it.

Needs ``ssh`` (Debian's openssh-client; ``.ci/run`` installs it). Without
it these tests skip, except under CI=true where they fail.
"""

import json
import os
import shutil

from twisted.internet import defer, protocol
from twisted.trial import unittest

from clsd.admin import commands
from tests.support.admin_rig import AdminRig, write_private_key

#: One ssh run: connect, key exchange, one command. Generous for a loaded box.
SSH_TIMEOUT = 30.0


def require_tool(testcase, name):
    """The path of C{name}; skip without it, but fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package openssh-client)"
        if os.environ.get("CI") == "true":
            testcase.fail(message + "; CI=true requires it")
        raise unittest.SkipTest(message)
    return path


class _Collect(protocol.ProcessProtocol):
    def __init__(self, stdin):
        self.stdin = stdin
        self.out = b""
        self.err = b""
        self.done = defer.Deferred()

    def connectionMade(self):
        if self.stdin:
            self.transport.write(self.stdin)
        self.transport.closeStdin()

    def outReceived(self, data):
        self.out += data

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        self.done.callback((reason.value.exitCode, self.out, self.err))


class OpenSSHTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.ssh = require_tool(self, "ssh")
        self.rig = yield AdminRig(self).start()
        self.admin_key_file = write_private_key(self.rig.path("admin_id"), self.rig.admin_key)
        self.monitor_key_file = write_private_key(self.rig.path("monitor_id"),
                                                  self.rig.monitor_key)
        self.stranger_key_file = write_private_key(self.rig.path("stranger_id"),
                                                   self.rig.stranger_key)
        self.home = self.rig.path("home")
        os.makedirs(self.home)

    def run_ssh(self, key_file, *command, options=(), stdin=b"", tty=False):
        """Run ssh against the rig: a Deferred C{(exit code, stdout, stderr)}."""
        host, port = self.rig.ssh_address
        argv = [
            self.ssh, "-F", "/dev/null", "-p", str(port),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
            "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=20",
        ]
        if key_file is not None:
            argv += ["-i", key_file]
        argv += list(options)
        argv += ["-tt"] if tty else ["-T"]
        argv += [f"admin@{host}", *command]
        collect = _Collect(stdin)
        env = {"HOME": self.home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self.rig.reactor.spawnProcess(collect, self.ssh, argv, env=env)
        return collect.done.addTimeout(SSH_TIMEOUT, self.rig.reactor)

    @defer.inlineCallbacks
    def test_every_read_command_json(self):
        for name in ("status", "members", "clusters", "services", "history", "help"):
            code, out, err = yield self.run_ssh(self.admin_key_file, name, "--json")
            self.assertEqual(code, 0, (name, err))
            data = json.loads(out)
            if name == "status":
                self.assertEqual(data["node"], "alpha")
                self.assertEqual(data["quorum"]["have_quorum"], True)
                self.assertEqual(data["clusters"][0]["epoch"], 7)
                self.assertEqual(data["services"][0]["pid"], 1234)
            elif name == "help":
                self.assertEqual(len(data["commands"]), len(commands.COMMANDS))
            else:
                self.assertTrue(data[name], name)

    @defer.inlineCallbacks
    def test_every_mutating_command(self):
        for line, message in [
            (["move", "A", "beta"], b"cluster A moved to beta (epoch 8)\n"),
            (["pause", "B"], b"cluster B paused\n"),
            (["resume", "B"], b"cluster B resumed\n"),
            (["standby"], b"node alpha is now a standby\n"),
            (["unstandby"], b"node alpha may own clusters again\n"),
            (["reset", "db"], b"service db reset\n"),
            (["force-remove", "gamma"], b"member gamma removed\n"),
            (["reload"], b"configuration reloaded: no changes\n"),
            (["leave"], b"node alpha is leaving\n"),
        ]:
            code, out, err = yield self.run_ssh(self.admin_key_file, *line)
            self.assertEqual((code, out), (0, message), (line, err))
        code, out, err = yield self.run_ssh(self.admin_key_file, "clusters", "--json")
        self.assertEqual(json.loads(out)["clusters"][0]["owners"], ["beta"])

    @defer.inlineCallbacks
    def test_exit_status_and_reason_reach_the_operator(self):
        code, out, err = yield self.run_ssh(self.admin_key_file, "pause", "nope")
        self.assertEqual((code, out), (commands.EXIT_FAILED, b""))
        self.assertIn(b"error: no cluster named 'nope'\n", err)
        code, out, err = yield self.run_ssh(self.admin_key_file, "bogus")
        self.assertEqual(code, commands.EXIT_USAGE)
        self.assertIn(b"unknown command 'bogus'", err)
        self.assertIn(b"force-remove NODE", out)

    @defer.inlineCallbacks
    def test_monitor_key_is_read_only(self):
        code, out, err = yield self.run_ssh(self.monitor_key_file, "clusters")
        self.assertEqual(code, 0, err)
        self.assertIn(b"CLUSTER  STATE", out)
        code, out, err = yield self.run_ssh(self.monitor_key_file, "move", "A", "beta")
        self.assertEqual(code, commands.EXIT_DENIED)
        self.assertIn(b"needs an admin key", err)
        self.assertNotIn("move", [name for name, args in self.rig.backend.calls])

    @defer.inlineCallbacks
    def test_unknown_key_refused(self):
        code, out, err = yield self.run_ssh(self.stranger_key_file, "status")
        self.assertEqual(code, 255)
        self.assertIn(b"Permission denied (publickey)", err)
        self.assertEqual(self.rig.audit("login"), [])
        self.assertTrue(self.rig.audit("refused", method="publickey"))

    @defer.inlineCallbacks
    def test_password_refused(self):
        code, out, err = yield self.run_ssh(
            None, "status",
            options=["-o", "PubkeyAuthentication=no",
                     "-o", "PreferredAuthentications=password,keyboard-interactive"],
        )
        self.assertEqual(code, 255)
        # The server offers public keys and nothing else.
        self.assertIn(b"Permission denied (publickey)", err)
        self.assertEqual(self.rig.audit("login"), [])

    @defer.inlineCallbacks
    def test_interactive_shell(self):
        code, out, err = yield self.run_ssh(
            self.admin_key_file, stdin=b"help\rservices\rexit\r", tty=True
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"clsd> ", out)
        self.assertIn(b"force-remove NODE", out)
        self.assertIn(b"SERVICE  STATE     PID  RESTARTS", out)
        self.assertEqual([e["command"] for e in self.rig.audit("command")], ["help", "services"])

    @defer.inlineCallbacks
    def test_manhole_over_ssh_t(self):
        code, out, err = yield self.run_ssh(
            self.admin_key_file, "manhole", stdin=b"print(6 * 7 * 1000 + 1)\r\x04",
            tty=True,
        )
        self.assertEqual(code, 0, err)
        self.assertIn(b"42001", out)
