"""The floating address under the lease: armed before added, down before the stop is reported.

L{AddressKeeper} and L{ManagedService} with a fake driver whose calls answer
when the test says, the fake guard of the ownership tests, and a Clock.
"""

import ipaddress

from twisted.internet import defer
from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.config.floating import FloatingAddress
from clsd.events import EventLog
from clsd.ownership.floating import AddressesNotUp, AddressKeeper
from clsd.ownership.core.managed import ManagedService
from clsd.supervision.core.policy import State
from tests.ownership.test_service import FakeForkingRunner, FakeGuard

V4 = ipaddress.ip_interface("192.0.2.10/24")
V6 = ipaddress.ip_interface("2001:db8::10/64")


class FakeDriver:
    """Records calls in order; each answers at once unless C{hold} is set."""

    def __init__(self):
        self.calls = []
        self.hold = False
        self.pending = []
        self.fail = {}  # (op, address) -> exception
        self.present_now = set()

    def _answer(self, op, address):
        self.calls.append((op, str(address)))
        error = self.fail.get((op, str(address)))
        d = defer.Deferred()
        if self.hold:
            self.pending.append((d, error))
        elif error is not None:
            d.errback(error)
        else:
            d.callback(None)
        return d

    def release(self):
        pending, self.pending = self.pending, []
        for d, error in pending:
            d.errback(error) if error is not None else d.callback(None)

    def add(self, interface, address):
        return self._answer("add", address)

    def remove(self, interface, address):
        return self._answer("remove", address)

    def present(self, interface):
        return defer.succeed(set(self.present_now))


class AddressGuard(FakeGuard):
    def __init__(self):
        super().__init__()
        self.addresses = {}
        self.reach = True

    def arm_address(self, interface, address, deadline, label=None):
        self.addresses[address] = deadline
        self.log.append(("arm_address", address, deadline))
        return self.reach

    def disarm_address(self, interface, address):
        self.addresses.pop(address, None)
        self.log.append(("disarm_address", address))


class KeeperHarness:
    def __init__(self, order="before", count=2, addresses=(V4, V6)):
        self.clock = Clock()
        self.clock.advance(100)
        self.driver = FakeDriver()
        self.guard = AddressGuard()
        self.events = EventLog(monotonic=self.clock.seconds)
        self.announced = []
        floating = FloatingAddress(tuple(addresses), "eth0", announce_count=count,
                                   announce_interval=0.2, order=order)
        self.keeper = AddressKeeper("A", floating, driver=self.driver, guard=self.guard,
                                    announce=self.announce, events=self.events,
                                    monotonic=self.clock.seconds, reactor=self.clock)

    def announce(self, interface, address, count, interval):
        d = defer.Deferred()
        self.announced.append((str(address), count, interval, d))
        return d

    def kinds(self):
        return [(e["fields"]["what"], e["fields"].get("address")) for e in self.events.recent()
                if e["kind"] == "address"]


class KeeperTests(unittest.TestCase):
    def test_up_arms_each_address_before_adding_it_then_announces(self):
        h = KeeperHarness()
        self.successResultOf(h.keeper.up(7, 110.0))
        self.assertEqual([entry[0] for entry in h.guard.log], ["arm_address", "arm_address"])
        self.assertEqual(h.driver.calls, [("add", str(V4)), ("add", str(V6))])
        self.assertEqual(h.guard.addresses, {str(V4): 110.0, str(V6): 110.0})
        self.assertEqual([(a, c, i) for a, c, i, _ in h.announced],
                         [(str(V4), 2, 0.2), (str(V6), 2, 0.2)])
        h.announced[0][3].callback(None)
        self.assertEqual(h.kinds(), [("added", str(V4)), ("added", str(V6)),
                                     ("announced", str(V4))])
        self.assertEqual(h.keeper.status(), {str(V4): True, str(V6): True})

    def test_nothing_is_added_when_the_guard_was_not_told(self):
        h = KeeperHarness()
        h.guard.reach = False
        failure = self.failureResultOf(h.keeper.up(7, 110.0), AddressesNotUp)
        self.assertIn("did not reach the lease guard", str(failure.value))
        self.assertEqual(h.driver.calls, [])

    def test_nothing_is_added_after_the_deadline(self):
        h = KeeperHarness()
        h.driver.hold = True
        d = h.keeper.up(7, 100.5)
        h.clock.advance(1.0)  # the first add took a second: the lease is over
        h.driver.release()
        self.failureResultOf(d, AddressesNotUp)
        self.assertEqual(h.driver.calls, [("add", str(V4))], "the second was not added")
        self.assertEqual(h.keeper.up_addresses, {str(V4)}, "down() must remove the first")

    def test_renewals_rearm_what_is_up(self):
        h = KeeperHarness(addresses=(V4,))
        h.keeper.up(7, 110.0)
        h.keeper.renew(111.0)
        self.assertEqual(h.guard.addresses, {str(V4): 111.0})

    def test_down_cancels_announcing_removes_and_disarms(self):
        h = KeeperHarness()
        h.keeper.up(7, 110.0)
        self.successResultOf(h.keeper.down())
        self.assertTrue(all(d.called for _, _, _, d in h.announced), "announcing goes on")
        self.assertEqual(h.driver.calls[2:], [("remove", str(V4)), ("remove", str(V6))])
        self.assertEqual(h.guard.addresses, {})
        self.assertEqual(h.keeper.status(), {str(V4): False, str(V6): False})

    def test_down_during_up_waits_and_removes_what_came_up(self):
        h = KeeperHarness(addresses=(V4,))
        h.driver.hold = True
        up = h.keeper.up(7, 110.0)
        down = h.keeper.down()
        self.assertNoResult(down)
        h.driver.hold = False
        h.driver.release()
        self.successResultOf(up)
        self.successResultOf(down)
        self.assertEqual(h.driver.calls, [("add", str(V4)), ("remove", str(V4))])

    def test_down_during_up_also_stops_the_announcements_up_began(self):
        """The add finishes after down() was asked: its announcements must not outlive the removal."""
        h = KeeperHarness(addresses=(V4,))
        h.driver.hold = True
        h.keeper.up(7, 110.0)
        down = h.keeper.down()
        h.driver.hold = False
        h.driver.release()
        self.successResultOf(down)
        [(_, _, _, announcing)] = h.announced
        self.assertTrue(announcing.called, "still announcing an address removed here")
        self.assertNotIn(("announced", str(V4)), h.kinds())
        self.assertEqual(h.driver.calls, [("add", str(V4)), ("remove", str(V4))])

    def test_a_failed_removal_waits_for_the_guards_deadline(self):
        h = KeeperHarness(addresses=(V4,))
        h.keeper.up(7, 110.0)
        h.driver.fail[("remove", str(V4))] = OSError("RTNETLINK answers: busy")
        d = h.keeper.down()
        self.assertNoResult(d)
        self.assertEqual(h.guard.addresses, {str(V4): 110.0}, "it stays armed")
        h.clock.advance(9.99)
        self.assertNoResult(d)
        h.clock.advance(0.01)
        self.successResultOf(d)
        self.assertIn(("remove-failed", str(V4)), h.kinds())

    def test_leftovers_are_removed_and_reported(self):
        h = KeeperHarness()
        h.driver.present_now = {V6, ipaddress.ip_interface("192.0.2.99/24")}
        self.successResultOf(h.keeper.remove_leftovers())
        self.assertEqual(h.driver.calls, [("remove", str(V6))])
        [event] = [e for e in h.events.recent() if e["kind"] == "address"]
        self.assertTrue(event["fields"]["leftover"])
        self.assertIn("left behind", event["reason"])


class ManagedWithAddressTests(unittest.TestCase):
    """The order of address and service, and when the stop is reported."""

    def managed(self, order):
        self.h = KeeperHarness(order=order, addresses=(V4,))
        self.reports = []
        self.runner = FakeForkingRunner()
        self.runner.stops = []
        self.runner.stop = self.stop_runner
        managed = ManagedService("A", "alpha", self.h.guard, monotonic=self.h.clock.seconds,
                                 report=lambda *a: self.reports.append(a[0]),
                                 keeper=self.h.keeper)
        managed.attach(self.runner)
        managed.kill_at(110.0)
        return managed

    def stop_runner(self, kill_after=None):
        self.runner.stops.append(list(self.h.driver.calls))
        self.runner.state = State.STOPPED
        self.runner.process_alive = False
        return defer.succeed(State.STOPPED)

    def test_before_the_address_comes_first_and_goes_last(self):
        managed = self.managed("before")
        self.h.driver.hold = True
        managed.start(7)
        self.assertIs(self.runner.state, State.STOPPED, "the service waits for its address")
        self.h.driver.release()
        self.assertIs(self.runner.state, State.STARTING)
        self.h.driver.hold = True
        managed.stop(110.0)
        self.assertEqual(self.runner.stops, [[("add", str(V4))]],
                         "the service stopped before the address was removed")
        self.assertEqual(self.reports, [], "stopped reported while the address is up")
        self.h.driver.release()
        self.assertEqual(self.reports, ["service_stopped"])

    def test_after_the_address_follows_the_running_service_and_goes_first(self):
        managed = self.managed("after")
        managed.start(7)
        self.assertEqual(self.h.driver.calls, [])
        self.runner.changed(state=State.RUNNING, process_alive=True)
        self.assertEqual(self.h.driver.calls, [("add", str(V4))])
        managed.stop(110.0)
        self.assertEqual(self.runner.stops, [[("add", str(V4)), ("remove", str(V4))]],
                         "the address must be gone before the service stops")
        self.assertEqual(self.reports, ["service_stopped"])

    def test_an_address_that_cannot_be_added_gives_the_cluster_up(self):
        managed = self.managed("before")
        self.h.driver.fail[("add", str(V4))] = OSError("no such device eth0")
        managed.start(7)
        self.assertIs(self.runner.state, State.STOPPED, "started without its address")
        self.assertEqual(self.reports, ["service_failed"])
        self.assertIn(("up-failed", None), self.h.kinds())

    def test_a_stop_while_the_address_comes_up_starts_nothing(self):
        managed = self.managed("before")
        self.h.driver.hold = True
        managed.start(7)
        managed.stop(110.0)
        self.h.driver.hold = False
        self.h.driver.release()
        self.assertIs(self.runner.state, State.STOPPED)
        self.assertEqual(self.h.driver.calls, [("add", str(V4)), ("remove", str(V4))])
        self.assertEqual(self.reports, ["service_stopped"])

    def test_renewals_rearm_the_address(self):
        managed = self.managed("before")
        managed.start(7)
        managed.kill_at(111.5)
        self.assertEqual(self.h.guard.addresses, {str(V4): 111.5})
