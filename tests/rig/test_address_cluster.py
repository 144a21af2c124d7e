"""The holder watch's reading of its own log: which handovers were clean."""

import json

from twisted.trial import unittest

from rig.address_cluster import HolderWatch


def watch_with(test, changes):
    """A L{HolderWatch} over a log holding C{changes}, without its process."""
    path = test.mktemp()
    with open(path, "w") as f:
        for n, (t, holders) in enumerate(changes, 1):
            f.write(json.dumps({"t": t, "n": n, "holders": holders}) + "\n")
    watch = HolderWatch.__new__(HolderWatch)
    watch.out = path
    return watch


class CleanSwitchTests(unittest.TestCase):
    def test_a_moment_with_no_holder_between_two_owners_is_a_clean_switch(self):
        watch = watch_with(self, [(1.0, []), (2.0, ["alpha"]), (3.0, []), (3.007, ["beta"])])
        self.assertEqual(watch.clean_switches(), [("alpha", "beta", 3.0)])

    def test_an_overlap_is_not_a_clean_switch(self):
        watch = watch_with(self, [(2.0, ["alpha"]), (3.0, ["alpha", "beta"]), (3.1, ["beta"])])
        self.assertEqual(watch.clean_switches(), [])
        self.assertEqual(watch.path(), [["alpha"], ["alpha", "beta"], ["beta"]])

    def test_the_same_owner_again_is_not_a_switch(self):
        watch = watch_with(self, [(2.0, ["alpha"]), (3.0, []), (4.0, ["alpha"])])
        self.assertEqual(watch.clean_switches(), [])
