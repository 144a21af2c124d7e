"""Benchmark of the peer protocol over real mutual TLS on loopback (127.0.0.31/32 only).

Measures, in one process (so CPU figures include BOTH ends of a connection):

  - messages per second and CPU per message, one way over one connection;
  - round trips per second and CPU per round trip (request, answer, one at a time);
  - full mutual-TLS handshakes (TCP + TLS + hello both ways) per second and
    CPU per handshake, one after another;
  - memory (RSS) per open connection with 1, 64 and 1000 connections open.

Writes bench/results/peer_protocol.json (figures and machine information) and
prints a table.  Figures from a busy machine are indicative only: re-run on a
quiet one before relying on them.

Usage: python bench/peer_protocol.py [--messages N] [--round-trips N]
       [--handshakes N] [--connections 1,64,1000] [--output PATH]
"""

import argparse
import gc
import json
import os
import platform
import resource
import sys
import time

from twisted.internet import defer, endpoints, task
from zope.interface import implementer

from clsd.certs.authority import create_authority, issue_node_certificate
from clsd.certs.identity import NodeIdentity
from clsd.wire.core.interfaces import IPeerHandler
from clsd.version import PROTOCOL_MAX, PROTOCOL_MIN, software_version
from clsd.wire.core.messages import (
    HELLO, MessageType, peer_registry, settings_digests, settings_hash,
)
from clsd.wire.core.stats import PeerStats
from clsd.wire.protocol import PeerFactory
from clsd.wire.tls import PeerTLS

SERVER_HOST = "127.0.0.31"
CLIENT_HOST = "127.0.0.32"
SETTINGS = settings_hash({"voters": ["server", "client", "witness"]})
DIGESTS = settings_digests({"voters": ["server", "client", "witness"]})

#: A message the size of a membership heartbeat with a little gossip.
HEARTBEAT = MessageType("heartbeat", {
    "from": str, "incarnation": int, "sequence": int,
    "gossip": [{"name": str, "state": str, "incarnation": int}],
})
REGISTRY = peer_registry(HEARTBEAT)


def heartbeat(sequence):
    return HEARTBEAT.build(**{
        "from": "client", "incarnation": 3, "sequence": sequence,
        "gossip": [{"name": f"node-{i:04d}", "state": "alive", "incarnation": 7}
                   for i in range(2)],
    })


@implementer(IPeerHandler)
class Handler:
    """Counts messages; fires Deferreds on connect and on the n-th message."""

    def __init__(self, echo=False):
        self.echo = echo
        self.received = 0
        self.connected = []
        self._target = None
        self._on_target = None
        self._on_connect = []

    def expect(self, count):
        self._target = count
        self._on_target = defer.Deferred()
        if self.received >= count:
            self._fire()
        return self._on_target

    def _fire(self):
        d, self._on_target, self._target = self._on_target, None, None
        d.callback(None)

    def when_connected(self):
        d = defer.Deferred()
        self._on_connect.append(d)
        return d

    def peer_connected(self, peer):
        self.connected.append(peer)
        waiters, self._on_connect = self._on_connect, []
        for d in waiters:
            d.callback(peer)

    def message_received(self, peer, message):
        self.received += 1
        if self.echo:
            peer.send(message)
        if self._target is not None and self.received >= self._target:
            self._fire()

    def peer_disconnected(self, peer, reason):
        if peer in self.connected:
            self.connected.remove(peer)


def identity(ca, name):
    pair = issue_node_certificate(ca, name)
    return NodeIdentity(name=name, key=pair.key, certificate=pair.certificate,
                        ca_certificates=(ca.certificate,))


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rss_bytes():
    """Resident set size now (Linux /proc); elsewhere the peak, which is what
    getrusage offers portably."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024


def raise_file_limit(needed):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return soft
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def machine_info():
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }
    try:
        with open("/proc/cpuinfo") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu_model"] = models[0] if models else None
    except OSError:
        info["cpu_model"] = platform.processor() or None
    import twisted
    from OpenSSL import SSL

    info["twisted"] = twisted.__version__
    info["openssl"] = SSL.OpenSSL_version(SSL.OPENSSL_VERSION).decode()
    return info


class Bench:
    def __init__(self, reactor):
        self.reactor = reactor
        ca = create_authority("benchmark CA")
        self.server_tls = PeerTLS(identity(ca, "server"))
        self.client_tls = PeerTLS(identity(ca, "client"))
        self.server_stats = PeerStats()
        self.client_stats = PeerStats()
        self.server_handler = Handler(echo=False)

    def factory(self, name, initiator, handler, stats, tls):
        hello = HELLO.build(protocol=PROTOCOL_MAX, protocol_min=PROTOCOL_MIN,
                            software=software_version(), name=name, generation=1,
                            advertise=f"{SERVER_HOST}:0", settings=SETTINGS,
                            settings_digests=DIGESTS)
        return PeerFactory(initiator=initiator, hello=hello, registry=REGISTRY,
                           handler=handler, clock=self.reactor, stats=stats, tls=tls)

    async def listen(self):
        endpoint = endpoints.SSL4ServerEndpoint(self.reactor, 0, self.server_tls,
                                                backlog=1024, interface=SERVER_HOST)
        self.port = await endpoint.listen(self.factory(
            "server", False, self.server_handler, self.server_stats, self.server_tls))

    async def dial(self, handler):
        """One connection, returned once established on both ends."""
        endpoint = endpoints.SSL4ClientEndpoint(
            self.reactor, SERVER_HOST, self.port.getHost().port, self.client_tls,
            bindAddress=(CLIENT_HOST, 0))
        server_side = self.server_handler.when_connected()
        client_side = handler.when_connected()
        await endpoint.connect(self.factory("client", True, handler, self.client_stats,
                                            self.client_tls))
        peer = await client_side
        await server_side
        return peer

    async def messages_per_second(self, count, batch=500):
        handler = Handler()
        peer = await self.dial(handler)
        start_received = self.server_handler.received
        wall, cpu = time.perf_counter(), cpu_seconds()
        sent = 0
        while sent < count:
            n = min(batch, count - sent)
            for i in range(n):
                peer.send(heartbeat(sent + i))
            sent += n
            # Wait for the batch so that buffers stay small (a real sender
            # would be paced by the producer API in the same way).
            await self.server_handler.expect(start_received + sent)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        size = len(peer.codec.send(heartbeat(0)))
        peer.close("done", "benchmark step finished")
        return {"messages": count, "message_bytes": size, "seconds": wall,
                "messages_per_second": count / wall,
                "cpu_us_per_message_both_ends": cpu / count * 1e6}

    async def round_trips(self, count):
        self.server_handler.echo = True
        handler = Handler()
        peer = await self.dial(handler)
        wall, cpu = time.perf_counter(), cpu_seconds()
        for i in range(count):
            waiting = handler.expect(handler.received + 1)
            peer.send(heartbeat(i))
            await waiting
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        self.server_handler.echo = False
        peer.close("done", "benchmark step finished")
        return {"round_trips": count, "round_trips_per_second": count / wall,
                "mean_round_trip_us": wall / count * 1e6,
                "cpu_us_per_round_trip_both_ends": cpu / count * 1e6}

    async def handshakes(self, count):
        wall, cpu = time.perf_counter(), cpu_seconds()
        for _ in range(count):
            peer = await self.dial(Handler())
            peer.close("done", "handshake measured")
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        return {"handshakes": count, "handshakes_per_second": count / wall,
                "cpu_ms_per_handshake_both_ends": cpu / count * 1e3}

    async def memory(self, steps, parallel=32):
        handler = Handler()
        gc.collect()
        await task.deferLater(self.reactor, 0.2, lambda: None)
        base = rss_bytes()
        server_before = len(self.server_handler.connected)
        endpoint = endpoints.SSL4ClientEndpoint(
            self.reactor, SERVER_HOST, self.port.getHost().port, self.client_tls,
            bindAddress=(CLIENT_HOST, 0))
        factory = self.factory("client", True, handler, self.client_stats, self.client_tls)
        results = []
        for target in steps:
            while len(handler.connected) < target:
                # A few dozen handshakes at a time: the listen backlog and
                # the handshake timeout both stay far away.
                n = min(parallel, target - len(handler.connected))
                goal = len(handler.connected) + n
                await defer.gatherResults([endpoint.connect(factory) for _ in range(n)])
                while (len(handler.connected) < goal
                       or len(self.server_handler.connected) - server_before < goal):
                    await task.deferLater(self.reactor, 0.01, lambda: None)
            gc.collect()
            await task.deferLater(self.reactor, 0.2, lambda: None)
            rss = rss_bytes()
            results.append({"connections": target, "rss_bytes": rss,
                            "bytes_per_connection_both_ends": (rss - base) / target,
                            "bytes_per_connection_end": (rss - base) / target / 2})
        for peer in list(handler.connected):
            peer.close("done", "memory measured")
        while handler.connected:
            await task.deferLater(self.reactor, 0.05, lambda: None)
        return {"baseline_rss_bytes": base, "steps": results}


def print_table(report):
    r = report["results"]
    rows = [
        ("messages/s, one connection, one way", f"{r['throughput']['messages_per_second']:,.0f}"),
        ("  message size (bytes, one line)", f"{r['throughput']['message_bytes']}"),
        ("  CPU per message, both ends", f"{r['throughput']['cpu_us_per_message_both_ends']:.1f} us"),
        ("round trips/s (sequential)", f"{r['round_trip']['round_trips_per_second']:,.0f}"),
        ("  mean round trip", f"{r['round_trip']['mean_round_trip_us']:.0f} us"),
        ("  CPU per round trip, both ends", f"{r['round_trip']['cpu_us_per_round_trip_both_ends']:.0f} us"),
        ("handshakes/s (sequential, TLS + hello)", f"{r['handshake']['handshakes_per_second']:,.0f}"),
        ("  CPU per handshake, both ends", f"{r['handshake']['cpu_ms_per_handshake_both_ends']:.2f} ms"),
    ]
    for step in r["memory"]["steps"]:
        rows.append((f"memory per connection end, {step['connections']} open",
                     f"{step['bytes_per_connection_end'] / 1024:.1f} KiB"))
    width = max(len(label) for label, _ in rows)
    print(f"peer protocol benchmark ({report['machine']['cpu_model']}, "
          f"{report['machine']['cpus']} CPUs, load {report['machine']['load_average']})")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>12}")
    print("NOTE: measured on a shared machine; re-run on a quiet machine before relying on it.")


async def run(reactor, options):
    steps = [int(n) for n in options.connections.split(",")]
    limit = raise_file_limit(max(steps) * 2 + 256)
    bench = Bench(reactor)
    await bench.listen()
    report = {
        "benchmark": "peer_protocol",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine_info(),
        "parameters": {"messages": options.messages, "round_trips": options.round_trips,
                       "handshakes": options.handshakes, "connections": steps,
                       "file_limit": limit, "server": SERVER_HOST, "client": CLIENT_HOST,
                       "note": "client and server ends run in one process: CPU and "
                               "memory figures cover both ends unless marked per end"},
        "results": {},
    }
    report["results"]["throughput"] = await bench.messages_per_second(options.messages)
    report["results"]["round_trip"] = await bench.round_trips(options.round_trips)
    report["results"]["handshake"] = await bench.handshakes(options.handshakes)
    report["results"]["memory"] = await bench.memory(steps)
    report["machine"]["load_average_after"] = (
        os.getloadavg() if hasattr(os, "getloadavg") else None)
    report["server_stats"] = bench.server_stats.snapshot()
    await bench.port.stopListening()
    os.makedirs(os.path.dirname(options.output), exist_ok=True)
    with open(options.output, "w") as f:
        json.dump(report, f, indent=2, sort_keys=True)
        f.write("\n")
    print_table(report)
    print(f"written to {options.output}")


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--round-trips", type=int, default=2_000)
    parser.add_argument("--handshakes", type=int, default=200)
    parser.add_argument("--connections", default="1,64,1000")
    parser.add_argument("--output", default=os.path.join(here, "results", "peer_protocol.json"))
    options = parser.parse_args(argv)
    task.react(lambda reactor: defer.ensureDeferred(run(reactor, options)))


if __name__ == "__main__":
    main()
