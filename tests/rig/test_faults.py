"""Fault primitives, for real: nft/iptables drops on lo, loss, SIGSTOP, CPU quota, faketime.

These tests change the machine's firewall and cgroups (as root); every one
removes what it made, and the cleanup tests check exactly that.
"""

import os
import select
import signal
import socket
import subprocess
import sys
import time

from twisted.trial import unittest

from rig.faults import cpu, network, sweep, topology
from rig.faults.cleanup import Cleanups, owned_name, owner_of
from rig.faults.clock import ClockJump, FakeClock, find_library
from rig.faults.process import Pause, process_state
from clsd.polling import wait_for
from rig.addresses import reserve
from tests.support.rig_support import free_port, require, require_root, require_tool

A, B, C, D, E = (f"127.0.0.{n}" for n in range(31, 36))


class TopologyTests(unittest.TestCase):
    def test_isolate_blocks_both_directions_to_everyone_else(self):
        pairs = topology.isolate(A, [A, B, C])
        self.assertEqual(pairs, {(A, B), (B, A), (A, C), (C, A)})
        self.assertTrue(topology.reachable(pairs, B, C))

    def test_split_majority_minority(self):
        pairs = topology.split([A, B, C], [D, E])
        self.assertEqual(len(pairs), 2 * 3 * 2)
        self.assertFalse(topology.reachable(pairs, A, D))
        self.assertTrue(topology.reachable(pairs, D, E))
        self.assertTrue(topology.reachable(pairs, A, C))

    def test_bridge_reaches_both_sides(self):
        pairs = topology.bridge([A, B], [D, E], C)
        for side in (A, B, D, E):
            self.assertTrue(topology.reachable(pairs, C, side))
            self.assertTrue(topology.reachable(pairs, side, C))
        self.assertFalse(topology.reachable(pairs, A, E))
        self.assertRaises(topology.TopologyError, topology.bridge, [A, C], [D], C)

    def test_majorities_ring_of_five(self):
        nodes = [A, B, C, D, E]
        pairs = topology.ring(nodes)
        for i, node in enumerate(nodes):
            seen = [other for other in nodes if topology.reachable(pairs, node, other)]
            self.assertEqual(set(seen), {node, nodes[i - 1], nodes[(i + 1) % 5]})

    def test_ring_needs_four_nodes(self):
        self.assertRaises(topology.TopologyError, topology.ring, [A, B, C])

    def test_only_loopback_addresses(self):
        e = self.assertRaises(topology.TopologyError, topology.isolate, "10.0.0.1", [A])
        self.assertIn("outside 127.0.0.0/8", str(e))
        self.assertRaises(topology.TopologyError, topology.split, [A], ["::1"])

    def test_address_in_two_groups_is_refused(self):
        self.assertRaises(topology.TopologyError, topology.split, [A, B], [B, C])


class RenderTests(unittest.TestCase):
    def test_nft_script_replaces_the_table_atomically(self):
        script = network.NftBackend().render("clsd_faults_1_net", {(A, B)}, [(C, 0.25)])
        lines = script.splitlines()
        self.assertEqual(lines[:3], [
            "table inet clsd_faults_1_net", "delete table inet clsd_faults_1_net",
            "table inet clsd_faults_1_net {",
        ])
        self.assertIn(f"    elements = {{ {A} . {B} }}", lines)
        self.assertIn(f'    iifname "lo" ip saddr {C} numgen random mod 1000000 < 250000 drop',
                      lines)
        self.assertIn(f'    iifname "lo" ip daddr {C} numgen random mod 1000000 < 250000 drop',
                      lines)

    def test_iptables_restore_input(self):
        text = network.IptablesBackend().render("clsd_faults_1_net", {(A, B)}, [(C, 0.5)])
        self.assertEqual(text.splitlines(), [
            "*filter",
            ":CLSD_FAULTS_1_NET - [0:0]",
            f"-A CLSD_FAULTS_1_NET -i lo -s {A}/32 -d {B}/32 -j DROP",
            f"-A CLSD_FAULTS_1_NET -i lo -s {C}/32 -m statistic --mode random "
            "--probability 0.500000 -j DROP",
            f"-A CLSD_FAULTS_1_NET -i lo -d {C}/32 -m statistic --mode random "
            "--probability 0.500000 -j DROP",
            "COMMIT",
        ])

    def test_owned_names_carry_the_owner_pid(self):
        self.assertEqual(owned_name("net", pid=42), "clsd_faults_42_net")
        self.assertEqual(owner_of("clsd_faults_42_net"), 42)
        self.assertEqual(owner_of("CLSD_FAULTS_42_NET"), 42)
        self.assertIsNone(owner_of("filter"))


def tcp_works(source, destination, port, timeout=0.5):
    with socket.socket() as s:
        s.settimeout(timeout)
        s.bind((source, 0))
        try:
            s.connect((destination, port))
            s.sendall(b"ping")
            return True
        except OSError:
            return False


class FirewallMixin:
    backend_class = None

    def setUp(self):
        require_root("firewall rules")
        self.backend = self.make_backend()
        # Addresses of our own: parallel test jobs must not partition each other.
        reservation = reserve(4)
        self.addCleanup(reservation.release)
        self.a, self.b, self.c, self.d = reservation.addresses
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.firewall = network.Firewall(
            name=owned_name(f"t{self.id().rsplit('.', 1)[-1][:6]}"), backend=self.backend,
            cleanups=self.cleanups,
        )
        self.addCleanup(self.firewall.close)
        self.servers = {}
        for address in (self.a, self.b):
            server = socket.socket()
            server.bind((address, 0))
            server.listen(16)
            self.addCleanup(server.close)
            self.servers[address] = server.getsockname()[1]

    def tables(self):
        return self.backend.list_owned()

    def test_partition_blocks_tcp_and_heal_restores_it(self):
        self.assertTrue(tcp_works(self.a, self.b, self.servers[self.b]))
        self.assertTrue(tcp_works(self.b, self.a, self.servers[self.a]))
        token = self.firewall.block(topology.isolate(self.a, [self.a, self.b]))
        self.assertFalse(tcp_works(self.a, self.b, self.servers[self.b]))
        self.assertFalse(tcp_works(self.b, self.a, self.servers[self.a]))
        self.firewall.lift(token)
        self.assertTrue(tcp_works(self.a, self.b, self.servers[self.b]))
        self.assertTrue(tcp_works(self.b, self.a, self.servers[self.a]))

    def test_block_is_one_way(self):
        def udp_arrives(source, destination):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx, \
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
                rx.bind((destination, 0))
                tx.bind((source, 0))
                tx.sendto(b"x", rx.getsockname())
                return bool(select.select([rx], [], [], 0.3)[0])

        self.firewall.block({(self.a, self.b)})
        self.assertFalse(udp_arrives(self.a, self.b))
        self.assertTrue(udp_arrives(self.b, self.a))
        self.assertTrue(udp_arrives(self.a, self.c))

    def test_overlapping_blocks_survive_lifting_one(self):
        first = self.firewall.block(topology.isolate(self.a, [self.a, self.b]))
        self.firewall.block({(self.a, self.b)})
        self.firewall.lift(first)
        self.assertEqual(self.firewall.blocked, {(self.a, self.b)})
        self.assertFalse(tcp_works(self.a, self.b, self.servers[self.b]))

    def test_close_leaves_no_table(self):
        self.firewall.block({(self.a, self.b)})
        self.assertIn(self.firewall.table, self.tables())
        self.firewall.close()
        self.assertNotIn(self.firewall.table, self.tables())
        self.assertTrue(tcp_works(self.a, self.b, self.servers[self.b]))
        self.assertEqual(self.cleanups.pending(), [])

    def test_cleanup_registry_removes_the_table(self):
        self.firewall.block({(self.a, self.b)})
        self.assertEqual(self.cleanups.run_all(), [])
        self.assertNotIn(self.firewall.table, self.tables())

    def test_loss_drops_roughly_the_asked_fraction(self):
        port = free_port(self.d)
        receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        receiver.bind((self.d, port))
        receiver.setblocking(False)
        self.addCleanup(receiver.close)
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.bind((self.c, 0))
        self.addCleanup(sender.close)

        def delivered(count):
            received = 0
            for start in range(0, count, 100):
                for n in range(start, min(start + 100, count)):
                    sender.sendto(b"%d" % n, (self.d, port))
                while select.select([receiver], [], [], 0.05)[0]:
                    try:
                        while True:
                            receiver.recv(64)
                            received += 1
                    except BlockingIOError:
                        pass
            return received

        self.assertEqual(delivered(500), 500)  # the measurement itself loses nothing
        self.firewall.loss(self.c, 0.3)
        got = delivered(3000) / 3000
        # Binomial(3000, 0.7): sigma is 0.0084; 0.05 is six sigma.
        self.assertLess(abs(got - 0.7), 0.05)

    def test_non_loopback_address_is_refused(self):
        self.assertRaises(topology.TopologyError, self.firewall.block, {(self.a, "192.0.2.1")})
        self.assertRaises(topology.TopologyError, self.firewall.loss, "192.0.2.1", 0.1)
        self.assertEqual(self.tables().count(self.firewall.table), 0)


class NftFirewallTests(FirewallMixin, unittest.TestCase):
    def make_backend(self):
        require_tool("nft", "nftables")
        return network.NftBackend()


class IptablesFirewallTests(FirewallMixin, unittest.TestCase):
    def make_backend(self):
        require_tool("iptables", "iptables")
        return network.IptablesBackend()


HOLDER = """
import sys, time
from rig.faults import network
from rig.faults.cleanup import default_cleanups
default_cleanups.install_signal_handlers()
firewall = network.Firewall(backend=network.NftBackend())
firewall.block({("%s", "%s")})
print(firewall.table, flush=True)
time.sleep(60)
"""


class InterruptedRunTests(unittest.TestCase):
    """A rig killed mid-run: rules go with SIGTERM, or with cleanup-all after SIGKILL."""

    def setUp(self):
        require_root("firewall rules")
        require_tool("nft", "nftables")

    def holder(self):
        reservation = reserve(2)
        self.addCleanup(reservation.release)
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER % tuple(reservation.addresses)],
            stdout=subprocess.PIPE, text=True,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        self.addCleanup(process.stdout.close)
        table = process.stdout.readline().strip()
        self.assertIn(table, network.NftBackend().list_owned())
        return process, table

    def test_sigterm_runs_the_cleanups(self):
        process, table = self.holder()
        process.terminate()
        self.assertEqual(process.wait(20), -signal.SIGTERM)
        self.assertNotIn(table, network.NftBackend().list_owned())

    def test_cleanup_all_removes_what_a_killed_rig_left(self):
        process, table = self.holder()
        process.kill()
        process.wait(20)
        self.assertIn(table, network.NftBackend().list_owned())
        result = subprocess.run(
            [sys.executable, "-m", "rig.faults", "cleanup-all"],
            capture_output=True, text=True, timeout=60,
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn(table, result.stdout)
        self.assertNotIn(table, network.NftBackend().list_owned())


class CleanupsTests(unittest.TestCase):
    def test_run_all_is_lifo_once_and_survives_errors(self):
        cleanups = Cleanups()
        ran = []
        cleanups.add(lambda: ran.append(1), "one")
        cleanups.add(lambda: 1 / 0, "broken")
        token = cleanups.add(lambda: ran.append(3), "three")
        cleanups.add(lambda: ran.append(4), "four")
        cleanups.discard(token)
        self.assertEqual(cleanups.pending(), ["four", "broken", "one"])
        errors = cleanups.run_all()
        self.assertEqual(ran, [4, 1])
        self.assertEqual(len(errors), 1)
        self.assertIn("broken", errors[0])
        self.assertEqual(cleanups.run_all(), [])
        self.assertEqual(ran, [4, 1])


class PauseTests(unittest.TestCase):
    def setUp(self):
        require(os.path.isdir("/proc"), "/proc")
        self.process = subprocess.Popen(["sleep", "30"])
        self.addCleanup(self.process.wait)
        self.addCleanup(self.process.kill)

    def test_pause_and_resume(self):
        cleanups = Cleanups()
        pause = Pause(self.process.pid, cleanups=cleanups)
        wait_for(lambda: process_state(self.process.pid) == "T", 5, what="stopped state")
        pause.resume()
        wait_for(lambda: process_state(self.process.pid) == "S", 5, what="running again")
        self.assertEqual(cleanups.pending(), [])

    def test_interrupted_run_continues_the_process(self):
        cleanups = Cleanups()
        Pause(self.process.pid, cleanups=cleanups)
        wait_for(lambda: process_state(self.process.pid) == "T", 5, what="stopped state")
        cleanups.run_all()
        wait_for(lambda: process_state(self.process.pid) == "S", 5, what="running again")


class CpuStarvationTests(unittest.TestCase):
    def busy(self):
        process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        return process

    def test_quota_holds_a_busy_process_to_its_share(self):
        require_root("cgroups")
        method = cpu.available_method()
        require(method != "hogs", "a cgroup CPU controller")
        process = self.busy()
        cleanups = Cleanups()
        starvation = cpu.CpuStarvation(process.pid, 0.05, cleanups=cleanups)
        path = starvation._impl.path
        self.assertTrue(os.path.isdir(path))
        before = cpu.cpu_seconds(process.pid)
        time.sleep(1.0)
        used = cpu.cpu_seconds(process.pid) - before
        # 5% of one CPU for one second is 0.05 s; allow a period of slack.
        self.assertLess(used, 0.15)
        starvation.heal()
        self.assertFalse(os.path.exists(path))
        with open(f"/proc/{process.pid}/cgroup") as f:
            self.assertNotIn("clsd_faults", f.read())
        self.assertEqual(cleanups.pending(), [])

    def test_busy_hogs_fallback_starts_and_removes_its_processes(self):
        process = subprocess.Popen(["sleep", "30"])
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)
        cleanups = Cleanups()
        starvation = cpu.CpuStarvation(process.pid, 0.5, method="hogs", cleanups=cleanups)
        hogs = starvation._impl.hogs
        self.assertEqual(len(hogs), 1)
        # Until the hog has exec'd, /proc shows the environment it was forked with.
        wait_for(lambda: hogs[0].pid in sweep.owned_processes(), 5.0,
                 what="the hog's marker in /proc")
        if hasattr(os, "sched_getaffinity"):
            self.assertEqual(len(os.sched_getaffinity(process.pid)), 1)
        cleanups.run_all()
        self.assertIsNotNone(hogs[0].poll())
        if hasattr(os, "sched_getaffinity"):
            self.assertEqual(os.sched_getaffinity(process.pid), os.sched_getaffinity(0))

    def test_share_must_be_a_fraction(self):
        self.assertRaises(ValueError, cpu.CpuStarvation, os.getpid(), 1.5)


CLOCK_PROBE = """
import sys, time
for line in sys.stdin:
    time.sleep(0.01)  # must work under libfaketime (see faketime_site)
    print(time.time(), time.monotonic(), flush=True)
"""


class FaketimeTests(unittest.TestCase):
    def setUp(self):
        require_tool("faketime", "faketime")
        try:
            find_library()
        except Exception as e:
            require(False, str(e))

    def test_wall_clock_jumps_monotonic_does_not(self):
        clock = FakeClock(os.path.abspath(self.mktemp()))
        process = subprocess.Popen(
            [sys.executable, "-c", CLOCK_PROBE], env=clock.environ(os.environ),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.addCleanup(process.wait)
        self.addCleanup(process.kill)

        def probe():
            process.stdin.write("\n")
            process.stdin.flush()
            line = process.stdout.readline()
            self.assertTrue(line, process.stderr.read() if process.poll() is not None else "")
            wall, mono = map(float, line.split())
            return wall - time.time(), mono - time.monotonic()

        wall_offset, mono_offset = probe()
        self.assertLess(abs(wall_offset), 0.5)
        cleanups = Cleanups()
        jump = ClockJump(clock, 300, cleanups=cleanups)
        wall_offset = wait_for(lambda: (lambda w: w if w[0] > 250 else None)(probe()),
                               10, what="the +300 s jump", interval=0.1)[0]
        self.assertLess(abs(wall_offset - 300), 0.5)
        _, mono_offset = probe()
        self.assertLess(abs(mono_offset), 0.5)
        jump.heal()
        wait_for(lambda: abs(probe()[0]) < 0.5, 10, what="the jump back", interval=0.1)
        self.assertEqual(cleanups.pending(), [])
