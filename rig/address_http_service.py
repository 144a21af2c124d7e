"""The test service of the floating-address tests: answers every GET with its node's name.

    python -m rig.address_http_service PORT

Listens on every address, IPv4 and IPv6 (``::``, dual stack), so it answers
at the floating address whichever ``address_order`` added it. The node's
name comes from ``CLSD_NODE`` (set by the daemon that holds the lease).
"""

import http.server
import os
import socket
import sys


class Server(http.server.ThreadingHTTPServer):
    """One thread per connection: a connection whose client went away unheard
    (its frames went to the other holder of a split address) holds up only itself."""

    address_family = socket.AF_INET6

    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)
        # else: the client gave up first (its 30 ms timeout during a switch): nothing to say


class Handler(http.server.BaseHTTPRequestHandler):
    timeout = 2.0  # such a connection is dropped, not read from for ever

    def do_GET(self):
        body = (os.environ.get("CLSD_NODE", "?") + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    Server(("::", int(sys.argv[1])), Handler).serve_forever()
