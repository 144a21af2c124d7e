"""Run N real ``twistd -n clsd`` daemons on their own 127.0.0.x addresses, and tear them down.

Each node gets a directory (``nodes/NAME/``) with its generated ``clsd.toml``,
its ``data/`` dir, its captured output (``twistd.log``, appended across
restarts) and its pidfile. Every node's protected services record into one
shared ``records/`` directory watched by a L{LifelineCollector}.

The configuration comes from a L{ConfigTemplate}: a list of *parts*, each a
function C{(node, launcher) -> dict} of TOML tables; parts are merged (arrays
of tables such as ``[[service]]`` are concatenated). The peer, quorum and
cluster sections will be parts added by the issues that create them, e.g.
C{launcher.template.with_part(peers_part)}.

The launcher is synchronous (subprocess and polling with deadlines) on
purpose: it observes daemons from outside, from a test, a benchmark or the
command-line runner alike, and it needs no reactor of its own.

Teardown is guaranteed: L{Launcher.teardown} runs at the end of a ``with``
block, from the cleanup registry at exit or on a signal, and kills every
process carrying this launcher's marker in its environment, including
services orphaned by a daemon killed with -9.
"""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid

import attrs

from clsd.clock import OFFSET_ENV
from clsd.polling import wait_for
from rig import checker, tomlgen
from rig.addresses import address_range, reserve
from rig.faults.cleanup import OWNER_ENV, default_cleanups
from rig.faults.clock import FakeClock
from rig.faults.process import Pause
from rig.faults.sweep import owned_processes
from rig.recorder import LifelineCollector, read_records

#: Marks every process of one launcher (daemons and the services they start).
RIG_ENV = "CLSD_RIG_ID"

#: A daemon stops its services before it exits; give it this long.
DEFAULT_STOP_TIMEOUT = 15.0
#: A daemon that does not write its pidfile this soon did not start.
DEFAULT_START_TIMEOUT = 30.0


@attrs.frozen
class NodeSpec:
    """Where one node lives: its name, address and files."""

    name: str
    address: str
    directory: str

    @property
    def config_path(self):
        return os.path.join(self.directory, "clsd.toml")

    @property
    def data_dir(self):
        return os.path.join(self.directory, "data")

    @property
    def log_path(self):
        return os.path.join(self.directory, "twistd.log")

    @property
    def pid_path(self):
        return os.path.join(self.directory, "twistd.pid")


# -- configuration ---------------------------------------------------------------


def node_part(node, launcher):
    """``[node]``: name and data dir."""
    return {"node": {"name": node.name, "data_dir": node.data_dir}}


def protected_service_part(name="protected", *, cluster="{node}-solo", http_port=None,
                           check=True, interval=0.1, extra=None):
    """A part adding one ``[[service]]`` running the protected test service.

    @param cluster: the cluster ID to record (``{node}`` is replaced); None
        leaves C{CLSD_CLUSTER} to the daemon (clusters with ownership).
    @param http_port: serve HTTP on the node's address at this port
        (C{"auto"}: a free port picked for each node when its config is
        written).
    @param check: with HTTP, also give the service an http health check, so
        that a hung (SIGSTOPped) service is found and restarted.
    @param extra: more keys for the ``[[service]]`` table.
    """

    def part(node, launcher):
        command = [sys.executable, "-m", "rig.protected_service",
                   "--record", launcher.records_dir, "--interval", str(interval)]
        env = {"CLSD_NODE": node.name, RIG_ENV: launcher.rig_id,
               OWNER_ENV: str(launcher.owner_pid)}
        if cluster is not None:
            env["CLSD_CLUSTER"] = cluster.format(node=node.name)
        service = {"name": name, "command": command, "env": env, "restart": "always",
                   "stop_timeout": 3.0}
        if http_port is not None:
            port = free_port(node.address) if http_port == "auto" else http_port
            command += ["--http", f"{node.address}:{port}"]
            if check:
                service["check"] = {
                    "type": "http", "target": f"http://{node.address}:{port}/",
                    # Found hung within about a second: 3 misses 0.3 s apart.
                    "interval": 0.3, "timeout": 0.25, "fall": 3, "rise": 1,
                    # Python's start-up on a busy machine.
                    "grace": 2.0,
                }
        service.update(extra or {})
        return {"service": [service]}

    return part


def health_checks_available():
    """Whether this daemon can run ``[service.check]`` (clsd.supervision.health)."""
    import importlib.util

    return importlib.util.find_spec("clsd.supervision.health") is not None


def merge(parts):
    """Merge C{{table: ...}} dicts: dicts update, arrays of tables concatenate."""
    merged = {}
    for part in parts:
        for key, v in part.items():
            if isinstance(v, list):
                merged.setdefault(key, [])
                merged[key] = [*merged[key], *v]
            elif isinstance(v, dict):
                merged[key] = {**merged.get(key, {}), **v}
            else:
                merged[key] = v
    return merged


@attrs.frozen
class ConfigTemplate:
    """How to write one node's ``clsd.toml``: a sequence of parts."""

    parts: tuple = (node_part,)

    def with_part(self, part):
        return attrs.evolve(self, parts=(*self.parts, part))

    def render(self, node, launcher):
        return tomlgen.dumps(merge(part(node, launcher) for part in self.parts))


# -- processes ------------------------------------------------------------------------


def twistd_command():
    """How to run twistd with the interpreter running us (the venv's one)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def handles_signal(pid, signum):
    """Whether process C{pid} has a handler for C{signum} (Linux /proc; True elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signum - 1)))
    except OSError:
        pass
    return not os.path.isdir("/proc")


class Node:
    """One node's daemon process (if any) and what was done to it."""

    def __init__(self, spec):
        self.spec = spec
        self.process = None
        self.log = None
        self.pause = None
        self.clock = None
        self.starts = 0

    @property
    def name(self):
        return self.spec.name

    @property
    def pid(self):
        return None if self.process is None else self.process.pid

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


def free_port(address):
    """A TCP port free on C{address} now (the kernel's pick)."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


class Launcher:
    """N daemons on loopback, their records, and the means to hurt them."""

    def __init__(self, directory, nodes=3, *, template=None, first_address=None,
                 faketime=(), env=None, cleanups=None, spares=()):
        """
        @param nodes: a count (names ``n1``...) or a list of names.
        @param spares: more names with an address and a directory, not
            started by L{start_all}: nodes that join later (L{start}).
        @param first_address: the first node's address (the others follow);
            default: a block reserved for this launcher (L{rig.addresses.reserve}).
        @param faketime: names of nodes to start under libfaketime (see
            L{clock_of} for jumping their wall clocks).
        """
        names = [f"n{i}" for i in range(1, nodes + 1)] if isinstance(nodes, int) else list(nodes)
        self.spares = tuple(spares)
        names += [name for name in self.spares if name not in names]
        self.directory = os.path.abspath(directory)
        self.records_dir = os.path.join(self.directory, "records")
        os.makedirs(self.records_dir, exist_ok=True)
        self.template = template or ConfigTemplate()
        self.rig_id = uuid.uuid4().hex[:12]
        self.owner_pid = os.getpid()
        self.base_env = dict(os.environ if env is None else env)
        self._reservation = None
        if first_address is None:
            self._reservation = reserve(len(names))
            addresses = self._reservation.addresses
        else:
            addresses = address_range(first_address, len(names))
        self.nodes = {}
        for name, address in zip(names, addresses):
            spec = NodeSpec(name=name, address=address,
                            directory=os.path.join(self.directory, "nodes", name))
            os.makedirs(spec.data_dir, exist_ok=True)
            self.nodes[name] = Node(spec)
            if name in faketime:
                self.nodes[name].clock = FakeClock(os.path.join(spec.directory, "faketime.rc"))
        self._cleanups = cleanups or default_cleanups
        self.collector = LifelineCollector(self.records_dir).start()
        self._teardown_token = self._cleanups.add(self.teardown, f"tear down rig {self.directory}")
        self._torn_down = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.teardown()

    # -- lookup ---------------------------------------------------------------------

    def node(self, name):
        try:
            return self.nodes[name]
        except KeyError:
            raise KeyError(f"no node {name!r}; nodes: {', '.join(self.nodes)}") from None

    def address(self, name):
        return self.node(name).spec.address

    def clock_of(self, name):
        clock = self.node(name).clock
        if clock is None:
            raise ValueError(f"node {name!r} was not started under faketime")
        return clock

    def lease_clock_offset_path(self, name):
        """The file that winds node C{name}'s lease clock back (L{clsd.clock.OFFSET_ENV})."""
        return os.path.join(self.node(name).spec.directory, "lease-clock-offset")

    # -- lifecycle ------------------------------------------------------------------

    def service_cgroups(self, name):
        """The directory of node C{name}'s service cgroups (cgroup containment), or None."""
        from clsd.supervision.containment import CgroupTree
        from rig.faults.freeze import cgroup2_root

        root = cgroup2_root()
        if root is None:
            return None
        return CgroupTree(root, name, self.node(name).spec.data_dir).directory

    def write_config(self, name):
        spec = self.node(name).spec
        with open(spec.config_path, "w") as f:
            f.write(self.template.render(spec, self))
        return spec.config_path

    def start(self, name, *, wait=True, timeout=DEFAULT_START_TIMEOUT, env=None, twistd=None):
        """Start node C{name}'s daemon (writing its config first).

        @param env: more environment for this start only (e.g. a test hook).
        @param twistd: another release's twistd command (L{rig.releases.build});
            default: this tree's.
        """
        node = self.node(name)
        if node.running:
            raise RuntimeError(f"node {name} is already running (pid {node.pid})")
        extra_env = env
        self.write_config(name)
        try:
            os.unlink(node.spec.pid_path)
        except FileNotFoundError:
            pass
        env = {**self.base_env, RIG_ENV: self.rig_id, OWNER_ENV: str(self.owner_pid),
               OFFSET_ENV: self.lease_clock_offset_path(name)}
        if extra_env:
            env.update(extra_env)
        if twistd is not None:
            env.pop("PYTHONPATH", None)  # another release imports only its own code
            # (rig.releases.own_environment says why)
        if node.clock is not None:
            env = node.clock.environ(env)
        command = [*(twistd or twistd_command()), "-n", "--pidfile", node.spec.pid_path,
                   "clsd", "--config", node.spec.config_path]
        node.log = open(node.spec.log_path, "ab")
        node.starts += 1
        node.log.write(f"==== clsd-rig: start #{node.starts} of {name} "
                       f"at monotonic {time.monotonic():.6f}\n".encode())
        node.log.flush()
        node.process = subprocess.Popen(
            command, cwd=node.spec.directory, env=env, stdin=subprocess.DEVNULL,
            stdout=node.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        if wait:
            self.wait_started(name, timeout=timeout)
        return node.process.pid

    def start_all(self, **kwargs):
        """Start every node but the spares."""
        first = [name for name in self.nodes if name not in self.spares]
        for name in first:
            self.start(name, wait=False)
        if kwargs.get("wait", True):
            for name in first:
                self.wait_started(name, timeout=kwargs.get("timeout", DEFAULT_START_TIMEOUT))

    def wait_started(self, name, timeout=DEFAULT_START_TIMEOUT):
        """Until twistd wrote its pidfile; fails early, with the log, if it exited."""
        node = self.node(name)

        def started():
            if node.process.poll() is not None:
                raise RuntimeError(
                    f"node {name} exited with status {node.process.returncode} while "
                    f"starting; its log ends:\n{self.log_tail(name)}"
                )
            try:
                with open(node.spec.pid_path) as f:
                    if f.read().strip() != str(node.pid):
                        return False
            except FileNotFoundError:
                return False
            # twistd writes its pidfile before the reactor installs its
            # signal handlers; a SIGTERM in between kills it without a clean
            # stop. So wait until SIGTERM is caught.
            return handles_signal(node.pid, signal.SIGTERM)

        wait_for(started, timeout, what=f"node {name} to start")

    def stop(self, name, timeout=DEFAULT_STOP_TIMEOUT):
        """SIGTERM the daemon (it stops its services); SIGKILL after C{timeout}."""
        node = self.node(name)
        if node.process is None:
            return None
        self.resume(name)
        if node.running:
            node.process.send_signal(signal.SIGTERM)
            try:
                node.process.wait(timeout)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
        return self._reaped(node)

    def kill(self, name):
        """kill -9 the daemon; its services are left running, as after a crash."""
        node = self.node(name)
        if node.process is None:
            return None
        node.process.kill()
        node.process.wait()
        if node.pause is not None:
            node.pause.resume()
            node.pause = None
        return self._reaped(node)

    def restart(self, name, **kwargs):
        """Stop (gracefully) and start again with the same name and files."""
        self.stop(name)
        return self.start(name, **kwargs)

    def pause(self, name):
        """SIGSTOP the daemon (resumed by L{resume}, or at teardown)."""
        node = self.node(name)
        if node.pause is None and node.running:
            node.pause = Pause(node.pid, cleanups=self._cleanups)

    def resume(self, name):
        node = self.node(name)
        if node.pause is not None:
            node.pause.resume()
            node.pause = None

    def _reaped(self, node):
        status = node.process.returncode
        node.log.write(f"==== clsd-rig: {node.name} exited with {status} "
                       f"at monotonic {time.monotonic():.6f}\n".encode())
        node.log.close()
        node.log = None
        return status

    # -- services and records -------------------------------------------------------

    def records(self):
        return read_records(self.records_dir)

    def running_instances(self, name=None, cluster=None):
        """Instances with no end yet whose lifeline is still connected."""
        watched = self.collector.watched()
        return [
            interval for interval in checker.intervals(self.records().records)
            if interval.end is None and interval.instance in watched
            and (name is None or interval.node == name)
            and (cluster is None or interval.cluster == cluster)
        ]

    def wait_running(self, name=None, cluster=None, *, exclude=(), timeout=30.0):
        """Until an instance (not one of C{exclude}) runs; returns it."""
        def found():
            for interval in self.running_instances(name, cluster):
                if interval.instance not in exclude:
                    return interval
            return None
        return wait_for(found, timeout, what=f"a running instance on {name or 'any node'}"
                        + (f" of cluster {cluster}" if cluster else ""))

    def check(self, **kwargs):
        """The checker's report over every record so far, horizon now."""
        kwargs.setdefault("horizon", time.monotonic())
        return checker.check(self.records(), **kwargs)

    def log_text(self, name):
        try:
            with open(self.node(name).spec.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, name, lines=30):
        return "\n".join(self.log_text(name).splitlines()[-lines:])

    def log_problems(self):
        problems = []
        for name in self.nodes:
            problems += checker.log_problems(f"{name}/twistd.log", self.log_text(name))
        return problems

    # -- teardown -----------------------------------------------------------------------

    def marked_processes(self):
        """Pids of live processes carrying this launcher's marker (Linux /proc)."""
        marker = (RIG_ENV + "=" + self.rig_id).encode()
        found = []
        for pid in owned_processes():
            try:
                with open(f"/proc/{pid}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        found.append(pid)
            except OSError:
                pass
        return found

    def teardown(self, timeout=DEFAULT_STOP_TIMEOUT):
        """Stop every daemon, kill every process of this rig, stop the collector."""
        if self._torn_down:
            return
        self._torn_down = True
        self._cleanups.discard(self._teardown_token)
        for name, node in self.nodes.items():
            self.resume(name)
            if node.running:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for node in self.nodes.values():
            if node.process is None or node.log is None:
                continue
            try:
                node.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()
            self._reaped(node)
        # Orphans: services of daemons killed with -9, anything they forked.
        watched = {i.pid for i in checker.intervals(self.records().records)
                   if i.instance in self.collector.watched()}
        for pid in {*self.marked_processes(), *watched}:
            for signum in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
        self.collector.wait_idle(10)
        self.collector.stop()
        wait_for(lambda: not self.marked_processes(), 10, what="the rig's processes to exit")
        # The cgroups of daemons killed with -9 (doc/supervision.md, "Containment").
        from clsd.supervision.containment import remove_daemon_cgroups

        for name, node in self.nodes.items():
            remove_daemon_cgroups(name, node.spec.data_dir)
        if self._reservation is not None:
            self._reservation.release()
