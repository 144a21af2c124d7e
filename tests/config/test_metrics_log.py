"""The ``[metrics]`` and ``[log]`` tables: defaults, valid forms, every kind of mistake."""

import os

from twisted.trial import unittest

from clsd.config import ConfigError, LogConfig, MetricsConfig, parse_config

NODE = '[node]\nname = "alpha"\ndata_dir = "data"\n\n'


class Mistakes:
    def parse(self, text):
        return parse_config(NODE + text, "clsd.toml", base_dir=self.dir)

    def assertMistake(self, text, path, *fragments):
        with self.assertRaises(ConfigError) as caught:
            self.parse(text)
        error = caught.exception
        self.assertEqual(error.path, path, str(error))
        self.assertTrue(str(error).startswith(f"clsd.toml: {path}: "), str(error))
        for fragment in fragments:
            self.assertIn(fragment, str(error))


class MetricsConfigTests(Mistakes, unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())

    def test_off_unless_configured(self):
        self.assertEqual(self.parse("").metrics, MetricsConfig(listen=None))
        self.assertIsNone(self.parse("[metrics]\n").metrics.listen)
        self.assertIsNone(self.parse('[metrics]\nlisten = ""\n').metrics.listen)

    def test_ipv4(self):
        self.assertEqual(self.parse('[metrics]\nlisten = "127.0.0.1:9400"\n').metrics.listen,
                         ("127.0.0.1", 9400))

    def test_ipv6_in_brackets(self):
        self.assertEqual(self.parse('[metrics]\nlisten = "[::1]:9400"\n').metrics.listen,
                         ("::1", 9400))

    def test_port_zero_means_any_free_port(self):
        self.assertEqual(self.parse('[metrics]\nlisten = "127.0.0.1:0"\n').metrics.listen,
                         ("127.0.0.1", 0))

    def test_no_port(self):
        self.assertMistake('[metrics]\nlisten = "127.0.0.1"\n', "metrics.listen",
                           "must be IP:PORT", "'127.0.0.1'")

    def test_ipv6_without_brackets(self):
        self.assertMistake('[metrics]\nlisten = "::1:9400"\n', "metrics.listen",
                           "IPv6 as [::1]:9400")

    def test_port_out_of_range(self):
        self.assertMistake('[metrics]\nlisten = "127.0.0.1:65536"\n', "metrics.listen",
                           "must be IP:PORT")

    def test_port_not_a_number(self):
        self.assertMistake('[metrics]\nlisten = "127.0.0.1:http"\n', "metrics.listen",
                           "must be IP:PORT")

    def test_host_name(self):
        self.assertMistake('[metrics]\nlisten = "localhost:9400"\n', "metrics.listen",
                           "not a host name", "'localhost'")

    def test_not_a_string(self):
        self.assertMistake("[metrics]\nlisten = 9400\n", "metrics.listen",
                           "must be a string, got number 9400")

    def test_unknown_key(self):
        self.assertMistake('[metrics]\nlisten = "127.0.0.1:9400"\nport = 1\n',
                           "metrics.port", "unknown key")

    def test_not_a_table(self):
        with self.assertRaises(ConfigError) as caught:
            parse_config('metrics = "127.0.0.1:9400"\n' + NODE, "clsd.toml")
        self.assertEqual(str(caught.exception),
                         "clsd.toml: metrics: must be a table, got string '127.0.0.1:9400'")


class LogConfigTests(Mistakes, unittest.TestCase):
    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)

    def test_no_json_log_by_default(self):
        self.assertEqual(self.parse("").log, LogConfig(json=None))
        self.assertIsNone(self.parse("[log]\n").log.json)

    def test_relative_path_is_relative_to_the_config_file(self):
        log = self.parse('[log]\njson = "logs/clsd.json"\n').log
        self.assertEqual(log.json, os.path.join(self.dir, "logs", "clsd.json"))

    def test_absolute_path(self):
        self.assertEqual(self.parse('[log]\njson = "/var/log/clsd.json"\n').log.json,
                         "/var/log/clsd.json")

    def test_dash_is_standard_output(self):
        self.assertEqual(self.parse('[log]\njson = "-"\n').log.json, "-")

    def test_a_directory(self):
        self.assertMistake('[log]\njson = "."\n', "log.json", "must be a file",
                           "is a directory")

    def test_empty(self):
        self.assertMistake('[log]\njson = ""\n', "log.json", "must not be empty")

    def test_not_a_string(self):
        self.assertMistake("[log]\njson = true\n", "log.json", "must be a string")

    def test_unknown_key(self):
        self.assertMistake('[log]\nformat = "json"\n', "log.format", "unknown key")

    def test_command_line_override(self):
        config = parse_config(NODE + '[log]\njson = "a.json"\n', "clsd.toml", base_dir=self.dir,
                              overrides={"log.json": "/tmp/b.json"})
        self.assertEqual(config.log.json, "/tmp/b.json")
