"""Helper commands of a service (stop commands, agent actions): their environment."""

import os

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.config import ServiceConfig
from clsd.supervision.forking import CommandProtocol
from clsd.supervision.spawn import command_runner


class Collected:
    def __init__(self):
        self.data = b""

    def out(self, data):
        self.data += data

    err = out


class UntilEnded(CommandProtocol):
    """Reports once the pipes are closed too, so that all output has been read."""

    def processExited(self, reason):
        self.reason = reason

    def processEnded(self, reason):
        CommandProtocol.processExited(self, self.reason)


class CommandRunnerTests(unittest.TestCase):
    timeout = 20

    @defer.inlineCallbacks
    def run_env(self, service, argv, action):
        output, done = Collected(), defer.Deferred()
        run = command_runner(reactor, service, None,
                             extra_env=lambda: {"CLSD_EPOCH": "7", "CLSD_CLUSTER": "A"})
        run(argv, UntilEnded(output, lambda code, signum: done.callback(code)), action)
        code = yield done
        self.assertEqual(code, 0)
        return output.data.decode()

    @defer.inlineCallbacks
    def test_a_stop_command_gets_the_tenure_and_the_services_env(self):
        service = ServiceConfig(name="web", command=("x",), env={"MODE": "prod"},
                                type="forking", stop_command=("sh",))
        text = yield self.run_env(service, ["/bin/sh", "-c", 'echo "$CLSD_EPOCH $MODE"'],
                                  "stop")
        self.assertEqual(text, "7 prod\n")

    @defer.inlineCallbacks
    def test_an_ocf_action_gets_the_ocf_environment(self):
        agent = self.mktemp()
        with open(agent, "w") as f:
            f.write('#!/bin/sh\necho "$1 $CLSD_EPOCH $OCF_RESOURCE_INSTANCE '
                    '$OCF_RESKEY_ip $OCF_RESKEY_CRM_meta_timeout $OCF_ROOT"\n')
        os.chmod(agent, 0o755)
        agent = os.path.abspath(agent)
        service = ServiceConfig(name="vip", command=(agent,), type="ocf", script=agent,
                                agent="x:y", params={"ip": "192.0.2.10"}, ocf_root="/o",
                                stop_timeout=2.5, monitor_timeout=1.5)
        text = yield self.run_env(service, None, "monitor")
        self.assertEqual(text, "monitor 7 vip 192.0.2.10 1500 /o\n")
        text = yield self.run_env(service, None, "stop")
        self.assertEqual(text, "stop 7 vip 192.0.2.10 2500 /o\n")
