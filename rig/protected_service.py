"""The protected test service: a system that reports every moment it runs.

``python -m rig.protected_service --record DIR [--http 127.0.0.x:PORT]``

Order matters for the checker's soundness:
  1. connect the lifeline (so any later death is observed),
  2. write ``start`` BEFORE doing anything a second copy must not do
     (here: listening on the HTTP address),
  3. heartbeat every ``--interval`` seconds,
  4. on SIGTERM/SIGINT: close the listener, write ``stop`` as the last act,
     exit 0. SIGKILL leaves no stop record; the lifeline's ``exit`` ends it.

With ``--escape`` it is a service that escapes its process group, as a
daemon that backgrounds itself does: it double-forks, the grandchild calls
``setsid`` and does all of the above (its records carry ``escaped``), while
the process the supervisor started only waits: it exits 0 on SIGTERM without
passing the signal on, and 1 when the grandchild is gone. Only containment
that holds every process of the service (a cgroup) stops the grandchild.

Identity comes from ``CLSD_NODE``, ``CLSD_CLUSTER``, ``CLSD_EPOCH`` and ``CLSD_SLOT`` (set by
the daemon that owns the lease), or from ``--node/--cluster/--epoch``.
``GET /`` answers 200 with the identity as JSON, for health checks and for
timing when a failed-over service answers again.
"""

import argparse
import json
import os
import select
import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from rig.recorder import (
    RecordError, RecordWriter, connect_lifeline, identity_from_env,
)

#: Heartbeats every 100 ms: a gap in them is visible to the checker at a
#: resolution well below any failover bound we test (seconds).
DEFAULT_INTERVAL = 0.1


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return host, int(port)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m rig.protected_service",
        description="A test service that records its start, heartbeats and stop.",
    )
    parser.add_argument("--record", required=True, metavar="DIR",
                        help="record directory (shared by all instances of a run)")
    parser.add_argument("--http", type=parse_address, metavar="HOST:PORT",
                        help="also serve GET / on this address")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL,
                        help="seconds between heartbeats (default %(default)s)")
    parser.add_argument("--node", help="node name (default: $CLSD_NODE)")
    parser.add_argument("--cluster", help="cluster ID (default: $CLSD_CLUSTER)")
    parser.add_argument("--epoch", type=int, help="lease epoch (default: $CLSD_EPOCH)")
    parser.add_argument("--ready-delay", type=float, default=0.0, metavar="SECONDS",
                        help="wait this long after the start record before serving HTTP "
                             "(a system that takes time to become ready)")
    parser.add_argument("--escape", action="store_true",
                        help="double-fork and setsid: the recording copy leaves the process group")
    return parser


def _handler_for(identity):
    body = json.dumps({
        "node": identity.node, "cluster": identity.cluster,
        "epoch": identity.epoch, "pid": identity.pid, "instance": identity.instance,
        "slot": identity.slot,
    }).encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):
            pass

    return Handler


def run(args, environ=os.environ, *, escaped=False):
    try:
        identity = identity_from_env(
            environ, os.getpid(), node=args.node, cluster=args.cluster, epoch=args.epoch
        )
    except RecordError as e:
        sys.stderr.write(f"protected_service: {e}\n")
        return 2
    if not os.path.isdir(args.record):
        sys.stderr.write(f"protected_service: --record {args.record!r} is not a directory\n")
        return 2

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stopping.append(signum))

    lifeline = connect_lifeline(args.record, identity)
    writer = RecordWriter(args.record, identity)
    writer.record("start", lifeline=lifeline is not None,
                  http=f"{args.http[0]}:{args.http[1]}" if args.http else None,
                  **({"escaped": True} if escaped else {}))

    server = None
    if args.ready_delay > 0:
        select.select([wake_r], [], [], args.ready_delay)
    if args.http and not stopping:
        try:
            server = ThreadingHTTPServer(args.http, _handler_for(identity))
        except OSError as e:
            sys.stderr.write(f"protected_service: cannot listen on {args.http}: {e}\n")
            writer.record("stop", reason="listen-failed")
            return 1
        threading.Thread(target=server.serve_forever, daemon=True).start()

    while not stopping:
        writer.record("heartbeat")
        select.select([wake_r], [], [], args.interval)
        try:
            os.read(wake_r, 512)
        except BlockingIOError:
            pass

    if server is not None:
        server.shutdown()
        server.server_close()
    writer.record("stop", signal=signal.Signals(stopping[0]).name)
    writer.close()
    return 0


def _gone(pid):
    """Whether C{pid} has exited (a zombie counts: it no longer runs)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def escape(args, environ=os.environ):
    """Run the recording copy in a grandchild of its own session; wait for TERM or its end."""
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read_end)
        os.setsid()
        grandchild = os.fork()
        if grandchild:
            os.write(write_end, str(grandchild).encode())
            os._exit(0)
        os.close(write_end)
        code = 1
        try:
            code = run(args, environ, escaped=True)
        finally:
            os._exit(code)
    os.close(write_end)
    os.waitpid(child, 0)
    with os.fdopen(read_end) as pipe:
        text = pipe.read().strip()
    if not text.isdigit():
        sys.stderr.write("protected_service: the escaped copy did not start\n")
        return 1
    grandchild = int(text)
    stopping = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, frame: stopping.append(signum))
    while not stopping:
        if _gone(grandchild):
            return 1
        select.select([], [], [], 0.1)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    sys.exit(escape(args) if args.escape else run(args))


if __name__ == "__main__":
    main()
