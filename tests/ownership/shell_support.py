"""Shared pieces for the ownership shell tests (not a test module itself).

L{MemoryNetwork} connects several L{OwnershipService}s in one process: a
message is JSON-encoded and decoded (as the peer layer would) and delivered
on a later reactor turn; membership is an oracle that tells every node who
is reachable and what each published.  L{MemoryNetwork.isolate} cuts one
node off: its messages are dropped both ways and, after C{detection}
seconds, each side sees the other as gone.
"""

import functools
import json

from clsd.config import parse_config
from rig.tomlgen import dumps


def ownership_config(name, voters, clusters, data_dir, services, *, lease=2.0,
                     drift_margin=0.1):
    """A parsed L{Config} for node C{name}.

    C{clusters}: dicts for ``[[cluster]]``; C{services}: dicts for ``[[service]]``.
    """
    data = {
        "node": {"name": name, "data_dir": data_dir},
        "quorum": {"voters": list(voters), "lease": lease, "drift_margin": drift_margin},
        "service": list(services),
        "cluster": list(clusters),
    }
    if not services:
        del data["service"]
    if not clusters:
        del data["cluster"]
    return parse_config(dumps(data), f"<{name}>")


class MemoryNetwork:
    def __init__(self, reactor, detection=0.3):
        self.reactor = reactor
        self.detection = detection
        self.services = {}
        self.published = {}
        self.cut = set()
        self.delivered = 0
        self.dropped = 0
        self.closed = False

    def close(self):
        """Deliver nothing more (the test is tearing down)."""
        self.closed = True

    def add(self, name, service):
        self.services[name] = service
        service.connect(send=functools.partial(self._send, name),
                        publish=functools.partial(self._publish, name))

    def _send(self, sender, to, wire):
        data = json.loads(json.dumps(wire))
        if self.closed or sender in self.cut or to in self.cut:
            self.dropped += 1
            return
        self.reactor.callLater(0, self._deliver, sender, to, data)

    def _deliver(self, sender, to, data):
        if self.closed or sender in self.cut or to in self.cut or to not in self.services:
            self.dropped += 1
            return
        self.delivered += 1
        self.services[to].receive(sender, data)

    def _publish(self, name, wire):
        self.published[name] = json.loads(json.dumps(wire))
        if not self.closed:
            self.reactor.callLater(0, self.update_members)

    def view(self, name):
        if name in self.cut:
            return {}
        return {other: self.published.get(other) for other in self.services
                if other != name and other not in self.cut}

    def update_members(self):
        if self.closed:
            return
        for name, service in self.services.items():
            service.members_changed(self.view(name))

    def isolate(self, name):
        """Cut C{name} off now; membership notices after C{detection} seconds."""
        self.cut.add(name)
        self.reactor.callLater(self.detection, self.update_members)

    def heal(self, name):
        self.cut.discard(name)
        self.reactor.callLater(self.detection, self.update_members)
