"""The pure command layer and table formatter: no reactor, no sockets."""

import json

from twisted.internet import defer
from twisted.trial import unittest

from clsd.admin import commands
from clsd.admin.backend import AdminError, IAdminBackend, UnavailableBackend
from clsd.admin.commands import (
    EXIT_DENIED, EXIT_FAILED, EXIT_OK, EXIT_USAGE, ROLE_ADMIN, ROLE_MONITOR, parse_line,
    run_line,
)
from clsd.admin.fake import FakeBackend
from clsd.admin.table import format_table, printable
from zope.interface.verify import verifyObject


def run(backend, line, role=ROLE_ADMIN):
    """Run C{line}, which must finish at once (synchronous backend): its Outcome."""
    results = []
    run_line(backend, role, line).addBoth(results.append)
    [outcome] = results
    return outcome


class TableTests(unittest.TestCase):
    def test_alignment(self):
        text = format_table(["NAME", "PID", "STATE"],
                            [("web", 1234, "running"), ("database", None, "failed")])
        self.assertEqual(text.splitlines(), [
            "NAME       PID  STATE",
            "web       1234  running",
            "database     -  failed",
        ])

    def test_lists_booleans_and_empty(self):
        text = format_table(["A", "B"], [(["x", "y"], True), ((), False)])
        self.assertEqual(text.splitlines(), ["A    B", "x,y  yes", "-    no"])

    def test_no_rows(self):
        self.assertEqual(format_table(["MEMBER", "STATE"], []), "MEMBER  STATE\n(none)\n")

    def test_control_characters_are_escaped(self):
        # A peer-supplied name must not drive the operator's terminal.
        text = format_table(["NAME"], [("evil\x1b]0;pwned\x07\nname",)])
        self.assertNotIn("\x1b", text)
        self.assertNotIn("\x07", text)
        self.assertEqual(text.splitlines()[1], "evil\\x1b]0;pwned\\x07\\nname")
        self.assertEqual(printable("caf\u00e9 ok"), "caf\u00e9 ok")

    def test_row_length_checked(self):
        self.assertRaises(ValueError, format_table, ["A", "B"], [("only one",)])


class ParseTests(unittest.TestCase):
    def test_words_flags_and_quotes(self):
        request = parse_line("move 'cluster A' beta --json")
        self.assertEqual((request.name, request.args, request.json, request.help),
                         ("move", ("cluster A", "beta"), True, False))
        self.assertTrue(parse_line("move --help").help)
        self.assertEqual(parse_line("   ").name, "help")

    def test_bad_lines(self):
        self.assertRaises(commands.UsageError, parse_line, "move 'A")
        self.assertRaises(commands.UsageError, parse_line, "leave --force")


class CommandTests(unittest.TestCase):
    def setUp(self):
        self.backend = FakeBackend()

    def test_fake_and_unavailable_backends_provide_the_interface(self):
        self.assertTrue(verifyObject(IAdminBackend, self.backend))
        self.assertTrue(verifyObject(IAdminBackend, UnavailableBackend("alpha")))

    def test_status_json_shape(self):
        outcome = run(self.backend, "status --json")
        self.assertEqual(outcome.status, EXIT_OK)
        data = json.loads(outcome.stdout)
        self.assertEqual(data["node"], "alpha")
        self.assertEqual(data["members"][1], {"name": "beta", "state": "alive",
                                              "address": "127.0.0.12:7400",
                                              "version": "0.1.0", "protocols": [2, 3]})
        self.assertEqual(data["members"][3]["version"], None)
        self.assertEqual(data["protocol"], {"version": 2, "held_back_by": ["alpha", "witness"]})
        # The fields it always had, then the wording (tests/admin/test_ownership_wording.py).
        self.assertEqual(data["clusters"][0], {"id": "A", "owners": ["alpha"], "epoch": 7,
                                               "state": "running", "addresses": [],
                                               "members": [], "condition": "running",
                                               "summary": "running on alpha", "moving": None,
                                               "standbys": ["beta"], "role": "owner",
                                               "role_text": "owner", "standby_rank": None,
                                               "ineligible": None})
        self.assertEqual(data["services"][1], {"name": "db", "state": "failed", "pid": None,
                                               "restarts": 5, "type": "simple",
                                               "main_pid": None, "processes": None,
                                               "last_action": None})
        self.assertEqual(data["quorum"], {"voters": ["alpha", "beta", "witness"],
                                          "have_quorum": True, "previous_voters": [],
                                          "voters_apart": [], "voter_error": None})

    def test_status_human(self):
        text = run(self.backend, "status").stdout
        self.assertTrue(text.startswith(
            "node:    alpha\nquorum:  yes (voters: alpha, beta, witness)\n"))
        self.assertIn("protocol: 2; held back by alpha, witness\n", text)
        self.assertIn("\nMEMBER   STATE  ADDRESS          VERSION\n"
                      "alpha    alive  127.0.0.11:7400  0.1.0 (protocol 2)\n"
                      "beta     alive  127.0.0.12:7400  0.1.0 (protocol 2-3)\n", text)
        self.assertIn("\ngamma    dead   127.0.0.14:7400  -\n", text)
        self.assertIn(
            "\nSERVICE  STATE     PID  RESTARTS  TYPE\nweb      running  1234         0  simple\n",
            text)

    def test_history(self):
        outcome = run(self.backend, "history 2 --json")
        events = json.loads(outcome.stdout)["history"]
        self.assertEqual([e["kind"] for e in events], ["lease-acquired", "service-failed"])
        self.assertEqual(self.backend.calls[-1], ("history", (2,)))
        run(self.backend, "history")
        self.assertEqual(self.backend.calls[-1], ("history", (commands.DEFAULT_HISTORY,)))
        text = run(self.backend, "history 1").stdout
        self.assertEqual(text.splitlines()[1],
                         "2023-11-14 22:13:22Z  service-failed  db: 5 failures in 60s")
        for bad in ("history x", "history 0", f"history {commands.MAX_HISTORY + 1}"):
            outcome = run(self.backend, bad)
            self.assertEqual(outcome.status, EXIT_USAGE, bad)
            self.assertIn("N must be a whole number", outcome.stderr)

    def test_optional_node_defaults_to_none(self):
        run(self.backend, "standby")
        self.assertEqual(self.backend.calls[-1], ("standby", ("alpha",)))
        run(self.backend, "unstandby")
        run(self.backend, "standby beta")
        self.assertEqual(self.backend.calls[-1], ("standby", ("beta",)))

    def test_mutation_json(self):
        outcome = run(self.backend, "pause A --json")
        self.assertEqual(json.loads(outcome.stdout), {"ok": True, "message": "cluster A paused"})

    def test_admin_error(self):
        outcome = run(self.backend, "resume A")
        self.assertEqual(outcome.status, EXIT_FAILED)
        self.assertEqual(outcome.stderr, "error: cluster 'A' is not paused\n")
        self.assertEqual(outcome.reason, "error: cluster 'A' is not paused")
        self.assertIsNone(outcome.failure)

    def test_unexpected_exception_is_an_internal_error(self):
        def broken():
            raise KeyError("boom")

        self.backend.members = broken
        outcome = run(self.backend, "members")
        self.assertEqual(outcome.status, EXIT_FAILED)
        self.assertIn("internal error: KeyError", outcome.stderr)
        self.assertEqual(len(outcome.stderr.splitlines()), 1)
        self.assertIsNotNone(outcome.failure)

    def test_unavailable_backend(self):
        outcome = run(UnavailableBackend("alpha"), "force-remove gamma")
        self.assertEqual(outcome.status, EXIT_FAILED)
        self.assertEqual(outcome.stderr,
                         "error: not available: "
                         "'force-remove' is not wired into this daemon yet\n")

    def test_unknown_command(self):
        outcome = run(self.backend, "frob")
        self.assertEqual(outcome.status, EXIT_USAGE)
        self.assertEqual(outcome.stderr, "error: unknown command 'frob'; the commands are:\n")
        self.assertIn("move CLUSTER NODE", outcome.stdout)
        data = json.loads(run(self.backend, "frob --json").stdout)
        self.assertEqual(data["commands"], list(commands.COMMANDS))

    def test_arity(self):
        for line in ("move A", "move A b c", "pause", "leave now", "help a b"):
            outcome = run(self.backend, line)
            self.assertEqual(outcome.status, EXIT_USAGE, line)
        self.assertEqual([name for name, args in self.backend.calls], [])

    def test_help(self):
        outcome = run(self.backend, "help")
        for command in commands.COMMANDS.values():
            self.assertIn(command.usage, outcome.stdout)
        self.assertEqual(run(self.backend, "help pause").stdout.splitlines()[1],
                         "pause CLUSTER  stop failing CLUSTER over until resumed")
        self.assertEqual(run(self.backend, "help nope").status, EXIT_USAGE)
        monitor_help = run(self.backend, "help", ROLE_MONITOR).stdout
        self.assertIn("leave              hand everything over and leave the membership "
                      "(admin keys only)", monitor_help)

    def test_monitor_refused_every_mutating_command(self):
        mutating = [c for c in commands.COMMANDS.values() if c.mutating]
        self.assertEqual(
            sorted(c.name for c in mutating),
            ["force-remove", "leave", "manhole", "move", "pause", "reload", "reset",
             "resume", "standby", "unstandby"],
        )
        for command in mutating:
            line = " ".join([command.name] + ["x"] * command.min_args)
            outcome = run(self.backend, line, ROLE_MONITOR)
            self.assertEqual(outcome.status, EXIT_DENIED, line)
            self.assertIn("needs an admin key", outcome.stderr)
            json_outcome = run(self.backend, line + " --json", ROLE_MONITOR)
            self.assertFalse(json.loads(json_outcome.stdout)["ok"])
        self.assertEqual(self.backend.calls, [])

    def test_unknown_role_is_read_only(self):
        self.assertEqual(run(self.backend, "leave", "guest").status, EXIT_DENIED)

    def test_manhole(self):
        self.assertTrue(run(self.backend, "manhole").enter_manhole)
        self.assertEqual(run(self.backend, "manhole --json").status, EXIT_USAGE)

    def test_reload_with_a_bad_file(self):
        self.backend.reload_error = "clsd.toml: service[0].command: must not be empty"
        outcome = run(self.backend, "reload")
        self.assertEqual(outcome.status, EXIT_FAILED)
        self.assertEqual(outcome.stderr, "error: configuration not reloaded, nothing changed: "
                         "clsd.toml: service[0].command: must not be empty\n")

    def test_deferred_backend(self):
        pending = defer.Deferred()
        self.backend.reload = lambda: pending
        results = []
        run_line(self.backend, ROLE_ADMIN, "reload").addCallback(results.append)
        self.assertEqual(results, [])
        pending.errback(AdminError("line 3: bad TOML; nothing changed"))
        [outcome] = results
        self.assertEqual((outcome.status, outcome.stderr),
                         (EXIT_FAILED, "error: line 3: bad TOML; nothing changed\n"))


class FloatingAddressColumnTests(unittest.TestCase):
    """The clusters table names each floating address and whether it is up on this node."""

    def test_no_column_without_addresses(self):
        from clsd.admin.backend import ClusterInfo

        table = commands.clusters_table([ClusterInfo("A", ["alpha"], 3, "running")])
        self.assertEqual(table.splitlines()[0].split(),
                         ["CLUSTER", "STATE", "OWNERS", "EPOCH", "THIS", "NODE"])

    def test_addresses_up_here_and_elsewhere(self):
        from clsd.admin.backend import ClusterInfo

        table = commands.clusters_table([
            ClusterInfo("A", ["alpha"], 3, "running",
                        addresses=[("192.0.2.10/24", True), ("2001:db8::10/64", True)]),
            ClusterInfo("B", ["beta"], 2, "standing-by", addresses=[("192.0.2.11/24", False)]),
            ClusterInfo("C", ["beta"], 1, "running"),
        ])
        lines = table.splitlines()
        self.assertEqual(lines[0].split()[-1], "ADDRESS")
        self.assertIn("192.0.2.10/24 (up here), 2001:db8::10/64 (up here)", lines[1])
        self.assertTrue(lines[2].rstrip().endswith("192.0.2.11/24"))

    def test_an_ordered_groups_members_in_order(self):
        from clsd.admin.backend import ClusterInfo

        table = commands.clusters_table([
            ClusterInfo("DB", ["alpha"], 3, "running",
                        members=[("vol", "running"), ("db", "backoff"), ("exp", "stopped")]),
            ClusterInfo("C", ["beta"], 1, "running"),
        ])
        lines = table.splitlines()
        self.assertEqual(lines[0].split()[-1], "MEMBERS")
        self.assertTrue(lines[1].endswith("vol running, db backoff, exp stopped"), lines[1])
        self.assertEqual(lines[2].split(), ["C", "running", "beta", "1", "-"])  # no wording given
