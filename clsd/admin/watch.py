"""``status --watch`` (and ``members``, ``clusters``, ``services --watch``): a live view.

L{frame} lays one screen out (pure): a title line, the command's tables cut to the terminal,
the last few events under them. L{WatchLoop} looks again at every event of the daemon (a member
suspected, a lease taken, a service restarted) and every L{POLL} seconds without one (what
other nodes publish is not an event here), on the reactor's clock; it hands a frame on only
when it changed, and at most one every L{INTERVAL} seconds. The SSH session draws it on a terminal (clsd.admin.shell)
or, without a pty, writes each changed frame as plain text.
"""

from twisted.internet import defer

from clsd.admin.table import printable, utc_time

#: The shortest time between two looks (and so between two redraws), in seconds.
INTERVAL = 0.5
#: Without an event, a look this often: what other nodes publish is not an event here.
POLL = 1.0
#: Events shown under the tables, when they fit.
EVENT_LINES = 5
#: Without a terminal size (no pty), frames are this wide and are not cut in height.
PLAIN_WIDTH = 80


def _cut(line, width):
    return line if len(line) <= width else line[:max(width - 1, 0)] + "~"


def frame(title, body, events, now, width=80, height=24):
    """One screen: C{title}, the time and how to leave, C{body} (the command's text), and the
    last C{events} (L{clsd.admin.backend.HistoryEvent}s, oldest first) under it.

    Every line is cut to C{width} - 1 (a full last column makes some terminals wrap). With a
    C{height}, the body is cut first to leave room for the events (at least two), and the
    frame is at most C{height} - 1 lines (the cursor's line stays free). C{height} None: no
    height limit (plain output).
    """
    width = max(width - 1, 20)
    head = [_cut(f"{title}  {utc_time(now)}  (q or Ctrl-C ends)", width), ""]
    lines = body.rstrip("\n").split("\n") if body.strip() else []
    event_lines = [_cut(f"{utc_time(e.time)[11:]}  {printable(e.kind)}  {printable(e.detail)}",
                        width) for e in events[-EVENT_LINES:]]
    tail = (["", "recent events:"] + event_lines) if event_lines else []
    if height is not None:
        room = max(height - 1 - len(head), 3)
        keep_events = min(len(event_lines), max(room - len(lines) - 2, 2))
        tail = (["", "recent events:"] + event_lines[len(event_lines) - keep_events:]
                if keep_events > 0 else [])
        body_room = room - len(tail)
        if len(lines) > body_room:
            cut = len(lines) - body_room + 1
            lines = lines[:body_room - 1] + [f"... ({cut} more lines: a taller terminal "
                                             "shows them)"]
    return "\n".join(head + [_cut(line, width) for line in lines] + tail) + "\n"


class WatchLoop:
    """Looks at every event (at most every L{INTERVAL} s) and every L{POLL} s; calls
    C{show(text)} when the frame changed.

    @param look: C{() -> Deferred (body text, events)}; a failure shows as the body.
    @param clock: the reactor (C{callLater}, C{seconds}) the looks are timed on.
    @param wall: wall-clock time for the title line.
    @param size: C{() -> (width, height)}; height None for plain output.
    @param subscribe: C{(callback) -> unsubscribe}: the daemon's events (see
        L{clsd.admin.backend.IAdminBackend.subscribe}), or None to poll only.
    """

    def __init__(self, title, look, show, clock, wall, size, subscribe=None):
        self.title = title
        self._subscribe = subscribe
        self._unsubscribe = None
        #: When the last frame was shown: the next one waits L{INTERVAL} after it.
        self._last_shown = None
        #: An event came during a look: look again after INTERVAL rather than POLL.
        self._again = False
        self._look = look
        self._show = show
        self._clock = clock
        self._wall = wall
        self._size = size
        self._call = None
        self._last = None
        self._busy = False
        self.running = False
        #: Frames shown, for tests and the audit.
        self.frames = 0

    def start(self):
        self.running = True
        if self._subscribe is not None:
            self._unsubscribe = self._subscribe(self.poke)
        self._tick()

    def stop(self):
        self.running = False
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._schedule(None)

    def poke(self):
        """Something happened: look now, or once L{INTERVAL} has passed since the last frame."""
        if not self.running:
            return
        if self._busy:
            self._again = True
            return
        soonest = self._last_shown + INTERVAL if self._last_shown is not None else 0.0
        self._schedule(max(soonest - self._clock.seconds(), 0.0), earlier_only=True)

    def _schedule(self, delay, earlier_only=False):
        """The next look in C{delay} s (None: none); keeps an earlier one if C{earlier_only}."""
        if self._call is not None and self._call.active():
            if earlier_only and self._call.getTime() <= self._clock.seconds() + delay:
                return
            self._call.cancel()
        self._call = None if delay is None else self._clock.callLater(delay, self._tick)

    def redraw(self):
        """Show the frame again, laid out anew (the terminal was resized or cleared)."""
        self._last = None
        self.poke()

    def _tick(self):
        self._call = None
        if not self.running or self._busy:
            return
        self._busy = True
        d = defer.maybeDeferred(self._look)
        d.addErrback(lambda failure: (f"error: {failure.getErrorMessage()}\n", ()))
        d.addCallback(self._render)

    def _render(self, found):
        self._busy = False
        if not self.running:
            return
        body, events = found
        width, height = self._size()
        # The title's clock ticks every second; a frame is new when its content is.
        text = frame(self.title, body, events, self._wall(), width, height)
        content = text.split("\n", 1)[1]
        if content != self._last:
            self._last = content
            self._last_shown = self._clock.seconds()
            self.frames += 1
            self._show(text)
        again, self._again = self._again, False
        self._schedule(INTERVAL if again else POLL)
