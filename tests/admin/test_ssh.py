"""The SSH admin listener, driven by an in-process conch client over 127.0.0.1.

Real sockets on loopback with trial's reactor; every step is bounded by the
client's timeouts.
"""

import json
import os
import stat

from twisted.conch.error import ConchError
from twisted.conch.ssh import keys
from twisted.conch.ssh.channel import SSHChannel
from twisted.internet import defer
from twisted.trial import unittest

from clsd.admin import commands
from clsd.admin.fake import FakeBackend
from clsd.admin.hostkey import HostKeyError, fingerprint
from clsd.admin.service import make_admin_service
from clsd.admin.ssh import AdminSSHFactory
from clsd.config.admin import AdminConfig
from clsd.admin.client import AuthenticationRefused, connect
from tests.support.admin_rig import AdminRig, new_ed25519_key, write_key_file

READ_COMMANDS = ("status", "members", "clusters", "services", "history", "help")


class SSHCommandTests(unittest.TestCase):
    """Exec requests: ``ssh HOST CMD``, as admin and as monitor."""

    @defer.inlineCallbacks
    def setUp(self):
        self.rig = yield AdminRig(self).start()

    @defer.inlineCallbacks
    def login(self, key):
        conn = yield connect(self.rig.reactor, self.rig.ssh_address, key=key)
        self.addCleanup(conn.close)
        return conn

    @defer.inlineCallbacks
    def test_every_read_command_json(self):
        conn = yield self.login(self.rig.admin_key)
        for name in READ_COMMANDS:
            result = yield conn.run(f"{name} --json")
            self.assertEqual(result.status, 0, (name, result))
            self.assertEqual(result.stderr, b"", name)
            data = json.loads(result.stdout)
            if name == "status":
                self.assertEqual(set(data), {"node", "members", "clusters", "services", "quorum",
                                             "protocol"})
                self.assertEqual(data["node"], "alpha")
                self.assertEqual(data["quorum"],
                                 {"voters": ["alpha", "beta", "witness"], "have_quorum": True,
                                  "previous_voters": [], "voters_apart": [],
                                  "voter_error": None})
                self.assertIn({"name": "beta", "state": "alive", "address": "127.0.0.12:7400",
                               "version": "0.1.0", "protocols": [2, 3]}, data["members"])
                old_fields = ("id", "owners", "epoch", "state", "addresses", "members")
                self.assertIn({"id": "A", "owners": ["alpha"], "epoch": 7, "state": "running",
                               "addresses": [], "members": []},
                              [{k: c[k] for k in old_fields} for c in data["clusters"]])
                self.assertIn("running on alpha", [c["summary"] for c in data["clusters"]])
                self.assertIn({"name": "web", "state": "running", "pid": 1234, "restarts": 0,
                               "type": "simple", "main_pid": None, "processes": None,
                               "last_action": None}, data["services"])
            elif name == "help":
                self.assertIn("force-remove", [c["name"] for c in data["commands"]])
            else:
                self.assertEqual(list(data), [name], name)
                self.assertTrue(data[name], name)

    @defer.inlineCallbacks
    def test_human_output_is_an_aligned_table(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("clusters")
        self.assertEqual(result.status, 0)
        self.assertEqual(result.text.splitlines(), [
            "CLUSTER  STATE             OWNERS  EPOCH  THIS NODE",
            "A        running on alpha  alpha       7  owner",
            "B        running on beta   beta        3  standby #1",
        ])

    @defer.inlineCallbacks
    def test_every_mutating_command(self):
        conn = yield self.login(self.rig.admin_key)
        lines = {
            "standby beta": "node beta is now a standby",
            "unstandby beta": "node beta may own clusters again",
            "move A beta": "cluster A moved to beta (epoch 8)",
            "pause B": "cluster B paused",
            "resume B": "cluster B resumed",
            "reset db": "service db reset",
            "force-remove gamma": "member gamma removed",
            "reload": "configuration reloaded: no changes",
            "leave": "node alpha is leaving",
        }
        for line, message in lines.items():
            result = yield conn.run(line)
            self.assertEqual((result.status, result.text, result.stderr),
                             (0, message + "\n", b""), line)
        result = yield conn.run("clusters --json")
        cluster = json.loads(result.stdout)["clusters"][0]
        self.assertEqual({k: cluster[k] for k in ("id", "owners", "epoch", "state", "addresses",
                                                    "members")},
                         {"id": "A", "owners": ["beta"], "epoch": 8, "state": "running",
                          "addresses": [], "members": []})
        self.assertEqual((cluster["summary"], cluster["role_text"]),
                         ("running on beta", "ineligible: not placed"))  # alpha has left
        result = yield conn.run("standby --json")
        self.assertEqual(json.loads(result.stdout),
                         {"ok": True, "message": "node alpha is now a standby"})
        called = [name for name, args in self.rig.backend.calls]
        for name in ("standby", "unstandby", "move", "pause", "resume", "reset",
                     "force_remove", "reload", "leave"):
            self.assertIn(name, called)

    @defer.inlineCallbacks
    def test_failure_is_one_line_and_nonzero(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("move A nowhere")
        self.assertEqual(result.status, commands.EXIT_FAILED)
        self.assertEqual(result.stderr, b"error: no member named 'nowhere'\n")
        self.assertEqual(result.stdout, b"")
        result = yield conn.run("move A nowhere --json")
        self.assertEqual(result.status, commands.EXIT_FAILED)
        self.assertEqual(json.loads(result.stdout),
                         {"ok": False, "error": "no member named 'nowhere'"})

    @defer.inlineCallbacks
    def test_unknown_command_lists_the_commands(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("frobnicate")
        self.assertEqual(result.status, commands.EXIT_USAGE)
        self.assertIn(b"unknown command 'frobnicate'", result.stderr)
        for name in commands.COMMANDS:
            self.assertIn(name, result.text)

    @defer.inlineCallbacks
    def test_wrong_arguments(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("move A")
        self.assertEqual(result.status, commands.EXIT_USAGE)
        self.assertIn(b"usage: move CLUSTER NODE", result.stderr)

    @defer.inlineCallbacks
    def test_monitor_reads_but_may_not_change(self):
        conn = yield self.login(self.rig.monitor_key)
        result = yield conn.run("status --json")
        self.assertEqual(result.status, 0)
        self.assertEqual(json.loads(result.stdout)["node"], "alpha")
        for line in ("move A beta", "pause A", "leave", "reload", "manhole", "standby"):
            result = yield conn.run(line)
            self.assertEqual(result.status, commands.EXIT_DENIED, line)
            self.assertIn(b"needs an admin key", result.stderr)
            self.assertIn(b"read-only", result.stderr)
        self.assertEqual([name for name, args in self.rig.backend.calls], ["status"])

    @defer.inlineCallbacks
    def test_manhole_exec_without_terminal(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("manhole")
        self.assertEqual(result.status, commands.EXIT_USAGE)
        self.assertIn(b"needs a terminal", result.stderr)

    @defer.inlineCallbacks
    def test_manhole_exec_with_terminal(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("manhole", pty=True, stdin=b"print(node * 2)\r\x04")
        self.assertEqual(result.status, 0, result)
        self.assertIn(b"alphaalpha", result.stdout)
        self.assertEqual([e["code"] for e in self.rig.audit("manhole")], ["print(node * 2)"])

    @defer.inlineCallbacks
    def test_watch_exec_with_terminal_ends_on_ctrl_c(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("status --watch", pty=True, stdin=b"\x03")
        self.assertEqual(result.status, 0, result)
        self.assertIn(b"\x1b[2J", result.stdout)  # the screen is cleared for each frame
        self.assertIn(b"status --watch  ", result.stdout)
        self.assertIn(b"running on alpha", result.stdout)

    @defer.inlineCallbacks
    def test_watch_exec_without_terminal_is_plain_and_ends_on_q(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("members --watch", stdin=b"q\n")
        self.assertEqual(result.status, 0, result)
        self.assertNotIn(b"\x1b", result.stdout)
        self.assertIn(b"members --watch  ", result.stdout)
        self.assertIn(b"MEMBER   STATE  ADDRESS", result.stdout)

    @defer.inlineCallbacks
    def test_manhole_namespace_failure_is_reported(self):
        def broken():
            raise RuntimeError("no namespace today")

        self.rig.backend.manhole_namespace = broken
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("manhole", pty=True)
        self.assertEqual(result.status, commands.EXIT_FAILED)
        self.assertIn(b"the manhole is not available", result.stderr)
        [crash] = [e for e in self.rig.events if e.get("log_failure") is not None]
        self.assertIn("no namespace today", crash["log_failure"].getErrorMessage())

    @defer.inlineCallbacks
    def test_input_to_an_exec_command_is_ignored(self):
        conn = yield self.login(self.rig.admin_key)
        result = yield conn.run("members --json", stdin=b"leave\n")
        self.assertEqual(result.status, 0)
        self.assertIn("members", json.loads(result.stdout))
        self.assertNotIn("leave", [name for name, args in self.rig.backend.calls])

    @defer.inlineCallbacks
    def test_audit_log_names_who_from_where_what_result(self):
        conn = yield self.login(self.rig.admin_key)
        yield conn.run("pause A")
        yield conn.run("move A nowhere")
        key = fingerprint(self.rig.admin_key)
        [login] = self.rig.audit("login", credential=key)
        self.assertEqual((login["role"], login["via"], login["user"]), ("admin", "ssh", "admin"))
        self.assertTrue(login["peer"].startswith("127.0.0.1:"), login["peer"])
        [ok] = self.rig.audit("command", command="pause A")
        self.assertEqual((ok["status"], ok["credential"], ok["role"], ok["peer"]),
                         (0, key, "admin", login["peer"]))
        [bad] = self.rig.audit("command", command="move A nowhere")
        self.assertEqual((bad["status"], bad["reason"]),
                         (commands.EXIT_FAILED, "error: no member named 'nowhere'"))
        logout = self.rig.next_audit("logout")
        conn.close()
        event = yield logout
        self.assertEqual((event["credential"], event["peer"]), (key, login["peer"]))

    @defer.inlineCallbacks
    def test_port_forwarding_is_refused(self):
        conn = yield self.login(self.rig.admin_key)
        channel = SSHChannel(conn=conn)
        channel.name = b"direct-tcpip"
        refused = defer.Deferred()
        channel.openFailed = lambda reason: refused.callback(str(reason))
        channel.channelOpen = lambda data: refused.errback(AssertionError("channel opened"))
        conn.openChannel(channel)
        reason = yield refused.addTimeout(10, self.rig.reactor)
        self.assertIn("unknown channel", reason)
        # conch logs the refused channel type with a traceback on the server side.
        self.assertEqual(len(self.flushLoggedErrors(ConchError)), 1)


class SSHAuthenticationTests(unittest.TestCase):
    @defer.inlineCallbacks
    def setUp(self):
        self.rig = yield AdminRig(self).start()

    @defer.inlineCallbacks
    def test_unknown_key_refused(self):
        with self.assertRaises(AuthenticationRefused) as caught:
            yield connect(self.rig.reactor, self.rig.ssh_address, key=self.rig.stranger_key)
        self.assertEqual(caught.exception.methods, {b"publickey"})
        key = fingerprint(self.rig.stranger_key)
        refusals = self.rig.audit("refused", method="publickey")
        self.assertTrue(refusals)
        self.assertIn(key, refusals[-1]["reason"])
        self.assertTrue(refusals[-1]["peer"].startswith("127.0.0.1:"))
        self.assertEqual(self.rig.audit("login"), [])

    @defer.inlineCallbacks
    def test_password_refused(self):
        with self.assertRaises(AuthenticationRefused) as caught:
            yield connect(self.rig.reactor, self.rig.ssh_address, password="hunter2")
        self.assertTrue(caught.exception.password_refused)
        self.assertEqual(caught.exception.methods, {b"publickey"})
        [refusal] = self.rig.audit("refused", method="password")
        self.assertIn("public keys only", refusal["reason"])
        self.assertEqual(self.rig.audit("login"), [])

    @defer.inlineCallbacks
    def test_key_files_are_reread_at_each_login(self):
        with self.assertRaises(AuthenticationRefused):
            yield connect(self.rig.reactor, self.rig.ssh_address, key=self.rig.stranger_key)
        write_key_file(self.rig.monitor_keys, self.rig.monitor_key, self.rig.stranger_key)
        conn = yield connect(self.rig.reactor, self.rig.ssh_address, key=self.rig.stranger_key)
        self.addCleanup(conn.close)
        result = yield conn.run("pause A")
        self.assertEqual(result.status, commands.EXIT_DENIED)
        write_key_file(self.rig.monitor_keys, self.rig.monitor_key)
        with self.assertRaises(AuthenticationRefused):
            yield connect(self.rig.reactor, self.rig.ssh_address, key=self.rig.stranger_key)


class SSHShellTests(unittest.TestCase):
    """The interactive shell on a pty, and the line shell without one."""

    @defer.inlineCallbacks
    def setUp(self):
        self.rig = yield AdminRig(self).start()

    @defer.inlineCallbacks
    def shell(self, key, **kwargs):
        conn = yield connect(self.rig.reactor, self.rig.ssh_address, key=key)
        self.addCleanup(conn.close)
        channel = yield conn.shell(**kwargs)
        return channel

    @defer.inlineCallbacks
    def test_prompt_help_editing_history_exit(self):
        shell = yield self.shell(self.rig.admin_key)
        at = yield shell.wait_for(b"clsd> ")
        shell.send(b"help\r")
        at = yield shell.wait_for(b"force-remove NODE", after=at)
        at = yield shell.wait_for(b"clsd> ", after=at)
        # Line editing: a typo, backspace, the rest of the word.
        shell.send(b"clusterx\x7fs\r")
        at = yield shell.wait_for(b"CLUSTER  STATE", after=at)
        at = yield shell.wait_for(b"clsd> ", after=at)
        # History: up arrow recalls "clusters", enter runs it again.
        shell.send(b"\x1b[A\r")
        at = yield shell.wait_for(b"CLUSTER  STATE", after=at)
        yield shell.wait_for(b"clsd> ", after=at)
        shell.send(b"exit\r")
        result = yield shell.finished
        self.assertEqual(result.status, 0)
        self.assertEqual(
            [e["command"] for e in self.rig.audit("command")], ["help", "clusters", "clusters"]
        )
        self.assertEqual(self.rig.audit("session", kind="shell")[0]["role"], "admin")

    @defer.inlineCallbacks
    def test_shell_errors_and_monitor_prompt(self):
        shell = yield self.shell(self.rig.monitor_key)
        at = yield shell.wait_for(b"clsd (read-only)> ")
        shell.send(b"leave\r")
        at = yield shell.wait_for(b"needs an admin key", after=at)
        at = yield shell.wait_for(b"clsd (read-only)> ", after=at)
        shell.send(b"bogus\r")
        at = yield shell.wait_for(b"unknown command 'bogus'", after=at)
        yield shell.wait_for(b"clsd (read-only)> ", after=at)
        shell.send(b"\x04")  # Ctrl-D on an empty line leaves
        result = yield shell.finished
        self.assertEqual(result.status, 0)
        self.assertNotIn("leave", [name for name, args in self.rig.backend.calls])

    @defer.inlineCallbacks
    def test_manhole_from_the_shell_and_back(self):
        shell = yield self.shell(self.rig.admin_key)
        at = yield shell.wait_for(b"clsd> ")
        shell.send(b"manhole\r")
        at = yield shell.wait_for(b">>> ", after=at)
        shell.send(b"backend.calls.append(('from-manhole', ()))\r")
        at = yield shell.wait_for(b">>> ", after=at)
        shell.send(b"\x04")
        at = yield shell.wait_for(b"left the manhole", after=at)
        at = yield shell.wait_for(b"clsd> ", after=at)
        shell.send(b"exit\r")
        yield shell.finished
        self.assertIn(("from-manhole", ()), self.rig.backend.calls)
        [line] = self.rig.audit("manhole")
        self.assertEqual(line["code"], "backend.calls.append(('from-manhole', ()))")
        self.assertEqual(line["credential"], fingerprint(self.rig.admin_key))

    @defer.inlineCallbacks
    def test_overlong_line_is_cut(self):
        from clsd.admin.shell import MAX_LINE_CHARS

        shell = yield self.shell(self.rig.admin_key)
        at = yield shell.wait_for(b"clsd> ")
        shell.send(b"x" * (MAX_LINE_CHARS + 10) + b"\r")
        at = yield shell.wait_for(b"unknown command", after=at)
        yield shell.wait_for(b"clsd> ", after=at)
        [event] = self.rig.audit("command")
        self.assertEqual(event["command"], "x" * MAX_LINE_CHARS)
        self.assertIn(b"\a", shell.stdout)

    @defer.inlineCallbacks
    def test_watch_in_the_shell_and_back(self):
        """A live view in the interactive shell: a change redraws it, q returns to the prompt."""
        shell = yield self.shell(self.rig.admin_key)
        at = yield shell.wait_for(b"clsd> ")
        shell.send(b"clusters --watch\r")
        at = yield shell.wait_for(b"clusters --watch  ", after=at)
        at = yield shell.wait_for(b"running on alpha", after=at)
        self.rig.backend.pause("A")  # an event: the view is redrawn with A paused
        at = yield shell.wait_for(b"paused", after=at)
        shell.send(b"q")
        at = yield shell.wait_for(b"(left the live view; back in the admin shell)", after=at)
        yield shell.wait_for(b"clsd> ", after=at)
        shell.send(b"exit\r")
        result = yield shell.finished
        self.assertEqual(result.status, 0)
        self.assertEqual([e["command"] for e in self.rig.audit("command")], ["clusters --watch"])

    @defer.inlineCallbacks
    def test_watch_in_the_line_shell_is_shown_once(self):
        conn = yield connect(self.rig.reactor, self.rig.ssh_address, key=self.rig.admin_key)
        self.addCleanup(conn.close)
        channel = yield conn.shell(pty=False, stdin=b"clusters --watch\n")
        result = yield channel.finished
        self.assertEqual(result.status, 0)
        self.assertIn(b"running on alpha", result.stdout)
        self.assertIn(b"no live view in a shell without a terminal", result.stderr)

    @defer.inlineCallbacks
    def test_line_shell_without_terminal(self):
        conn = yield connect(self.rig.reactor, self.rig.ssh_address, key=self.rig.admin_key)
        self.addCleanup(conn.close)
        channel = yield conn.shell(pty=False, stdin=b"members --json\n\nbogus\n")
        result = yield channel.finished
        self.assertEqual(result.status, commands.EXIT_USAGE)  # the last command's status
        first_line = result.stdout.split(b"\n")[0]
        self.assertIn("members", json.loads(first_line))
        self.assertIn(b"unknown command 'bogus'", result.stderr)


class SSHHostKeyTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_generated_private_and_kept(self):
        rig = AdminRig(self)
        yield rig.start()
        path = rig.config.host_key
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        conn = yield connect(rig.reactor, rig.ssh_address, key=rig.admin_key)
        first = conn.host_key
        conn.close()
        yield rig.service.stopService()
        again = make_admin_service(rig.config, FakeBackend(), rig.reactor, log=rig.log)
        again.startService()
        self.addCleanup(again.stopService)
        port = yield again.ssh.when_listening()
        conn = yield connect(rig.reactor, ("127.0.0.1", port.getHost().port), key=rig.admin_key)
        self.addCleanup(conn.close)
        self.assertEqual(conn.host_key, first)
        with open(path + ".pub", "rb") as f:
            published = f.read().split()[:2]
        self.assertEqual(published, keys.Key.fromString(first).toString("openssh").split())

    @defer.inlineCallbacks
    def test_each_factory_has_its_own_keys(self):
        one = yield AdminRig(self).start()
        two = yield AdminRig(self).start()
        conn_one = yield connect(one.reactor, one.ssh_address, key=one.admin_key)
        self.addCleanup(conn_one.close)
        conn_two = yield connect(two.reactor, two.ssh_address, key=two.admin_key)
        self.addCleanup(conn_two.close)
        self.assertNotEqual(conn_one.host_key, conn_two.host_key)
        factory_one, factory_two = one.service.ssh.factory, two.service.ssh.factory
        self.assertIsNot(factory_one.publicKeys, factory_two.publicKeys)
        self.assertIsNot(factory_one.privateKeys, AdminSSHFactory.__dict__.get("privateKeys"))

    def test_loose_permissions_refused(self):
        rig = AdminRig(self)
        os.makedirs(os.path.dirname(rig.config.host_key))
        with open(rig.config.host_key, "wb") as f:
            f.write(new_ed25519_key().toString("openssh"))
        os.chmod(rig.config.host_key, 0o644)
        service = make_admin_service(rig.config, FakeBackend(), rig.reactor, log=rig.log)
        with self.assertRaises(HostKeyError) as caught:
            service.startService()
        self.assertIn("0644 are too open", str(caught.exception))
        self.assertIn("chmod 600", str(caught.exception))


class AdminServiceTests(unittest.TestCase):
    def test_nothing_configured_nothing_listens(self):
        from twisted.internet import reactor

        service = make_admin_service(AdminConfig(host_key="/nonexistent/key"),
                                     FakeBackend(), reactor)
        self.assertEqual(list(service), [])
        service.startService()
        self.assertFalse(os.path.exists("/nonexistent/key"))
        return service.stopService()

    @defer.inlineCallbacks
    def test_deferred_backend(self):
        rig = yield AdminRig(self, backend=FakeBackend(asynchronous=True)).start()
        conn = yield connect(rig.reactor, rig.ssh_address, key=rig.admin_key)
        self.addCleanup(conn.close)
        result = yield conn.run("pause A")
        self.assertEqual((result.status, result.text), (0, "cluster A paused\n"))

    @defer.inlineCallbacks
    def test_not_available_operation(self):
        rig = yield AdminRig(self, backend=FakeBackend(unavailable={"leave"})).start()
        conn = yield connect(rig.reactor, rig.ssh_address, key=rig.admin_key)
        self.addCleanup(conn.close)
        result = yield conn.run("leave")
        self.assertEqual(result.status, commands.EXIT_FAILED)
        self.assertTrue(result.stderr.startswith(b"error: not available: "), result.stderr)
