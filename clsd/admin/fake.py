"""An in-memory L{IAdminBackend}: a small believable cluster for tests and demos.

It keeps just enough state for every command to have a visible effect
(``pause A`` makes ``clusters`` show A paused) and refuses the mistakes a
real backend refuses (unknown names, a dead target), so the admin layer can
be tested end to end before the daemon's real parts exist. It makes no
placement decisions and guarantees nothing about safety.
"""

from twisted.internet import defer
from zope.interface import implementer

from clsd.admin.backend import (
    AdminError, ClusterInfo, HistoryEvent, IAdminBackend, MemberInfo, ProtocolInfo, QuorumInfo,
    ServiceInfo, Status, not_available,
)
from clsd.admin.ownership_status import cluster_view

#: A fixed wall-clock start for history timestamps, so output is reproducible.
FAKE_EPOCH_TIME = 1_700_000_000.0


@implementer(IAdminBackend)
class FakeBackend:
    """Node C{alpha} of a three-voter cluster with two cluster IDs and two services.

    @ivar calls: every operation called, as C{(name, args)} tuples, in order.
    @param unavailable: operation names (``"leave"``, ``"force_remove"``) that
        answer like a backend which cannot do them yet.
    @param asynchronous: return every result as a Deferred, as a real
        backend talking to other nodes would.
    """

    def __init__(self, node="alpha", *, unavailable=(), asynchronous=False):
        self.node = node
        self.unavailable = frozenset(unavailable)
        self.asynchronous = asynchronous
        self.calls = []
        self._subscribers = []
        #: Set to a reason to make the next ``reload`` fail as a bad file would.
        self.reload_error = None
        self._members = {
            node: MemberInfo(node, "alive", "127.0.0.11:7400", "0.1.0", (2, 2)),
            "beta": MemberInfo("beta", "alive", "127.0.0.12:7400", "0.1.0", (2, 3)),
            "witness": MemberInfo("witness", "alive", "127.0.0.13:7400", "0.1.0", (2, 2)),
            "gamma": MemberInfo("gamma", "dead", "127.0.0.14:7400"),
        }
        self._standby = set()
        self._clusters = {
            "A": ClusterInfo("A", [node], 7, "running"),
            "B": ClusterInfo("B", ["beta"], 3, "running"),
        }
        self._services = {
            "web": ServiceInfo("web", "running", 1234, 0),
            "db": ServiceInfo("db", "failed", None, 5),
        }
        self._voters = (node, "beta", "witness")
        #: Cluster -> its candidates, best first (this node and beta stand by for each other).
        self._candidates = {"A": (node, "beta"), "B": ("beta", node)}
        self._history = [
            HistoryEvent(FAKE_EPOCH_TIME, "service-started", "web pid 1234"),
            HistoryEvent(FAKE_EPOCH_TIME + 1, "lease-acquired", "cluster A epoch 7"),
            HistoryEvent(FAKE_EPOCH_TIME + 2, "service-failed", "db: 5 failures in 60s"),
        ]

    # -- plumbing -----------------------------------------------------------

    def _enter(self, name, *args):
        self.calls.append((name, args))
        if name in self.unavailable:
            raise not_available(f"'{name.replace('_', '-')}' is not wired into this daemon yet")

    def _answer(self, value):
        return defer.succeed(value) if self.asynchronous else value

    def _record(self, detail):
        time = self._history[-1].time + 1 if self._history else FAKE_EPOCH_TIME
        self._history.append(HistoryEvent(time, "admin", detail))
        for callback in list(self._subscribers):
            callback()
        return self._answer(detail)

    def subscribe(self, callback):
        self._subscribers.append(callback)
        return lambda: callback in self._subscribers and self._subscribers.remove(callback)

    def _member(self, name):
        if name not in self._members:
            raise AdminError(f"no member named {name!r}")
        return self._members[name]

    def _cluster(self, cluster):
        if cluster not in self._clusters:
            raise AdminError(f"no cluster named {cluster!r}")
        return self._clusters[cluster]

    # -- reading ------------------------------------------------------------

    def status(self):
        self._enter("status")
        alive = {m.name for m in self._members.values() if m.state == "alive"}
        have_quorum = 2 * len(alive.intersection(self._voters)) > len(self._voters)
        return self._answer(Status(
            node=self.node,
            members=self._members.values(),
            clusters=self._worded_clusters(),
            services=self._services.values(),
            quorum=QuorumInfo(self._voters, have_quorum),
            protocol=ProtocolInfo(2, (self.node, "witness")),
        ))

    def members(self):
        self._enter("members")
        return self._answer(tuple(self._members.values()))

    def clusters(self):
        self._enter("clusters")
        return self._answer(self._worded_clusters())

    def _worded_clusters(self):
        """The clusters with their wording, as the real backend gives it."""
        worded = []
        for info in self._clusters.values():
            alive = [n for n in self._candidates.get(info.id, ())
                     if n in self._members and self._members[n].state == "alive"
                     and n not in self._standby]
            standbys = [n for n in alive if n not in info.owners]
            view = cluster_view(node=self.node, owners=info.owners, targets=list(info.owners),
                                standbys=standbys, paused=info.state == "paused",
                                registered=self.node in self._candidates.get(info.id, ()),
                                standby_mode=self.node in self._standby)
            worded.append(info.with_view(view))
        return tuple(worded)

    def services(self):
        self._enter("services")
        return self._answer(tuple(self._services.values()))

    def history(self, n):
        self._enter("history", n)
        return self._answer(tuple(self._history[-n:]))

    # -- changing -----------------------------------------------------------

    def standby(self, node):
        node = node or self.node
        self._enter("standby", node)
        self._member(node)
        if node in self._standby:
            raise AdminError(f"node {node!r} is already a standby")
        self._standby.add(node)
        return self._record(f"node {node} is now a standby")

    def unstandby(self, node):
        node = node or self.node
        self._enter("unstandby", node)
        self._member(node)
        if node not in self._standby:
            raise AdminError(f"node {node!r} is not a standby")
        self._standby.discard(node)
        return self._record(f"node {node} may own clusters again")

    def move(self, cluster, node, key=""):
        self._enter("move", cluster, node)
        info = self._cluster(cluster)
        member = self._member(node)
        if member.state != "alive":
            raise AdminError(f"member {node!r} is {member.state}, not alive")
        if node in self._standby:
            raise AdminError(f"member {node!r} is a standby")
        if tuple(info.owners) == (node,):
            raise AdminError(f"cluster {cluster!r} already runs on {node!r}")
        self._clusters[cluster] = ClusterInfo(cluster, [node], info.epoch + 1, info.state)
        return self._record(f"cluster {cluster} moved to {node} (epoch {info.epoch + 1})")

    def pause(self, cluster):
        self._enter("pause", cluster)
        info = self._cluster(cluster)
        if info.state == "paused":
            raise AdminError(f"cluster {cluster!r} is already paused")
        self._clusters[cluster] = ClusterInfo(cluster, info.owners, info.epoch, "paused")
        return self._record(f"cluster {cluster} paused")

    def resume(self, cluster):
        self._enter("resume", cluster)
        info = self._cluster(cluster)
        if info.state != "paused":
            raise AdminError(f"cluster {cluster!r} is not paused")
        self._clusters[cluster] = ClusterInfo(cluster, info.owners, info.epoch, "running")
        return self._record(f"cluster {cluster} resumed")

    def reset(self, service):
        self._enter("reset", service)
        if service not in self._services:
            raise AdminError(f"no service named {service!r}")
        info = self._services[service]
        self._services[service] = ServiceInfo(service, "starting", info.pid, 0)
        return self._record(f"service {service} reset")

    def leave(self):
        self._enter("leave")
        address = self._members[self.node].address
        self._members[self.node] = MemberInfo(self.node, "leaving", address)
        return self._record(f"node {self.node} is leaving")

    def force_remove(self, node):
        self._enter("force_remove", node)
        member = self._member(node)
        if node == self.node:
            raise AdminError("cannot force-remove this node itself; use 'leave'")
        if member.state == "alive":
            raise AdminError(f"member {node!r} is alive; only a dead one can be force-removed")
        del self._members[node]
        return self._record(f"member {node} removed")

    def reload(self):
        self._enter("reload")
        if self.reload_error is not None:
            raise AdminError(f"configuration not reloaded, nothing changed: {self.reload_error}")
        return self._record("configuration reloaded: no changes")

    def manhole_namespace(self):
        return {"backend": self, "node": self.node}
