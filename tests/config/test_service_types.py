"""The ``type`` of a ``[[service]]`` and the keys each type takes."""

import os

from twisted.trial import unittest

from clsd.config import ConfigError
from clsd.supervision.containment import ContainmentError, Containments
from tests.config.test_config import MINIMAL, parse

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


LSB = MINIMAL + """
[[service]]
name = "db"
type = "lsb"
script = "/bin/true"
"""


class AgentConfigTests(unittest.TestCase):
    def test_lsb_defaults(self):
        db = parse(LSB).service("db")
        self.assertEqual((db.type, db.script, db.monitor_interval), ("lsb", "/bin/true", 10.0))
        self.assertEqual((db.start_timeout, db.stop_timeout, db.monitor_timeout),
                         (20.0, 20.0, 20.0))
        self.assertEqual(db.argv, ("/bin/true", "start"))
        self.assertEqual(db.action_argv("status"), ("/bin/true", "status"))

    def test_timeouts_table(self):
        db = parse(LSB + "[service.timeouts]\nstart = 5\nstop = 6\nmonitor = 7\n").service("db")
        self.assertEqual((db.start_timeout, db.stop_timeout, db.monitor_timeout),
                         (5.0, 6.0, 7.0))

    def test_a_script_that_is_not_executable(self):
        path = os.path.abspath(self.mktemp())
        with open(path, "w") as f:
            f.write("#!/bin/sh\n")
        e = self.assertRaises(ConfigError, parse, LSB.replace("/bin/true", path))
        self.assertIn(f"{path} is not an executable file", str(e))
        self.assertEqual(e.path, "service[0].script")

    def test_command_and_check_do_not_apply_to_agents(self):
        for extra in ('command = ["x"]', "stop_timeout = 3",
                      '[service.check]\ntype = "tcp"\ntarget = "127.0.0.1:1"'):
            e = self.assertRaises(ConfigError, parse, LSB + extra + "\n")
            self.assertIn("does not apply to type = 'lsb'", str(e))

    def test_agent_keys_on_a_simple_service_are_refused(self):
        text = MINIMAL + '[[service]]\nname = "a"\ncommand = ["x"]\nmonitor_interval = 1\n'
        e = self.assertRaises(ConfigError, parse, text)
        self.assertIn('only applies to type = "lsb" or "ocf"', str(e))

    def test_ocf_keys_on_lsb_are_refused(self):
        e = self.assertRaises(ConfigError, parse, LSB + 'agent = "heartbeat:Dummy"\n')
        self.assertIn('only applies to type = "ocf"', str(e))
