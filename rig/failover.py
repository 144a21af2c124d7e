"""Fail a real cluster's owner and watch the standby take over: shared by tests and bench.

A L{FailoverRig} wraps a L{rig.launcher.Launcher} whose template has
a L{rig.cluster.ClusterRig}'s parts. It knows who runs a cluster ID
now (from the recorder: the running instance whose lifeline is connected),
applies the faults the failover issue names (kill -9 a daemon with or without
its services, isolate a node with firewall drops, SIGSTOP a daemon) and waits,
against deadlines, until the cluster answers HTTP on another node.

Blocking and reactor-free like the launcher: it observes from outside.
"""

import json
import os
import re
import signal
import time
import urllib.error
import urllib.request

from clsd.polling import WaitTimeout, wait_for
from rig.faults import topology

#: One HTTP probe gives up after this long: a probe of a dead address on
#: loopback is refused at once, so only a hung service ever takes this long.
PROBE_TIMEOUT = 0.25
#: Poll every 10 ms: the resolution of the measured failover times.
PROBE_INTERVAL = 0.01


def http_identity(url, timeout=PROBE_TIMEOUT):
    """The protected service's identity (a dict) answering at C{url}, or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if response.status != 200:
                return None
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


class DualActive(AssertionError):
    """Two nodes were seen running one active-standby cluster ID at once."""


class FailoverRig:
    def __init__(self, launcher, cluster_rig, firewall=None):
        self.launcher = launcher
        self.cluster_rig = cluster_rig
        self.layout = cluster_rig.layout
        self.firewall = firewall

    # -- who runs what ------------------------------------------------------------------

    def running(self, cluster):
        """Instances of C{cluster} running now (by the records and live lifelines)."""
        return self.launcher.running_instances(cluster=cluster)

    def owner(self, cluster):
        """The node running C{cluster} now, or None; L{DualActive} if two do."""
        nodes = {i.node for i in self.running(cluster)}
        if len(nodes) > 1:
            raise DualActive(f"cluster {cluster} runs on {sorted(nodes)} at once")
        return next(iter(nodes), None)

    def url(self, node, cluster):
        return self.cluster_rig.http_url(self.launcher, node, cluster)

    def answering(self, cluster, node, *, not_instance=None):
        """The identity answering for C{cluster} on C{node}'s address, if it is a new one."""
        identity = http_identity(self.url(node, cluster))
        if identity is None or identity.get("cluster") != cluster:
            return None
        if not_instance is not None and identity.get("instance") == not_instance:
            return None
        return identity

    def wait_owner(self, cluster, *, exclude=(), timeout=60.0):
        """Until a node not in C{exclude} runs C{cluster} AND answers HTTP; returns it."""
        def found():
            node = self.owner(cluster)
            if node is None or node in exclude:
                return None
            return node if self.answering(cluster, node) else None
        return wait_for(found, timeout, what=f"cluster {cluster} to run and answer"
                        + (f" on a node other than {', '.join(exclude)}" if exclude else ""))

    def wait_answer(self, cluster, nodes, *, not_instance=None, timeout=60.0):
        """Poll C{cluster}'s HTTP address on each of C{nodes} until one answers.

        @return: C{(monotonic time of the answer, node, identity)}.
        """
        deadline = time.monotonic() + timeout
        while True:
            for node in nodes:
                identity = self.answering(cluster, node, not_instance=not_instance)
                if identity is not None:
                    return time.monotonic(), node, identity
            if time.monotonic() >= deadline:
                raise WaitTimeout(f"timed out after {timeout:.1f}s waiting for cluster "
                                  f"{cluster} to answer on {', '.join(nodes)}")
            time.sleep(PROBE_INTERVAL)

    def standbys(self, cluster, owner):
        return [n for n in self.layout.candidates(cluster) if n != owner]

    # -- faults -------------------------------------------------------------------------------

    def service_pids(self, node):
        """Pids of every protected service instance running on C{node}."""
        return [i.pid for i in self.launcher.running_instances(name=node)]

    def kill_daemon(self, node, *, services=False):
        """kill -9 C{node}'s daemon (and, as in a machine crash, its services).

        @return: the monotonic time just before the first kill.
        """
        pids = self.service_pids(node) if services else []
        t = time.monotonic()
        self.launcher.kill(node)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return t

    def isolate(self, node):
        """Drop every packet between C{node}'s address and every other node's, both ways.

        @return: C{(monotonic time just before the rules went in, token for L{heal})}.
        """
        if self.firewall is None:
            raise RuntimeError("this rig has no firewall (give FailoverRig a Firewall)")
        address = self.launcher.address(node)
        others = [self.launcher.address(n) for n in self.layout.nodes if n != node]
        pairs = topology.isolate(address, others)
        t = time.monotonic()
        return t, self.firewall.block(pairs)

    def heal(self, token):
        self.firewall.lift(token)

    def pause_daemon(self, node):
        t = time.monotonic()
        self.launcher.pause(node)
        return t

    def resume_daemon(self, node):
        self.launcher.resume(node)


# -- readiness -------------------------------------------------------------------------


def log_offset(launcher, node):
    """The current length of C{node}'s log: look for news after it."""
    return len(launcher.log_text(node))


#: The membership service's log line for every change of a member's state.
MEMBER_STATE = re.compile(r"member (\S+) is (\w+)")


def last_states(launcher, observer, offset):
    """C{{member: state}}: the last state C{observer}'s log gave each member after C{offset}.

    Read from the membership service's ``member NAME is STATE`` lines: the rig
    has no other way in from outside without an admin login.
    """
    states = {}
    for match in MEMBER_STATE.finditer(launcher.log_text(observer)[offset:]):
        states[match.group(1)] = match.group(2)
    return states


def wait_rejoined(launcher, node, offsets, *, hold=1.0, timeout=60.0):
    """Until C{node} and every other running node agree they are all alive, for C{hold} s.

    @param offsets: C{{name: log_offset}} taken just BEFORE the fault: a
        pair whose logs say nothing since then never lost each other (a
        short partition need not reach the failure timeout); a pair that did
        must have said "alive" again since.
    """
    others = [n for n in launcher.nodes if n != node and launcher.node(n).running]

    def settled():
        for a, b in [(o, node) for o in others] + [(node, o) for o in others]:
            if last_states(launcher, a, offsets.get(a, 0)).get(b, "alive") != "alive":
                return False
        return True

    held_since = [None]

    def held():
        if not settled():
            held_since[0] = None
            return False
        if held_since[0] is None:
            held_since[0] = time.monotonic()
        return time.monotonic() - held_since[0] >= hold
    wait_for(held, timeout, what=f"{node} and {', '.join(others)} to see each other alive")
