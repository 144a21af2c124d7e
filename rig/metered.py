"""Real daemons of the mutual-standby layout, each serving ``[metrics]``: read from outside.

The security negatives, the attacks of a hostile insider and the flood tests
and benchmarks all start the same three daemons (alpha holds A, beta stands
by, the witness votes), wait until every node sees the others alive, hurt
them from an address of the launcher's block, and then read the daemons'
counters from their Prometheus endpoints. This is that rig, once.
"""

import urllib.request

from clsd.polling import wait_for
from rig.addresses import address_range
from rig.cluster import ClusterRig, active_standby
from rig.failover import last_states
from rig.launcher import Launcher, free_port


class MeteredCluster:
    """A L{Launcher} of C{layout}'s nodes, each with a metrics endpoint on its own address.

    @param workdir: where the nodes' directories go.
    @param cleanups: a L{rig.faults.cleanup.Cleanups} (the launcher's).
    @param extra: more configuration tables for every node (e.g. ``{"peer": {...}}``).
    """

    def __init__(self, workdir, *, cleanups, layout=None, extra=None):
        self.layout = layout or active_standby()
        self.rig = ClusterRig(self.layout)
        self.nodes = list(self.layout.nodes)
        self.metrics_ports = {}

        def part(node, launcher):
            address = launcher.address(node.name)
            if node.name not in self.metrics_ports:
                self.metrics_ports[node.name] = free_port(address)
            tables = {"metrics": {"listen": f"{address}:{self.metrics_ports[node.name]}"}}
            tables.update(extra or {})
            return tables

        self.launcher = Launcher(str(workdir), self.nodes,
                                 template=self.rig.template().with_part(part),
                                 cleanups=cleanups)

    def start(self, cluster="A", timeout=60):
        """Start every node; return once C{cluster} runs and every node sees the others."""
        self.launcher.start_all()
        self.launcher.wait_running(cluster=cluster, timeout=timeout)
        wait_for(self.converged, timeout=timeout, what="every node sees the others alive")

    def converged(self):
        for observer in self.nodes:
            states = last_states(self.launcher, observer, 0)
            if any(states.get(other) != "alive" for other in self.nodes if other != observer):
                return False
        return True

    def spare_addresses(self, count):
        """Addresses of the launcher's block after the nodes' (an attacker's, a spare's)."""
        return address_range(self.launcher.address(self.nodes[-1]), count + 1)[1:]

    def peer_address(self, node):
        return self.rig.peer_address(self.launcher, node)

    # -- reading the counters -----------------------------------------------------------

    def metrics_url(self, node):
        return f"http://{self.launcher.address(node)}:{self.metrics_ports[node]}/metrics"

    def scrape(self, node):
        """Every sample of C{node}'s endpoint: C{{(name, sorted labels): value}}."""
        from prometheus_client.parser import text_string_to_metric_families

        with urllib.request.urlopen(self.metrics_url(node), timeout=10) as response:
            text = response.read().decode()
        return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples}

    def counter(self, node, name, **labels):
        """One sample's value on C{node}; 0 when the endpoint does not show it (yet)."""
        return self.scrape(node).get((name, tuple(sorted(labels.items()))), 0)

    def by_label(self, node, name, label):
        """C{{value of label: sample value}} of every C{name} sample on C{node}."""
        return {dict(labels)[label]: value
                for (sample, labels), value in self.scrape(node).items() if sample == name}
