"""A small Ethernet network in network namespaces, made by a test and removed after it.

Each node (``alpha``, ``beta``, ``witness``, ``client`` by default) gets a
namespace of its own with one interface, ``eth0``, plugged into a bridge
that lives in one more namespace (``<prefix>-switch``). Every link is created
inside those namespaces (the veth pair is made in the switch's namespace with
its other end placed straight into the node's), so the root namespace gains
nothing but the namespaces' names, and deleting the namespaces deletes the
whole network.

Addresses come only from the documentation prefixes, and only inside the
namespaces: node number i (from 1) is ``192.0.2.i/24`` and
``2001:db8::i/64`` with MAC ``02:00:5e:10:00:i`` (locally administered), so
a test can name what it expects.

Names carry the test process's pid and a counter (``clsd-<pid>-<n>-alpha``):
rigs of parallel test processes never meet, and a rig whose process was
killed is found and removed by the next one (L{sweep_orphans}). Removal runs
as the test's cleanup and, as a fallback, at interpreter exit; it first
kills the processes still running inside the namespaces (started there by
the test), then deletes the namespaces.

Standard library only; the rig runs ``ip`` and ``nft``.
"""

import atexit
import ipaddress
import itertools
import json
import os
import re
import signal
import subprocess
import sys

NAME_PREFIX = "clsd"
DEFAULT_NODES = ("alpha", "beta", "witness", "client")
IPV4_NETWORK = ipaddress.IPv4Network("192.0.2.0/24")
IPV6_NETWORK = ipaddress.IPv6Network("2001:db8::/64")
MAC_PREFIX = "02:00:5e:10:00"
INTERFACE = "eth0"
BRIDGE = "br0"
SWITCH = "switch"
#: The nft table that L{Netns.partition} rewrites in each node's namespace.
PARTITION_TABLE = "clsd_partition"

#: Namespaces of a rig: clsd-<pid>-<n>-<node>.
_RIG_NAME = re.compile(rf"^{NAME_PREFIX}-(\d+)-(\d+)-")
_counter = itertools.count(1)


class NetnsError(RuntimeError):
    """A command of the rig failed; carries the command and what it printed."""


def run(argv, check=True, timeout=30, input=None):
    """Run C{argv} (blocking); the C{CompletedProcess}. NetnsError when C{check} and it fails."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input)
    except FileNotFoundError:
        raise NetnsError(f"{argv[0]} is not installed") from None
    if check and result.returncode != 0:
        raise NetnsError(f"{' '.join(argv)} failed ({result.returncode}): "
                         f"{(result.stderr or result.stdout).strip()}")
    return result


def namespaces():
    """The names in ``ip netns list``."""
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def delete_namespace(name):
    """Kill what still runs in namespace C{name}, then delete it (no error when it is gone)."""
    pids = run(["ip", "netns", "pids", name], check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ValueError, ProcessLookupError):
            pass
    run(["ip", "netns", "delete", name], check=False)


def sweep_orphans():
    """Delete the namespaces of rigs whose test process is gone (it was killed); their names."""
    removed = []
    for name in namespaces():
        match = _RIG_NAME.match(name)
        if match and not _pid_alive(int(match.group(1))):
            delete_namespace(name)
            removed.append(name)
    return removed


class Node:
    """One node of the rig: its namespace, interface and addresses."""

    def __init__(self, name, namespace, number):
        self.name = name
        self.namespace = namespace
        self.number = number
        self.interface = INTERFACE
        self.ipv4 = ipaddress.IPv4Interface(f"{IPV4_NETWORK.network_address + number}/24")
        self.ipv6 = ipaddress.IPv6Interface(f"{IPV6_NETWORK.network_address + number}/64")
        self.mac = f"{MAC_PREFIX}:{number:02x}"

    def __repr__(self):
        return f"<Node {self.name} {self.namespace} {self.ipv4} {self.ipv6} {self.mac}>"


class Netns:
    """The rig; make it with L{create}. C{nodes} maps node name to L{Node}."""

    def __init__(self, prefix, node_names):
        self.prefix = prefix
        self.switch = f"{prefix}-{SWITCH}"
        self.nodes = {name: Node(name, f"{prefix}-{name}", i)
                      for i, name in enumerate(node_names, 1)}
        self._made = []
        self._blocked = {name: set() for name in node_names}
        self._destroyed = False

    @classmethod
    def create(cls, test=None, nodes=DEFAULT_NODES):
        """Build the network; its removal is registered with C{test.addCleanup} (and atexit)."""
        nodes = list(nodes)
        if len(set(nodes)) != len(nodes) or not nodes or len(nodes) > 200:
            raise ValueError(f"node names must be 1 to 200 distinct names, got {nodes!r}")
        for name in nodes:
            if not re.fullmatch(r"[a-z][a-z0-9]{0,15}", name) or name == SWITCH:
                raise ValueError(f"node name {name!r}: lower-case letters and digits, "
                                 f"at most 16, not {SWITCH!r}")
        sweep_orphans()
        rig = cls(f"{NAME_PREFIX}-{os.getpid()}-{next(_counter)}", nodes)
        if test is not None:
            test.addCleanup(rig.destroy)
        atexit.register(rig.destroy)
        try:
            rig._build()
        except BaseException:
            rig.destroy()
            raise
        return rig

    def _add_namespace(self, name):
        run(["ip", "netns", "add", name])
        self._made.append(name)
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _build(self):
        self._add_namespace(self.switch)
        run(["ip", "-n", self.switch, "link", "add", BRIDGE, "type", "bridge"])
        run(["ip", "-n", self.switch, "link", "set", BRIDGE, "up"])
        for node in self.nodes.values():
            self._add_namespace(node.namespace)
            port = f"port{node.number}"
            run(["ip", "-n", self.switch, "link", "add", port, "type", "veth",
                 "peer", "name", node.interface, "netns", node.namespace])
            run(["ip", "-n", self.switch, "link", "set", port, "master", BRIDGE, "up"])
            run(["ip", "-n", node.namespace, "link", "set", node.interface,
                 "address", node.mac, "up"])
            run(["ip", "-n", node.namespace, "addr", "add", str(node.ipv4),
                 "dev", node.interface])
            run(["ip", "-n", node.namespace, "-6", "addr", "add", str(node.ipv6),
                 "dev", node.interface, "nodad"])

    def destroy(self):
        """Remove everything the rig made (idempotent; runs even after a failed build)."""
        if self._destroyed:
            return
        self._destroyed = True
        for name in reversed(self._made):
            delete_namespace(name)

    # -- using the network --------------------------------------------------

    def node(self, name):
        return self.nodes[name]

    def namespace_of(self, node):
        """A node's namespace, from its L{Node}, name or namespace (what every call accepts)."""
        if isinstance(node, Node):
            node = node.name
        if node in self.nodes:
            return self.nodes[node].namespace
        if node == self.switch or any(n.namespace == node for n in self.nodes.values()):
            return node
        raise KeyError(f"no node or namespace {node!r} in rig {self.prefix}")

    def exec_argv(self, node, argv):
        """C{argv} run inside C{node}'s namespace (``ip netns exec``): for spawning daemons."""
        return ["ip", "netns", "exec", self.namespace_of(node), *argv]

    def run_in(self, node, argv, check=True, timeout=30, input=None):
        """Run C{argv} inside C{node}'s namespace, blocking; the C{CompletedProcess}."""
        return run(self.exec_argv(node, argv), check=check, timeout=timeout, input=input)

    def ip(self, node, *args, check=True):
        """``ip -n NAMESPACE ARGS...`` (standard output)."""
        return run(["ip", "-n", self.namespace_of(node), *args], check=check).stdout

    def addresses(self, node, interface=INTERFACE):
        """The set of addresses (C{ip_interface}) on C{node}'s C{interface}."""
        links = json.loads(self.ip(node, "-j", "addr", "show", "dev", interface) or "[]")
        return {ipaddress.ip_interface(f"{a['local']}/{a['prefixlen']}")
                for link in links for a in link.get("addr_info", ())}

    def neigh(self, node, address):
        """The MAC C{node}'s neighbour cache holds for C{address}, or None (none, or unresolved)."""
        address = str(ipaddress.ip_interface(str(address)).ip)
        entries = json.loads(self.ip(node, "-j", "neigh", "show", address) or "[]")
        for entry in entries:
            if entry.get("dst") == address and "lladdr" in entry \
                    and "FAILED" not in entry.get("state", ()) \
                    and "INCOMPLETE" not in entry.get("state", ()):
                return entry["lladdr"]
        return None

    def poke(self, node, address, port=9):
        """Send one UDP datagram from C{node} to C{address} (the discard port), as a client would.

        The node resolves the address first: its neighbour cache gets an entry
        for it (L{neigh}), which is what an announcement must then correct.
        """
        ip = str(ipaddress.ip_interface(str(address)).ip)
        family = "AF_INET6" if ":" in ip else "AF_INET"
        self.run_in(node, [sys.executable, "-c",
                           f"import socket; s = socket.socket(socket.{family}, socket.SOCK_DGRAM);"
                           f" s.sendto(b'clsd', ({ip!r}, {int(port)}))"])

    def flush_neigh(self, node):
        self.ip(node, "neigh", "flush", "dev", INTERFACE)

    # -- partitions -----------------------------------------------------------

    def partition(self, a, b):
        """Cut every frame between nodes C{a} and C{b} (both ways; ARP and ND too).

        Each side drops, at its interface's ingress (nft, ``netdev`` family),
        the frames whose source MAC is the other's: it is as if the cable
        between them were cut, and it covers the floating addresses too.
        """
        a, b = self._check_pair(a, b)
        self._blocked[a].add(b)
        self._blocked[b].add(a)
        self._apply(a)
        self._apply(b)

    def heal(self, a=None, b=None):
        """Undo L{partition} of C{a} and C{b}; with no arguments, every partition."""
        if a is None and b is None:
            for name in self._blocked:
                if self._blocked[name]:
                    self._blocked[name].clear()
                    self._apply(name)
            return
        a, b = self._check_pair(a, b)
        self._blocked[a].discard(b)
        self._blocked[b].discard(a)
        self._apply(a)
        self._apply(b)

    def _check_pair(self, a, b):
        """The node names of C{a} and C{b} (given as nodes, names or namespaces)."""
        a, b = (self._node_name(x) for x in (a, b))
        if a == b:
            raise ValueError(f"cannot partition {a!r} from itself")
        return a, b

    def _node_name(self, node):
        namespace = self.namespace_of(node)
        for name, candidate in self.nodes.items():
            if candidate.namespace == namespace:
                return name
        raise KeyError(f"{node!r} is not a node of rig {self.prefix}")

    def partition_rules(self, node):
        """The nft script that makes C{node}'s table what L{partition} wants (atomic replace)."""
        macs = sorted(self.nodes[other].mac for other in self._blocked[node])
        lines = [
            f"table netdev {PARTITION_TABLE}",
            f"delete table netdev {PARTITION_TABLE}",
        ]
        if macs:
            lines += [
                f"table netdev {PARTITION_TABLE} {{",
                "  chain ingress {",
                f'    type filter hook ingress device "{INTERFACE}" priority -500; policy accept;',
                f"    ether saddr {{ {', '.join(macs)} }} drop",
                "  }",
                "}",
            ]
        return "\n".join(lines) + "\n"

    def _apply(self, node):
        self.run_in(node, ["nft", "-f", "-"], input=self.partition_rules(node))
