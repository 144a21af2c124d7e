"""The 3-node cluster the peer benchmarks attack (peer_flood.py, peer_fuzz.py).

alpha (owner of cluster ``A``), beta (standby), witness: real ``twistd clsd``
daemons on their own 127.0.0.x with mutual TLS from one test CA and a
``[metrics]`` endpoint each, built from clsd.testing.cluster like the real
failover tests. The launcher reserves a block of 10 addresses; the nodes use
the first three and the attackers the rest.
"""

import time

from clsd.testing.addresses import address_range
from clsd.testing.cluster import ClusterRig, active_standby
from clsd.testing.failover import MEMBER_STATE, last_states
from clsd.testing.faults.cleanup import Cleanups
from clsd.testing.launcher import Launcher, free_port
from clsd.testing.polling import wait_for

CLUSTER = "A"
OWNER = "alpha"
#: The health checks' HTTP client logs two lines per check; not the peer layer's.
LOG_NOISE = "HTTP11ClientFactory"


class PeerRig:
    def __init__(self, workdir, *, peer=None):
        """
        @param peer: extra ``[peer]`` keys for every node (default: none).
        """
        self.cleanups = Cleanups()
        layout = active_standby(CLUSTER)
        self.cluster_rig = ClusterRig(layout)
        self.nodes = list(layout.nodes)
        self.metrics_ports = {}

        def part(node, launcher):
            address = launcher.address(node.name)
            if node.name not in self.metrics_ports:
                self.metrics_ports[node.name] = free_port(address)
            extra = {"metrics": {"listen": f"{address}:{self.metrics_ports[node.name]}"}}
            if peer:
                extra["peer"] = dict(peer)
            return extra

        template = self.cluster_rig.template().with_part(part)
        self.launcher = Launcher(str(workdir), self.nodes, template=template,
                                 cleanups=self.cleanups)

    def start(self):
        self.launcher.start_all()
        self.launcher.wait_running(cluster=CLUSTER, timeout=60)
        wait_for(self.converged, timeout=60, what="every node sees the others alive")
        owner = self.owner()
        if owner != OWNER:
            raise RuntimeError(f"{CLUSTER} started on {owner}, not {OWNER}")

    def stop(self):
        try:
            self.launcher.teardown()
        finally:
            self.cleanups.run_all()

    @property
    def lease(self):
        return self.cluster_rig.timing.lease_seconds

    def sources(self, count):
        """Attacker addresses: the launcher block's, after the nodes'."""
        return address_range(self.launcher.address(self.nodes[-1]), count + 1)[1:]

    def target(self, node=OWNER):
        return self.cluster_rig.peer_address(self.launcher, node)

    def metrics_url(self, node=OWNER):
        return f"http://{self.launcher.address(node)}:{self.metrics_ports[node]}/metrics"

    def pid(self, node=OWNER):
        return self.launcher.node(node).pid

    def converged(self):
        for observer in self.nodes:
            states = last_states(self.launcher, observer, 0)
            if any(states.get(other) != "alive" for other in self.nodes if other != observer):
                return False
        return True

    def owner(self):
        running = self.launcher.running_instances(cluster=CLUSTER)
        return running[0].node if len(running) == 1 else None

    def state(self):
        """Owners, epochs, instances and daemon pids: what an attack must not move."""
        running = sorted((i.cluster, i.node, i.epoch, i.instance)
                         for i in self.launcher.running_instances())
        return running, {name: self.launcher.node(name).pid for name in self.nodes}

    def log_offsets(self):
        return {name: len(self.launcher.log_text(name)) for name in self.nodes}

    def member_changes(self, offsets):
        return {name: MEMBER_STATE.findall(self.launcher.log_text(name)[offsets[name]:])
                for name in self.nodes}

    def log_lines_since(self, node, offset):
        """Lines the daemon logged since C{offset}, without the health checks' noise."""
        text = self.launcher.log_text(node)[offset:]
        return [line for line in text.splitlines() if LOG_NOISE not in line]

    def wait_logged(self, node, offset, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.launcher.log_text(node)[offset:]:
                return True
            time.sleep(0.2)
        return False

    def violations(self):
        return [v.describe() for v in self.launcher.check().violations]

    def log_problems(self):
        return self.launcher.log_problems()
