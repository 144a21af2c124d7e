"""The discrete-event scheduler."""

from twisted.trial import unittest

from rig.sim.scheduler import Scheduler


class SchedulerTests(unittest.TestCase):
    def test_order_and_time(self):
        scheduler = Scheduler()
        seen = []
        scheduler.at(2.0, lambda: seen.append(("b", scheduler.now)))
        scheduler.at(1.0, lambda: seen.append(("a", scheduler.now)))
        scheduler.at(2.0, lambda: seen.append(("c", scheduler.now)))
        scheduler.run_until(1.5)
        self.assertEqual(seen, [("a", 1.0)])
        self.assertEqual(scheduler.now, 1.5)
        scheduler.run_for(10.0)
        self.assertEqual(seen, [("a", 1.0), ("b", 2.0), ("c", 2.0)])  # FIFO at equal times
        self.assertEqual(scheduler.seconds(), 11.5)

    def test_calls_scheduled_while_running_and_in_the_past(self):
        scheduler = Scheduler()
        seen = []

        def first():
            scheduler.after(0.5, seen.append, "later")
            scheduler.at(0.0, seen.append, "past")  # runs now, not before now

        scheduler.at(1.0, first)
        scheduler.run_until(5.0)
        self.assertEqual(seen, ["past", "later"])
        self.assertEqual(len(scheduler), 0)
        self.assertEqual(scheduler.events_run, 3)
