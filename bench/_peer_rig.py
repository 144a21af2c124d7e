"""The 3-node cluster the peer benchmarks attack (peer_flood.py, peer_fuzz.py).

alpha (owner of cluster ``A``), beta (standby), witness: real ``twistd clsd``
daemons on their own 127.0.0.x with mutual TLS from one test CA and a
``[metrics]`` endpoint each, built from rig.cluster like the real
failover tests. The launcher reserves a block of 10 addresses; the nodes use
the first three and the attackers the rest.
"""

import time

from rig.cluster import active_standby
from rig.failover import MEMBER_STATE
from rig.faults.cleanup import Cleanups
from rig.metered import MeteredCluster

CLUSTER = "A"
OWNER = "alpha"
#: The health checks' HTTP client logs two lines per check; not the peer layer's.
LOG_NOISE = "HTTP11ClientFactory"


class PeerRig(MeteredCluster):
    def __init__(self, workdir, *, peer=None):
        """
        @param peer: extra ``[peer]`` keys for every node (default: none).
        """
        self.cleanups = Cleanups()
        super().__init__(workdir, cleanups=self.cleanups, layout=active_standby(CLUSTER),
                         extra={"peer": dict(peer)} if peer else None)
        self.cluster_rig = self.rig

    def start(self):
        super().start(cluster=CLUSTER)
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
        return self.rig.timing.lease_seconds

    def sources(self, count):
        """Attacker addresses: the launcher block's, after the nodes'."""
        return self.spare_addresses(count)

    def target(self, node=OWNER):
        return self.peer_address(node)

    def metrics_url(self, node=OWNER):
        return super().metrics_url(node)

    def pid(self, node=OWNER):
        return self.launcher.node(node).pid

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
