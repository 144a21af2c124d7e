"""What the benchmarks share: running CLSD and supervisord side by side, and cleaning up.

Plain blocking Python (no reactor): a benchmark harness should be simpler
than what it measures. Each supervisor runs in a session of its own, so that
everything it started -- including services in their own process groups --
can be found by session id and killed, whatever happens (Ctrl-C included).
"""

import contextlib
import datetime
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
import xmlrpc.client
from http.client import HTTPConnection
from pathlib import Path
import socket

from clsd import polling

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

#: supervisord from PyPI, pinned so that runs compare like with like.
SUPERVISOR_REQUIREMENT = "supervisor==4.3.0"
SUPERVISOR_VENV = BENCH_DIR / ".venv-supervisord"

#: How long a supervisor may take to start or stop before the bench gives up.
START_TIMEOUT = 30.0
STOP_TIMEOUT = 20.0


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# ---------------------------------------------------------------- processes

def session_members(sid):
    """Pids of every live process in session C{sid}."""
    members = []
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            # fields[0] is the state, [3] the session id (stat fields 3 and 6)
            if int(fields[3]) == sid and fields[0] != "Z":
                members.append(int(entry.name))
        return members
    out = subprocess.run(["ps", "-A", "-o", "pid=,sess="], capture_output=True,
                         text=True, check=True).stdout
    for line in out.splitlines():
        pid, sess = line.split()
        if int(sess) == sid:
            members.append(int(pid))
    return members


def process_name(pid):
    """The command name of C{pid} (``sleep``), or C{None} if it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "comm=", "-p", str(pid)], capture_output=True,
                         text=True).stdout.strip()
    return os.path.basename(out) or None


def cpu_seconds(pid):
    """User + system CPU seconds used so far by C{pid} (Linux /proc, else ps)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except FileNotFoundError:
        raise BenchError(f"process {pid} is gone") from None
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "time=", "-p", str(pid)], capture_output=True,
                         text=True, check=True).stdout.strip()
    seconds = 0.0
    for part in out.replace("-", ":").split(":"):
        seconds = seconds * 60 + float(part)
    return seconds


def rss_kib(pid):
    """Resident set size of C{pid} in KiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    out = subprocess.run(["ps", "-o", "rss=", "-p", str(pid)], capture_output=True,
                         text=True, check=True).stdout.strip()
    return int(out)


def wait_for(predicate, timeout, what, step=0.01):
    """Poll until C{predicate()} is truthy and return it; L{BenchError} after C{timeout}."""
    try:
        return polling.wait_for(predicate, timeout, what=what, interval=step)
    except polling.WaitTimeout as e:
        raise BenchError(str(e)) from None


# ---------------------------------------------------------------- supervisors

class Supervisor:
    """One supervisor daemon under test, in its own session and work directory."""

    name = "?"

    def __init__(self, workdir):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = None
        self._log = None

    @property
    def pid(self):
        return self.process.pid

    def start(self, services):
        """Start the daemon supervising C{services}: a list of (name, argv)."""
        argv = self.prepare(services)
        self._log = open(self.workdir / "daemon.out", "wb")
        self.process = subprocess.Popen(
            argv, cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True, env=self.environment(),
        )

    def environment(self):
        env = {key: os.environ[key] for key in ("PATH", "LANG", "TZ") if key in os.environ}
        env.setdefault("PATH", os.defpath)
        return env

    def check_alive(self):
        if self.process.poll() is not None:
            raise BenchError(
                f"{self.name} exited with status {self.process.returncode}; "
                f"its output:\n{self.output_tail()}"
            )

    def output_tail(self, lines=30):
        try:
            text = (self.workdir / "daemon.out").read_text(errors="replace")
        except OSError:
            return "(no output)"
        return "\n".join(text.splitlines()[-lines:])

    def members(self):
        """Every process the daemon started (its session), the daemon excluded."""
        return [pid for pid in session_members(self.pid) if pid != self.pid]

    def services_running(self, command_name):
        return [pid for pid in self.members() if process_name(pid) == command_name]

    def wait_stable(self, service):
        """Block until the supervisor counts C{service} as running (not starting)."""

    def restart_anomalies(self):
        """How often the supervisor backed off or gave up (from its own records)."""
        return None

    def stop(self):
        """Stop the daemon gracefully, then kill whatever is left of its session."""
        if self.process is None:
            return
        sid = self.process.pid
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                print(f"  {self.name} did not stop within {STOP_TIMEOUT:g}s: killing it",
                      file=sys.stderr)
        kill_session(sid)
        if self.process.poll() is None:
            self.process.wait(5)
        if self._log is not None:
            self._log.close()


def kill_session(sid):
    """SIGKILL every process of session C{sid} until none is left (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        members = session_members(sid)
        if not members:
            return
        for pid in members:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            print(f"  warning: processes {members} of session {sid} survive SIGKILL",
                  file=sys.stderr)
            return
        time.sleep(0.05)


class Supervisord(Supervisor):
    """supervisord from PyPI, in its own venv, configured so that every death restarts."""

    name = "supervisord"

    #: Per program: restart on every exit, count a start as successful at
    #: once (startsecs=0, else a kill soon after a start is a failed start and
    #: backs off), and never give up (startretries).
    PROGRAM_SETTINGS = {
        "autostart": "true",
        "autorestart": "true",
        "startsecs": "0",
        "startretries": "1000000",
        "stopsignal": "TERM",
        "stopwaitsecs": "5",
        "stopasgroup": "true",
        "killasgroup": "true",
    }

    def __init__(self, workdir, venv=SUPERVISOR_VENV):
        super().__init__(workdir)
        self.venv = Path(venv)
        self.socket_path = self.workdir / "supervisor.sock"

    def prepare(self, services):
        conf = self.workdir / "supervisord.conf"
        lines = [
            "[supervisord]",
            "nodaemon = true",
            f"logfile = {self.workdir / 'supervisord.log'}",
            f"pidfile = {self.workdir / 'supervisord.pid'}",
            f"childlogdir = {self.workdir}",
            "loglevel = info",
            "",
            "[unix_http_server]",
            f"file = {self.socket_path}",
            "",
            "[rpcinterface:supervisor]",
            "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
            "",
        ]
        for name, argv in services:
            lines.append(f"[program:{name}]")
            lines.append("command = " + " ".join(_supervisor_quote(arg) for arg in argv))
            lines.extend(f"{key} = {value}" for key, value in self.PROGRAM_SETTINGS.items())
            lines.append("")
        conf.write_text("\n".join(lines))
        return [str(self.venv / "bin" / "supervisord"), "-n", "-c", str(conf)]

    def rpc(self):
        return xmlrpc.client.ServerProxy("http://supervisord", transport=_UnixTransport(
            str(self.socket_path)))

    def state(self, service):
        try:
            return self.rpc().supervisor.getProcessInfo(service)["statename"]
        except (OSError, xmlrpc.client.Fault):
            return None

    def wait_stable(self, service):
        # A kill while STARTING is a failed start (BACKOFF): wait for RUNNING.
        wait_for(lambda: self.state(service) == "RUNNING", START_TIMEOUT,
                 f"supervisord to report {service} RUNNING")

    def version(self):
        return _venv_version(self.venv, "supervisor")

    def restart_anomalies(self):
        try:
            log = (self.workdir / "supervisord.log").read_text(errors="replace")
        except OSError:
            return None
        return {
            "entered_BACKOFF": log.count("entered BACKOFF state"),
            "entered_FATAL": log.count("entered FATAL state"),
        }


def _supervisor_quote(arg):
    # supervisord splits `command` with shlex, then expands %(name)s formats.
    import shlex

    return shlex.quote(arg).replace("%", "%%")


class _UnixHTTPConnection(HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=5)
        self._path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        self.sock.connect(self._path)


class _UnixTransport(xmlrpc.client.Transport):
    def __init__(self, path):
        super().__init__()
        self._path = path

    def make_connection(self, host):
        return _UnixHTTPConnection(self._path)


class Clsd(Supervisor):
    """``twistd -n clsd --config FILE`` from the project's venv."""

    name = "clsd"

    def __init__(self, workdir, twistd=None, settings=None):
        super().__init__(workdir)
        self.twistd = twistd or find_twistd()
        #: Extra per-service TOML lines (backoff, crash_loop, ...).
        self.settings = settings or []
        self.data_dir = self.workdir / "data"

    def prepare(self, services):
        conf = self.workdir / "clsd.toml"
        lines = ["[node]", 'name = "bench"', f"data_dir = {_toml_str(self.data_dir)}", ""]
        for name, argv in services:
            lines.append("[[service]]")
            lines.append(f"name = {_toml_str(name)}")
            if argv is not None:  # None: an LSB/OCF agent starts it
                lines.append("command = [" + ", ".join(_toml_str(a) for a in argv) + "]")
            lines.extend(self.settings)
            lines.append("")
        conf.write_text("\n".join(lines))
        return [str(self.twistd), "-n", "--pidfile", str(self.workdir / "twistd.pid"),
                "--logfile", str(self.workdir / "twistd.log"),
                "clsd", "--config", str(conf)]

    def environment(self):
        env = super().environment()
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def version(self):
        return git_revision()

    def restart_anomalies(self):
        counts = {"to_backoff": 0, "to_failed": 0}
        try:
            with open(self.data_dir / "events.jsonl") as f:
                for line in f:
                    event = json.loads(line)
                    if event.get("kind") != "state":
                        continue
                    target = event.get("fields", {}).get("to")
                    if target == "backoff":
                        counts["to_backoff"] += 1
                    elif target == "failed":
                        counts["to_failed"] += 1
        except (OSError, ValueError):
            return None
        return counts


def _toml_str(value):
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def find_twistd():
    candidates = [REPO_DIR / ".venv" / "bin" / "twistd", Path(sys.executable).parent / "twistd"]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    raise BenchError("no twistd found: run `make venv` first (it creates .venv)")


# ---------------------------------------------------------------- setup

def ensure_supervisord(venv=SUPERVISOR_VENV, log=print):
    """Create the bench's own venv with supervisord from PyPI, once."""
    supervisord = Path(venv) / "bin" / "supervisord"
    if supervisord.exists() and _venv_version(venv, "supervisor") == \
            SUPERVISOR_REQUIREMENT.split("==")[1]:
        return supervisord
    log(f"installing {SUPERVISOR_REQUIREMENT} into {venv} ...")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(Path(venv) / "bin" / "python"), "-m", "pip", "install", "-q",
                    SUPERVISOR_REQUIREMENT], check=True)
    return supervisord


def _venv_version(venv, distribution):
    out = subprocess.run(
        [str(Path(venv) / "bin" / "python"), "-c",
         f"import importlib.metadata as m; print(m.version({distribution!r}))"],
        capture_output=True, text=True)
    return out.stdout.strip() or None


# ---------------------------------------------------------------- reporting

def percentile(samples, fraction):
    """Nearest-rank percentile: the smallest sample >= C{fraction} of all samples."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def summary_ms(samples):
    """p50/p99/max/min/mean of C{samples} (seconds), in milliseconds."""
    ms = [s * 1000 for s in samples]
    return {
        "count": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 3),
        "p99_ms": round(percentile(ms, 0.99), 3),
        "max_ms": round(max(ms), 3),
        "min_ms": round(min(ms), 3),
        "mean_ms": round(sum(ms) / len(ms), 3),
    }


def machine_info():
    info = {
        "date_utc": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "twisted": _twisted_version(),
        "clsd_revision": git_revision(),
        "loadavg_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    return info


def _cpu_model():
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _twisted_version():
    try:
        import twisted
    except ImportError:
        return None
    return twisted.__version__


def git_revision():
    out = subprocess.run(["git", "-C", str(REPO_DIR), "describe", "--always", "--dirty", "--abbrev=7"],
                         capture_output=True, text=True)
    return out.stdout.strip() or None


def write_json(name, data):
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / name
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


@contextlib.contextmanager
def interrupts_as_exceptions():
    """SIGTERM and SIGHUP behave like Ctrl-C, so that every C{finally} cleans up."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def uninterruptible():
    """Cleanup must not be cut short by a second Ctrl-C."""
    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def remove_tree(path):
    shutil.rmtree(path, ignore_errors=True)
