"""The admin audit trail: every login, refusal, session, command and manhole line.

Each event is a twisted.logger event with a readable message and fields for
machines: ``admin_event`` (login, refused, session, command, manhole,
logout), ``via`` (ssh, telnet), ``user``, ``role``, ``credential`` (key
fingerprint or "password"), ``peer``, and per event ``command``, ``status``,
``reason``.
"""

import attrs
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.logger import Logger

from clsd.logs import emit


def format_peer(address):
    """``127.0.0.1:50022`` / ``[::1]:50022`` for an IP address, ``str()`` otherwise."""
    if isinstance(address, IPv6Address):
        return f"[{address.host}]:{address.port}"
    if isinstance(address, IPv4Address):
        return f"{address.host}:{address.port}"
    return str(address)


@attrs.frozen
class Who:
    """One authenticated operator session: who, with what, from where."""

    via: str
    user: str
    role: str
    #: ``SHA256:...`` of the SSH key, or ``password`` for the telnet manhole.
    credential: str
    peer: str

    def fields(self):
        return attrs.asdict(self)

    def __str__(self):
        return (f"{self.role} {self.credential} (user {self.user!r}) "
                f"via {self.via} from {self.peer}")


class Audit:
    """Writes the audit events to a L{Logger} (namespace ``clsd.admin`` by default)."""

    def __init__(self, log=None):
        self.log = log or Logger(namespace="clsd.admin")

    def login(self, who):
        emit(self.log, "admin.login", "admin login: {who}", admin_event="login", who=str(who),
             **who.fields())

    def refused(self, via, user, peer, method, reason):
        self.log.warn(
            "admin login refused: {method} for user {user!r} via {via} from {peer}: {reason}",
            admin_event="refused", via=via, user=user, peer=peer, method=method, reason=reason,
        )

    def session(self, who, kind):
        self.log.info("admin {kind} session opened: {who}", admin_event="session", kind=kind,
                      who=str(who), **who.fields())

    def command(self, who, line, outcome):
        emit(
            self.log, "admin.command",
            "admin command {command!r} by {who}: exit {status}{reason_text}",
            admin_event="command", command=line, status=outcome.status, reason=outcome.reason,
            reason_text=f" ({outcome.reason})" if outcome.reason else "",
            who=str(who), **who.fields(),
        )
        if outcome.failure is not None:
            self.log.failure("admin command {command!r} crashed", failure=outcome.failure,
                             command=line)

    def manhole(self, who, line):
        self.log.info("admin manhole input by {who}: {code!r}", admin_event="manhole",
                      code=line, who=str(who), **who.fields())

    def logout(self, who):
        self.log.info("admin logout: {who}", admin_event="logout", who=str(who), **who.fields())
