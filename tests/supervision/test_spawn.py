"""Real-process tests of L{clsd.supervision.spawn}: both spawn paths, new process group."""

import os
import pwd
import time

from twisted.internet import defer, protocol, reactor
from twisted.trial import unittest

from clsd.config import ServiceConfig
from clsd.supervision.context import (
    DEFAULT_PATH, Credentials, ExecContext, exec_context, minimal_environment,
)
from clsd.supervision.spawn import (
    GATE_CLOSED_STATUS, SPAWN_PATH_FORK, SPAWN_PATH_POSIX_SPAWN, service_spawner,
    spawn_in_new_group,
)

#: Prints "pid pgid cwd uid gid groups" and waits for stdin to close, so the
#: parent can look at the live process. Shell, so that any user can run it.
REPORTER = (
    'echo "$$ $(ps -o pgid= -p $$ | tr -d " ") $(pwd) $(id -u) $(id -g) '
    '$(id -G | tr " " ,)"; cat >/dev/null'
)


class Collector(protocol.ProcessProtocol):
    def __init__(self):
        self.out = b""
        self.err = b""
        self.first_line = defer.Deferred()
        self.ended = defer.Deferred()

    def outReceived(self, data):
        self.out += data
        if b"\n" in self.out and not self.first_line.called:
            self.first_line.callback(self.out.split(b"\n")[0].decode())

    def errReceived(self, data):
        self.err += data

    def processEnded(self, reason):
        if not self.first_line.called:
            self.first_line.callback(None)
        self.ended.callback(reason.value)


def reporter_context(**kwargs):
    return ExecContext(argv=("/bin/sh", "-c", REPORTER),
                       env=minimal_environment(), **kwargs)


class SpawnTests(unittest.TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def spawn_and_report(self, context):
        proto = Collector()
        transport = spawn_in_new_group(reactor, proto, context)
        leader = transport.pid
        # The group exists as soon as the call returns, on both paths.
        self.assertEqual(os.getpgid(leader), leader)
        line = yield proto.first_line
        transport.closeStdin()
        yield proto.ended
        self.assertIsNotNone(line, proto.err)
        pid, pgid, cwd, uid, gid, groups = line.split(" ")
        self.assertEqual(int(pid), leader)
        self.assertEqual(int(pgid), leader, "the child leads its own group")
        self.assertNotEqual(int(pgid), os.getpgid(0))
        return transport, dict(cwd=cwd, uid=int(uid), gid=int(gid),
                               groups=[int(g) for g in groups.split(",") if g])

    @defer.inlineCallbacks
    def test_posix_spawn_path(self):
        transport, _ = yield self.spawn_and_report(reporter_context())
        self.assertEqual(transport.spawn_path, SPAWN_PATH_POSIX_SPAWN)

    @defer.inlineCallbacks
    def test_fork_path_with_cwd(self):
        directory = os.path.realpath(self.mktemp())
        os.makedirs(directory)
        transport, seen = yield self.spawn_and_report(reporter_context(cwd=directory))
        self.assertEqual(transport.spawn_path, SPAWN_PATH_FORK)
        self.assertEqual(seen["cwd"], directory)

    @defer.inlineCallbacks
    def test_fork_path_forced_by_reactor(self):
        # Twisted's own switch for its tests; it must still give a new group.
        reactor._neverUseSpawn = True
        self.addCleanup(delattr, reactor, "_neverUseSpawn")
        transport, _ = yield self.spawn_and_report(reporter_context())
        self.assertEqual(transport.spawn_path, SPAWN_PATH_FORK)

    @defer.inlineCallbacks
    def test_user_sets_uid_gid_and_groups(self):
        if os.geteuid() != 0:
            raise unittest.SkipTest("changing user needs root")
        credentials = Credentials.for_user("nobody")
        context = reporter_context(credentials=credentials, cwd="/")
        transport, seen = yield self.spawn_and_report(context)
        self.assertEqual(transport.spawn_path, SPAWN_PATH_FORK)
        self.assertEqual((seen["uid"], seen["gid"]), (credentials.uid, credentials.gid))
        self.assertEqual(set(seen["groups"]), set(credentials.groups))
        self.assertNotIn(0, seen["groups"], "root's groups must not leak")

    @defer.inlineCallbacks
    def test_after_spawn_sees_the_group_before_the_protocol(self):
        for force_fork in (False, True):
            if force_fork:
                reactor._neverUseSpawn = True
            try:
                seen = []
                proto = Collector()
                proto.connectionMade = lambda: seen.append(("connected",))

                def after_spawn(pid):
                    seen.append(("after_spawn", pid, os.getpgid(pid)))
                transport = spawn_in_new_group(reactor, proto, reporter_context(),
                                               after_spawn=after_spawn)
            finally:
                if force_fork:
                    del reactor._neverUseSpawn
            pid = transport.pid
            transport.closeStdin()
            yield proto.ended
            self.assertEqual(seen, [("after_spawn", pid, pid), ("connected",)])

    @defer.inlineCallbacks
    def test_after_spawn_errors_are_logged_not_raised(self):
        proto = Collector()

        def after_spawn(pid):
            raise RuntimeError("guard unavailable")
        transport = spawn_in_new_group(reactor, proto, reporter_context(),
                                       after_spawn=after_spawn)
        transport.closeStdin()
        yield proto.ended
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_the_program_waits_at_the_gate_until_after_spawn_returns(self):
        marker = os.path.abspath(self.mktemp())
        for force_fork in (False, True):
            if os.path.exists(marker):
                os.unlink(marker)
            seen = []
            proto = Collector()

            def after_spawn(pid):
                # Long enough for an ungated program to have run by now.
                time.sleep(0.3)
                seen.append(os.path.exists(marker))
            if force_fork:
                reactor._neverUseSpawn = True
            try:
                spawn_in_new_group(
                    reactor, proto,
                    ExecContext(argv=("touch", marker), env=minimal_environment()),
                    after_spawn=after_spawn)
            finally:
                if force_fork:
                    del reactor._neverUseSpawn
            reason = yield proto.ended
            self.assertEqual(seen, [False], "the program ran before after_spawn returned")
            self.assertEqual(reason.exitCode, 0)
            self.assertTrue(os.path.exists(marker), "the program ran after the gate opened")

    @defer.inlineCallbacks
    def test_a_failed_after_spawn_keeps_the_gate_shut(self):
        marker = os.path.abspath(self.mktemp())
        proto = Collector()

        def after_spawn(pid):
            raise RuntimeError("guard unavailable")
        spawn_in_new_group(reactor, proto,
                           ExecContext(argv=("touch", marker), env=minimal_environment()),
                           after_spawn=after_spawn)
        reason = yield proto.ended
        self.assertEqual(reason.exitCode, GATE_CLOSED_STATUS)
        self.assertFalse(os.path.exists(marker))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    @defer.inlineCallbacks
    def test_service_spawner_adds_the_extra_environment_per_start(self):
        service = ServiceConfig(name="envy", command=("env",), env={"A": "1"})
        spawn = service_spawner(reactor, service)
        outputs = []
        for extra in ({"CLSD_EPOCH": "7"}, None):
            proto = Collector()
            spawn(proto, extra_env=extra)
            yield proto.ended
            outputs.append(dict(line.split("=", 1) for line in proto.out.decode().splitlines()))
        self.assertEqual(outputs[0]["CLSD_EPOCH"], "7")
        self.assertEqual(outputs[0]["A"], "1")
        self.assertNotIn("CLSD_EPOCH", outputs[1], "extra env is for that start only")

    @defer.inlineCallbacks
    def test_environment_is_exactly_the_context(self):
        env = dict(minimal_environment(), GREETING="hello world")
        proto = Collector()
        spawn_in_new_group(reactor, proto, ExecContext(argv=("env",), env=env))
        yield proto.ended
        seen = dict(line.split("=", 1) for line in proto.out.decode().splitlines())
        self.assertEqual(seen, env)

    def test_missing_program_raises_before_starting(self):
        for cwd in (None, "/"):  # both paths
            context = ExecContext(argv=("/nonexistent/clsd-test-program",),
                                  env=minimal_environment(), cwd=cwd)
            e = self.assertRaises(FileNotFoundError, spawn_in_new_group, reactor,
                                  Collector(), context)
            self.assertEqual(str(e), "[Errno 2] no such executable: "
                                     "'/nonexistent/clsd-test-program'")
            context = ExecContext(argv=("clsd-test-program",), env={"PATH": "/nonexistent"},
                                  cwd=cwd)
            e = self.assertRaises(FileNotFoundError, spawn_in_new_group, reactor,
                                  Collector(), context)
            self.assertEqual(str(e), "[Errno 2] not found in PATH /nonexistent: "
                                     "'clsd-test-program'")

    @defer.inlineCallbacks
    def test_exec_failure_exits_1_on_fork_path(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        program = os.path.join(directory, "broken")
        with open(program, "w") as f:
            f.write("#!/nonexistent/interpreter\n")
        os.chmod(program, 0o755)
        proto = Collector()
        spawn_in_new_group(reactor, proto, ExecContext(argv=(program,),
                                                       env=minimal_environment(), cwd="/"))
        reason = yield proto.ended
        self.assertEqual(reason.exitCode, 1)
        self.assertIn(b"No such file", proto.err)

    @defer.inlineCallbacks
    def test_program_is_searched_in_the_service_path(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        program = os.path.join(directory, "clsd-test-hello")
        with open(program, "w") as f:
            f.write("#!/bin/sh\necho hello from $0\n")
        os.chmod(program, 0o755)
        self.assertNotIn(directory, os.environ.get("PATH", ""))
        for cwd in (None, "/"):
            proto = Collector()
            env = dict(minimal_environment(), PATH=directory + ":/bin:/usr/bin")
            spawn_in_new_group(reactor, proto, ExecContext(argv=("clsd-test-hello",),
                                                           env=env, cwd=cwd))
            yield proto.ended
            self.assertEqual(proto.out, f"hello from {program}\n".encode())


class ContextTests(unittest.TestCase):
    def test_minimal_environment(self):
        env = minimal_environment()
        me = pwd.getpwuid(os.geteuid())
        self.assertEqual(env, {"PATH": DEFAULT_PATH, "LANG": "C", "HOME": me.pw_dir,
                               "USER": me.pw_name, "LOGNAME": me.pw_name})

    def test_service_env_added_on_top(self):
        config = ServiceConfig(name="s", command=("prog", "arg"),
                               env={"LANG": "en_US.UTF-8", "MODE": "x"}, cwd="/srv")
        context = exec_context(config)
        self.assertEqual(context.argv, ("prog", "arg"))
        self.assertEqual(context.cwd, "/srv")
        self.assertEqual(context.env["LANG"], "en_US.UTF-8")
        self.assertEqual(context.env["MODE"], "x")
        self.assertEqual(context.env["PATH"], DEFAULT_PATH)
        self.assertNotIn("PYTHONPATH", context.env)
        self.assertIsNone(context.credentials)

    def test_shell_service(self):
        config = ServiceConfig(name="s", command=("echo hi | cat",), shell=True)
        self.assertEqual(exec_context(config).argv, ("/bin/sh", "-c", "echo hi | cat"))

    def test_user_environment(self):
        config = ServiceConfig(name="s", command=("x",), user="nobody")
        context = exec_context(config)
        entry = pwd.getpwnam("nobody")
        self.assertEqual(context.credentials.uid, entry.pw_uid)
        self.assertEqual(context.env["USER"], "nobody")
        self.assertEqual(context.env["HOME"], entry.pw_dir)

    def test_with_env(self):
        context = ExecContext(argv=("x",), env={"A": "1"})
        self.assertEqual(context.with_env(CLSD_EPOCH="7").env, {"A": "1", "CLSD_EPOCH": "7"})
        self.assertEqual(context.env, {"A": "1"})
