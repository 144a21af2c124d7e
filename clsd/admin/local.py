"""The admin backend of a running L{clsd.daemon.Daemon}.

It reads and drives the parts the daemon has today: supervision and the
event history. Operations that belong to parts not yet wired into the
daemon (membership, ownership, reload) keep answering "not available" from
L{UnavailableBackend}, so the shell never pretends.
"""

import datetime

from zope.interface import implementer

from clsd.admin.backend import (
    AdminError, HistoryEvent, IAdminBackend, MemberInfo, QuorumInfo, ServiceInfo, Status,
    UnavailableBackend,
)


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
        return Status(
            node=self.node,
            members=self.members(),
            clusters=self.clusters(),
            services=self.services(),
            quorum=QuorumInfo(voters=(self.node,), have_quorum=True),
        )

    def members(self):
        # Until membership is wired in, a node knows only itself.
        return (MemberInfo(name=self.node, state="alive", address="-"),)

    def clusters(self):
        return ()

    def services(self):
        return tuple(
            ServiceInfo(name=status["name"], state=status["state"], pid=status["pid"],
                        restarts=status["restarts"])
            for status in (runner.status() for runner in self.daemon.supervisors())
        )

    def history(self, n):
        return tuple(
            HistoryEvent(time=_event_time(event), kind=_event_kind(event),
                         detail=event["reason"])
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

    def manhole_namespace(self):
        return {
            "daemon": self.daemon,
            "config": self.daemon.config,
            "events": self.daemon.events,
            "supervisor": self.daemon.supervisor,
            "reactor": self.daemon.reactor,
            "backend": self,
        }
