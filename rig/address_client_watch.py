"""Run inside the client's namespace: who answers for the floating address, every 20 ms.

    python -m rig.address_client_watch INTERFACE ADDRESS OUTFILE URL [URL ...]

Each round sends one ARP request for ADDRESS (who-has, from the client's own
address) on INTERFACE and collects, for 12 ms, the MACs that reply that
they have it; then fetches each URL (30 ms at most each; the first is the
floating address's, the others say when each node's own address answers)
and notes the bodies. One JSON line per round:
``{"t": monotonic, "macs": [...], "answers": [body or null, ...]}``.
Two MACs in one round: two machines held the address at once, or a handover
took less than the round's listening (the old owner answered just before it
removed the address, the new one just after it added it);
L{rig.address_holder_watch}, reading the kernels, tells the two apart.
Ends on SIGTERM. Linux only (AF_PACKET), standard library only.
"""

import http.client
import ipaddress
import json
import select
import signal
import socket
import struct
import sys
import time
import urllib.request

ETH_P_ARP = 0x0806
ROUND = 0.02
ARP_WAIT = 0.012
#: A GET to a blackholed address (the client still has the old owner's MAC)
#: waits this long: short, so that a round stays near ROUND during a switch.
FETCH_TIMEOUT = 0.03


def mac_of(interface):
    with open(f"/sys/class/net/{interface}/address") as f:
        return bytes.fromhex(f.read().strip().replace(":", ""))


def own_ipv4(interface):
    import fcntl

    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        packed = fcntl.ioctl(probe.fileno(), 0x8915,  # SIOCGIFADDR
                             struct.pack("256s", interface.encode()[:15]))
    finally:
        probe.close()
    return packed[20:24]


def who_has(mac, source_ip, target_ip):
    header = b"\xff" * 6 + mac + struct.pack("!H", ETH_P_ARP)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1) + mac + source_ip + b"\x00" * 6 + target_ip
    return header + arp


def replies(sock, target_ip, until):
    macs = set()
    while True:
        left = until - time.monotonic()
        if left <= 0:
            return macs
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            return macs
        frame = sock.recv(2048)
        if len(frame) < 42 or frame[12:14] != b"\x08\x06":
            continue
        op = struct.unpack("!H", frame[20:22])[0]
        if op == 2 and frame[28:32] == target_ip:
            macs.add(frame[22:28].hex(":"))


def fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            return response.read().decode("utf-8", "replace").strip()
    except (OSError, http.client.HTTPException):
        return None  # refused, timed out, or cut off mid-answer (the server was killed)


def main(interface, address, outfile, *urls):
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    target = ipaddress.IPv4Address(address).packed
    mac = mac_of(interface)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((interface, 0))
    request = who_has(mac, own_ipv4(interface), target)
    with open(outfile, "a", buffering=1) as out:
        while not stop:
            t = time.monotonic()
            sock.send(request)
            macs = replies(sock, target, t + ARP_WAIT)
            answers = [fetch(url) for url in urls]
            out.write(json.dumps({"t": round(t, 4), "macs": sorted(macs), "answers": answers})
                      + "\n")
            time.sleep(max(0.0, ROUND - (time.monotonic() - t)))


if __name__ == "__main__":
    main(*sys.argv[1:])
