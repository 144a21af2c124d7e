"""clsd.memory: returning freed heap to the system, and reading the resident size."""

import sys

from twisted.trial import unittest

from clsd import memory


class MemoryTests(unittest.TestCase):
    def test_resident_size(self):
        if not sys.platform.startswith("linux"):
            raise unittest.SkipTest("reads /proc (Linux)")
        self.assertGreater(memory.resident_bytes(), 1_000_000)

    def test_trim_returns_freed_memory(self):
        if memory._malloc_trim is None:
            self.assertFalse(memory.trim())  # the no-op fallback
            return
        held = [bytearray(4000) for _ in range(50_000)]  # 200 MB in small blocks
        keep = [bytearray(100) for _ in range(1000)]  # pins the top of the heap
        del held
        freed = memory.resident_bytes()
        self.assertTrue(memory.trim())
        self.assertLess(memory.resident_bytes(), freed - 100_000_000)
        del keep
