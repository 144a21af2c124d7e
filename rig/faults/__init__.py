"""Fault injection for the rig: explicit, reversible operations, cleaned up even when interrupted.

- L{network}: partitions and random loss on ``lo`` (nft, iptables fallback);
  shapes of partitions are in L{topology}.
- L{process}: kill -9, SIGSTOP/SIGCONT.
- L{cpu}: CPU starvation (cgroup quota, busy processes as fallback).
- L{clock}: wall-clock jumps under libfaketime.
- L{cleanup}: the undo registry; L{sweep}: ``cleanup-all``.
- L{schedule}: seeded, replayable fault schedules; L{report}: the run report.

``python -m rig.faults`` is the command-line runner.
"""

from rig.faults.cleanup import Cleanups, default_cleanups
from rig.faults.clock import ClockJump, FakeClock
from rig.faults.cpu import CpuStarvation
from rig.faults.network import Firewall, ToolMissing
from rig.faults.process import Pause, kill

__all__ = [
    "Cleanups", "ClockJump", "CpuStarvation", "FakeClock", "Firewall", "Pause",
    "ToolMissing", "default_cleanups", "kill",
]
