"""The operator-facing protocols: the interactive shell, the line shell, the manhole.

They are transport-agnostic: each talks to a I{host} (the SSH session, or
the telnet login) that runs command lines through the command layer and the
audit log, and that knows how to end the session:

    host.run(line) -> Deferred[Outcome]     (already audited)
    host.role                               ("admin" or "monitor")
    host.open_manhole(shell)                (switch this terminal to a manhole)
    host.manhole_line(line)                 (audit one line typed in the manhole)
    host.write_error(text)                  (to stderr, where there is one)
    host.end(status)                        (end the session with an exit status)
    host.open_watch(shell, line)            (switch this terminal to a live view of line)
"""

from twisted.conch import manhole, recvline
from twisted.conch.insults import insults
from twisted.internet import threads
from twisted.protocols.basic import LineOnlyReceiver

from clsd.admin.budget import ManholeInterrupted, ReactorTimeBudget, cool_down
from clsd.admin.commands import EXIT_OK, EXIT_USAGE, ROLE_ADMIN

#: Lines of the non-terminal shell longer than this end the session: no
#: command is that long, and the buffer must stay bounded.
MAX_LINE_BYTES = 64 * 1024

#: Longer input lines of the interactive shell are refused key by key (bell).
MAX_LINE_CHARS = 4096

#: Words that end the interactive shell (besides Ctrl-D on an empty line).
EXIT_WORDS = ("exit", "quit", "logout")

CTRL_A, CTRL_C, CTRL_D = b"\x01", b"\x03", b"\x04"
CTRL_E, CTRL_L, CTRL_U = b"\x05", b"\x0c", b"\x15"

NEEDS_TERMINAL = "error: the manhole needs a terminal: use ssh -t HOST manhole\n"
#: The line shell shows a --watch command once: it reads its commands from its input.
WATCH_ONCE = ("note: no live view in a shell without a terminal; shown once "
              "(ssh HOST CMD --watch gives one)\n")
#: Keys that end a live view: q, Ctrl-C, Ctrl-D.
WATCH_QUIT_KEYS = (b"q", b"Q", CTRL_C, CTRL_D)


def _utf8(text):
    return text.encode("utf-8", "replace")


class AdminShell(recvline.HistoricRecvLine):
    """The interactive shell on a terminal: prompt, line editing, history, help.

    Lines typed while a command runs are queued and run in order, so pasted
    input behaves as typed input.
    """

    def __init__(self, host):
        super().__init__()
        self.host = host
        prompt = b"clsd> " if host.role == ROLE_ADMIN else b"clsd (read-only)> "
        self.ps = (prompt, prompt)
        self._queue = []
        self._busy = False
        self._done = False

    def connectionMade(self):
        super().connectionMade()
        self.keyHandlers.update({
            CTRL_A: self.handle_HOME,
            CTRL_E: self.handle_END,
            CTRL_C: self.handle_INT,
            CTRL_D: self.handle_EOF,
            CTRL_L: self.handle_FF,
            CTRL_U: self.handle_KILL_LINE,
        })

    def initializeScreen(self):
        # Unlike RecvLine, do not reset (clear) the operator's screen.
        self.terminal.write(_utf8(
            "CLSD admin shell. 'help' lists the commands; 'exit' or Ctrl-D leaves.\n"
        ))
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def terminalSize(self, width, height):
        # RecvLine clears the screen on every resize; keep what is there.
        self.width = width
        self.height = height

    # -- keys -----------------------------------------------------------------

    def characterReceived(self, ch, moreCharactersComing):
        if len(self.lineBuffer) >= MAX_LINE_CHARS:
            self.terminal.write(b"\a")
            return
        super().characterReceived(ch, moreCharactersComing)

    def handle_INT(self):
        self.lineBuffer = []
        self.lineBufferIndex = 0
        self.terminal.write(b"^C")
        self.terminal.nextLine()
        self.drawInputLine()

    def handle_EOF(self):
        if self.lineBuffer:
            self.terminal.write(b"\a")
        else:
            self.terminal.nextLine()
            self._queue.append("exit")
            self._next()

    def handle_FF(self):
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self.drawInputLine()

    def handle_KILL_LINE(self):
        self.handle_HOME()
        self.terminal.eraseToLineEnd()
        self.lineBuffer = []
        self.lineBufferIndex = 0

    # -- lines ----------------------------------------------------------------

    def lineReceived(self, line):
        self._queue.append(line.decode("utf-8", "replace").strip())
        self._next()

    def _next(self):
        while not self._busy and not self._done and self._queue:
            text = self._queue.pop(0)
            if not text:
                self.drawInputLine()
                continue
            if text in EXIT_WORDS:
                self._done = True
                self.host.end(EXIT_OK)
                return
            self._busy = True
            self.host.run(text).addCallback(self._show)

    def _show(self, outcome):
        self._busy = False
        if self._done:
            return
        if outcome.watch is not None:
            self.host.open_watch(self, outcome.watch)
            return
        self.terminal.write(_utf8(outcome.stderr + outcome.stdout))
        if outcome.enter_manhole:
            self.host.open_manhole(self)
            return
        self.drawInputLine()
        self._next()

    def resume(self, left="the manhole"):
        """Back from the manhole (or a live view): say where we are and go on."""
        self.terminal.nextLine()
        self.terminal.write(_utf8(f"(left {left}; back in the admin shell)\n"))
        self.prompt()

    def prompt(self):
        """Show the prompt (and any half-typed line) and run what is queued."""
        self.drawInputLine()
        self._next()

    def connectionLost(self, reason):
        self._done = True


class LineShell(LineOnlyReceiver):
    """The shell without a terminal (``ssh -T host`` or commands piped in).

    No prompt and no echo: each line is a command, its output is written as
    is (stderr to the SSH stderr stream), and when the input ends the session
    ends with the exit status of the last command.
    """

    delimiter = b"\n"
    MAX_LENGTH = MAX_LINE_BYTES

    def __init__(self, host):
        self.host = host
        self._queue = []
        self._busy = False
        self._eof = False
        self._done = False
        self.last_status = EXIT_OK

    def dataReceived(self, data):
        if self._done:
            return
        # The lines of one chunk are queued first, and run only if none was too long.
        super().dataReceived(data)
        self._next()

    def lineReceived(self, line):
        self._queue.append(line.decode("utf-8", "replace").strip())

    def lineLengthExceeded(self, line):
        self._buffer = b""
        self.host.write_error(f"error: line longer than {MAX_LINE_BYTES} bytes\n")
        self._finish()

    def eofReceived(self):
        if self._buffer:
            self._queue.append(self._buffer.decode("utf-8", "replace").strip())
            self._buffer = b""
        self._eof = True
        self._next()

    def _next(self):
        while not self._busy and not self._done:
            if not self._queue:
                if self._eof:
                    self._finish()
                return
            text = self._queue.pop(0)
            if not text:
                continue
            if text in EXIT_WORDS:
                self._finish()
                return
            self._busy = True
            self.host.run(text).addCallback(self._show)

    def _show(self, outcome):
        self._busy = False
        if self._done:
            return
        self.last_status = outcome.status
        if outcome.enter_manhole:
            self.host.write_error(NEEDS_TERMINAL)
            self.last_status = EXIT_USAGE
        if outcome.watch is not None:
            self.host.write_error(WATCH_ONCE)
        self.host.write_error(outcome.stderr)
        self.transport.write(outcome.stdout.encode("utf-8", "replace"))
        self._next()

    def _finish(self):
        if not self._done:
            self._done = True
            self.host.end(self.last_status)

    def connectionLost(self, reason):
        self._done = True


class WatchScreen(insults.TerminalProtocol):
    """A live view on a terminal (``status --watch``): each new frame replaces the screen;
    q, Ctrl-C or Ctrl-D ends it through C{on_quit}.

    @param make_loop: C{(show, size) -> L{clsd.admin.watch.WatchLoop}}.
    @param size: the terminal's (columns, rows) as the session knows it.
    """

    def __init__(self, make_loop, on_quit, size=(80, 24)):
        self.make_loop = make_loop
        self.on_quit = on_quit
        self.width, self.height = size
        self.loop = None

    def connectionMade(self):
        self.loop = self.make_loop(self.draw, lambda: (self.width, self.height))
        self.loop.start()

    def terminalSize(self, width, height):
        if (width, height) == (self.width, self.height):
            return
        self.width, self.height = width, height
        if self.loop is not None:
            self.loop.redraw()

    def draw(self, text):
        self.terminal.eraseDisplay()
        self.terminal.cursorHome()
        self.terminal.write(_utf8(text.replace("\n", "\r\n")))

    def keystrokeReceived(self, keyID, modifier):
        if keyID in WATCH_QUIT_KEYS:
            self.loop.stop()
            self.terminal.nextLine()
            self.on_quit()

    def connectionLost(self, reason):
        if self.loop is not None:
            self.loop.stop()


class BudgetedInterpreter(manhole.ManholeInterpreter):
    """conch's interpreter, each input run under a L{ReactorTimeBudget}."""

    def __init__(self, handler, locals, budget):
        super().__init__(handler, locals)
        self.budget = budget

    def runcode(self, *a, **kw):
        try:
            self.budget.run(super().runcode, *a, **kw)
        except ManholeInterrupted as e:
            # Usually the interrupted code's traceback is shown (it ends with
            # this message); this is for an alarm that lands after the code,
            # while the traceback itself is written.
            self.write(f"{e}\n")


class AdminManhole(manhole.ColoredManhole):
    """A Python REPL in the daemon, every line audited, every input under a time budget.

    Each input line runs under C{budget} (a L{ReactorTimeBudget}); after a
    line has run, the keys that follow it (pasted input) wait for the next
    turn of the reactor, and four times as long as the line ran, so many
    pasted lines cannot add their budgets up into one long stall. Ctrl-D (or Ctrl-\\) leaves it through C{on_quit}
    (back to the admin shell, or the end of the session) instead of dropping
    the connection.
    """

    def __init__(self, namespace, host, on_quit, reactor, budget=None):
        namespace = dict(namespace)
        namespace.setdefault("defer_to_thread", _defer_to_thread(reactor))
        super().__init__(namespace)
        self.host = host
        self.on_quit = on_quit
        self.reactor = reactor
        self.budget = budget if budget is not None else ReactorTimeBudget()
        #: Keys held back until the next reactor turn (None: none held).
        self._held = None
        self._release_call = None

    def connectionMade(self):
        super().connectionMade()
        self.interpreter = BudgetedInterpreter(self, self.namespace, self.budget)

    def initializeScreen(self):
        why_not = self.budget.unavailable()
        if why_not is None:
            limit = (f"Each input is interrupted after {self.budget.seconds:g} s; "
                     "use defer_to_thread(f, *args) for long work.\n")
        else:
            limit = f"No time limit on input here ({why_not}): be careful.\n"
        self.terminal.write(_utf8(
            "CLSD manhole: Python on the daemon's reactor thread. A blocking call here\n"
            "stalls the whole daemon (heartbeats, leases). " + limit
            + "Ctrl-D leaves.\n"
        ))
        self.terminal.write(self.ps[self.pn])
        self.setInsertMode()

    def terminalSize(self, width, height):
        # Manhole clears the screen on every resize; keep what is there.
        self.width = width
        self.height = height

    def keystrokeReceived(self, keyID, modifier):
        if self._held is not None:
            self._held.append((keyID, modifier))
            return
        super().keystrokeReceived(keyID, modifier)

    def lineReceived(self, line):
        self.host.manhole_line(line.decode("utf-8", "replace"))
        self.budget.last_spent = 0.0  # an incomplete line runs nothing
        try:
            super().lineReceived(line)
        finally:
            # Whatever follows waits until the reactor has had a turn, and
            # for longer after a slow input (see clsd.admin.budget.DUTY).
            if self._held is None:
                self._held = []
                self._release_call = self.reactor.callLater(
                    cool_down(self.budget.last_spent), self._release)

    def _release(self):
        held, self._held, self._release_call = self._held, None, None
        for index, (keyID, modifier) in enumerate(held):
            if self._held is not None:  # a line ran: the rest waits again
                self._held.extend(held[index:])
                return
            super().keystrokeReceived(keyID, modifier)

    def connectionLost(self, reason):
        if self._release_call is not None and self._release_call.active():
            self._release_call.cancel()
        self._release_call = None
        self._held = None
        super().connectionLost(reason)

    def handle_QUIT(self):
        self.on_quit()


def _defer_to_thread(reactor):
    def defer_to_thread(f, *args, **kwargs):
        """Run C{f(*args, **kwargs)} in the reactor's thread pool; a Deferred of its result.

        The escape hatch for long work in the manhole: the reactor keeps
        running meanwhile. C{f} must not touch the daemon's objects (they are
        not thread-safe); read what it needs first, in the manhole.
        """
        return threads.deferToThreadPool(reactor, reactor.getThreadPool(), f, *args, **kwargs)

    return defer_to_thread
