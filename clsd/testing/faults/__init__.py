"""Fault injection for the rig: explicit, reversible operations, cleaned up even when interrupted.

- L{network}: partitions and random loss on ``lo`` (nft, iptables fallback);
  shapes of partitions are in L{topology}.
- L{process}: kill -9, SIGSTOP/SIGCONT.
- L{cpu}: CPU starvation (cgroup quota, busy processes as fallback).
- L{clock}: wall-clock jumps under libfaketime.
- L{cleanup}: the undo registry; L{sweep}: ``cleanup-all``.
- L{schedule}: seeded, replayable fault schedules; L{report}: the run report.

``python -m clsd.testing.faults`` is the command-line runner.
"""

from clsd.testing.faults.cleanup import Cleanups, default_cleanups
from clsd.testing.faults.clock import ClockJump, FakeClock
from clsd.testing.faults.cpu import CpuStarvation
from clsd.testing.faults.network import Firewall, ToolMissing
from clsd.testing.faults.process import Pause, kill

__all__ = [
    "Cleanups", "ClockJump", "CpuStarvation", "FakeClock", "Firewall", "Pause",
    "ToolMissing", "default_cleanups", "kill",
]
