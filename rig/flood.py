"""Connection floods against a daemon's peer port, and what to watch while they run.

Shared by the real-daemon flood test and ``bench/peer_flood.py``. A
L{Flood} opens many TCP connections from several loopback source addresses
without a certificate: plain (connect and hold) or with a real TLS
ClientHello after which it stalls. L{RenewalWatch} scrapes a daemon's
metrics in a thread to time its lease renewals meanwhile; L{resident_mb}
reads a process's resident size.
"""

import errno
import re
import resource
import selectors
import socket
import threading
import time
import urllib.request

#: One loopback port range holds about 28,000 connections per source address
#: (ip_local_port_range); stay well below it.
PER_SOURCE = 10_000


def raise_fd_limit(wanted):
    """Let this process hold C{wanted} descriptors (root may raise the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return soft
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def client_hello():
    """The bytes of a real TLS ClientHello (pyOpenSSL, memory BIO)."""
    from OpenSSL import SSL

    connection = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    connection.set_connect_state()
    try:
        connection.do_handshake()
    except SSL.WantReadError:
        pass
    return connection.bio_read(65536)


class Flood:
    """Many unauthenticated connections to C{target}, held until L{close}."""

    def __init__(self, target, sources, *, hello=False):
        """
        @param target: C{(host, port)} of the peer port.
        @param sources: loopback addresses to connect from, round robin.
        @param hello: send a TLS ClientHello on each connection, then stall.
        """
        self.target = target
        self.sources = list(sources)
        self.hello = client_hello() if hello else None
        self.sockets = []
        self.errors = 0

    def open(self, count, timeout=30.0):
        """Open C{count} connections (non-blocking connects); returns how many got through."""
        raise_fd_limit(len(self.sockets) + count + 1024)
        selector = selectors.DefaultSelector()
        started = []
        for i in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                sock.bind((self.sources[i % len(self.sources)], 0))
                code = sock.connect_ex(self.target)
            except OSError:
                sock.close()
                self.errors += 1
                continue
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                self.errors += 1
                continue
            started.append(sock)
            selector.register(sock, selectors.EVENT_WRITE)
        deadline = time.monotonic() + timeout
        waiting = len(started)
        while waiting and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=0.5):
                sock = key.fileobj
                selector.unregister(sock)
                waiting -= 1
                if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    sock.close()
                    self.errors += 1
                    continue
                if self.hello is not None:
                    try:
                        sock.send(self.hello)
                    except OSError:
                        pass  # refused over a cap and closed already
                self.sockets.append(sock)
        for key in list(selector.get_map().values()):
            key.fileobj.close()
            self.errors += 1
        selector.close()
        return len(self.sockets)

    def close(self):
        """Close every connection at once."""
        for sock in self.sockets:
            sock.close()
        self.sockets = []


def resident_mb(pid):
    """The resident size of process C{pid} in MB (VmRSS), or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


_SAMPLE = re.compile(r'^(clsd_lease_renewal_seconds_(?:count|sum)|clsd_lease_epoch)'
                     r'\{resource="(?P<resource>[^"]*)"\} (?P<value>\S+)$', re.M)


def scrape_lease(url, resource_name):
    """C{(renewals, seconds, epoch)} of C{resource_name} from a metrics page."""
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    values = {}
    for match in _SAMPLE.finditer(text):
        if match["resource"] == resource_name:
            values[match[1]] = float(match["value"])
    return (values.get("clsd_lease_renewal_seconds_count", 0.0),
            values.get("clsd_lease_renewal_seconds_sum", 0.0),
            values.get("clsd_lease_epoch"))


class RenewalWatch:
    """Samples a holder's lease renewals every C{interval} s in a thread.

    From the samples: the longest time without a new renewal (how late the
    renewals got, at the sampling resolution), the mean round trip of the
    renewals in a window, and whether the epoch changed.
    """

    def __init__(self, url, resource_name, interval=0.1):
        self.url = url
        self.resource = resource_name
        self.interval = interval
        #: C{(monotonic time, renewals, seconds, epoch)}.
        self.samples = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join()

    def _run(self):
        while not self._stop.is_set():
            try:
                count, seconds, epoch = scrape_lease(self.url, self.resource)
            except OSError:
                self.failures += 1
            else:
                self.samples.append((time.monotonic(), count, seconds, epoch))
            self._stop.wait(self.interval)

    def window(self, start, end):
        """Renewal figures between two monotonic times."""
        inside = [s for s in self.samples if start <= s[0] <= end]
        if len(inside) < 2:
            return {"samples": len(inside)}
        longest, last_change = 0.0, inside[0][0]
        for previous, sample in zip(inside, inside[1:]):
            if sample[1] != previous[1]:
                longest = max(longest, sample[0] - last_change)
                last_change = sample[0]
        longest = max(longest, inside[-1][0] - last_change)
        renewals = inside[-1][1] - inside[0][1]
        seconds = inside[-1][2] - inside[0][2]
        return {
            "samples": len(inside),
            "renewals": int(renewals),
            "renewals_per_s": round(renewals / (inside[-1][0] - inside[0][0]), 2),
            "mean_round_trip_ms": round(1000 * seconds / renewals, 2) if renewals else None,
            "longest_gap_s": round(longest, 2),
            "epochs": sorted({s[3] for s in inside if s[3] is not None}),
            "scrape_failures": self.failures,
        }
