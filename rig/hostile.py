"""A hostile peer for real-daemon tests: a CA-signed node that speaks the line protocol by hand.

The insider of doc/security.md: a machine holding a certificate from the
cluster's own CA but named in no configuration ("mallory": a retired
machine, a stolen key, a test box issued a certificate by mistake). It
dials real daemons over real mutual TLS from its own 127.0.0.x address,
sends a correct hello (the settings hash it copies from the daemon's own
hello, so it needs no configuration) and then whatever lines a test wants:
forged ballots, handovers, moves, membership records.

Two kinds:

  - L{HostilePeer.mallory}: its own certificate from the rig's CA, for a
    name in no configuration;
  - L{HostilePeer.impersonating}: a real member's certificate and key (a
    stolen key), typically with an older hello generation than the live
    node's.

Everything is blocking sockets with timeouts and one reader thread per
connection, so a synchronous test (the launcher's style) can use it; a
connection keeps every line the daemon sent (L{HostileConnection.received})
and notes how it ended (the daemon's ``bye`` reason, or ``closed``).
"""

import json
import os
import socket
import ssl
import threading
import time

from clsd.certs import store
from clsd.polling import wait_for
from rig.addresses import address_range

#: How long a blocking step (connect, handshake, a wait for a line) may take.
TIMEOUT = 10.0


def spare_address(launcher, layout, offset=1):
    """A loopback address of the launcher's reserved block that no node of C{layout} uses."""
    last = launcher.address(layout.all_nodes[-1])
    return address_range(last, offset + 1)[offset]


class HostileConnection:
    """One established connection of a L{HostilePeer}: send lines, see what comes back."""

    def __init__(self, sock, peer_hello):
        self.sock = sock
        #: The daemon's hello (a dict).
        self.peer_hello = peer_hello
        #: Every line the daemon sent after its hello, as dicts, in order.
        self.received = []
        #: How the connection ended: the daemon's bye reason, ``closed``, an
        #: error's name; None while it is open.
        self.ended = None
        self._lock = threading.Lock()
        self._send_lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    # -- sending -----------------------------------------------------------------

    def send(self, message_type, **fields):
        """Send one message of C{message_type} with C{fields} (the envelope is added)."""
        self.send_line({"v": 1, "type": message_type, **fields})

    def send_line(self, data):
        self.send_raw((json.dumps(data) + "\n").encode())

    def send_raw(self, data):
        """Write C{data}; a connection the daemon already closed is not an error here."""
        with self._send_lock:
            try:
                self.sock.sendall(data)
            except (OSError, ssl.SSLError):
                pass

    # -- receiving ----------------------------------------------------------------

    def _read(self):
        buffer = b""
        try:
            while True:
                try:
                    chunk = self.sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    self._end("closed")
                    return
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    try:
                        data = json.loads(line)
                    except ValueError:
                        continue
                    with self._lock:
                        self.received.append(data)
                    if isinstance(data, dict) and data.get("type") == "bye":
                        self._end(data.get("reason", "bye"))
        except (OSError, ssl.SSLError, ValueError) as e:
            self._end(type(e).__name__)

    def _end(self, how):
        with self._lock:
            if self.ended is None:
                self.ended = how

    def of_type(self, message_type):
        with self._lock:
            return [m for m in self.received if m.get("type") == message_type]

    def wait_for(self, message_type, predicate=lambda m: True, timeout=TIMEOUT):
        """The first received message of C{message_type} matching C{predicate}."""
        def found():
            return next((m for m in self.of_type(message_type) if predicate(m)), None)
        return wait_for(found, timeout, what=f"a {message_type} from the daemon")

    def wait_closed(self, timeout=TIMEOUT):
        """How the daemon ended the connection (its bye reason, or ``closed``)."""
        wait_for(lambda: self.ended is not None, timeout,
                 what="the daemon to close the hostile connection")
        return self.ended

    @property
    def bye(self):
        """The daemon's bye message (a dict), or None."""
        byes = self.of_type("bye")
        return byes[0] if byes else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        self._end("closed-by-us")


class HostilePeer:
    """A node with a certificate from the cluster CA, dialing from its own loopback address."""

    def __init__(self, name, address, cert, key):
        self.name = name
        self.address = address
        self.cert = cert
        self.key = key
        self.connections = []
        self._heartbeats = None

    @classmethod
    def mallory(cls, rig, launcher, directory, *, name="mallory", address=None):
        """A node in no configuration, with its own certificate from C{rig}'s CA."""
        from clsd.certs.authority import issue_node_certificate

        address = address or spare_address(launcher, rig.layout)
        ca = store.load_authority(rig.ca_dir(launcher))
        os.makedirs(directory, exist_ok=True)
        cert, key = store.node_paths(directory, name)
        store.write_pair(issue_node_certificate(ca, name, ip_addresses=[address]), cert, key,
                         force=True)
        return cls(name, address, cert, key)

    @classmethod
    def impersonating(cls, rig, launcher, node, *, address=None):
        """A real member's certificate and key (stolen), used from another address."""
        address = address or spare_address(launcher, rig.layout)
        _, cert, key = rig.certificates(launcher, node)
        return cls(node, address, cert, key)

    # -- connections ---------------------------------------------------------------

    def connect(self, target, *, generation=None, advertise=None, settings=None):
        """Dial C{target} (host, port), exchange hellos; a L{HostileConnection}.

        @param generation: our hello's generation (default: now in ns, as a
            fresh daemon start would pick); an impersonator passes an older one.
        @param settings: the settings hash to claim (default: the daemon's own).
        """
        raw = socket.create_connection(target, timeout=TIMEOUT,
                                       source_address=(self.address, 0))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the hostile side does not care who answers
        context.load_cert_chain(self.cert, self.key)
        sock = context.wrap_socket(raw)
        hello = self._read_hello(sock)
        ours = {
            "v": 1, "type": "hello", "protocol": hello["protocol"], "name": self.name,
            "generation": time.time_ns() if generation is None else generation,
            "advertise": advertise or f"{self.address}:1",
            "settings": hello["settings"] if settings is None else settings,
        }
        # The daemon's own protocol range, version and per-setting digests, so that
        # only what the test changes differs.
        for key in ("protocol_min", "software", "settings_digests"):
            if key in hello and not (key == "settings_digests" and settings is not None):
                ours[key] = hello[key]
        if settings is not None and "settings_digests" in hello:
            ours["settings_digests"] = {}
        sock.sendall((json.dumps(ours) + "\n").encode())
        sock.settimeout(0.5)
        connection = HostileConnection(sock, hello)
        self.connections.append(connection)
        return connection

    @staticmethod
    def _read_hello(sock):
        buffer = b""
        deadline = time.monotonic() + TIMEOUT
        while b"\n" not in buffer:
            if time.monotonic() > deadline:
                raise AssertionError("the daemon sent no hello")
            chunk = sock.recv(65536)
            if not chunk:
                raise AssertionError("the daemon closed the connection before its hello")
            buffer += chunk
        hello = json.loads(buffer.split(b"\n", 1)[0])
        if hello.get("type") != "hello":
            raise AssertionError(f"the daemon's first line is not a hello: {hello!r}")
        return hello

    # -- posing as a member -------------------------------------------------------------

    def member_record(self, *, generation, meta=None, incarnation=0, advertise=None):
        """Our own membership record (alive), with C{meta} as the published dict."""
        record = {"n": self.name, "a": advertise or f"{self.address}:1", "g": generation,
                  "i": incarnation, "s": "alive"}
        if meta:
            record["d"] = meta
        return record

    def record_proof(self, record):
        """C{(signature, certificate)} of our own C{record} (a wire dict), as a daemon
        signs its record: what makes others believe and relay it."""
        import base64

        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        from clsd.membership.core.members import Member, State, encode_meta
        from clsd.membership.core.messages import record_statement

        member = Member(record["n"], record["a"], record["g"], record["i"],
                        State(record["s"]), encode_meta(record.get("d")))
        key = store.load_private_key(self.key)
        signature = key.sign(record_statement(member), ec.ECDSA(hashes.SHA256()))
        der = store.load_certificate(self.cert).public_bytes(serialization.Encoding.DER)
        return (base64.b64encode(signature).decode("ascii"),
                base64.b64encode(der).decode("ascii"))

    def join(self, connections, *, generation, meta=None, interval=0.1):
        """Join through C{connections} and keep heartbeating on each until L{stop}.

        @param meta: what we publish (e.g. an ownership state registering for
            a cluster at some priority).
        """
        record = self.member_record(generation=generation, meta=meta)
        signature, certificate = self.record_proof(record)
        for connection in connections:
            connection.send("m.join", member=record, p=signature, c=certificate)
        stop = threading.Event()

        def beat():
            while not stop.wait(interval):
                for connection in connections:
                    if connection.ended is None:
                        connection.send("m.heartbeat", g=generation, i=0, updates=[])

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        self._heartbeats = (stop, thread)

    def stop(self):
        """Stop heartbeating and close every connection."""
        if self._heartbeats is not None:
            stop, thread = self._heartbeats
            stop.set()
            thread.join(timeout=2)
            self._heartbeats = None
        for connection in self.connections:
            connection.close()


def ownership_meta(registrations, holding=None):
    """A published ownership state (clsd.ownership.core.published) registering for C{registrations}."""
    return {"v": 1, "registrations": dict(registrations), "standby": False, "failed": [],
            "holding": dict(holding or {})}
