"""What the exit code of an LSB init script or an OCF resource agent means.

Pure: the tables of doc/supervision.md ("Agent return codes"), as Pacemaker
reads them. An action's result is one of:

- L{OK}: it did what was asked (start: running; stop: stopped; monitor or
  status: running);
- L{NOT_RUNNING}: monitor/status found it stopped (a crash: restart here);
- L{SOFT}: a failure that a restart on this node may cure;
- L{HARD}: a failure of this node's installation or permissions (2 args,
  3 unimplemented, 4 permissions, 5 not installed): giving up this node;
- L{FATAL}: 6 not configured, the configuration itself is wrong: no node
  can run it; this node gives up (the others will find the same).
"""

import attrs

OK = "ok"
NOT_RUNNING = "not-running"
SOFT = "soft"
HARD = "hard"
FATAL = "fatal"

#: The OCF return codes (also those of LSB actions other than status).
OCF_CODES = {
    0: ("success", OK),
    1: ("generic error", SOFT),
    2: ("invalid arguments", HARD),
    3: ("unimplemented action", HARD),
    4: ("insufficient privileges", HARD),
    5: ("not installed", HARD),
    6: ("not configured", FATAL),
    7: ("not running", NOT_RUNNING),
}

#: LSB ``status``: 0 running, 1/2 dead with a pid/lock file left, 3 stopped, 4 unknown.
LSB_STATUS_CODES = {
    0: ("running", OK),
    1: ("dead, pid file exists", NOT_RUNNING),
    2: ("dead, lock file exists", NOT_RUNNING),
    3: ("not running", NOT_RUNNING),
    4: ("status unknown", SOFT),
}

#: The probing action of each agent type.
MONITOR_ACTION = {"lsb": "status", "ocf": "monitor"}


@attrs.frozen
class Outcome:
    """One action's result as the policy sees it."""

    result: str
    #: For the event log: "monitor: not running (rc 7)".
    detail: str

    @property
    def gives_up(self) -> bool:
        """Whether this node gives the service up (FAILED) rather than restarting it."""
        return self.result in (HARD, FATAL)


def classify(kind: str, action: str, code: int | None, timed_out: bool = False,
             signum: int | None = None) -> Outcome:
    """The L{Outcome} of C{action} (start, stop, monitor, status) of a C{kind} agent."""
    if timed_out:
        return Outcome(SOFT, f"{action}: timed out (killed)")
    if code is None:
        return Outcome(SOFT, f"{action}: killed by signal {signum}")
    table = LSB_STATUS_CODES if (kind, action) == ("lsb", "status") else OCF_CODES
    meaning, result = table.get(code, ("unknown return code", SOFT))
    if result is NOT_RUNNING and action not in ("monitor", "status"):
        result = SOFT  # start or stop answering "not running" failed at its job
    return Outcome(result, f"{action}: {meaning} (rc {code})")
