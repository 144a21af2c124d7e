"""The admin command language: parse one line, check the role, ask the backend, render.

Pure: no I/O, no reactor, no clock. The SSH shells feed it lines and write
out the L{Outcome} it returns; because a backend operation may return a
Deferred, L{run_line} returns one too.

Exit statuses (the same in every shell and in ``ssh HOST CMD``):
L{EXIT_OK}, L{EXIT_FAILED} (the operation was refused or failed),
L{EXIT_USAGE} (unknown command, wrong arguments), L{EXIT_DENIED} (a
read-only key asked for a command that changes something).
"""

import json
import shlex

import attrs
from twisted.internet import defer

from clsd.admin.backend import AdminError
from clsd.admin.table import format_table, printable, utc_time
from clsd.admin.why import WHY_HISTORY, why_data, why_report, why_text

ROLE_ADMIN = "admin"
#: Read-only: may look (status, members, ...) but change nothing.
ROLE_MONITOR = "monitor"
ROLES = (ROLE_ADMIN, ROLE_MONITOR)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DENIED = 3

#: ``history`` without N: about one screenful.
DEFAULT_HISTORY = 20
#: A bound so that one typo (``history 99999999``) cannot build a huge reply.
MAX_HISTORY = 10_000

JSON_FLAG = "--json"
HELP_FLAGS = ("-h", "--help")
#: A live view of the command's tables (clsd.admin.watch).
WATCH_FLAG = "--watch"
#: The commands that can be watched.
WATCHABLE = ("status", "members", "clusters", "services")


@attrs.frozen
class Outcome:
    """What one command line produced: text for stdout and stderr, and an exit status."""

    status: int
    stdout: str = ""
    stderr: str = ""
    #: The ``manhole`` command: the shell should now open a Python REPL.
    enter_manhole: bool = False
    #: An unexpected exception (a bug), for the log; the operator sees one line.
    failure: object = attrs.field(default=None, eq=False, repr=False)
    #: ``--watch``: the command line (without the flag) the session should show live;
    #: C{stdout} is its first rendering.
    watch: str | None = None

    @property
    def reason(self):
        """The one-line reason of a failure ("" on success), for the audit log."""
        return self.stderr.strip().splitlines()[0] if self.stderr.strip() else ""


class UsageError(Exception):
    """The command line itself is wrong."""


@attrs.frozen
class Request:
    name: str
    args: tuple
    json: bool = False
    help: bool = False
    watch: bool = False


@attrs.frozen
class Command:
    name: str
    #: Argument names; optional ones are written ``[NAME]``.
    params: tuple
    summary: str
    #: Changes something: refused to read-only (monitor) keys.
    mutating: bool
    #: C{(backend, args) -> value or Deferred}.
    call: object
    #: C{value -> human text}.
    human: object
    #: C{value -> JSON-able object}.
    data: object
    #: C{call} also takes the session's L{clsd.admin.audit.Who} (or None): the
    #: command travels to another node, which records who asked.
    attributed: bool = False

    @property
    def usage(self):
        return " ".join((self.name,) + self.params)

    @property
    def min_args(self):
        return sum(1 for p in self.params if not p.startswith("["))


# -- rendering --------------------------------------------------------------


def _as_data(record):
    return attrs.asdict(record)


def members_table(members):
    return format_table(
        ["MEMBER", "STATE", "ADDRESS", "VERSION"],
        [(m.name, m.state, m.address, member_version(m)) for m in members]
    )


def member_version(member):
    """``0.1.0 (protocol 2)``; ``-`` where the member published none."""
    if member.version is None:
        return "-"
    low, high = member.protocols or (None, None)
    if low is None:
        return member.version
    return f"{member.version} (protocol {low if low == high else f'{low}-{high}'})"


def _protocol_line(protocol):
    if protocol is None:
        return ""
    version = "none in common" if protocol.version is None else str(protocol.version)
    behind = ("; held back by " + ", ".join(map(printable, protocol.held_back_by))
              if protocol.held_back_by else "")
    return f"protocol: {version}{behind}\n"


def clusters_table(clusters):
    """The clusters: STATE is the cluster's as it is everywhere (``running on beta``), THIS NODE
    this node's role for it (``standby #1``); an ADDRESS column when one has a floating address,
    a MEMBERS column when one is an ordered group.
    """
    floating = any(c.addresses for c in clusters)
    groups = any(c.members for c in clusters)
    return format_table(
        ["CLUSTER", "STATE", "OWNERS", "EPOCH", "THIS NODE"] + (["ADDRESS"] if floating else [])
        + (["MEMBERS"] if groups else []),
        [(c.id, c.summary or c.state, c.owners, c.epoch, c.role_text or None)
         + ((_addresses(c),) if floating else ()) + ((_members(c),) if groups else ())
         for c in clusters],
    )


def _members(cluster):
    """``vol running, db backoff, exp stopped``: an ordered group's members here, in order."""
    return ", ".join(f"{name} {state}" for name, state in cluster.members)


def _addresses(cluster):
    """``192.0.2.10/24 (up here)``: each floating address, and whether this node has it."""
    return ", ".join(f"{address} (up here)" if up else address
                     for address, up in cluster.addresses)


def services_table(services):
    return format_table(
        ["SERVICE", "STATE", "PID", "RESTARTS", "TYPE"],
        [(s.name, s.state, s.pid, s.restarts, s.type) for s in services],
    )


def history_table(events):
    """One line per event; an event with a cause chain gets one ``<- fact`` line per cause."""
    rows = []
    for e in events:
        rows.append((utc_time(e.time), e.kind, e.detail))
        rows.extend(("", "", f"  <- {fact}") for fact in e.cause)
    return format_table(["TIME (UTC)", "EVENT", "DETAIL"], rows)


def render_status(status):
    quorum = status.quorum
    voters = ", ".join(printable(v) for v in quorum.voters) or "none configured"
    if quorum.previous_voters:
        voters += "; changing from: " + ", ".join(printable(v) for v in quorum.previous_voters)
    apart = ""
    if quorum.voters_apart:
        apart = ("quorum:  other voter sets on " + ", ".join(map(printable, quorum.voters_apart))
                 + ": nothing new is acquired\n")
    return "".join([
        f"node:    {printable(status.node)}\n",
        f"quorum:  {'yes' if quorum.have_quorum else 'NO'} (voters: {voters})\n", apart,
        (f"voter:   GRANTS NOTHING: {printable(quorum.voter_error)}\n"
         if quorum.voter_error else ""),
        _protocol_line(status.protocol),
        "\n", members_table(status.members),
        "\n", clusters_table(status.clusters),
        "\n", services_table(status.services),
    ])


def status_json(status):
    """The document of ``status --json`` (one line), as the status page's ``/status.json``."""
    return _dump(_as_data(status))


def _message(text):
    return printable(text) + "\n"


def _ok_data(text):
    return {"ok": True, "message": text}


def _list_data(key):
    return lambda records: {key: [_as_data(r) for r in records]}


def _history_count(args):
    if not args:
        return DEFAULT_HISTORY
    text = args[0]
    if not text.isdigit() or not 1 <= int(text) <= MAX_HISTORY:
        raise UsageError(f"N must be a whole number from 1 to {MAX_HISTORY}, got {text!r}")
    return int(text)


def _why(backend, args):
    """The clusters, then the history: the latest change of cluster C{args[0]} and why."""
    d = defer.maybeDeferred(backend.clusters)
    d.addCallback(lambda clusters: defer.maybeDeferred(backend.history, WHY_HISTORY)
                  .addCallback(lambda events: why_report(args[0], clusters, events)))
    return d


def _optional(args):
    return args[0] if args else None


# -- the commands -----------------------------------------------------------


def _mutation(name, params, summary, call):
    return Command(name, params, summary, True, call, _message, _ok_data)


COMMANDS = {c.name: c for c in [
    Command("status", (), "this node, its members, clusters, services and quorum", False,
            lambda b, a: b.status(), render_status, _as_data),
    Command("members", (), "every known member and its state", False,
            lambda b, a: b.members(), members_table, _list_data("members")),
    Command("clusters", (), "every cluster ID: owners, fencing epoch, state", False,
            lambda b, a: b.clusters(), clusters_table, _list_data("clusters")),
    Command("services", (), "this node's services: state, pid, restarts", False,
            lambda b, a: b.services(), services_table, _list_data("services")),
    Command("history", ("[N]",), f"the last N events (default {DEFAULT_HISTORY})", False,
            lambda b, a: b.history(_history_count(a)), history_table, _list_data("history")),
    Command("why", ("CLUSTER",), "the latest ownership change of CLUSTER and its causes",
            False, _why, why_text, why_data),
    _mutation("standby", ("[NODE]",), "NODE (default: this node) hands over and only stands by",
              lambda b, a: b.standby(_optional(a))),
    _mutation("unstandby", ("[NODE]",), "NODE (default: this node) may own clusters again",
              lambda b, a: b.unstandby(_optional(a))),
    Command("move", ("CLUSTER", "NODE"), "move CLUSTER to member NODE", True,
            lambda b, a, who: b.move(a[0], a[1], key=admin_key(who)), _message, _ok_data,
            attributed=True),
    _mutation("pause", ("CLUSTER",), "stop failing CLUSTER over until resumed",
              lambda b, a: b.pause(a[0])),
    _mutation("resume", ("CLUSTER",), "undo pause",
              lambda b, a: b.resume(a[0])),
    _mutation("reset", ("SERVICE",), "clear SERVICE's failure state so it may start again",
              lambda b, a: b.reset(a[0])),
    _mutation("leave", (), "hand everything over and leave the membership",
              lambda b, a: b.leave()),
    _mutation("force-remove", ("NODE",), "declare NODE gone for good",
              lambda b, a: b.force_remove(a[0])),
    _mutation("reload", (), "re-read the configuration (a bad file changes nothing)",
              lambda b, a: b.reload()),
    Command("manhole", (), "a Python REPL inside the daemon (needs a terminal)", True,
            None, None, None),
    Command("help", ("[COMMAND]",), "this list, or one command's usage", False,
            None, None, None),
]}


def help_outcome(role, as_json, only=None):
    """The command list (or one command's usage) as an L{Outcome}."""
    commands = [COMMANDS[only]] if only else list(COMMANDS.values())
    if as_json:
        data = {"commands": [
            {"name": c.name, "usage": c.usage, "summary": c.summary, "admin_only": c.mutating}
            for c in commands
        ]}
        return Outcome(EXIT_OK, _dump(data))
    rows = []
    for c in commands:
        summary = c.summary
        if c.mutating and role != ROLE_ADMIN:
            summary += " (admin keys only)"
        rows.append((c.usage, summary))
    text = format_table(["COMMAND", "WHAT IT DOES"], rows)
    if not only:
        text += (f"Every command accepts {JSON_FLAG}; {', '.join(WATCHABLE)} accept "
                 f"{WATCH_FLAG} (a live view, q ends it).\n")
    return Outcome(EXIT_OK, text)


# -- parsing and running ----------------------------------------------------


def parse_line(line):
    """Split C{line} into a L{Request}; L{UsageError} when it cannot be parsed."""
    try:
        words = shlex.split(line)
    except ValueError as e:
        raise UsageError(f"cannot parse the command line: {e}") from None
    if not words:
        return Request("help", ())
    as_json = JSON_FLAG in words
    want_help = any(w in HELP_FLAGS for w in words)
    watch = WATCH_FLAG in words
    args = []
    for word in words:
        if word in (JSON_FLAG, WATCH_FLAG) or word in HELP_FLAGS:
            continue
        if word.startswith("-") and len(word) > 1:
            raise UsageError(f"unknown option {word!r}")
        args.append(word)
    if not args:
        return Request("help", (), as_json)
    return Request(args[0], tuple(args[1:]), as_json, want_help, watch)


def _dump(data):
    return json.dumps(data) + "\n"


def _error(status, reason, as_json, stdout=""):
    reason = printable(reason)
    if as_json:
        stdout = _dump({"ok": False, "error": reason})
    return Outcome(status, stdout, f"error: {reason}\n")


def admin_key(who):
    """The SSH key fingerprint of session C{who} (a L{clsd.admin.audit.Who}), or ""."""
    if who is None or who.via != "ssh":
        return ""
    return who.credential


def run_line(backend, role, line, who=None):
    """Run one command line for a session of C{role}: a Deferred L{Outcome}.

    C{who}: the session (L{clsd.admin.audit.Who}), for the commands that
    carry who asked to another node (L{Command.attributed}).

    Never fails: every error, expected or not, becomes an L{Outcome} with a
    non-zero status and a one-line reason.
    """
    try:
        request = parse_line(line)
    except UsageError as e:
        return defer.succeed(_error(EXIT_USAGE, str(e), JSON_FLAG in line.split()))
    command = COMMANDS.get(request.name)
    if command is None:
        return defer.succeed(_unknown(request, role))
    if command.name == "help" or request.help:
        return defer.succeed(_help(request, role))
    if not command.min_args <= len(request.args) <= len(command.params):
        return defer.succeed(_error(
            EXIT_USAGE, f"wrong number of arguments; usage: {command.usage}", request.json
        ))
    if command.mutating and role != ROLE_ADMIN:
        return defer.succeed(_error(
            EXIT_DENIED,
            f"'{command.name}' changes the cluster and needs an admin key; "
            "this session's key is read-only (monitor_keys)",
            request.json,
        ))
    if command.name == "manhole":
        if request.json:
            return defer.succeed(
                _error(EXIT_USAGE, "manhole is interactive; --json does not apply", True)
            )
        return defer.succeed(Outcome(EXIT_OK, enter_manhole=True))
    if request.watch:
        if command.name not in WATCHABLE:
            return defer.succeed(_error(
                EXIT_USAGE, f"{WATCH_FLAG} works with {', '.join(WATCHABLE)}", request.json))
        if request.json:
            return defer.succeed(_error(
                EXIT_USAGE, f"{WATCH_FLAG} shows tables; {JSON_FLAG} does not apply", True))
    if command.attributed:
        d = defer.maybeDeferred(command.call, backend, request.args, who)
    else:
        d = defer.maybeDeferred(command.call, backend, request.args)
    d.addCallback(_render, command, request)
    d.addErrback(_failed, request)
    return d


def _unknown(request, role):
    reason = f"unknown command {request.name!r}"
    if request.json:
        data = {"ok": False, "error": reason, "commands": list(COMMANDS)}
        return Outcome(EXIT_USAGE, _dump(data), f"error: {reason}\n")
    listing = help_outcome(role, False).stdout
    return _error(EXIT_USAGE, reason + "; the commands are:", False, listing)


def _help(request, role):
    if request.name == "help":
        if len(request.args) > 1:
            return _error(EXIT_USAGE, "usage: help [COMMAND]", request.json)
        topic = request.args[0] if request.args else None
    else:
        topic = request.name
    if topic is not None and topic not in COMMANDS:
        return _error(EXIT_USAGE, f"no command {topic!r}; try 'help'", request.json)
    return help_outcome(role, request.json, topic)


def _render(value, command, request):
    if request.json:
        return Outcome(EXIT_OK, _dump(command.data(value)))
    if request.watch:
        return Outcome(EXIT_OK, command.human(value),
                       watch=" ".join([request.name, *map(shlex.quote, request.args)]))
    return Outcome(EXIT_OK, command.human(value))


def _failed(failure, request):
    if failure.check(UsageError):
        return _error(EXIT_USAGE, str(failure.value), request.json)
    if failure.check(AdminError):
        return _error(EXIT_FAILED, str(failure.value) or "failed", request.json)
    outcome = _error(
        EXIT_FAILED,
        f"internal error: {failure.type.__name__}: {failure.getErrorMessage()} "
        "(details in the daemon log)",
        request.json,
    )
    return attrs.evolve(outcome, failure=failure)
