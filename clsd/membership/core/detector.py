"""Per-link failure suspicion: an observer watching its subjects' heartbeats.

Each observer keeps, for each subject it watches over a persistent
connection, when it last heard from it and since when the connection has
been down. A link *fails* when the subject has been silent longer than the
failure timeout, or when a connection that was up has been down longer than
a short grace (a killed process closes its sockets: no need to wait for
silence). A link that has never been up is judged by silence alone: on a
loaded machine, or after one lost SYN, the first dial and TLS handshake can
take longer than the grace, and a new observer must not report a subject it
simply has not reached yet (that turned joins of 64+ nodes into churn).
Such a link gets L{UNREACHED_FACTOR} times the failure timeout: a first
dial, TLS handshake, hello and watch take several round trips, which add up
to seconds on a saturated machine (a 512-node join on two cores), and a
subject that crashed before we reached it is reported by its other
observers, whose links were up, within the grace.
The detector only says which links fail; turning that into a report (once
per life of the subject) and into a verdict (cut.py) is the core's job.
"""

from collections.abc import Iterator

#: A subject never reached yet fails after this many failure timeouts of silence.
UNREACHED_FACTOR = 2


class _Link:
    __slots__ = ("last_heard", "down_since", "ever_up", "reported", "probed_at")

    def __init__(self, now: float) -> None:
        self.last_heard = now
        self.down_since: float | None = None
        #: Whether the connection was ever up: only then does the grace apply.
        self.ever_up = False
        #: The subject's (generation, incarnation) we last reported, if any.
        self.reported: tuple[int, int] | None = None
        self.probed_at = now


class Detector:
    def __init__(self) -> None:
        self._links: dict[str, _Link] = {}
        #: subject -> link state, for a caller's hot path (heard from X).
        self.links = self._links

    def __contains__(self, subject: object) -> bool:
        return subject in self._links

    def __iter__(self) -> Iterator[str]:
        return iter(self._links)

    def __len__(self) -> int:
        return len(self._links)

    def watch(self, subject: str, now: float, link_up: bool) -> _Link:
        """Start watching; a new subject gets a full timeout before it can fail."""
        link = self._links.get(subject)
        if link is None:
            link = self._links[subject] = _Link(now)
            link.ever_up = link_up
            if not link_up:
                link.down_since = now
        return link

    def unwatch(self, subject: str) -> None:
        self._links.pop(subject, None)

    def heard(self, subject: str, now: float) -> None:
        link = self._links.get(subject)
        if link is not None:
            link.last_heard = now

    def link_up(self, subject: str, now: float) -> None:
        """A connection to C{subject} opened: its handshake is news of it.

        The silence timeout starts again here. Counted from when we started
        watching, a subject whose connection took seconds to open (dialled
        on a saturated machine) had only the rest of failure_timeout to
        answer our Watch, and was reported at 4 to 5 s of "silence": nine
        of every ten reports in a 512-node join.
        """
        link = self._links.get(subject)
        if link is not None:
            link.down_since = None
            link.ever_up = True
            if now > link.last_heard:
                link.last_heard = now

    def link_down(self, subject: str, now: float) -> None:
        link = self._links.get(subject)
        if link is not None and link.down_since is None:
            link.down_since = now

    def restart(self, subject: str, now: float) -> None:
        """Give a subject a fresh timeout (it refuted; do not report it again at once)."""
        link = self._links.get(subject)
        if link is not None:
            link.last_heard = max(link.last_heard, now)
            if link.down_since is not None:
                link.down_since = now
            link.probed_at = now

    def credit_stall(self, stall: float) -> None:
        """We could not run for C{stall} seconds: that silence is ours, not theirs."""
        for link in self._links.values():
            link.last_heard += stall
            if link.down_since is not None:
                link.down_since += stall

    def check(self, now: float, timeout: float, grace: float,
              probe_after: float) -> tuple[list[tuple[str, _Link]], list[str]]:
        """Return (failing, quiet): links that fail, and links silent long
        enough to deserve a direct probe (a new Watch) before they fail."""
        failing: list[tuple[str, _Link]] = []
        quiet: list[str] = []
        unreached = timeout * UNREACHED_FACTOR
        for subject, link in self._links.items():
            silent = now - link.last_heard
            if silent > (timeout if link.ever_up else unreached) or (
                    link.ever_up and link.down_since is not None
                    and now - link.down_since > grace):
                failing.append((subject, link))
            elif silent > probe_after and now - link.probed_at > probe_after:
                link.probed_at = now
                quiet.append(subject)
        return failing, quiet
