#!/usr/bin/env python3
"""Fuzz the peer port of a real daemon, before and after authentication.

Three real ``twistd clsd`` daemons on loopback (alpha owns cluster ID ``A``;
bench/_peer_rig.py). A seeded generator (``random.Random(--seed)``, no
hypothesis: the same seed sends the same bytes) writes ``--lines`` lines in
all to alpha's peer port, one connection after another, in three kinds:

  - ``plain`` (50 % of the lines): TCP without TLS, random lines of bytes;
  - ``tls-garbage`` (20 %): a real TLS ClientHello, then random lines;
  - ``post-auth`` (30 %): TLS with a certificate from the cluster CA for
    "mallory" (a node in no configuration), a valid hello, 0 to 200 pings,
    then one almost-valid line: truncated or invalid JSON, invalid UTF-8, a
    bad envelope, another version, an unknown type, a known type with
    random and unknown fields, deep nesting, NaN, a lone surrogate, an
    over-long line.

``--workers`` threads (default 4) fuzz at once, each with its own
``random.Random(seed * 1000 + worker)``. After each connection's lines the
fuzzer reads until alpha closes it (10 s at most). Each post-auth line is
first given to a local ``Codec(node_registry())``: a line the codec refuses
must make alpha close that connection; a line it accepts (an upper layer's
parser that ignores unknown fields) must leave it open, and is reported.
Pass: 0 tracebacks or unhandled errors in any daemon's log, every daemon the
same process, every refused line closed its connection and none of alpha's
established peers (beta, witness) was disconnected, cluster A with the same
instance and epoch, no member changed state, no overlap.

Usage: python bench/peer_fuzz.py [--lines 1000000] [--seed 1]
The default (--lines 20000) is a quick look. Writes bench/results/<output>
(default peer_fuzz.json) and prints a summary.
"""

import argparse
import json
import os
import random
import re
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import interrupts_as_exceptions, machine_info, remove_tree, write_json  # noqa: E402
from _peer_rig import OWNER, PeerRig  # noqa: E402

from clsd.certs import store  # noqa: E402
from clsd.certs.authority import issue_node_certificate  # noqa: E402
from clsd.config import load_config  # noqa: E402
from clsd.daemon import cluster_settings  # noqa: E402
from clsd.layers import node_registry  # noqa: E402
from clsd.wire.core.codec import MAX_LINE, Codec  # noqa: E402
from clsd.wire.core.errors import RemoteProtocolError  # noqa: E402
from clsd.version import PROTOCOL_MAX, PROTOCOL_MIN, software_version  # noqa: E402
from clsd.wire.core.messages import settings_digests, settings_hash  # noqa: E402
from rig.flood import client_hello  # noqa: E402

SHARES = (("plain", 0.5), ("tls-garbage", 0.2), ("post-auth", 0.3))
PREAUTH_LINES_PER_CONNECTION = 200
MAX_PINGS = 200
CLOSE_TIMEOUT = 10.0
#: How long a connection whose line the codec accepts is watched (it must stay open).
ACCEPTED_WATCH = 1.0
PING = b'{"v":1,"type":"ping"}\n'
_COUNTER = re.compile(r'^clsd_peer_connections_(rejected|dropped)_total\{reason="([^"]*)"\} (\S+)$',
                      re.M)


class Lines:
    """Seeded generators of bad input."""

    def __init__(self, rng, type_names):
        self.rng = rng
        self.types = sorted(type_names)

    def random_bytes_line(self):
        rng = self.rng
        n = rng.randrange(0, 200)
        body = bytes(rng.randrange(256) for _ in range(n)).replace(b"\n", b" ")
        return body + b"\n"

    def _value(self, depth=0):
        rng = self.rng
        kind = rng.randrange(9 if depth < 3 else 6)
        if kind == 0:
            return rng.randrange(-2**70, 2**70)
        if kind == 1:
            return rng.random() * 10 ** rng.randrange(-5, 300)
        if kind == 2:
            return "".join(chr(rng.randrange(32, 0x2fff)) for _ in range(rng.randrange(20)))
        if kind == 3:
            return rng.choice([True, False, None])
        if kind == 4:
            return rng.choice(["alpha", "beta", "witness", "mallory", "A", ""])
        if kind == 5:
            return rng.randrange(0, 2**63)
        if kind == 6:
            return [self._value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{rng.randrange(50)}": self._value(depth + 1) for _ in range(rng.randrange(4))}

    def bad_line(self):
        """One line the codec or the schema must refuse; C{(kind, bytes)}."""
        rng = self.rng
        kind = rng.choice(["truncated-json", "not-utf8", "envelope", "version", "unknown-type",
                           "bad-fields", "deep", "nan", "surrogate", "too-long"]
                          if rng.random() < 0.999 else ["too-long"])
        message = {"v": 1, "type": rng.choice(self.types),
                   f"fuzz_{rng.randrange(10**6)}": self._value()}
        for _ in range(rng.randrange(6)):
            message[f"k{rng.randrange(50)}"] = self._value()
        text = json.dumps(message)
        if kind == "truncated-json":
            return kind, text[:rng.randrange(1, len(text))].encode() + b"\n"
        if kind == "not-utf8":
            raw = text.encode()
            at = rng.randrange(len(raw))
            return kind, raw[:at] + bytes([rng.choice([0x80, 0xc0, 0xff, 0xfe])]) + raw[at:] + b"\n"
        if kind == "envelope":
            return kind, json.dumps(rng.choice([
                [1, 2], 3, "hello", None, {"type": "ping"}, {"v": "1", "type": "ping"},
                {"v": 1, "type": 7}, {"v": 1}])).encode() + b"\n"
        if kind == "version":
            return kind, json.dumps({**message, "v": rng.choice([0, 2, -1, 2**64])}).encode() + b"\n"
        if kind == "unknown-type":
            return kind, json.dumps({"v": 1, "type": f"nope{rng.randrange(1000)}"}).encode() + b"\n"
        if kind == "deep":
            depth = rng.randrange(100, 5000)
            return kind, (b'{"v":1,"type":"ping","x":' + b"[" * depth + b"]" * depth + b"}\n")
        if kind == "nan":
            return kind, text[:-1].encode() + b', "n": NaN}\n'
        if kind == "surrogate":
            return kind, text[:-1].encode() + b', "s": "\\ud800"}\n'
        if kind == "too-long":
            return kind, b'{"v":1,"type":"ping","pad":"' + b"x" * (MAX_LINE + 10) + b'"}\n'
        return kind, text.encode() + b"\n"  # bad-fields: the unknown fuzz_ field at least


def codec_verdict(line):
    """The message type a fresh codec reads from C{line}, or C{None} if it refuses it."""
    codec = Codec(node_registry())
    codec.receive_data(line)
    try:
        return codec.next_event().type
    except RemoteProtocolError:
        return None


class Fuzzer:
    def __init__(self, rig, seed, workdir, workers):
        self.rig = rig
        self.seed = seed
        self.workers = workers
        self.target = rig.target()
        self.sources = rig.sources(3)
        config = load_config(rig.launcher.node(OWNER).spec.config_path)
        self.settings = settings_hash(cluster_settings(config))
        self.settings_digests = settings_digests(cluster_settings(config))
        self.types = node_registry().names()
        self.hello = client_hello()
        self._lock = threading.Lock()
        self._generation = time.time_ns()
        # One name per worker: connections of one name replace each other
        # (one connection per peer), which would hide whose line closed what.
        ca = store.load_authority(rig.cluster_rig.ca_dir(rig.launcher))
        certs = os.path.join(workdir, "mallory")
        os.makedirs(certs, exist_ok=True)
        self.contexts = []
        for worker in range(workers):
            cert, key = store.node_paths(certs, f"mallory-{worker}")
            store.write_pair(issue_node_certificate(ca, f"mallory-{worker}"), cert, key,
                             force=True)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            context.load_cert_chain(cert, key)
            self.contexts.append(context)
        self.counts = {"connections": {}, "lines": {}, "bad_lines": {}, "ended": {},
                       "left_open": 0, "left_open_lines": [], "accepted_by_codec": {},
                       "accepted_but_closed": 0, "not_established": 0}

    def _count(self, table, key, n=1):
        with self._lock:
            counts = self.counts[table]
            counts[key] = counts.get(key, 0) + n

    def _add(self, key, n=1):
        with self._lock:
            self.counts[key] += n

    def connect(self, worker):
        return socket.create_connection(
            self.target, timeout=CLOSE_TIMEOUT,
            source_address=(self.sources[worker % len(self.sources)], 0))

    def run(self, total_lines, log):
        started = time.monotonic()
        self.sent = 0
        threads = []
        errors = []
        for worker in range(self.workers):
            share = total_lines // self.workers + (worker < total_lines % self.workers)
            thread = threading.Thread(target=self._worker, args=(worker, share, errors),
                                      daemon=True)
            thread.start()
            threads.append(thread)
        while any(t.is_alive() for t in threads):
            for t in threads:
                t.join(timeout=10)
            log(f"  {self.sent} lines, {sum(self.counts['connections'].values())} connections, "
                f"{time.monotonic() - started:.0f} s")
        if errors:
            raise errors[0]
        self.counts["seconds"] = round(time.monotonic() - started, 1)
        return self.counts

    def _worker(self, worker, total, errors):
        try:
            rng = random.Random(self.seed * 1000 + worker)
            lines = Lines(rng, self.types)
            budget = {kind: int(total * share) for kind, share in SHARES}
            budget["plain"] += total - sum(budget.values())
            while any(v > 0 for v in budget.values()):
                kind = rng.choice([k for k, v in budget.items() if v > 0])
                n = self.one(worker, rng, lines, kind, budget[kind])
                budget[kind] -= n
                self._add_sent(n)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    def _add_sent(self, n):
        with self._lock:
            self.sent += n

    def one(self, worker, rng, lines, kind, budget):
        self._count("connections", kind)
        if kind == "post-auth":
            return self.post_auth(worker, rng, lines, budget)
        n = min(budget, PREAUTH_LINES_PER_CONNECTION)
        data = b"".join(lines.random_bytes_line() for _ in range(n))
        if kind == "tls-garbage":
            data = self.hello + data
        self._count("lines", kind, n)
        self.send_and_wait_close(self.connect(worker), data)
        return n

    def post_auth(self, worker, rng, lines, budget):
        sock = self.contexts[worker].wrap_socket(self.connect(worker))
        self._generation += 1
        try:
            hello = {"v": 1, "type": "hello", "protocol": PROTOCOL_MAX,
                     "protocol_min": PROTOCOL_MIN, "software": software_version(),
                     "name": f"mallory-{worker}", "generation": self._generation,
                     "advertise": f"{self.sources[0]}:1", "settings": self.settings,
                     "settings_digests": self.settings_digests}
            sock.sendall(json.dumps(hello).encode() + b"\n")
            answer = sock.recv(65536)
            if b'"hello"' not in answer:
                self._add("not_established")
        except (OSError, ssl.SSLError):
            self._add("not_established")
            sock.close()
            return 1
        pings = min(rng.randrange(MAX_PINGS + 1), max(0, budget - 2))
        kind, bad = lines.bad_line()
        self._count("bad_lines", kind)
        self._count("lines", "post-auth", pings + 2)
        accepted = codec_verdict(bad)
        if accepted is None:
            self.send_and_wait_close(sock, PING * pings + bad, bad)
        else:
            self._count("accepted_by_codec", accepted)
            self.send_and_watch_open(sock, PING * pings + bad)
        return pings + 2

    def send_and_wait_close(self, sock, data, line=None):
        try:
            try:
                sock.sendall(data)
            except (OSError, ssl.SSLError):
                pass  # cut off while writing: the daemon closed it
            deadline = time.monotonic() + CLOSE_TIMEOUT
            while time.monotonic() < deadline:
                try:
                    if not sock.recv(65536):
                        self._count("ended", "closed")
                        return
                except TimeoutError:
                    break
                except (OSError, ssl.SSLError) as e:
                    self._count("ended", type(e).__name__)
                    return
            with self._lock:
                self.counts["left_open"] += 1
                if line is not None and len(self.counts["left_open_lines"]) < 20:
                    self.counts["left_open_lines"].append(line[:200].decode("latin-1"))
        finally:
            sock.close()

    def send_and_watch_open(self, sock, data):
        """A line the codec accepts: the connection must stay up for L{ACCEPTED_WATCH} s.

        (Alpha may answer: an accepted m.watch makes it send heartbeats.)
        """
        try:
            sock.sendall(data)
            deadline = time.monotonic() + ACCEPTED_WATCH
            while time.monotonic() < deadline:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                if not sock.recv(65536):
                    self._add("accepted_but_closed")
                    return
        except TimeoutError:
            return
        except (OSError, ssl.SSLError):
            self._add("accepted_but_closed")
        finally:
            sock.close()


def scrape_counters(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found = {}
    for match in _COUNTER.finditer(text):
        found[f"{match[1]}:{match[2]}"] = int(float(match[3]))
    return found


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=20_000,
                        help="lines to send in all (default 20000; the full run is 1000000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=4, help="connections at once")
    parser.add_argument("--output", default="peer_fuzz.json")
    parser.add_argument("--keep", action="store_true", help="keep configs and logs")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-fuzz-"))
    info = machine_info()
    rig = PeerRig(workdir / "rig")
    status, result = 0, None
    try:
        with interrupts_as_exceptions():
            rig.start()
            print(f"cluster up; fuzzing {OWNER} with {args.lines} lines (seed {args.seed})")
            offsets = rig.log_offsets()
            state = rig.state()
            before = scrape_counters(rig.metrics_url())
            counts = Fuzzer(rig, args.seed, workdir, args.workers).run(args.lines, print)
            time.sleep(2 * rig.lease)  # a late effect would show by now
            after = scrape_counters(rig.metrics_url())
            owner_log = rig.launcher.log_text(OWNER)[offsets[OWNER]:]
            peers_lost = re.findall(r"peer (beta|witness) disconnected[^\n]*", owner_log)
            counted = {k: after[k] - before.get(k, 0) for k in sorted(after)
                       if after[k] != before.get(k, 0)}
            refused = sum(counts["bad_lines"].values()) - sum(counts["accepted_by_codec"].values())
            result = {
                "counts": counts,
                "post_auth_lines_refused": refused,
                "post_auth_drops_counted": sum(v for k, v in counted.items()
                                               if k.startswith("dropped:")),
                "counted_by_alpha": counted,
                "log_problems": rig.log_problems(),
                "same_daemons_and_lease": rig.state() == state,
                "member_changes": {k: v for k, v in rig.member_changes(offsets).items() if v},
                "established_peers_disconnected": peers_lost,
                "overlap_violations": rig.violations(),
            }
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001
        print(f"benchmark failed: {type(e).__name__}: {e}", file=sys.stderr)
        status = 1
    finally:
        rig.stop()
        if args.keep or status:
            print(f"work directory kept: {workdir}")
        else:
            remove_tree(workdir)
    if result is None:
        return status or 1
    passed = (not result["log_problems"] and result["same_daemons_and_lease"]
              and not result["member_changes"] and not result["established_peers_disconnected"]
              and not result["overlap_violations"] and result["counts"]["left_open"] == 0
              and result["counts"]["accepted_but_closed"] == 0
              and result["post_auth_drops_counted"] == result["post_auth_lines_refused"])
    data = {"benchmark": "peer_fuzz", "description": __doc__.split("\n\n")[0],
            "machine": info, "lines": args.lines, "seed": args.seed, "passed": passed,
            **result}
    written = write_json(args.output, data)
    counts = result["counts"]
    print(f"lines {sum(counts['lines'].values())} ({counts['lines']}), connections "
          f"{counts['connections']}, {counts['seconds']} s")
    print(f"bad lines after the hello: {counts['bad_lines']}")
    print(f"how connections ended: {counts['ended']}, left open: {counts['left_open']}, "
          f"post-auth not established: {counts['not_established']}")
    print(f"almost-valid lines the codec accepts (connection kept, as it should): "
          f"{counts['accepted_by_codec']}; of those closed anyway: "
          f"{counts['accepted_but_closed']}")
    print(f"alpha counted: {result['counted_by_alpha']}")
    print(f"post-auth lines refused by the codec: {result['post_auth_lines_refused']}, "
          f"established connections alpha dropped: {result['post_auth_drops_counted']}")
    print(f"tracebacks/problems: {result['log_problems']}; lease and daemons unchanged: "
          f"{result['same_daemons_and_lease']}; member changes: {result['member_changes']}; "
          f"established peers disconnected: {result['established_peers_disconnected']}; "
          f"overlaps: {result['overlap_violations']}")
    print(f"{'PASSED' if passed else 'FAILED'}; written to {written}")
    return status if passed else 2


if __name__ == "__main__":
    sys.exit(main())
