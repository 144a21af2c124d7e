"""The ownership shell's side of issue 16: forgeries raised at once, the floor's failures.

L{OwnershipService.receive} raises L{Forged} synchronously (the peer layer
then closes the connection) and never queues the message; a voter whose
epoch floor cannot be stored (any exception, from a fault-injecting writer:
tests run as root, so chmod would not stop them) grants nothing, says so at
critical level and in C{status}, and grants again once a retry succeeds.
"""

from twisted.internet.task import Clock
from twisted.trial import unittest

from clsd.admin.backend import QuorumInfo, Status
from clsd.admin.commands import render_status
from clsd.admin.ownership_status import ownership_status
from clsd.logs import EVENTS
from clsd.named_events import named_events
from clsd.ownership.floor import read_floor, write_floor
from clsd.ownership.service import PERSIST_RETRY
from clsd.wire.core.errors import Forged
from tests.ownership.test_service import (
    LEASE, MARGIN, ShellNode, ThreeNodeCluster, cluster_table, pump,
)


class FlakyDisk:
    """A floor writer that fails (with C{error}) until L{heal}."""

    def __init__(self, error):
        self.error = error
        self.attempts = 0

    def heal(self):
        self.error = None

    def __call__(self, data_dir, value):
        self.attempts += 1
        if self.error is not None:
            raise self.error
        write_floor(data_dir, value)


class FloorFailureTests(unittest.TestCase):
    def start(self, disk):
        self.clock = Clock()
        self.clock.advance(1000)
        node = ShellNode(self, self.clock, "alpha", ["alpha"], [cluster_table()])
        node.service._write_floor = disk
        return node.start()

    def test_any_exception_stops_granting_until_a_retry_succeeds(self):
        # A 4,300-digit floor made str() raise ValueError: not only OSError counts.
        disk = FlakyDisk(ValueError("Exceeds the limit (4300 digits) for integer string "
                                    "conversion"))
        node = self.start(disk)
        pump(self.clock, 3 * LEASE)
        self.assertEqual(node.spawns, [], "nothing granted while the floor is not stored")
        status = ownership_status(node.service)["voter"]
        self.assertFalse(status["granting"])
        self.assertIn("4300 digits", status["floor_error"])
        failed = [e for e in node.events.recent() if e["fields"].get("what") == "floor-failed"]
        self.assertEqual(len(failed), 1, "said once, not at every retry")
        self.assertEqual(named_events(failed[0])[0][0], "floor.failed")
        self.assertEqual(EVENTS["floor.failed"][0].name, "critical")
        self.assertGreater(disk.attempts, 3, "retried")
        text = render_status(Status(node="alpha", members=(), clusters=(), services=(),
                                    quorum=QuorumInfo(voters=("alpha",), have_quorum=True,
                                                      voter_error=status["floor_error"])))
        self.assertIn("voter:   GRANTS NOTHING: cannot store the epoch floor", text)

        disk.heal()
        pump(self.clock, PERSIST_RETRY + LEASE + MARGIN + 1.0)
        self.assertEqual(len(node.spawns), 1, "granting again once the floor is stored")
        self.assertTrue(ownership_status(node.service)["voter"]["granting"])
        self.assertTrue(any(e["fields"].get("what") == "floor-stored"
                            for e in node.events.recent()))

    def test_a_pending_retry_never_writes_a_lower_floor_after_a_higher_one(self):
        written = []
        disk = FlakyDisk(OSError(28, "No space left on device"))
        node = self.start(disk)
        original = disk.__call__

        def record(data_dir, value):
            original(data_dir, value)
            written.append(value)
        node.service._write_floor = record
        failing_value = node.service.floor_failure[0]
        disk.heal()
        node.service._persist(failing_value + 50_000)  # a new block asked while failing
        pump(self.clock, 3 * PERSIST_RETRY)
        self.assertEqual(written, [failing_value + 50_000])
        self.assertEqual(read_floor(node.config.node.data_dir), failing_value + 50_000)

    def test_an_oserror_too(self):
        node = self.start(FlakyDisk(PermissionError(13, "Permission denied")))
        pump(self.clock, 2 * LEASE)
        self.assertIn("Permission denied", ownership_status(node.service)["voter"]["floor_error"])


class ForgeryTests(ThreeNodeCluster, unittest.TestCase):
    def test_a_forged_release_raises_before_anything_is_queued(self):
        self.build()
        alpha = self.nodes["alpha"].service
        holder = alpha.node.voter.holder("A", self.clock.seconds())
        self.assertEqual(holder[0][0], "alpha")
        forged = {"type": "lease.release", "resource": "A",
                  "ballot": [10**9, "alpha", holder[0][1]]}
        e = self.assertRaises(Forged, self.nodes["beta"].service.receive, "gamma", forged)
        self.assertEqual(e.claimed, "alpha")
        self.assertEqual(self.nodes["beta"].service.counters["forged_messages"], 1)
        pump(self.clock, 0.1)
        self.assertEqual(self.nodes["beta"].service.node.voter.holder(
            "A", self.clock.seconds())[0][0], "alpha")

    def test_a_handover_from_a_node_that_does_not_hold_is_forged(self):
        self.build()
        e = self.assertRaises(Forged, self.nodes["beta"].service.receive, "gamma",
                              {"type": "cluster.handover", "resource": "A", "epoch": 1})
        self.assertEqual(e.claimed, "alpha")
        pump(self.clock, 2 * LEASE)
        self.assertEqual(self.nodes["alpha"].runner().state.value, "running")
        self.assertEqual(self.nodes["beta"].spawns, [])

    def test_move_is_recorded_with_who_asked_on_the_holder(self):
        self.build()
        self.nodes["beta"].service.move("A", "beta", key="SHA256:operator")
        pump(self.clock, 3.0)
        asked = [e for e in self.nodes["alpha"].events.recent()
                 if e["fields"].get("what") == "move-asked"]
        self.assertEqual(len(asked), 1)
        self.assertEqual((asked[0]["fields"]["by"], asked[0]["fields"]["key"]),
                         ("beta", "SHA256:operator"))
        self.assertIn("asked by beta, admin key SHA256:operator", asked[0]["reason"])
        self.assertEqual(len(self.nodes["beta"].spawns), 1)
