"""The configuration contract: every key, its default, and every kind of mistake."""

import os
import signal
import subprocess
import sys
import textwrap

from twisted.trial import unittest

from clsd.config import ConfigError, load_config, parse_config

MINIMAL = """
[node]
name = "alpha"
data_dir = "/var/lib/clsd-test"
"""

WEB = MINIMAL + """
[[service]]
name = "web"
command = ["python3", "-m", "http.server", "8080"]
"""


def parse(text, **kwargs):
    kwargs.setdefault("euid", 1000)
    return parse_config(textwrap.dedent(text), "clsd.toml", base_dir="/etc/clsd", **kwargs)


class ValidConfigTests(unittest.TestCase):
    def test_minimal_service_gets_documented_defaults(self):
        config = parse(WEB)
        self.assertEqual(config.node.name, "alpha")
        self.assertEqual(config.node.data_dir, "/var/lib/clsd-test")
        web = config.service("web")
        self.assertEqual(web.command, ("python3", "-m", "http.server", "8080"))
        self.assertEqual(web.restart, "on-failure")
        self.assertEqual(
            (web.backoff.initial, web.backoff.max, web.backoff.factor, web.backoff.jitter),
            (0.1, 30.0, 2.0, 0.1),
        )
        self.assertEqual(web.stable_after, 10.0)
        self.assertEqual((web.crash_loop.max_failures, web.crash_loop.window), (5, 60.0))
        self.assertEqual(web.stop_signum, signal.SIGTERM)
        self.assertEqual(web.stop_timeout, 10.0)
        self.assertEqual(web.logs.stdout, "/var/lib/clsd-test/logs/web.log")
        self.assertEqual(web.logs.stderr, web.logs.stdout)
        self.assertIsNone(web.check)
        self.assertIsNone(web.cwd)
        self.assertEqual(web.env, {})

    def test_full_contract_example(self):
        config = parse(MINIMAL + """
            [[service]]
            name = "web"
            command = ["python3", "-m", "http.server", "8080"]
            env = { LANG = "C" }
            cwd = "srv"
            restart = "always"
            backoff = { initial = 0.5, max = 10, factor = 3.0, jitter = 0.0 }
            stable_after = 5
            crash_loop = { max_failures = 3, window = 30.0 }
            stop_signal = "SIGINT"
            stop_timeout = 2.5
            stdout = "/var/log/web.out"
            [service.check]
            type = "http"
            target = "http://127.0.0.1:8080/"
            interval = 1.0
            timeout = 0.5
            rise = 2
            fall = 3
            startup_interval = 0.05
        """)
        web = config.service("web")
        self.assertEqual(web.env, {"LANG": "C"})
        self.assertEqual(web.cwd, "/etc/clsd/srv")
        self.assertEqual(web.restart, "always")
        self.assertEqual(web.backoff.max, 10.0)
        self.assertEqual(web.crash_loop.max_failures, 3)
        self.assertEqual(web.stop_signal, "INT")
        self.assertEqual(web.logs.stdout, "/var/log/web.out")
        self.assertEqual(web.check.type, "http")
        self.assertEqual(web.check.target, "http://127.0.0.1:8080/")
        self.assertEqual((web.check.rise, web.check.fall), (2, 3))
        self.assertEqual(web.check.startup_interval, 0.05)

    def test_check_targets_by_type(self):
        tcp = parse(MINIMAL + """
            [[service]]
            name = "db"
            command = ["db"]
            check = { type = "tcp", target = "[::1]:5432" }
        """).service("db").check
        self.assertEqual(tcp.target, ("::1", 5432))
        self.assertIsNone(tcp.startup_interval)  # probes every interval from the start
        probe = parse(MINIMAL + """
            [[service]]
            name = "db"
            command = ["db"]
            check = { type = "exec", target = ["pg_isready", "-q"] }
        """).service("db").check
        self.assertEqual(probe.target, ("pg_isready", "-q"))

    def test_shell_command(self):
        service = parse(MINIMAL + """
            [[service]]
            name = "job"
            shell = true
            command = "exec sleep 10 | cat"
        """).service("job")
        self.assertEqual(service.argv, ("/bin/sh", "-c", "exec sleep 10 | cat"))

    def test_overrides_replace_file_values_and_are_validated(self):
        config = parse(WEB, overrides={"node.name": "beta", "node.data_dir": "run"})
        self.assertEqual(config.node.name, "beta")
        self.assertEqual(config.node.data_dir, "/etc/clsd/run")
        e = self.assertRaises(ConfigError, parse, WEB, overrides={"node.name": "bad name"})
        self.assertIn("node.name", str(e))

    def test_relative_data_dir_is_relative_to_the_file(self):
        config = parse('[node]\nname = "a"\ndata_dir = "state"\n')
        self.assertEqual(config.node.data_dir, "/etc/clsd/state")


class MistakeTests(unittest.TestCase):
    """Each kind of mistake names the file, the key path and what is wrong."""

    def assertMistake(self, text, path, fragment, **kwargs):
        e = self.assertRaises(ConfigError, parse, text, **kwargs)
        self.assertEqual(e.source, "clsd.toml")
        self.assertEqual(e.path, path)
        self.assertIn(fragment, e.message)
        self.assertTrue(str(e).startswith(f"clsd.toml: {path}: " if path else "clsd.toml: "))
        return e

    def test_invalid_toml(self):
        e = self.assertMistake("[node\nname='a'", "", "not valid TOML")
        self.assertIn("line 1", str(e))

    def test_missing_node_name(self):
        self.assertMistake("[node]\n", "node.name", "is required")

    def test_unknown_top_level_key(self):
        self.assertMistake(MINIMAL + "[nodes]\nx = 1\n", "nodes", "unknown key")

    def test_unknown_service_key_is_a_typo_not_ignored(self):
        self.assertMistake(
            WEB + 'restrat = "always"\n', "service[0].restrat", "unknown key"
        )

    def test_unknown_nested_key(self):
        self.assertMistake(
            WEB + "backoff = { inital = 1.0 }\n", "service[0].backoff.inital", "unknown key"
        )

    def test_wrong_type(self):
        self.assertMistake(
            WEB + 'stop_timeout = "10"\n', "service[0].stop_timeout",
            "must be a number, got string '10'",
        )

    def test_boolean_is_not_a_number(self):
        self.assertMistake(WEB + "stable_after = true\n", "service[0].stable_after", "number")

    def test_out_of_range(self):
        self.assertMistake(
            WEB + "backoff = { factor = 0.5 }\n", "service[0].backoff.factor",
            "must be at least 1.0, got 0.5",
        )
        self.assertMistake(
            WEB + "crash_loop = { max_failures = 0 }\n",
            "service[0].crash_loop.max_failures", "at least 1",
        )
        self.assertMistake(WEB + "stop_timeout = 0\n", "service[0].stop_timeout", "greater than 0")
        self.assertMistake(WEB + "stop_timeout = nan\n", "service[0].stop_timeout", "finite")

    def test_backoff_max_below_initial(self):
        self.assertMistake(
            WEB + "backoff = { initial = 5.0, max = 1.0 }\n", "service[0].backoff.max",
            "at least initial",
        )

    def test_bad_choice(self):
        self.assertMistake(
            WEB + 'restart = "sometimes"\n', "service[0].restart",
            "must be one of always | on-failure | never",
        )

    def test_bad_signal(self):
        self.assertMistake(WEB + 'stop_signal = "STOP"\n', "service[0].stop_signal", "STOP")

    def test_empty_command(self):
        self.assertMistake(
            MINIMAL + '[[service]]\nname = "x"\ncommand = []\n', "service[0].command",
            "must not be empty",
        )

    def test_command_as_string_without_shell(self):
        self.assertMistake(
            MINIMAL + '[[service]]\nname = "x"\ncommand = "sleep 1"\n', "service[0].command",
            "must be an array of strings",
        )

    def test_command_item_not_a_string(self):
        self.assertMistake(
            MINIMAL + '[[service]]\nname = "x"\ncommand = ["sleep", 1]\n',
            "service[0].command[1]", "must be a string",
        )

    def test_missing_service_command(self):
        self.assertMistake(MINIMAL + '[[service]]\nname = "x"\n', "service[0].command", "required")

    def test_duplicate_service_names(self):
        self.assertMistake(
            WEB + '[[service]]\nname = "web"\ncommand = ["x"]\n', "service[1].name",
            "duplicate name 'web' (also service[0])",
        )

    def test_bad_service_name(self):
        self.assertMistake(
            MINIMAL + '[[service]]\nname = "../etc"\ncommand = ["x"]\n', "service[0].name",
            "not a valid service name",
        )

    def test_service_as_single_table(self):
        self.assertMistake(
            MINIMAL + '[service]\nname = "x"\ncommand = ["x"]\n', "service",
            "[[service]]",
        )

    def test_env_value_not_string(self):
        self.assertMistake(WEB + "env = { PORT = 8080 }\n", "service[0].env.PORT", "string")

    def test_check_mistakes(self):
        base = WEB + "[service.check]\n"
        self.assertMistake(base + 'type = "ping"\ntarget = "x"\n', "service[0].check.type", "ping")
        self.assertMistake(
            base + 'type = "http"\ntarget = "127.0.0.1:80"\n', "service[0].check.target",
            "http:// or https:// URL",
        )
        self.assertMistake(
            base + 'type = "tcp"\ntarget = "localhost"\n', "service[0].check.target", "host:port"
        )
        self.assertMistake(
            base + 'type = "tcp"\ntarget = "127.0.0.1:99999"\n', "service[0].check.target",
            "host:port",
        )
        self.assertMistake(
            base + 'type = "exec"\ntarget = "true"\n', "service[0].check.target", "array"
        )
        self.assertMistake(
            base + 'type = "tcp"\ntarget = "127.0.0.1:80"\ninterval = 1.0\ntimeout = 2.0\n',
            "service[0].check.timeout", "must not exceed interval",
        )
        self.assertMistake(
            base + 'type = "tcp"\ntarget = "127.0.0.1:80"\nstartup_interval = 2.0\n',
            "service[0].check.startup_interval", "must not exceed interval",
        )
        self.assertMistake(
            base + 'type = "tcp"\ntarget = "127.0.0.1:80"\nstartup_interval = 0\n',
            "service[0].check.startup_interval", "greater than 0",
        )
        self.assertMistake(
            base + 'type = "tcp"\ntarget = "127.0.0.1:80"\nrise = 0\n', "service[0].check.rise",
            "at least 1",
        )

    def test_shell_needs_one_string(self):
        self.assertMistake(
            MINIMAL + '[[service]]\nname = "x"\nshell = true\ncommand = ["a", "b"]\n',
            "service[0].command", "shell = true",
        )

    def test_user_that_does_not_exist(self):
        self.assertMistake(
            WEB + 'user = "no-such-user-clsd"\n', "service[0].user", "no such user", euid=0
        )

    def test_user_without_root(self):
        self.assertMistake(WEB + 'user = "root"\n', "service[0].user", "root", euid=1000)


class LoadFileTests(unittest.TestCase):
    def test_unreadable_file(self):
        path = os.path.join(self.mktemp())
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertIn(path, str(e))
        self.assertIn("cannot read the file", str(e))

    def test_not_utf8(self):
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(b'[node]\nname = "\xff"\n')
        e = self.assertRaises(ConfigError, load_config, path)
        self.assertIn("not UTF-8", str(e))

    def test_paths_relative_to_the_file(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "clsd.toml")
        with open(path, "w") as f:
            f.write('[node]\nname = "a"\ndata_dir = "state"\n')
        self.assertEqual(load_config(path).node.data_dir, os.path.join(directory, "state"))


class CommandLineTests(unittest.TestCase):
    """A bad config stops ``twistd clsd`` with one line, no traceback, non-zero exit."""

    def run_twistd(self, *args):
        return subprocess.run(
            [sys.executable, "-m", "twisted", "clsd", *args],
            capture_output=True, text=True, timeout=60,
        )

    def test_bad_config_message_without_traceback(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(WEB + "backoff = { factor = 0.5 }\n")
        result = self.run_twistd("--config", path)
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        self.assertIn(f"{path}: service[0].backoff.factor: must be at least 1.0", result.stderr)

    def test_help_lists_options(self):
        result = self.run_twistd("--help")
        self.assertEqual(result.returncode, 0)
        for option in ("--config", "--node-name", "--data-dir"):
            self.assertIn(option, result.stdout)
