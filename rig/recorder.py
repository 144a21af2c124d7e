"""Records of every protected-service instance: start, heartbeats, stop, and observed death.

Each instance appends JSON lines to its own file in a record directory with
single ``O_APPEND`` writes, so a kill -9 can at worst cut the last line, never
interleave two. Times are ``time.monotonic()``: CLOCK_MONOTONIC is one clock for
the whole machine, so records written by different processes compare, and a
wall-clock jump (faketime) changes none of them.

A SIGKILLed instance writes no stop record, and its last heartbeat is NOT a
safe end for an overlap check: it may have run (and acted) until the kernel
tore it down. So each instance also holds a *lifeline*: a unix stream socket
to a L{LifelineCollector} in the rig. The kernel closes it when the process
exits, whatever killed it; the collector timestamps that EOF and appends an
``exit`` record. The observation is never earlier than the real death, so
using it as the end of the instance's interval is conservative.

Record fields: ``v`` (format version), ``kind`` (start | heartbeat | stop |
exit), ``t`` (monotonic seconds), ``instance`` (unique per process run),
``node``, ``cluster``, ``epoch`` (int or null), ``slot`` (the n-active slot, int or
null; absent in older records), ``pid``, ``wall`` (time.time(),
for people only; never compared), ``lifeline`` (start records: whether a
collector watches this instance).
"""

import errno
import json
import os
import selectors
import socket
import tempfile
import threading
import time
import uuid

import attrs

FORMAT_VERSION = 1
KINDS = ("start", "heartbeat", "stop", "exit")

#: Name of the file, inside a record directory, that holds the collector's
#: socket path. The socket itself lives in a short /tmp directory because a
#: unix socket path is limited to about 100 bytes and record directories
#: (trial temp dirs) are often longer.
LIFELINE_POINTER = "lifeline"

#: Files written by the collector (as opposed to by instances).
EXITS_FILE = "exits.jsonl"

#: A hello line longer than this is not from our service: drop the connection.
MAX_HELLO = 4096

ENV_NODE = "CLSD_NODE"
ENV_CLUSTER = "CLSD_CLUSTER"
ENV_EPOCH = "CLSD_EPOCH"
#: Set by the daemon for a slot of an n-active cluster (doc/ownership.md).
ENV_SLOT = "CLSD_SLOT"


class RecordError(ValueError):
    """A record line that cannot be understood."""


@attrs.frozen
class Identity:
    """Who writes the records: one run of one protected-service process."""

    instance: str
    node: str
    cluster: str
    epoch: int | None
    pid: int
    #: The n-active slot this instance holds, None for active-standby.
    slot: int | None = None


@attrs.frozen
class Record:
    kind: str
    t: float
    instance: str
    node: str
    cluster: str
    epoch: int | None
    pid: int
    lifeline: bool = False
    #: Where it came from (file name), for error messages.
    source: str = ""
    #: The n-active slot (each slot has its own lease and epochs), or None.
    slot: int | None = None

    @property
    def resource(self):
        """What one lease covers: the cluster, or ``cluster/slot`` for an n-active slot."""
        return self.cluster if self.slot is None else f"{self.cluster}/{self.slot}"


def identity_from_env(environ, pid, *, node=None, cluster=None, epoch=None, slot=None):
    """Build an L{Identity} from C{CLSD_NODE}/C{CLSD_CLUSTER}/C{CLSD_EPOCH}.

    Explicit arguments win over the environment. A missing node or cluster is
    an error: a record nobody can attribute is worthless to the checker.
    """
    node = node if node is not None else environ.get(ENV_NODE)
    cluster = cluster if cluster is not None else environ.get(ENV_CLUSTER)
    if not node:
        raise RecordError(f"no node name: set {ENV_NODE} or pass --node")
    if not cluster:
        raise RecordError(f"no cluster ID: set {ENV_CLUSTER} or pass --cluster")
    if epoch is None:
        epoch = _int_from_env(environ, ENV_EPOCH)
    if slot is None:
        slot = _int_from_env(environ, ENV_SLOT)
    return Identity(
        instance=uuid.uuid4().hex[:16], node=node, cluster=cluster, epoch=epoch, pid=pid,
        slot=slot,
    )


def _int_from_env(environ, key):
    """The integer in C{environ[key]}, or None if unset or empty; RecordError if not one."""
    raw = environ.get(key)
    if raw in (None, ""):
        return None
    try:
        return int(raw)
    except ValueError:
        raise RecordError(f"{key} must be an integer, got {raw!r}") from None


def _line(kind, t, identity, **extra):
    record = {
        "v": FORMAT_VERSION, "kind": kind, "t": t, "instance": identity.instance,
        "node": identity.node, "cluster": identity.cluster, "epoch": identity.epoch,
        "pid": identity.pid, "wall": time.time(),
    }
    if identity.slot is not None:
        record["slot"] = identity.slot
    record.update(extra)
    return (json.dumps(record, separators=(",", ":")) + "\n").encode("utf-8")


def _safe(text):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


class RecordWriter:
    """Append one instance's records to C{DIR/NODE.CLUSTER.PID.INSTANCE.jsonl}."""

    def __init__(self, directory, identity, clock=time.monotonic):
        self.identity = identity
        self.clock = clock
        name = f"{_safe(identity.node)}.{_safe(identity.cluster)}.{identity.pid}.{identity.instance}.jsonl"
        self.path = os.path.join(directory, name)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def record(self, kind, **extra):
        """Append one record stamped now; returns its time."""
        if kind not in KINDS:
            raise ValueError(f"unknown record kind {kind!r}")
        t = self.clock()
        os.write(self._fd, _line(kind, t, self.identity, **extra))
        return t

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


# -- reading ---------------------------------------------------------------


def parse_record(line, source=""):
    """One JSON line into a L{Record}; L{RecordError} naming what is wrong."""
    try:
        data = json.loads(line)
    except ValueError as e:
        raise RecordError(f"{source}: not JSON: {e}") from None
    if not isinstance(data, dict):
        raise RecordError(f"{source}: not a JSON object")
    if data.get("v") != FORMAT_VERSION:
        raise RecordError(f"{source}: unsupported format version {data.get('v')!r}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise RecordError(f"{source}: unknown kind {kind!r}")
    t = data.get("t")
    if isinstance(t, bool) or not isinstance(t, (int, float)):
        raise RecordError(f"{source}: t must be a number, got {t!r}")
    for key in ("instance", "node", "cluster"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise RecordError(f"{source}: {key} must be a non-empty string")
    epoch = data.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise RecordError(f"{source}: epoch must be an integer or null, got {epoch!r}")
    pid = data.get("pid")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise RecordError(f"{source}: pid must be an integer, got {pid!r}")
    slot = data.get("slot")
    if slot is not None and (isinstance(slot, bool) or not isinstance(slot, int)):
        raise RecordError(f"{source}: slot must be an integer or null, got {slot!r}")
    return Record(
        kind=kind, t=float(t), instance=data["instance"], node=data["node"],
        cluster=data["cluster"], epoch=epoch, pid=pid,
        lifeline=bool(data.get("lifeline", False)), source=source, slot=slot,
    )


@attrs.frozen
class Records:
    """Everything read from a record directory, in time order."""

    records: tuple[Record, ...]
    #: Lines that could not be read, each naming file and line.
    problems: tuple[str, ...] = ()


def read_records(directory):
    """Read every ``*.jsonl`` in C{directory}.

    A final line without a newline is an interrupted write (kill -9 mid-line
    is possible in principle) and is ignored; any other bad line is reported
    in C{problems}, never silently dropped.
    """
    records, problems = [], []
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".jsonl"):
            continue
        path = os.path.join(directory, name)
        with open(path, "rb") as f:
            data = f.read()
        lines = data.split(b"\n")
        # The piece after the last newline is empty, or a torn last write.
        for number, raw in enumerate(lines[:-1], start=1):
            if not raw.strip():
                continue
            try:
                records.append(parse_record(raw.decode("utf-8", "replace"), f"{name}:{number}"))
            except RecordError as e:
                problems.append(str(e))
    records.sort(key=lambda r: (r.t, r.instance))
    return Records(records=tuple(records), problems=tuple(problems))


# -- lifeline ----------------------------------------------------------------


def connect_lifeline(directory, identity):
    """Connect to the collector watching C{directory}, if there is one.

    Returns the connected socket (keep it open for the life of the process;
    it is not inherited by children) or C{None} when no collector runs.
    """
    try:
        with open(os.path.join(directory, LIFELINE_POINTER)) as f:
            path = f.read().strip()
    except FileNotFoundError:
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        hello = {
            "instance": identity.instance, "node": identity.node,
            "cluster": identity.cluster, "epoch": identity.epoch, "pid": identity.pid,
            "slot": identity.slot,
        }
        sock.sendall((json.dumps(hello) + "\n").encode("utf-8"))
    except OSError:
        sock.close()
        return None
    return sock


class LifelineCollector:
    """Observe the death of every instance that connected, and record it.

    Runs its own thread so that whatever the rig's main thread does (block on
    a subprocess, run a reactor) does not delay an observation by much; a
    delay only makes the recorded end later, which is the safe direction.
    """

    def __init__(self, directory, clock=time.monotonic):
        self.directory = directory
        self.clock = clock
        self._socket_dir = tempfile.mkdtemp(prefix="clsd-ll-")
        self.socket_path = os.path.join(self._socket_dir, "s")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.socket_path)
        self._listener.listen(128)
        self._listener.setblocking(False)
        self._wake_r, self._wake_w = os.pipe()
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._buffers = {}
        self._hellos = {}
        self._lock = threading.Lock()
        self._out = os.open(
            os.path.join(directory, EXITS_FILE),
            os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644,
        )
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="clsd-lifeline", daemon=True)
        pointer = os.path.join(directory, LIFELINE_POINTER)
        with open(pointer + ".tmp", "w") as f:
            f.write(self.socket_path + "\n")
        os.replace(pointer + ".tmp", pointer)

    def start(self):
        self._thread.start()
        return self

    def watched(self):
        """Instances connected now (alive as far as the collector knows)."""
        with self._lock:
            return {hello["instance"] for hello in self._hellos.values()}

    def wait_idle(self, timeout):
        """Wait until no instance is connected; True when that happened in time."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.watched():
                return True
            time.sleep(0.02)
        return not self.watched()

    def stop(self):
        """Stop watching; instances still connected get no exit record."""
        if self._stopping:
            return
        self._stopping = True
        os.write(self._wake_w, b"x")
        self._thread.join(5)
        for key in list(self._selector.get_map().values()):
            if key.data == "conn":
                key.fileobj.close()
        self._selector.close()
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        os.close(self._out)
        for path in (self.socket_path, os.path.join(self.directory, LIFELINE_POINTER)):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        os.rmdir(self._socket_dir)

    def _run(self):
        while not self._stopping:
            for key, _ in self._selector.select(timeout=1.0):
                if key.data == "wake":
                    return
                if key.fileobj is self._listener:
                    self._accept()
                else:
                    self._read(key.fileobj)

    def _accept(self):
        try:
            conn, _ = self._listener.accept()
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return
            raise
        conn.setblocking(False)
        self._buffers[conn] = b""
        self._selector.register(conn, selectors.EVENT_READ, "conn")

    def _read(self, conn):
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # EOF: the kernel closed the peer's end, so the process has exited
            # (or closed the lifeline on purpose just before exiting).
            t = self.clock()
            self._forget(conn)
            with self._lock:
                hello = self._hellos.pop(conn, None)
            if hello is not None:
                self._write_exit(t, hello)
            return
        if conn in self._hellos:
            return  # nothing is expected after the hello; ignore
        buffer = self._buffers[conn] + data
        if b"\n" not in buffer:
            if len(buffer) > MAX_HELLO:
                self._forget(conn)
            else:
                self._buffers[conn] = buffer
            return
        line = buffer.split(b"\n", 1)[0]
        try:
            hello = json.loads(line)
            identity = Identity(
                instance=str(hello["instance"]), node=str(hello["node"]),
                cluster=str(hello["cluster"]), epoch=hello.get("epoch"),
                pid=int(hello["pid"]), slot=hello.get("slot"),
            )
        except (ValueError, KeyError, TypeError):
            self._forget(conn)
            return
        with self._lock:
            self._hellos[conn] = attrs.asdict(identity)

    def _forget(self, conn):
        self._buffers.pop(conn, None)
        try:
            self._selector.unregister(conn)
        except (KeyError, ValueError):
            pass
        conn.close()

    def _write_exit(self, t, hello):
        identity = Identity(**hello)
        os.write(self._out, _line("exit", t, identity, observer="lifeline"))
