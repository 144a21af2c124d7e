"""One cluster's floating addresses on this node: up only while this node holds the lease.

L{AddressKeeper} is driven by L{clsd.ownership.core.managed.ManagedService}, in
the order of the cluster's ``address_order`` (doc/address.md):

- L{AddressKeeper.up}: each address is first armed in the lease guard with
  the lease deadline (refused when the line did not reach the guard: then
  nothing is added, as a start gate stays shut), then added to the
  interface, then announced (gratuitous ARP / unsolicited NA).  The
  deadline is checked again before every add.
- L{AddressKeeper.renew}: every renewal re-arms the guard, which removes the
  addresses by itself at the deadline when the daemon is frozen or dead.
- L{AddressKeeper.down}: the announcements stop (those of an L{up} still
  under way too), each address is removed, then disarmed.  An address whose removal failed stays armed: the guard
  removes it at the deadline, and the stop is reported only after that
  deadline (the next owner must not add it while it is still here).

Calls are serialized: a L{down} asked for while an L{up} is adding waits for
it, then removes what it added.
"""

from twisted.internet import defer, task
from twisted.logger import Logger


class AddressesNotUp(Exception):
    """The addresses could not be brought up under this tenure (the reason says why)."""


class AddressKeeper:
    """The floating addresses (a L{clsd.config.floating.FloatingAddress}) of one cluster.

    @param driver: an L{clsd.address.driver.IAddressDriver}.
    @param announce: C{announce(interface, address, count, interval)} returning
        a cancellable Deferred that fires when the announcements are sent.
    @param guard: the L{clsd.ownership.guard.GuardClient} (or a fake).
    """

    log = Logger()

    def __init__(self, cluster, floating, *, driver, guard, announce, events, monotonic,
                 reactor):
        self.cluster = cluster
        self.floating = floating
        self.driver = driver
        self.guard = guard
        self._announce = announce
        self._events = events
        self._monotonic = monotonic
        self._reactor = reactor
        self._lock = defer.DeferredLock()
        #: The addresses (strings) added here and not removed since.
        self.up_addresses = set()
        self.epoch = None
        self.deadline = None
        self._announcing = []

    @property
    def interface(self):
        return self.floating.interface

    def status(self):
        """Each address and whether it is up here."""
        return {str(a): str(a) in self.up_addresses for a in self.floating.addresses}

    # -- the lease's steps ---------------------------------------------------------------

    def up(self, epoch, deadline):
        """Arm, add and announce every address; fails with L{AddressesNotUp}."""
        self.epoch, self.deadline = epoch, deadline
        return self._lock.run(self._up)

    def renew(self, deadline):
        """A renewal: the addresses may stay until C{deadline}."""
        self.deadline = deadline
        for address in sorted(self.up_addresses):
            self.guard.arm_address(self.interface, address, deadline, label=self.cluster)

    def down(self):
        """Stop announcing, remove every address added here; fires when it is safe to hand over."""
        self._stop_announcing()
        return self._lock.run(self._down)

    def _stop_announcing(self):
        announcing, self._announcing = self._announcing, []
        for call in announcing:
            call.cancel()

    def failed(self, reason):
        """Record why the addresses did not come up (the tenure is given up)."""
        self._events.record("address", self.cluster, f"not up: {reason}", what="up-failed",
                            interface=self.interface, epoch=self.epoch)

    # -- steps -----------------------------------------------------------------------------

    @defer.inlineCallbacks
    def _up(self):
        interface = self.interface
        for address in self.floating.addresses:
            text = str(address)
            if self.deadline is None or self._monotonic() >= self.deadline:
                raise AddressesNotUp(f"the lease deadline passed before {text} was added")
            if not self.guard.running or not self.guard.arm_address(
                    interface, text, self.deadline, label=self.cluster):
                raise AddressesNotUp(f"{text}: the arm line did not reach the lease guard; "
                                     "not adding it")
            try:
                yield self.driver.add(interface, address)
            except Exception as e:
                self.guard.disarm_address(interface, text)
                raise AddressesNotUp(f"cannot add {text} to {interface}: {e}") from None
            self.up_addresses.add(text)
            self._record("added", text, f"added {text} to {interface} (epoch {self.epoch})")
        for address in self.floating.addresses:
            self._start_announcing(address)

    def _start_announcing(self, address):
        floating = self.floating
        if floating.announce_count == 0:
            return
        call = self._announce(self.interface, address, floating.announce_count,
                              floating.announce_interval)
        self._announcing.append(call)

        def sent(_):
            self._record("announced", str(address),
                         f"announced {address.ip} on {self.interface} "
                         f"({floating.announce_count} times, epoch {self.epoch})")

        def failed(failure):
            if not failure.check(defer.CancelledError):
                self._events.record("address", self.cluster,
                                    f"cannot announce {address.ip} on {self.interface}: "
                                    f"{failure.getErrorMessage()}", what="announce-failed",
                                    address=str(address), epoch=self.epoch)

        call.addCallbacks(sent, failed)
        call.addBoth(lambda _: self._announcing.remove(call) if call in self._announcing
                     else None)

    @defer.inlineCallbacks
    def _down(self):
        # Also the rounds of an up() that finished while this down() waited
        # for it: nothing announces an address after its removal.
        self._stop_announcing()
        interface = self.interface
        failed = False
        for address in sorted(self.up_addresses):
            try:
                yield self.driver.remove(interface, address)
            except Exception as e:
                failed = True
                self._events.record(
                    "address", self.cluster,
                    f"cannot remove {address} from {interface}: {e}; the lease guard "
                    "removes it at the lease deadline", what="remove-failed",
                    address=address, epoch=self.epoch)
                continue
            self.up_addresses.discard(address)
            self.guard.disarm_address(interface, address)
            self._record("removed", address, f"removed {address} from {interface} "
                                             f"(epoch {self.epoch})")
        if failed and self.deadline is not None:
            # Still here, armed: only after the deadline may the next owner add it.
            wait = max(0.0, self.deadline - self._monotonic())
            yield task.deferLater(self._reactor, wait)
            self.up_addresses.clear()

    # -- at start ---------------------------------------------------------------------------

    @defer.inlineCallbacks
    def remove_leftovers(self):
        """Remove this cluster's addresses found on the interface (left by a kill -9)."""
        present = yield self.driver.present(self.interface)
        present = {str(a) for a in present}
        for address in self.floating.addresses:
            text = str(address)
            if text in present:
                yield self.driver.remove(self.interface, address)
                self._record("removed", text,
                             f"removed {text} from {self.interface}: left behind by an "
                             "earlier run, and this node does not hold the lease",
                             leftover=True)

    def _record(self, what, address, reason, **fields):
        self._events.record("address", self.cluster, reason, what=what, address=address,
                            interface=self.interface, epoch=self.epoch, **fields)
