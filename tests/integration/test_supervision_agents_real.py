"""``type = "lsb"`` and ``type = "ocf"`` on real scripts and agents.

The LSB script and the stub OCF agent are written by the tests; the OCF
return-code mapping also runs Debian's ``ocf:heartbeat:Dummy`` (package
resource-agents, installed by .ci/run). Under cgroup containment (root and
a writable cgroup v2; skipped elsewhere, must run under CI=true).
"""

import json
import os
import stat
import textwrap

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.config import parse_config
from clsd.daemon import Daemon
from clsd.supervision.forking import read_pidfile
from clsd.supervision.pgroups import pid_alive
from clsd.polling import poll
from tests.support.rig_support import require
from tests.integration.test_containment_real import require_cgroups

DUMMY = "/usr/lib/ocf/resource.d/heartbeat/Dummy"

#: An LSB init script: start daemonizes a sleeper (pidfile), stop kills it,
#: status answers 0 / 1 (dead, pidfile left) / 3. $DIR/stop-fails makes stop
#: exit 1; $DIR/start-hangs makes start hang.
LSB_SCRIPT = """\
#!/bin/sh
DIR={dir}
PIDFILE=$DIR/sleeper.pid
case "$1" in
start)
    [ -e $DIR/start-hangs ] && exec sleep 600
    echo "$CLSD_SERVICE start" >> $DIR/actions
    setsid sleep 600 </dev/null >/dev/null 2>&1 &
    echo $! > $PIDFILE
    exit 0 ;;
stop)
    echo stop >> $DIR/actions
    [ -e $DIR/stop-fails ] && exit 1
    [ -f $PIDFILE ] && kill $(cat $PIDFILE) 2>/dev/null
    rm -f $PIDFILE
    exit 0 ;;
status)
    [ -f $PIDFILE ] || exit 3
    kill -0 $(cat $PIDFILE) 2>/dev/null && exit 0
    exit 1 ;;
*)
    exit 3 ;;
esac
"""

#: A stub OCF agent: start returns $OCF_RESKEY_start_rc; $OCF_RESKEY_hang
#: names the action that hangs; a required parameter "color".
STUB_AGENT = """\
#!/bin/sh
STATE=$OCF_RESKEY_state
case "$1" in
meta-data)
    cat <<'END'
<?xml version="1.0"?>
<resource-agent name="Stub" version="1.0">
<parameters>
<parameter name="color" required="1"><content type="string"/></parameter>
<parameter name="state" required="1"><content type="string"/></parameter>
<parameter name="start_rc"><content type="string" default="0"/></parameter>
<parameter name="hang"><content type="string" default=""/></parameter>
</parameters>
<actions>
<action name="start" timeout="7s"/>
<action name="stop" timeout="8s"/>
<action name="monitor" timeout="9s" interval="10s"/>
</actions>
</resource-agent>
END
    exit 0 ;;
esac
[ "$1" = "$OCF_RESKEY_hang" ] && exec sleep 600
case "$1" in
start)
    echo "timeout=$OCF_RESKEY_CRM_meta_timeout instance=$OCF_RESOURCE_INSTANCE" > $STATE.env
    rc=${OCF_RESKEY_start_rc:-0}
    [ "$rc" = 0 ] && touch $STATE
    exit $rc ;;
stop) rm -f $STATE; exit 0 ;;
monitor) [ -f $STATE ] && exit 0; exit 7 ;;
*) exit 3 ;;
esac
"""


def write_executable(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


class AgentTestCase(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.data_dir = os.path.join(self.base, "data")
        self.daemon = None

    def config_text(self, service):
        return "\n".join([
            "[node]", 'name = "alpha"', f"data_dir = {json.dumps(self.data_dir)}", "",
            "[[service]]", 'name = "svc"', 'restart = "always"',
            textwrap.dedent(service), ""])

    @defer.inlineCallbacks
    def start(self, service, state="running"):
        self.tree = require_cgroups(self, "alpha", self.data_dir)
        self.daemon = Daemon(parse_config(self.config_text(service), "<test>"), reactor)
        self.daemon.startService()
        self.addCleanup(self.stop_daemon)
        yield self.daemon.ready
        runner = self.daemon.supervisor("svc")
        yield poll(reactor, lambda: runner.state.value == state, 20, what=state)
        return runner

    def stop_daemon(self):
        if self.daemon is not None and self.daemon.running:
            return self.daemon.stopService()

    def reasons(self):
        return [e["reason"] for e in self.daemon.events.recent()]


class LSBTests(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.script = os.path.join(self.base, "init.d", "sleeper")
        write_executable(self.script, LSB_SCRIPT.format(dir=self.base))
        self.pidfile = os.path.join(self.base, "sleeper.pid")
        self.service = f"""
            type = "lsb"
            script = {json.dumps(self.script)}
            monitor_interval = 0.2
            [service.timeouts]
            start = 2.0
            stop = 2.0
            monitor = 2.0
            """

    @defer.inlineCallbacks
    def test_start_status_and_stop(self):
        runner = yield self.start(self.service)
        sleeper = read_pidfile(self.pidfile)
        self.assertTrue(pid_alive(sleeper))
        self.assertEqual(runner.status()["type"], "lsb")
        self.assertIsNone(runner.status()["pid"], "an agent's actions are not the service")
        self.assertEqual(runner.status()["processes"], 1, "the daemon is in the cgroup")
        yield poll(reactor, lambda: "status: running (rc 0)" in self.reasons(), 10,
                   what="a status action")
        yield runner.stop()
        self.assertEqual(runner.state.value, "stopped")
        self.assertFalse(pid_alive(sleeper))
        self.assertIn("stop: success (rc 0)", self.reasons())

    @defer.inlineCallbacks
    def test_a_copy_started_by_hand_is_adopted(self):
        import subprocess

        subprocess.run([self.script, "start"], check=True)
        by_hand = read_pidfile(self.pidfile)
        self.addCleanup(lambda: pid_alive(by_hand) and os.kill(by_hand, 9))
        runner = yield self.start(self.service)
        self.assertIn("adopted", [e["kind"] for e in self.daemon.events.recent()])
        self.assertEqual(read_pidfile(self.pidfile), by_hand, "started a second copy")
        with open(os.path.join(self.base, "actions")) as f:
            self.assertEqual(f.read().count("start"), 1)
        yield runner.stop()
        self.assertIn("stop: success (rc 0)", self.reasons())
        # Outside the cgroup (started by hand): the stop action's SIGTERM ends it.
        yield poll(reactor, lambda: not pid_alive(by_hand), 5, what="the adopted copy's end")

    @defer.inlineCallbacks
    def test_status_dead_restarts(self):
        runner = yield self.start(self.service)
        sleeper = read_pidfile(self.pidfile)
        os.kill(sleeper, 9)
        yield poll(reactor, lambda: runner.status()["restarts"] == 1
                   and runner.state.value == "running", 20, what="the restart")
        self.assertIn("status: dead, pid file exists (rc 1)", self.reasons())
        self.assertNotEqual(read_pidfile(self.pidfile), sleeper)

    @defer.inlineCallbacks
    def test_a_failed_stop_kills_the_cgroup(self):
        runner = yield self.start(self.service)
        sleeper = read_pidfile(self.pidfile)
        open(os.path.join(self.base, "stop-fails"), "w").close()
        yield runner.stop()
        self.assertFalse(pid_alive(sleeper), "the failed stop left the daemon running")
        self.assertEqual(runner.state.value, "failed")
        self.assertIn("stop: generic error (rc 1): SIGKILL to its cgroup", self.reasons())

    @defer.inlineCallbacks
    def test_a_start_that_overruns_is_killed_and_failed(self):
        open(os.path.join(self.base, "start-hangs"), "w").close()
        runner = yield self.start(self.service, state="backoff")
        self.assertIn("start action still running after 2s: SIGKILL", self.reasons())
        self.assertIn("start: timed out (killed)", self.reasons())
        self.assertEqual(runner.status()["processes"], 0)


class OCFDummyTests(AgentTestCase):
    def setUp(self):
        super().setUp()
        require(os.access(DUMMY, os.X_OK), f"{DUMMY} (Debian package resource-agents)")
        self.state = os.path.join(self.base, "dummy.state")
        self.service = f"""
            type = "ocf"
            agent = "heartbeat:Dummy"
            monitor_interval = 0.2
            params = {{ state = {json.dumps(self.state)} }}
            """

    @defer.inlineCallbacks
    def test_monitor_not_running_restarts(self):
        runner = yield self.start(self.service)
        self.assertTrue(os.path.exists(self.state))
        yield poll(reactor, lambda: "monitor: success (rc 0)" in self.reasons(), 10,
                   what="a monitor")
        os.remove(self.state)
        yield poll(reactor, lambda: runner.status()["restarts"] == 1
                   and runner.state.value == "running", 20, what="the restart")
        self.assertIn("monitor: not running (rc 7)", self.reasons())
        self.assertTrue(os.path.exists(self.state))
        yield poll(reactor, lambda: runner.status()["last_action"] == "monitor: success (rc 0)",
                   10, what="the last action in the status")
        yield runner.stop()
        self.assertFalse(os.path.exists(self.state))

    @defer.inlineCallbacks
    def test_a_running_system_is_adopted_not_started(self):
        open(self.state, "w").close()  # "started by hand" before the daemon
        runner = yield self.start(self.service)
        reasons = self.reasons()
        self.assertIn("already running (monitor: success (rc 0)): adopted, not started again",
                      reasons)
        self.assertNotIn("start: success (rc 0)", reasons)
        self.assertEqual(runner.status()["restarts"], 0)

    def test_timeouts_default_to_the_agents_meta_data(self):
        config = parse_config(self.config_text(self.service), "<test>").service("svc")
        self.assertEqual((config.start_timeout, config.stop_timeout, config.monitor_timeout),
                         (20.0, 20.0, 20.0))
        self.assertEqual(config.script, DUMMY)


class OCFStubTests(AgentTestCase):
    def setUp(self):
        super().setUp()
        self.root = os.path.join(self.base, "ocf")
        write_executable(os.path.join(self.root, "resource.d", "test", "Stub"), STUB_AGENT)
        self.state = os.path.join(self.base, "stub.state")

    def service(self, **params):
        params = {"color": "blue", "state": self.state, **params}
        table = ", ".join(f"{k} = {json.dumps(v)}" for k, v in params.items())
        return f"""
            type = "ocf"
            agent = "test:Stub"
            ocf_root = {json.dumps(self.root)}
            monitor_interval = 0.2
            params = {{ {table} }}
            """

    @defer.inlineCallbacks
    def test_the_ocf_environment(self):
        yield self.start(self.service())
        with open(self.state + ".env") as f:
            self.assertEqual(f.read().split(), ["timeout=7000", "instance=svc"])

    @defer.inlineCallbacks
    def test_start_not_installed_gives_up_this_node(self):
        runner = yield self.start(self.service(start_rc="5"), state="failed")
        self.assertEqual(runner.status()["restarts"], 0)
        self.assertIn("start: not installed (rc 5): giving up this node", self.reasons())

    @defer.inlineCallbacks
    def test_start_generic_error_restarts(self):
        yield self.start(self.service(start_rc="1"), state="backoff")
        self.assertIn("start: generic error (rc 1)", self.reasons())

    @defer.inlineCallbacks
    def test_a_hanging_monitor_is_killed_and_counts_as_failed(self):
        text = self.service(hang="monitor") + "[service.timeouts]\nmonitor = 0.5\n"
        runner = yield self.start(text)
        yield poll(reactor, lambda: runner.status()["restarts"] >= 1, 20, what="a restart")
        self.assertIn("monitor: timed out (killed)", self.reasons())

    def parse(self, text):
        return parse_config(self.config_text(text), "<test>")

    def test_meta_data_timeouts_are_the_defaults(self):
        config = self.parse(self.service()).service("svc")
        self.assertEqual((config.start_timeout, config.stop_timeout, config.monitor_timeout),
                         (7.0, 8.0, 9.0))

    def test_a_missing_required_parameter_is_an_error(self):
        text = self.service().replace('color = "blue", ', "")
        e = self.assertRaises(Exception, self.parse, text)
        self.assertIn("agent test:Stub requires parameter color", str(e))

    def test_an_unknown_parameter_names_the_agents_list(self):
        e = self.assertRaises(Exception, self.parse, self.service(colour="red"))
        self.assertIn("has no parameter colour (its parameters: color, state, start_rc, hang)",
                      str(e))

    def test_a_bad_agent_name_says_where_it_looked(self):
        e = self.assertRaises(Exception, self.parse,
                              self.service().replace("test:Stub", "test:Stubb"))
        self.assertIn(f"looked for {self.root}/resource.d/test/Stubb", str(e))
        self.assertIn("has Stub", str(e))
