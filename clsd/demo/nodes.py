"""The demo's daemons: one ``twistd -n clsd`` per node on its own loopback address, and nothing left behind.

Each daemon runs in a session of its own with a marker in its environment
(L{MARKER_ENV}) that its lease guard inherits and that the demo's configs
give every service, so that the end of the demo, however it ends, finds and
kills whatever is still running and can say that nothing is.
"""

import ipaddress
import os
import signal
import subprocess
import sys
import uuid

from clsd.polling import wait_for
from clsd.supervision.containment import remove_daemon_cgroups

#: Set to the run's ID in the environment of every process the demo owns.
MARKER_ENV = "CLSD_DEMO_RUN"

START_BOUND = 30.0


def loopback_addresses(first, count):
    """C{count} consecutive addresses from C{first}, all inside 127.0.0.0/8."""
    start = ipaddress.IPv4Address(first)
    addresses = [start + i for i in range(count)]
    if not all(a.is_loopback for a in addresses):
        raise ValueError(f"{count} addresses from {first} leave 127.0.0.0/8")
    return [str(a) for a in addresses]


def twistd_command():
    """twistd of the interpreter running us (the venv's)."""
    script = os.path.join(os.path.dirname(sys.executable), "twistd")
    if os.access(script, os.X_OK):
        return [script]
    return [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]


def handles_sigterm(pid):
    """Whether C{pid} catches SIGTERM yet (twistd writes its pidfile a moment before)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    except OSError:
        pass
    return not os.path.isdir("/proc")


class DemoNode:
    """One node's files and its daemon process (if started)."""

    def __init__(self, name, address, directory):
        self.name = name
        self.address = address
        self.directory = directory
        self.data_dir = os.path.join(directory, "data")
        self.config_path = os.path.join(directory, "clsd.toml")
        self.log_path = os.path.join(directory, "twistd.log")
        self.pid_path = os.path.join(directory, "twistd.pid")
        self.process = None
        os.makedirs(self.data_dir, exist_ok=True)

    @property
    def pid(self):
        return None if self.process is None else self.process.pid

    @property
    def running(self):
        return self.process is not None and self.process.poll() is None


class DemoNodes:
    """The demo's daemons, under C{directory}/nodes/NAME/."""

    def __init__(self, directory, names, first_address):
        self.run_id = uuid.uuid4().hex[:12]
        self.nodes = {
            name: DemoNode(name, address, os.path.join(directory, "nodes", name))
            for name, address in zip(names, loopback_addresses(first_address, len(names)))
        }

    @property
    def marker(self):
        """The environment entry every process of this demo carries."""
        return {MARKER_ENV: self.run_id}

    def node(self, name):
        return self.nodes[name]

    def address(self, name):
        return self.nodes[name].address

    def start(self, name, config_text):
        """Write C{name}'s config and start its daemon; returns once it catches SIGTERM."""
        node = self.nodes[name]
        if node.running:
            raise RuntimeError(f"node {name} is already running (pid {node.pid})")
        with open(node.config_path, "w") as f:
            f.write(config_text)
        with open(node.log_path, "ab") as log:
            node.process = subprocess.Popen(
                [*twistd_command(), "-n", "--pidfile", node.pid_path, "clsd",
                 "--config", node.config_path],
                cwd=node.directory, env={**os.environ, **self.marker},
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def started():
            if node.process.poll() is not None:
                raise RuntimeError(f"node {name} exited with status {node.process.returncode} "
                                   f"while starting (see {node.log_path})")
            try:
                with open(node.pid_path) as f:
                    written = f.read().strip() == str(node.pid)
            except FileNotFoundError:
                return False
            return written and handles_sigterm(node.pid)

        wait_for(started, START_BOUND, what=f"node {name} to start")
        return node.pid

    def kill(self, name):
        """kill -9 C{name}'s daemon; its services are left to its lease guard, as after a crash."""
        node = self.nodes[name]
        if node.running:
            node.process.kill()
        if node.process is not None:
            node.process.wait()

    def stop_all(self, timeout):
        """SIGTERM every daemon (each stops its services first); SIGKILL after C{timeout}."""
        running = [node for node in self.nodes.values() if node.running]
        for node in running:
            node.process.send_signal(signal.SIGTERM)
        try:
            wait_for(lambda: not any(node.running for node in running), timeout,
                     what="the daemons to stop")
        except AssertionError:
            for node in running:
                if node.running:
                    node.process.kill()
        for node in running:
            node.process.wait()

    def leftovers(self):
        """Pids of live processes carrying this demo's marker (Linux /proc)."""
        marker = f"{MARKER_ENV}={self.run_id}".encode()
        found = []
        for entry in os.listdir("/proc") if os.path.isdir("/proc") else ():
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                with open(f"/proc/{entry}/environ", "rb") as f:
                    if marker in f.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                pass
        return found

    def close(self, timeout):
        """Whatever happened: stop the daemons, kill anything of the demo still running."""
        self.stop_all(timeout)
        for pid in self.leftovers():
            for signum in (signal.SIGKILL, signal.SIGCONT):
                try:
                    os.kill(pid, signum)
                except ProcessLookupError:
                    break
        try:
            wait_for(lambda: not self.leftovers(), 10, what="the demo's processes to exit")
        except AssertionError:
            pass  # reported by the caller's own check of leftovers()
        for node in self.nodes.values():
            remove_daemon_cgroups(node.name, node.data_dir)
