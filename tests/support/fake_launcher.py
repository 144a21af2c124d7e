"""A fake of the rig's L{rig.launcher.Launcher} for testing the code that drives one.

No processes: each node has a L{NodeSpec} (addresses from 127.0.0.101 on, files
under C{directory}/nodes/NAME), a pid and a running flag; the logs and the
running service copies are what the test gives; every action asked of it
(kill, start, pause, ...) is recorded in L{FakeLauncher.calls} with the seconds
elapsed on C{clock} since the fake was made.
"""

import os

from clsd.polling import WaitTimeout
from rig.launcher import NodeSpec


class FakeNode:
    def __init__(self, spec, pid):
        self.spec = spec
        self.pid = pid
        self.running = True

    @property
    def name(self):
        return self.spec.name


class FakeLauncher:
    rig_id = "rig"
    owner_pid = 1

    def __init__(self, names=("n1", "n2", "n3"), *, directory="/rig", spares=(), clock=None,
                 logs=None, running=()):
        """
        @param spares: more nodes, not running at first (nodes that join later).
        @param clock: a callable returning the time the calls are recorded at.
        @param logs: node name -> the text of its daemon's log.
        @param running: the running copies L{running_instances} reports (with a C{node}).
        """
        self.directory = directory
        self.records_dir = os.path.join(directory, "records")
        self.spares = tuple(spares)
        names = [*names, *(name for name in self.spares if name not in names)]
        self.nodes = {
            name: FakeNode(NodeSpec(name=name, address=f"127.0.0.{101 + i}",
                                    directory=os.path.join(directory, "nodes", name)), 100 + i)
            for i, name in enumerate(names)
        }
        for name in self.spares:
            self.nodes[name].running = False
        self.clock = clock
        self._started = clock() if clock is not None else 0.0
        self.logs = dict(logs or {})
        self.running = list(running)
        self.calls = []
        #: Whether L{wait_running} finds the cluster back.
        self.recover = True

    def _log(self, *call):
        elapsed = self.clock() - self._started if self.clock is not None else 0.0
        self.calls.append((round(elapsed, 2), *call))

    def node(self, name):
        return self.nodes[name]

    def address(self, name):
        return self.nodes[name].spec.address

    def log_text(self, name):
        return self.logs.get(name, "")

    def kill(self, name):
        self._log("kill", name)
        self.nodes[name].running = False

    def start(self, name):
        self._log("start", name)
        self.nodes[name].running = True

    def restart(self, name):
        self._log("restart", name)

    def stop(self, name):
        self._log("stop", name)
        self.nodes[name].running = False

    def pause(self, name):
        self._log("pause", name)

    def resume(self, name):
        self._log("resume", name)

    def running_instances(self, name=None, cluster=None):
        return [r for r in self.running if name is None or r.node == name]

    def clock_of(self, name):
        raise ValueError(f"node {name!r} was not started under faketime")

    def wait_running(self, name=None, cluster=None, timeout=0):
        if not self.recover:
            raise WaitTimeout(f"timed out waiting for cluster {cluster}")
