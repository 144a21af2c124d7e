"""Which nodes have the floating address on their interface, sampled about every millisecond.

    python -m rig.address_holder_watch ADDRESS OUTFILE NAME=NAMESPACE [NAME=NAMESPACE ...]

The client's ARP watch (L{rig.address_client_watch}) sees who *answers*
for the address; this one sees who *has* it, from the kernels themselves:
one netlink socket per network namespace (made inside it through
``setns``), and each round asks every namespace in turn for its
addresses (an ``RTM_GETADDR`` dump, a fraction of a millisecond each), so
the nodes of one round are read within about a millisecond of each other,
without starting a process per sample (``ip -n`` takes milliseconds).

A line is written when the set of holders changes (and a last one on
SIGTERM): ``{"t": monotonic, "n": round number, "holders": [...]}``. Two
holders in one round, or an old owner holding again after the new one
did, is two machines with the address at once. Run as root in the root
namespace; Linux only, standard library only.
"""

import ctypes
import ipaddress
import json
import os
import signal
import socket
import struct
import sys
import time

CLONE_NEWNET = 0x40000000
RTM_NEWADDR, RTM_GETADDR = 20, 22
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
IFA_ADDRESS, IFA_LOCAL = 1, 2
ROUND = 0.001

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "setns failed")


def netlink_in(namespace):
    """A NETLINK_ROUTE socket that belongs to C{namespace} (made there, then back home)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
        finally:
            _setns(home)
    finally:
        os.close(target)
        os.close(home)
    sock.bind((0, 0))
    return sock


def _attributes(data):
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            return
        yield kind, data[offset + 4:offset + length]
        offset += (length + 3) & ~3


def addresses(sock, family, seq):
    """The addresses (C{ip_interface}) of every interface in the socket's namespace."""
    request = struct.pack("=IHHII", 16 + 8, RTM_GETADDR, NLM_F_REQUEST | NLM_F_DUMP, seq, 0)
    request += struct.pack("=BBBBI", family, 0, 0, 0, 0)
    sock.send(request)
    found = set()
    while True:
        data = sock.recv(65536)
        offset = 0
        while offset + 16 <= len(data):
            length, kind, _, _, _ = struct.unpack_from("=IHHII", data, offset)
            if kind == NLMSG_DONE:
                return found
            if kind == NLMSG_ERROR:
                raise OSError("netlink: address dump refused")
            if kind == RTM_NEWADDR:
                fam, prefix = struct.unpack_from("=BB", data, offset + 16)
                attrs = dict(_attributes(data[offset + 24:offset + length]))
                raw = attrs.get(IFA_LOCAL, attrs.get(IFA_ADDRESS))
                if raw is not None:
                    found.add(ipaddress.ip_interface((raw, prefix)))
            offset += (length + 3) & ~3


def main(address, outfile, *nodes):
    wanted = ipaddress.ip_interface(address)
    family = socket.AF_INET if wanted.version == 4 else socket.AF_INET6
    sockets = []
    for spec in nodes:
        name, _, namespace = spec.partition("=")
        sockets.append((name, netlink_in(namespace)))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    last = None
    n = 0
    with open(outfile, "a", buffering=1) as out:
        while not stop:
            n += 1
            t = time.monotonic()
            holders = sorted(name for name, sock in sockets
                             if wanted in addresses(sock, family, n))
            if holders != last:
                out.write(json.dumps({"t": round(t, 5), "n": n, "holders": holders}) + "\n")
                last = holders
            time.sleep(ROUND)
        out.write(json.dumps({"t": round(time.monotonic(), 5), "n": n, "holders": last,
                              "end": True}) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
