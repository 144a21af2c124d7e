"""The ``type`` of a ``[[service]]`` and the keys each type takes."""

from twisted.trial import unittest

from clsd.config import ConfigError
from clsd.supervision.containment import ContainmentError, Containments
from tests.test_config import MINIMAL, parse

FORKING = MINIMAL + """
[[service]]
name = "web"
type = "forking"
command = ["/usr/sbin/nginx"]
"""


class ForkingConfigTests(unittest.TestCase):
    def test_defaults(self):
        web = parse(FORKING).service("web")
        self.assertEqual(web.type, "forking")
        self.assertIsNone(web.pidfile)
        self.assertIsNone(web.stop_command)
        self.assertEqual(web.start_timeout, 30.0)

    def test_keys(self):
        web = parse(FORKING + """
pidfile = "run/nginx.pid"
stop_command = ["/usr/sbin/nginx", "-s", "quit"]
start_timeout = 5
""").service("web")
        self.assertEqual(web.pidfile, "/etc/clsd/run/nginx.pid")
        self.assertEqual(web.stop_command, ("/usr/sbin/nginx", "-s", "quit"))
        self.assertEqual(web.start_timeout, 5.0)

    def test_simple_is_the_default(self):
        self.assertEqual(parse(MINIMAL + '[[service]]\nname = "a"\ncommand = ["x"]\n')
                         .service("a").type, "simple")

    def test_an_unknown_type_names_the_known_ones(self):
        e = self.assertRaises(ConfigError, parse, FORKING.replace('"forking"', '"oneshot"'))
        self.assertEqual(e.path, "service[0].type")
        self.assertIn("forking", str(e))

    def test_forking_keys_on_a_simple_service_are_refused(self):
        text = MINIMAL + '[[service]]\nname = "a"\ncommand = ["x"]\npidfile = "/run/a.pid"\n'
        e = self.assertRaises(ConfigError, parse, text)
        self.assertIn('only applies to type = "forking"', str(e))

    def test_empty_stop_command_is_refused(self):
        e = self.assertRaises(ConfigError, parse, FORKING + "stop_command = []\n")
        self.assertIn("stop_command", str(e))


class ForkingContainmentTests(unittest.TestCase):
    def test_without_pidfile_and_without_cgroups_it_cannot_be_watched(self):
        web = parse(FORKING).service("web")
        containments = Containments.process_groups_only(None, reason="not root")
        e = self.assertRaises(ContainmentError, containments.for_service, web, False)
        self.assertIn("set pidfile", str(e))

    def test_with_a_pidfile_process_groups_do(self):
        web = parse(FORKING + 'pidfile = "/run/web.pid"\n').service("web")
        containments = Containments.process_groups_only(None, reason="not root")
        self.assertEqual(containments.for_service(web, False).kind, "process-group")
