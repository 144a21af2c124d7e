"""The machine-pause fault: a whole process tree frozen by the cgroup v2 freezer, its lease clock wound back."""

import os
import subprocess
import sys
import textwrap
import time

from twisted.trial import unittest

from clsd import clock
from rig.faults import freeze
from rig.faults.cleanup import Cleanups
from tests.support.rig_support import require, require_root

MOUNTINFO = textwrap.dedent("""\
    25 30 0:23 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    42 31 0:39 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
""")

#: A parent that starts a child; both append a line to a file every 10 ms.
TREE = textwrap.dedent("""\
    import os, subprocess, sys, time
    path = sys.argv[1]
    if len(sys.argv) == 2:
        subprocess.Popen([sys.executable, __file__, path + ".child", "child"])
    print("ready", flush=True)
    while True:
        with open(path, "a") as f:
            f.write("x")
        time.sleep(0.01)
""")


class MountinfoTests(unittest.TestCase):
    def test_the_cgroup2_mount_is_found_also_in_a_hybrid_layout(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MOUNTINFO)
        self.assertEqual(freeze.cgroup2_root(path), "/sys/fs/cgroup/unified")

    def test_none_without_cgroup2(self):
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(MOUNTINFO.splitlines()[0] + "\n")
        self.assertIsNone(freeze.cgroup2_root(path))


class OffsetClockTests(unittest.TestCase):
    def test_the_offset_file_is_subtracted_and_reread(self):
        path = self.mktemp()
        lease = clock._OffsetClock(path)
        before = lease()                                 # no file yet: no offset
        self.assertLess(abs(before - clock.raw_clock()), 0.01)
        freeze.add_offset(path, 5.0)
        time.sleep(clock.OFFSET_REREAD)
        self.assertLess(abs(lease() - (clock.raw_clock() - 5.0)), 0.01)
        self.assertEqual(freeze.add_offset(path, 1.5), 6.5)


class NodeFreezeTests(unittest.TestCase):
    def setUp(self):
        require_root("the cgroup freezer")
        require(freeze.cgroup2_root() is not None, "a cgroup v2 hierarchy")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)

    def start_tree(self):
        directory = self.mktemp()
        os.makedirs(directory)
        script = os.path.join(directory, "tree.py")
        with open(script, "w") as f:
            f.write(TREE)
        self.out = os.path.join(directory, "beats")
        parent = subprocess.Popen([sys.executable, script, self.out], stdout=subprocess.PIPE)
        self.addCleanup(self._stop, parent)
        self.assertEqual(parent.stdout.readline().strip(), b"ready")
        deadline = time.monotonic() + 10
        while not os.path.exists(self.out + ".child"):
            self.assertLess(time.monotonic(), deadline, "the child did not start")
            time.sleep(0.01)
        return parent

    def _stop(self, parent):
        for pid in reversed(freeze.descendants(parent.pid)):
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        parent.wait(5)
        parent.stdout.close()

    def sizes(self):
        return os.path.getsize(self.out), os.path.getsize(self.out + ".child")

    def test_every_process_of_the_tree_stops_and_its_lease_clock_does_not_see_the_pause(self):
        parent = self.start_tree()
        offset = self.mktemp() + "-offset"
        frozen = freeze.NodeFreeze(parent.pid, offset, cleanups=self.cleanups)
        self.assertEqual(len(frozen.pids), 2)
        stopped = self.sizes()
        time.sleep(0.5)
        self.assertEqual(self.sizes(), stopped, "a frozen process went on writing")
        frozen.thaw()
        self.assertGreaterEqual(frozen.paused, 0.5)
        self.assertLess(frozen.paused, 0.7)
        self.assertGreaterEqual(frozen.thawed_at - frozen.frozen_at, 0.5)
        with open(offset) as f:
            self.assertAlmostEqual(float(f.read()), frozen.paused)
        time.sleep(0.2)
        after = self.sizes()
        self.assertGreater(after[0], stopped[0])
        self.assertGreater(after[1], stopped[1])
        # The tree is back where it was; our cgroup is gone.
        self.assertFalse(os.path.exists(frozen.path))
        self.assertFalse(frozen.active)

    def test_a_service_cgroup_is_frozen_where_it_is(self):
        # Under cgroup containment a service must never leave its cgroup
        # (the daemon would take it for stopped): frozen in place.
        from rig.faults.cleanup import owned_name

        parent = self.start_tree()
        [child] = [p for p in freeze.descendants(parent.pid) if p != parent.pid]
        root = freeze.cgroup2_root()
        contained = os.path.join(root, owned_name("testservices"))
        os.mkdir(contained)
        self.addCleanup(self._remove_cgroup, contained, root)
        with open(os.path.join(contained, "cgroup.procs"), "w") as f:
            f.write(str(child))
        frozen = freeze.NodeFreeze(parent.pid, self.mktemp(), cleanups=self.cleanups,
                                   contained=contained)
        self.assertEqual(frozen.pids, [parent.pid])
        self.assertEqual(freeze._procs(contained), [child])
        stopped = self.sizes()
        time.sleep(0.3)
        self.assertEqual(self.sizes(), stopped, "a frozen process went on writing")
        frozen.thaw()
        time.sleep(0.2)
        after = self.sizes()
        self.assertGreater(after[1], stopped[1])
        self.assertGreater(after[0], stopped[0])
        self.assertEqual(freeze._procs(contained), [child])

    def _remove_cgroup(self, path, root):
        freeze._write(os.path.join(path, "cgroup.freeze"), 0)
        freeze._move(freeze._procs(path), root)
        os.rmdir(path)

    def test_an_interrupted_rig_thaws_at_cleanup(self):
        parent = self.start_tree()
        frozen = freeze.NodeFreeze(parent.pid, self.mktemp(), cleanups=self.cleanups)
        self.cleanups.run_all()
        stopped = self.sizes()
        time.sleep(0.2)
        self.assertGreater(self.sizes()[0], stopped[0])
        self.assertFalse(os.path.exists(frozen.path))
