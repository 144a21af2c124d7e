"""The demo's system: a tiny HTTP service that answers which node runs it, under which lease.

``python -m clsd.demo.system --http 127.0.0.11:8081``: ``GET /`` answers JSON
with the node, cluster and lease epoch the daemon gave it (``CLSD_NODE``,
``CLSD_CLUSTER``, ``CLSD_EPOCH``), its pid and the wall-clock time it started,
so that the demo can show a failover from outside. SIGTERM stops it.
"""

import argparse
import json
import os
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer


def identity(environ, pid, started):
    """What C{GET /} answers."""
    epoch = environ.get("CLSD_EPOCH")
    return {"node": environ.get("CLSD_NODE"), "cluster": environ.get("CLSD_CLUSTER"),
            "epoch": int(epoch) if epoch and epoch.isdigit() else None,
            "pid": pid, "started": started}


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    return host, int(port)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m clsd.demo.system",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--http", type=parse_address, required=True, metavar="HOST:PORT")
    args = parser.parse_args(argv)
    body = json.dumps(identity(os.environ, os.getpid(), time.time())).encode() + b"\n"

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(args.http, Handler)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
