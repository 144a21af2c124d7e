"""Runs the address driver and announcer inside a network namespace (test_address_netns_real).

The tests run it with ``ip netns exec NAMESPACE python THIS_FILE 'OPERATIONS'``:
a whole process in the namespace, as the daemon runs in the failover tests,
with the real reactor. OPERATIONS is a JSON list run in order; the output is
one JSON list with one result per operation, ``{"ok": value}`` or
``{"error": exception class name, "message": text}``:

    ["exists", IF]                      -> whether the interface exists
    ["present", IF]                     -> its addresses, sorted text
    ["add", IF, ADDRESS]                -> null
    ["remove", IF, ADDRESS]             -> null
    ["remove_now", IF, ADDRESS]         -> the guard's blocking removal: true/false
    ["announce", IF, [ADDRESS...], COUNT, INTERVAL]  -> COUNT
    ["add_and_announce", IF, ADDRESS]   -> seconds from before the add to the
                                           first announcement sent
    ["send_frame", IF, ADDRESS, FORM]   -> one frame only: "request" or "reply"
                                           (gratuitous ARP), "na" (IPv6)
"""

import ipaddress
import json
import sys
import time

from twisted.internet import defer, task

from clsd.address import ipcmd, packets
from clsd.address.announce import Announcer, PacketSender, default_sender
from clsd.address.driver import default_driver


@defer.inlineCallbacks
def perform(reactor, operation, driver, announcer):
    kind, interface, *rest = operation
    if kind == "exists":
        return driver.interface_exists(interface)
    if kind == "present":
        found = yield driver.present(interface)
        return sorted(str(a) for a in found)
    if kind == "add":
        yield driver.add(interface, rest[0])
        return None
    if kind == "remove":
        yield driver.remove(interface, rest[0])
        return None
    if kind == "remove_now":
        return ipcmd.remove_now(interface, rest[0])
    if kind == "announce":
        addresses, count, interval = rest
        sent = yield announcer.announce(interface, addresses, count, interval)
        return sent
    if kind == "add_and_announce":
        started = time.monotonic()
        yield driver.add(interface, rest[0])
        added = time.monotonic()
        done = announcer.announce(interface, [rest[0]], count=1)
        announced = time.monotonic()  # the first round is sent inside announce()
        yield done
        return {"add": added - started, "first_announce": announced - started}
    if kind == "send_frame":
        address, form = rest
        build = FORMS[form]
        sender = PacketSender(lambda mac, a: [build(mac, ipaddress.ip_interface(a).ip)])
        sender.send(interface, address)
        return None
    raise ValueError(f"unknown operation {kind!r}")


FORMS = {
    "request": packets.gratuitous_arp_request,
    "reply": packets.gratuitous_arp_reply,
    "na": packets.unsolicited_neighbor_advertisement,
}


@defer.inlineCallbacks
def main(reactor, operations):
    driver = default_driver(reactor)
    announcer = Announcer(reactor, default_sender())
    results = []
    for operation in json.loads(operations):
        try:
            value = yield perform(reactor, operation, driver, announcer)
            results.append({"ok": value})
        except Exception as e:
            results.append({"error": type(e).__name__, "message": str(e)})
    print(json.dumps(results))


if __name__ == "__main__":
    task.react(main, sys.argv[1:])
