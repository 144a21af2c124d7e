"""The admin backend of a running L{clsd.daemon.Daemon}.

It reads and drives the parts the daemon has: supervision, the event
history, membership (when the node listens for peers) and lease ownership
(when ``[quorum]`` is set), and reloads the configuration. What is not
wired (membership on a node alone) keeps answering "not available" from
L{UnavailableBackend}, so the shell never pretends.
"""

import datetime

from zope.interface import implementer

from clsd.admin.backend import (
    AdminError, ClusterInfo, HistoryEvent, IAdminBackend, MemberInfo, ProtocolInfo, QuorumInfo,
    ServiceInfo, Status, UnavailableBackend, not_available,
)
from clsd.admin.ownership_status import ownership_status


def _event_time(event):
    """The wall-clock time of an event record, for display only."""
    stamp = event["ts"].replace("Z", "+00:00")
    return datetime.datetime.fromisoformat(stamp).timestamp()


def _event_kind(event):
    if event["kind"] == "state" and "to" in event["fields"]:
        return f"{event['subject']}:{event['fields']['to']}"
    return f"{event['subject']}:{event['kind']}"


@implementer(IAdminBackend)
class DaemonBackend(UnavailableBackend):
    """What the admin shell can see and do on this daemon."""

    def __init__(self, daemon):
        super().__init__(daemon.config.node.name)
        self.daemon = daemon

    def status(self):
        # Ownership is read once for both the clusters and the quorum.
        ownership = (ownership_status(self.daemon.ownership)
                     if self.daemon.ownership is not None else None)
        return Status(
            node=self.node,
            members=self.members(),
            clusters=self.clusters(ownership),
            services=self.services(),
            quorum=self.quorum(ownership),
            protocol=self.protocol(),
        )

    def protocol(self):
        cluster = self.daemon.cluster_protocol()
        return ProtocolInfo(version=cluster.version, held_back_by=cluster.held_back_by)

    def members(self):
        from clsd.version import protocol_range, software_version

        membership = self.daemon.membership
        if membership is None or membership.core is None:
            # A node alone (no [node] listen) knows only itself.
            return (MemberInfo(name=self.node, state="alive", address="-",
                               version=software_version(), protocols=protocol_range()),)
        versions = self.daemon.member_versions()
        incompatible = dict(self.daemon.network.incompatible)
        members = []
        for info in membership.members():
            name = info.member.name
            software, protocols = versions.get(name, (None, None))
            state = "incompatible" if incompatible.pop(name, None) else info.member.state.value
            members.append(MemberInfo(
                name=name, state=state, address=info.member.address, version=software,
                protocols=(protocols.low, protocols.high) if protocols is not None else ()))
        # Refused at the hello, so never a member here: shown all the same.
        members.extend(MemberInfo(name=name, state="incompatible", address="-")
                       for name in sorted(incompatible))
        return tuple(members)

    def _ownership(self, command):
        ownership = self.daemon.ownership
        if ownership is None:
            raise not_available(f"'{command}': this node has no [quorum] (no lease ownership)")
        return ownership

    def clusters(self, status=None):
        """C{status}: L{ownership_status} already read, else it is read now."""
        if self.daemon.ownership is None:
            return ()
        status = status or ownership_status(self.daemon.ownership)
        here = tuple(
            ClusterInfo(id=c["id"], owners=tuple(sorted(c["owners"])), epoch=c["epoch"] or 0,
                        state=f"waiting: {c['waiting']}" if c["state"] == "waiting"
                        else c["state"], addresses=tuple(sorted(c["addresses"].items())),
                        members=tuple((m["name"], m["state"]) for m in c["member_states"] or ())
                        ).with_view(c["view"])
            for c in status["clusters"])
        # Clusters only other nodes register for: shown so that every node (a witness too)
        # tells the same story; this node's role in them is "not registered".
        elsewhere = tuple(
            ClusterInfo(id=c["id"], owners=tuple(sorted(c["owners"])), epoch=c["epoch"] or 0,
                        state="not-registered").with_view(c["view"])
            for c in status.get("elsewhere", ()))
        return here + elsewhere

    def quorum(self, status=None):
        if self.daemon.ownership is None:
            return QuorumInfo(voters=(self.node,), have_quorum=True)
        status = status or ownership_status(self.daemon.ownership)
        quorum, voter = status["quorum"], status.get("voter") or {}
        return QuorumInfo(voters=tuple(quorum["voters"]), have_quorum=quorum["have_quorum"],
                          previous_voters=tuple(quorum.get("previous_voters", ())),
                          voters_apart=tuple(quorum.get("voters_apart", ())),
                          voter_error=voter.get("floor_error"))

    def _this_node(self, node, command):
        if node not in (None, self.node):
            raise AdminError(f"'{command}' acts on this node only: run it on {node}")

    def _call(self, command, method, *args):
        from clsd.ownership.core.manager import ManagerError

        try:
            method(*args)
        except (ManagerError, KeyError) as e:
            raise AdminError(f"{command}: {e.args[0] if e.args else e}") from None

    def standby(self, node):
        self._this_node(node, "standby")
        self._call("standby", self._ownership("standby").standby)
        return f"{self.node} is standing by: its clusters move away"

    def unstandby(self, node):
        self._this_node(node, "unstandby")
        self._call("unstandby", self._ownership("unstandby").unstandby)
        return f"{self.node} may own clusters again"

    def move(self, cluster, node, key=""):
        self._call("move", lambda: self._ownership("move").move(cluster, node, key=key))
        return f"cluster {cluster} is moving to {node}"

    def pause(self, cluster):
        self._call("pause", self._ownership("pause").pause, cluster)
        return f"cluster {cluster} paused"

    def resume(self, cluster):
        self._call("resume", self._ownership("resume").resume, cluster)
        return f"cluster {cluster} resumed"

    def _membership(self, command):
        membership = self.daemon.membership
        if membership is None or membership.core is None:
            raise not_available(f"'{command}': this node has no peers (no [node] listen)")
        return membership

    def leave(self):
        membership = self._membership("leave")
        if self.daemon.ownership is not None and self.daemon.ownership.node is not None:
            self.daemon.ownership.standby()  # hand clusters over first
        membership.leave()
        self.daemon.events.record("admin", self.node, "leave by operator")
        return f"{self.node} is leaving the cluster"

    def force_remove(self, node):
        from clsd.membership.core.node import MembershipError

        membership = self._membership("force-remove")
        try:
            membership.force_remove(node)
        except MembershipError as e:
            raise AdminError(str(e)) from None
        self.daemon.events.record("admin", node, "force-removed by operator")
        return f"{node} removed from the membership"

    def services(self):
        return tuple(
            ServiceInfo(name=status["name"], state=status["state"], pid=status["pid"],
                        restarts=status["restarts"], type=status["type"],
                        main_pid=status["main_pid"], processes=status["processes"],
                        last_action=status["last_action"])
            for status in (runner.status() for runner in self.daemon.supervisors())
        )

    def history(self, n):
        return tuple(
            HistoryEvent(time=_event_time(event), kind=_event_kind(event),
                         detail=event["reason"],
                         cause=tuple(str(c) for c in event["fields"].get("cause") or ()))
            for event in self.daemon.events.recent(n)
        )

    def reset(self, service):
        try:
            runner = self.daemon.supervisor(service)
        except KeyError as e:
            raise AdminError(e.args[0]) from None
        before = runner.status()["state"]
        runner.reset()
        self.daemon.events.record("admin", service, "reset by operator", previous=before)
        return f"service {service} reset (was {before})"

    def reload(self):
        from clsd.daemon import ReloadError

        def refused(failure):
            failure.trap(ReloadError)
            raise AdminError(f"configuration not reloaded, nothing changed: {failure.value}")

        return self.daemon.reload().addErrback(refused)

    def subscribe(self, callback):
        return self.daemon.events.add_listener(lambda event: callback())

    def manhole_namespace(self):
        return {
            "daemon": self.daemon,
            "config": self.daemon.config,
            "events": self.daemon.events,
            "supervisor": self.daemon.supervisor,
            "membership": self.daemon.membership,
            "ownership": self.daemon.ownership,
            "network": self.daemon.network,
            "reactor": self.daemon.reactor,
            "backend": self,
        }
