"""L{HookRunner}: fence and notify commands, on a Clock with fake processes, and one real run."""

import json
import os
import signal
import sys
import textwrap

from twisted.internet import defer, error, reactor
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial import unittest

from clsd.config.service import Backoff
from clsd.events import EventLog
from clsd.ownership.core.actions import RunHook
from clsd.ownership.hooks import HookError, HookRunner, fill_argv
from clsd.supervision.pgroups import group_alive
from clsd.polling import poll as wait_until


class FakeTransport:
    def __init__(self, pid):
        self.pid = pid
        self.lost = False

    def closeStdin(self):
        pass

    def loseConnection(self):
        self.lost = True


class FakeHooks:
    """Spawned hooks: argv, env, and a way to end each."""

    def __init__(self):
        self.runs = []  # (context, protocol)
        self.signals = []
        self.fail_spawn = None
        self.next_pid = 700

    def spawn(self, protocol, context):
        if self.fail_spawn is not None:
            raise self.fail_spawn
        self.next_pid += 1
        protocol.makeConnection(FakeTransport(self.next_pid))
        self.runs.append((context, protocol))

    def signal(self, pgid, signum):
        self.signals.append((pgid, signum))

    def finish(self, index=-1, code=0, output=b""):
        protocol = self.runs[index][1]
        if output:
            protocol.outReceived(output)
        reason = error.ProcessDone(0) if code == 0 else error.ProcessTerminated(code, None, None)
        protocol.processExited(Failure(reason))

    def killed(self, index=-1):
        self.runs[index][1].processExited(
            Failure(error.ProcessTerminated(None, signal.SIGKILL, None)))


def hook(cluster="A", event="acquire", argv=("/bin/notify", "{event}", "{node}", "{cluster}",
                                                 "{epoch}"), node="alpha", epoch=7):
    return RunHook(cluster, event, tuple(argv), node, epoch)


class FillTests(unittest.TestCase):
    def test_placeholders(self):
        self.assertEqual(
            fill_argv(("/f", "{node}", "--c={cluster}", "{epoch}", "{event}", "{{literal}}"),
                      node="beta", cluster="A", epoch=12, event="fence"),
            ("/f", "beta", "--c=A", "12", "fence", "{literal}"))

    def test_bad_placeholder_names_the_argument(self):
        with self.assertRaises(HookError) as e:
            fill_argv(("/f", "{host}"), node="b", cluster="A", epoch=1, event="fence")
        self.assertIn("argv[1]", str(e.exception))


class HookRunnerTests(unittest.TestCase):
    def setUp(self):
        self.clock = Clock()
        self.fake = FakeHooks()
        self.events = EventLog(monotonic=self.clock.seconds)
        self.runner = HookRunner(
            self.clock, events=self.events, monotonic=self.clock.seconds, spawn=self.fake.spawn,
            signal_group=self.fake.signal, timeout=10.0, max_attempts=3,
            backoff=Backoff(initial=1.0, max=30.0, factor=2.0, jitter=0.0), random=lambda: 0.5)
        self.done = []

    def run_hook(self, action):
        self.runner.run(action, lambda ok: self.done.append((action.cluster, action.event, ok)))

    def hook_events(self):
        return [e for e in self.events.recent() if e["kind"] == "hook"]

    def test_argv_and_environment(self):
        self.run_hook(hook(event="fence", node="beta", epoch=42,
                           argv=("/sbin/fence", "{node}", "{cluster}", "{epoch}", "{event}")))
        context, _ = self.fake.runs[0]
        self.assertEqual(context.argv, ("/sbin/fence", "beta", "A", "42", "fence"))
        for key, value in {"CLSD_CLUSTER": "A", "CLSD_EPOCH": "42", "CLSD_NODE": "beta",
                           "CLSD_EVENT": "fence"}.items():
            self.assertEqual(context.env[key], value)
        self.assertIn("PATH", context.env)

    def test_success_is_reported_once_and_logged(self):
        self.run_hook(hook(event="fence"))
        self.clock.advance(0.25)
        self.fake.finish(code=0, output=b"fenced beta\n")
        self.assertEqual(self.done, [("A", "fence", True)])
        [event] = self.hook_events()
        self.assertEqual(event["subject"], "A")
        self.assertIn("fence hook attempt 1/3: exited code=0 in 0.250s (ok)", event["reason"])
        self.assertEqual(event["fields"]["output"], "fenced beta")
        self.assertEqual(event["fields"]["epoch"], 7)

    def test_one_at_a_time_per_cluster_in_order(self):
        self.run_hook(hook(event="release"))
        self.run_hook(hook(event="fence"))
        self.run_hook(hook(cluster="B", event="acquire"))
        # A's second hook waits; B's runs beside A's first.
        self.assertEqual([c.env["CLSD_EVENT"] + c.env["CLSD_CLUSTER"] for c, _ in self.fake.runs],
                         ["releaseA", "acquireB"])
        self.fake.finish(index=0)
        self.assertEqual([c.env["CLSD_EVENT"] + c.env["CLSD_CLUSTER"] for c, _ in self.fake.runs],
                         ["releaseA", "acquireB", "fenceA"])
        self.fake.finish(index=2)
        self.fake.finish(index=1)
        self.assertEqual(self.done, [("A", "release", True), ("A", "fence", True),
                                     ("B", "acquire", True)])

    def test_failure_is_retried_with_backoff_then_given_up(self):
        self.run_hook(hook(event="fence"))
        self.run_hook(hook(event="acquire"))  # waits behind the retries
        self.fake.finish(code=1)
        self.assertEqual(len(self.fake.runs), 1)
        self.clock.advance(0.999)
        self.assertEqual(len(self.fake.runs), 1)
        self.clock.advance(0.001)  # first retry after 1 s
        self.assertEqual(len(self.fake.runs), 2)
        self.fake.finish(code=1)
        self.clock.advance(1.999)
        self.assertEqual(len(self.fake.runs), 2)
        self.clock.advance(0.001)  # then 2 s
        self.assertEqual(len(self.fake.runs), 3)
        self.assertEqual(self.done, [])
        self.fake.finish(code=2)  # third and last attempt
        self.assertEqual(self.done, [("A", "fence", False)])
        self.assertEqual(len(self.fake.runs), 4, "the next hook runs after giving up")
        self.assertEqual(self.fake.runs[3][0].env["CLSD_EVENT"], "acquire")
        reasons = [e["reason"] for e in self.hook_events()]
        self.assertIn("(will retry)", reasons[0])
        self.assertIn("exited code=2", reasons[2])
        self.assertIn("(giving up)", reasons[2])

    def test_a_retry_that_succeeds_reports_success(self):
        self.run_hook(hook(event="fence"))
        self.fake.finish(code=1)
        self.clock.advance(1.0)
        self.fake.finish(code=0)
        self.assertEqual(self.done, [("A", "fence", True)])

    def test_a_hung_hook_is_killed_after_the_timeout(self):
        self.run_hook(hook(event="fence"))
        pid = self.fake.runs[0][1].pid
        self.clock.advance(9.9)
        self.assertEqual(self.fake.signals, [])
        self.clock.advance(0.1)
        self.assertEqual(self.fake.signals, [(pid, signal.SIGKILL)])
        self.fake.killed()
        self.assertIn("timed out after 10s", self.hook_events()[0]["reason"])
        self.assertEqual(self.done, [])  # retried
        self.clock.advance(1.0)
        self.assertEqual(len(self.fake.runs), 2)

    def test_pipes_are_released_after_the_leader_exits(self):
        self.run_hook(hook())
        transport = self.fake.runs[0][1].transport
        self.fake.finish()
        self.assertFalse(transport.lost)
        self.clock.advance(1.0)
        self.assertTrue(transport.lost)

    def test_a_hook_that_cannot_start_is_retried(self):
        self.fake.fail_spawn = FileNotFoundError(2, "not found in PATH", "/bin/notify")
        self.run_hook(hook(event="fence"))
        self.assertIn("cannot start", self.hook_events()[0]["reason"])
        self.fake.fail_spawn = None
        self.clock.advance(1.0)
        self.fake.finish()
        self.assertEqual(self.done, [("A", "fence", True)])

    def test_a_bad_template_gives_up_at_once(self):
        self.run_hook(hook(event="fence", argv=("/f", "{host}")))
        self.assertEqual(self.fake.runs, [])
        self.assertEqual(self.done, [("A", "fence", False)])
        self.assertIn("bad command", self.hook_events()[0]["reason"])

    def test_stop_kills_running_hooks_and_drops_the_queue(self):
        self.run_hook(hook())
        self.run_hook(hook(event="release"))
        pid = self.fake.runs[0][1].pid
        self.runner.stop()
        self.assertEqual(self.fake.signals, [(pid, signal.SIGKILL)])
        self.runner.run(hook(event="late"))
        self.assertEqual(len(self.fake.runs), 1)
        self.assertFalse(self.runner.busy("B"))

    def test_a_hook_killed_by_stop_is_not_retried(self):
        self.run_hook(hook(event="release"))
        self.runner.stop()
        self.fake.killed()  # the SIGKILL from stop() lands
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(self.runner.busy("A"))


HOOK_SCRIPT = textwrap.dedent("""\
    import json, os, sys, time
    out = sys.argv[1]
    with open(out, "a") as f:
        f.write(json.dumps({"argv": sys.argv[2:], "env": {k: v for k, v in os.environ.items()
                                                           if k.startswith("CLSD_")},
                            "pgid": os.getpgrp(), "pid": os.getpid()}) + "\\n")
    if sys.argv[2] == "hang":
        time.sleep(300)
""")


class RealHookTests(unittest.TestCase):
    """Real processes on trial's reactor: arguments, environment, process group, timeout."""

    timeout = 30

    def setUp(self):
        directory = self.mktemp()
        os.makedirs(directory)
        self.script = os.path.join(directory, "hook.py")
        with open(self.script, "w") as f:
            f.write(HOOK_SCRIPT)
        self.out = os.path.join(directory, "runs.jsonl")
        self.runner = HookRunner(reactor, events=EventLog(), timeout=0.5, max_attempts=1)
        self.addCleanup(self.runner.stop)

    def runs(self):
        if not os.path.exists(self.out):
            return []
        with open(self.out) as f:
            return [json.loads(line) for line in f]

    @defer.inlineCallbacks
    def test_real_hook_gets_arguments_environment_and_its_own_group(self):
        done = defer.Deferred()
        self.runner.run(RunHook("A", "fence", (sys.executable, self.script, self.out, "ok",
                                               "{node}", "{epoch}"), "beta", 9), done.callback)
        ok = yield done
        self.assertTrue(ok)
        [run] = self.runs()
        self.assertEqual(run["argv"], ["ok", "beta", "9"])
        self.assertEqual(run["env"], {"CLSD_CLUSTER": "A", "CLSD_EPOCH": "9",
                                      "CLSD_NODE": "beta", "CLSD_EVENT": "fence"})
        self.assertEqual(run["pgid"], run["pid"])
        self.assertNotEqual(run["pgid"], os.getpgrp())

    @defer.inlineCallbacks
    def test_real_hung_hook_is_killed_with_its_group(self):
        done = defer.Deferred()
        self.runner.run(RunHook("A", "fence", (sys.executable, self.script, self.out, "hang"),
                                "beta", 9), done.callback)
        yield defer.ensureDeferred(wait_until(reactor, lambda: self.runs(), timeout=10))
        pgid = self.runs()[0]["pgid"]
        ok = yield done
        self.assertFalse(ok)
        self.assertFalse(group_alive(pgid))
        [(_, _, _, outcome)] = list(self.runner.history)
        self.assertIn("timed out", outcome.detail)
        self.assertLess(outcome.duration, 5)
