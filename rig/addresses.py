"""Loopback addresses for rigs: reserved in blocks so that rigs running at once never share one.

Node addresses come from 127.0.0.101-.250: away from .1 (the default source
of unbound sockets) and from the low numbers other tests use. They are handed
out in blocks of L{ADDRESS_BLOCK}, each held by an flock on a file in
L{LOCK_DIR}, so rigs and tests running at the same time (parallel trial jobs,
other people's tests) never share an address. The kernel drops a lock when
its holder dies, however it dies.
"""

import fcntl
import os

from rig.faults.topology import check_loopback

FIRST_POOL_ADDRESS = 101
LAST_POOL_ADDRESS = 250
ADDRESS_BLOCK = 10
LOCK_DIR = "/tmp/clsd-rig-addresses"


def address_range(first, count):
    """C{count} consecutive addresses from C{first}, all inside 127.0.0.0/8."""
    prefix, last = first.rsplit(".", 1)
    last = int(last)
    if last + count - 1 > 254:
        raise ValueError(f"{count} addresses from {first} run past {prefix}.254")
    return [check_loopback(f"{prefix}.{last + i}") for i in range(count)]


class Reservation:
    """Addresses held until L{release} (or until the holding process dies)."""

    def __init__(self, addresses, locks):
        self.addresses = addresses
        self._locks = locks

    def release(self):
        for lock in self._locks:
            lock.close()
        self._locks = []


def reserve(count):
    """Reserve C{count} consecutive loopback addresses; a L{Reservation}."""
    os.makedirs(LOCK_DIR, exist_ok=True)
    blocks = -(-count // ADDRESS_BLOCK)
    last_start = LAST_POOL_ADDRESS + 1 - blocks * ADDRESS_BLOCK
    for start in range(FIRST_POOL_ADDRESS, last_start + 1, ADDRESS_BLOCK):
        held = []
        try:
            for block in range(blocks):
                lock = open(os.path.join(LOCK_DIR, f"127.0.0.{start + block * ADDRESS_BLOCK}.lock"), "w")
                held.append(lock)
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            for lock in held:
                lock.close()
            continue
        return Reservation(address_range(f"127.0.0.{start}", count), held)
    raise RuntimeError(f"no free block of {count} addresses in 127.0.0.{FIRST_POOL_ADDRESS}-"
                       f"{LAST_POOL_ADDRESS}: too many rigs running")

