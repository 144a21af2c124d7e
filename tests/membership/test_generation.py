"""The generation of a start: larger than every previous one, even with the clock set back."""

import io
import os
import sys

from twisted.internet import reactor
from twisted.trial import unittest

from clsd import tap
from clsd.membership import generation as gen
from clsd.membership.generation import (
    GenerationError, generation_path, next_generation, read_generation,
)
from tests.support.cluster_rig import ClusterRig


class NextGeneration(unittest.TestCase):
    def setUp(self):
        self.data_dir = os.path.abspath(self.mktemp())

    def test_first_start_takes_the_wall_clock_and_stores_it(self):
        self.assertEqual(read_generation(self.data_dir), 0)
        self.assertEqual(next_generation(self.data_dir, wall_ns=lambda: 5000), 5000)
        with open(generation_path(self.data_dir)) as f:
            self.assertEqual(f.read(), "5000\n")
        self.assertFalse(os.path.exists(generation_path(self.data_dir) + ".tmp"))

    def test_clock_set_back_still_gives_a_larger_generation(self):
        self.assertEqual(next_generation(self.data_dir, wall_ns=lambda: 5000), 5000)
        self.assertEqual(next_generation(self.data_dir, wall_ns=lambda: 10), 5001)
        self.assertEqual(next_generation(self.data_dir, wall_ns=lambda: 5001), 5002)
        self.assertEqual(next_generation(self.data_dir, wall_ns=lambda: 9000), 9000)
        self.assertEqual(read_generation(self.data_dir), 9000)

    def test_an_unreadable_file_is_a_clear_error_naming_it(self):
        path = generation_path(self.data_dir)
        os.makedirs(os.path.dirname(path))
        for content in (b"", b"12x\n", b"-5\n", b"\xff\xfe"):
            with open(path, "wb") as f:
                f.write(content)
            with self.assertRaises(GenerationError) as caught:
                next_generation(self.data_dir, wall_ns=lambda: 1)
            self.assertIn(path, str(caught.exception))
            self.assertIn("must be a non-negative integer", str(caught.exception))

    def test_a_directory_in_its_place_is_a_clear_error(self):
        os.makedirs(generation_path(self.data_dir))
        with self.assertRaises(GenerationError) as caught:
            next_generation(self.data_dir)
        self.assertIn(generation_path(self.data_dir), str(caught.exception))
        self.assertIn("cannot read", str(caught.exception))

    def test_an_unwritable_place_is_a_clear_error(self):
        # A directory where the temporary file must go (root ignores modes).
        os.makedirs(generation_path(self.data_dir) + ".tmp")
        with self.assertRaises(GenerationError) as caught:
            next_generation(self.data_dir)
        self.assertIn("cannot store the generation", str(caught.exception))


class DaemonGeneration(unittest.TestCase):
    """The daemon takes its generation from data_dir: the peer hello and the
    membership record carry it, and a restart with the clock set back still
    gets a larger one."""

    def test_restart_with_the_clock_set_back(self):
        rig = ClusterRig(self, ["alpha"], reactor=reactor)
        self.patch(gen, "time", _FakeTime(2_000_000))
        first = rig.daemon("alpha")
        self.assertEqual(first.network.generation, 2_000_000)
        self.assertEqual(read_generation(rig.data_dir("alpha")), 2_000_000)
        self.patch(gen, "time", _FakeTime(1_000))  # the wall clock went back
        second = rig.daemon("alpha")
        self.assertEqual(second.network.generation, 2_000_001)
        self.assertEqual(read_generation(rig.data_dir("alpha")), 2_000_001)

    def test_a_corrupt_generation_file_stops_the_daemon_with_its_name(self):
        rig = ClusterRig(self, ["alpha"], reactor=reactor)
        path = generation_path(rig.data_dir("alpha"))
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write("garbage")
        with self.assertRaises(GenerationError) as caught:
            rig.daemon("alpha")
        self.assertIn(path, str(caught.exception))

    def test_twistd_start_up_reports_it_in_one_line(self):
        rig = ClusterRig(self, ["alpha"], reactor=reactor)
        config_path = rig.write_config("alpha")
        path = generation_path(rig.data_dir("alpha"))
        os.makedirs(os.path.dirname(path))
        with open(path, "w") as f:
            f.write("garbage")
        options = tap.Options()
        options.parseOptions(["--config", config_path])
        stderr = io.StringIO()
        self.patch(sys, "stderr", stderr)
        e = self.assertRaises(SystemExit, tap.makeService, options)
        self.assertEqual(e.code, 2)
        self.assertTrue(stderr.getvalue().startswith(f"clsd: cannot start: {path}: "),
                        stderr.getvalue())
        self.assertEqual(stderr.getvalue().count("\n"), 1)


class _FakeTime:
    def __init__(self, ns):
        self._ns = ns

    def time_ns(self):
        return self._ns
