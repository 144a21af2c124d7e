"""The voter's epoch floor on disk."""

import os

from twisted.trial import unittest

from clsd.ownership.floor import FloorError, floor_path, read_floor, write_floor


class FloorTests(unittest.TestCase):
    def setUp(self):
        self.data_dir = self.mktemp()

    def test_missing_means_zero(self):
        self.assertEqual(read_floor(self.data_dir), 0)

    def test_write_then_read(self):
        write_floor(self.data_dir, 20000)
        self.assertEqual(read_floor(self.data_dir), 20000)
        write_floor(self.data_dir, 30000)
        self.assertEqual(read_floor(self.data_dir), 30000)
        self.assertEqual(os.listdir(os.path.dirname(floor_path(self.data_dir))),
                         ["epoch-floor"], "no temporary file left behind")

    def test_a_corrupt_file_is_an_error_not_zero(self):
        write_floor(self.data_dir, 1)
        with open(floor_path(self.data_dir), "w") as f:
            f.write("12x\n")
        with self.assertRaises(FloorError) as e:
            read_floor(self.data_dir)
        self.assertIn("epoch-floor", str(e.exception))
        self.assertIn("'12x'", str(e.exception))

    def test_only_non_negative_integers_are_written(self):
        for bad in (-1, 1.5, True, "3"):
            with self.assertRaises(ValueError):
                write_floor(self.data_dir, bad)
