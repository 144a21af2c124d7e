"""``python -m clsd.demo --single``: one node supervising a tiny HTTP server; kill it, watch it come back.

Runs ``twistd -n clsd`` as a child with an embedded configuration in a
temporary directory, waits until the demo service answers on 127.0.0.1,
kills it with SIGKILL, shows the restart, prints the daemon's events,
stops the daemon with SIGTERM and checks that nothing is left running.
Loopback only; done in a few seconds (bounded well under 20).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from clsd import polling
from clsd.supervision.pgroups import group_alive

#: The whole demo's budget; each wait below takes a slice of it.
DEADLINE = 18.0

DEMO_CONFIG = """\
# The demo's configuration: one node, one service (a tiny HTTP server).
[node]
name = "demo"
data_dir = "{data_dir}"

[[service]]
name = "web"
command = {command}
restart = "always"
backoff = {{ initial = 0.1, max = 2.0, factor = 2.0, jitter = 0.1 }}
stable_after = 5.0
crash_loop = {{ max_failures = 5, window = 60.0 }}
stop_signal = "TERM"
stop_timeout = 3.0
"""


class DemoError(Exception):
    pass


def free_loopback_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return response.read().decode("utf-8", "replace").strip()
    except OSError:
        return None


def wait_for(what, predicate, deadline):
    """C{predicate}'s first true value, polled until the demo's C{deadline} (monotonic)."""
    try:
        return polling.wait_for(predicate, max(0.0, deadline - time.monotonic()), what=what)
    except polling.WaitTimeout as e:
        raise DemoError(str(e)) from None


def read_events(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]
    except FileNotFoundError:
        return []


def spawned_pids(events):
    return [e["fields"]["pid"] for e in events if e["kind"] == "spawned"]


def describe(event, origin):
    fields = event["fields"]
    what = event["kind"]
    if what == "state":
        what = f"{fields['from']} -> {fields['to']}"
    return f"  +{event['mono'] - origin:7.3f}s  {event['subject']:<5} {what:<22} {event['reason']}"


def run(workdir, out):
    started = time.monotonic()
    deadline = started + DEADLINE
    data_dir = os.path.join(workdir, "data")
    www = os.path.join(workdir, "www")
    os.makedirs(www)
    with open(os.path.join(www, "index.html"), "w") as f:
        f.write("hello from a service supervised by clsd\n")
    port = free_loopback_port()
    url = f"http://127.0.0.1:{port}/"
    command = [sys.executable, "-m", "http.server", "--bind", "127.0.0.1",
               "--directory", www, str(port)]
    config = os.path.join(workdir, "clsd.toml")
    with open(config, "w") as f:
        f.write(DEMO_CONFIG.format(data_dir=data_dir, command=json.dumps(command)))
    events_path = os.path.join(data_dir, "events.jsonl")

    out(f"clsd demo in {workdir}")
    out(f"  service 'web': {' '.join(command[1:])}")
    log = open(os.path.join(workdir, "twistd.log"), "wb")
    daemon = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "-n", "--pidfile=", "clsd", "--config", config],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
    )
    pids = []
    try:
        out(f"started twistd -n clsd (pid {daemon.pid})")
        answer = wait_for("the service to answer", lambda: http_get(url), deadline)
        first = wait_for("the spawn event", lambda: spawned_pids(read_events(events_path)),
                         deadline)[0]
        pids.append(first)
        out(f"service up: pid {first}, {url} says {answer!r}")

        out(f"killing pid {first} with SIGKILL")
        killed_at = time.monotonic()
        os.kill(first, signal.SIGKILL)

        def respawned():
            later = [p for p in spawned_pids(read_events(events_path)) if p != first]
            return later[0] if later else None

        second = wait_for("the restart", respawned, deadline)
        pids.append(second)
        spawn_event = [e for e in read_events(events_path)
                       if e["kind"] == "spawned" and e["fields"]["pid"] == second][0]
        answer = wait_for("the restarted service to answer", lambda: http_get(url), deadline)
        answered_at = time.monotonic()
        out(f"restarted as pid {second}: exec {1000 * (spawn_event['mono'] - killed_at):.1f} ms "
            f"after the kill, answering again after {1000 * (answered_at - killed_at):.0f} ms")

        out("stopping the daemon with SIGTERM")
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(timeout=max(0.5, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise DemoError("the daemon did not stop in time") from None
        leftovers = [p for p in pids if group_alive(p)]
        if leftovers:
            raise DemoError(f"process groups still running after the stop: {leftovers}")

        events = read_events(events_path)
        out("events (data_dir/events.jsonl):")
        origin = events[0]["mono"] if events else 0.0
        for event in events:
            out(describe(event, origin))
        out(f"stopped cleanly; nothing left running. Demo took "
            f"{time.monotonic() - started:.1f} s.")
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        for pid in pids:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass
        log.close()
