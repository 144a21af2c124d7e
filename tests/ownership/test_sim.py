"""Simulated clusters under faults: no dual-active, epochs grow, failover within the bound.

Each test drives real ownership cores (voters, proposers, managers) in
rig.sim.leases with per-node drifting clocks, and checks on the *true* time
line.  The broken-variant tests prove the checker is not vacuous: the same
scenarios with the quiet period or the drift margin removed are caught.
"""

from twisted.trial import unittest

from clsd.ownership.core.timing import LeaseTiming
from clsd.ownership.core.voter import DEFAULT_RESERVE_BLOCK, LeaseVoter
from rig.sim.leases import Interval, LeaseSim, SafetyViolation
from tests.ownership.scenarios import (
    DETECTION, TIMING, cluster, five_voters, mutual_standby, settle,
)


def holder_of(sim, cluster_id):
    running = sim.running(cluster_id)
    assert len(running) == 1, f"{cluster_id} runs on {running}"
    return running[0]


class FailoverTests(unittest.TestCase):
    def test_mutual_standby_settles_by_priority(self):
        sim = settle(mutual_standby(seed=1))
        self.assertEqual(sim.running("A"), ["alpha"])
        self.assertEqual(sim.running("B"), ["beta"])
        sim.check_safety()

    def test_crash_of_owner_fails_over_within_one_lease(self):
        sim = settle(mutual_standby(seed=2))
        crash_at = 6.3
        sim.at(crash_at, lambda s: s.crash("alpha"))
        sim.run_until(12.0)
        self.assertEqual(sim.running("A"), ["beta"])
        started = sim.owned_since("A")
        # Voters free the lease at most T after the last renewal; the successor
        # polls at their hint and needs two round trips more.
        self.assertLessEqual(started - crash_at, TIMING.failover_after_crash(0) + 0.05)
        sim.check_safety()

    def test_failover_times_follow_the_formula(self):
        # Crashes at random phases of the renewal cycle: the new owner holds
        # T - phase + slack (+ round trips) later; mean T - T/6 + slack.
        import random

        delays = []
        for seed in range(40):
            sim = settle(mutual_standby(seed=seed))
            owner = holder_of(sim, "A")
            crash_at = 6.0 + random.Random(seed).uniform(0, 1)
            sim.at(crash_at, lambda s: s.crash(owner))
            sim.run_until(crash_at + 4.0)
            delays.append(sim.owned_since("A") - crash_at)
            sim.check_safety()
        worst = TIMING.failover_after_crash(0.0) + 0.05
        mean = TIMING.lease - TIMING.renew_after / 2 + TIMING.retry_slack
        self.assertLessEqual(max(delays), worst)
        self.assertLess(abs(sum(delays) / len(delays) - mean), 0.15)

    def test_isolated_owner_stops_before_the_majority_starts(self):
        sim = settle(mutual_standby(seed=3, stop_time=None))  # services ignore TERM
        sim.at(6.2, lambda s: s.isolate("alpha"))
        sim.run_until(12.0)
        self.assertEqual(sim.running("A"), ["beta"])
        old, new = sorted(sim.service_log["A"], key=lambda i: i.start)
        self.assertLess(old.end, new.start)
        self.assertGreater(new.epoch, old.epoch)
        sim.check_safety()

    def test_frozen_daemon_service_killed_at_deadline_then_standby_starts(self):
        sim = settle(mutual_standby(seed=4, stop_time=None))
        sim.at(6.1, lambda s: s.pause("alpha"))
        sim.at(11.0, lambda s: s.resume("alpha"))
        sim.run_until(14.0)
        old, new = sorted(sim.service_log["A"], key=lambda i: i.start)
        self.assertEqual((old.node, new.node), ("alpha", "beta"))
        # Killed by the guard within a lease of the freeze, while the daemon slept.
        self.assertLess(old.end, 6.1 + TIMING.lease)
        self.assertLess(old.end, new.start)
        # After waking up, alpha does not start A again: beta keeps it.
        self.assertEqual(sim.running("A"), ["beta"])
        sim.check_safety()

    def test_majority_side_of_a_split_takes_over(self):
        sim = settle(five_voters(seed=5))
        owner = holder_of(sim, "A")
        self.assertEqual(owner, "n1")
        sim.at(6.0, lambda s: s.split(["n1", "n2"]))
        sim.run_until(6.0 + TIMING.reacquire_bound(DETECTION))
        self.assertEqual(sim.running("A"), ["n3"])
        sim.check_safety()

    def test_bridge_node_keeps_things_safe(self):
        sim = settle(five_voters(seed=6))
        sim.at(6.0, lambda s: s.bridge("w", ["n1", "n2"]))
        sim.run_until(20.0)
        sim.check_safety()
        self.assertEqual(len(sim.running("A")), 1)

    def test_voter_restart_mid_lease_is_safe(self):
        sim = mutual_standby(seed=7)
        sim.block("alpha", "beta")  # each side reaches only the witness
        sim.run_until(5.0)
        sim.at(5.5, lambda s: s.crash("witness"))
        sim.at(5.51, lambda s: s.restart("witness"))
        sim.run_until(20.0)
        sim.check_safety()

    def test_epochs_survive_a_restart_of_every_voter_with_a_floor(self):
        sim = mutual_standby(seed=8)  # the default voter persists its epoch floor
        sim.run_until(6.0)
        first = sim.service_log["A"][0].epoch
        for name in ("alpha", "beta", "witness"):
            sim.at(6.0, lambda s, n=name: s.crash(n))
            sim.at(6.5, lambda s, n=name: s.restart(n))
        sim.run_until(16.0)
        later = sorted(sim.service_log["A"], key=lambda i: i.start)[-1]
        self.assertGreater(later.epoch, first)
        self.assertGreater(later.epoch, DEFAULT_RESERVE_BLOCK)
        sim.check_safety()


class MaintenanceTests(unittest.TestCase):
    def test_standby_moves_clusters_away_without_waiting_for_expiry(self):
        sim = settle(mutual_standby(seed=10))
        sim.at(6.0, lambda s: s.operator("alpha", "set_standby", True))
        sim.run_until(9.0)
        self.assertEqual(sim.running("A"), ["beta"])
        old, new = sorted(sim.service_log["A"], key=lambda i: i.start)
        self.assertLess(old.end, new.start)
        # A release, not an expiry: the new owner starts right after the stop.
        self.assertLess(new.start - old.end, 0.1)
        sim.check_safety()
        sim.at(9.5, lambda s: s.operator("alpha", "set_standby", False))
        sim.run_until(15.0)
        self.assertEqual(sim.running("A"), ["beta"])  # sticky: no failback

    def test_move_cluster_to_a_node(self):
        sim = settle(five_voters(seed=11))
        self.assertEqual(sim.running("A"), ["n1"])
        # Asked on another node: forwarded to the holder.
        sim.at(6.0, lambda s: s.operator("n2", "move", "A", "n4"))
        sim.run_until(8.0)
        self.assertEqual(sim.running("A"), ["n4"])
        sim.run_until(15.0)
        self.assertEqual(sim.running("A"), ["n4"])
        sim.check_safety()

    def test_pause_keeps_the_owner_and_blocks_failover_decisions(self):
        sim = settle(mutual_standby(seed=12))
        sim.at(6.0, lambda s: s.operator("alpha", "pause", "A"))
        sim.at(6.1, lambda s: s.operator("alpha", "set_standby", True))
        sim.run_until(10.0)
        self.assertEqual(sim.running("A"), ["alpha"])  # paused: not moved
        self.assertEqual(sim.running("B"), ["beta"])
        sim.at(10.0, lambda s: s.operator("alpha", "resume", "A"))
        sim.run_until(12.0)
        self.assertEqual(sim.running("A"), ["beta"])
        sim.check_safety()

    def test_preempt_moves_back_after_the_delay(self):
        nodes = {
            "alpha": (cluster("A", 100, preempt=True, preempt_delay=3.0),),
            "beta": (cluster("A", 50, preempt=True, preempt_delay=3.0),),
            "witness": (),
        }
        sim = LeaseSim(nodes, ["alpha", "beta", "witness"], TIMING, seed=13,
                       detection=DETECTION)
        sim.run_until(6.0)
        sim.at(6.0, lambda s: s.crash("alpha"))
        sim.run_until(10.0)
        self.assertEqual(sim.running("A"), ["beta"])
        sim.at(10.0, lambda s: s.restart("alpha"))
        sim.run_until(10.0 + DETECTION + 2.9)
        self.assertEqual(sim.running("A"), ["beta"])  # not yet: preempt_delay
        sim.run_until(20.0)
        self.assertEqual(sim.running("A"), ["alpha"])
        sim.check_safety()


class EscalationTests(unittest.TestCase):
    def test_crash_loop_moves_to_next_then_cluster_failed(self):
        nodes = {
            "alpha": (cluster("A", 100, notify=("/bin/notify",), cooldown=100.0),),
            "beta": (cluster("A", 50, notify=("/bin/notify",), cooldown=100.0),),
            "witness": (),
        }
        sim = LeaseSim(nodes, ["alpha", "beta", "witness"], TIMING, seed=20,
                       detection=DETECTION)
        sim.run_until(6.0)
        self.assertEqual(sim.running("A"), ["alpha"])
        sim.at(6.0, lambda s: s.fail_service("alpha", "A"))
        sim.run_until(9.0)
        self.assertEqual(sim.running("A"), ["beta"])
        sim.at(9.0, lambda s: s.fail_service("beta", "A"))
        sim.run_until(12.0)
        self.assertEqual(sim.running("A"), [])
        failed = [(node, hook) for _, node, hook in sim.hooks if hook.event == "failed"]
        self.assertEqual(len(failed), 1, failed)
        self.assertEqual(failed[0][0], "alpha")  # one notifier: the first registered name
        sim.check_safety()

    def test_cooldown_ends_and_cluster_runs_again(self):
        nodes = {"alpha": (cluster("A", 100, cooldown=5.0),), "w1": (), "w2": ()}
        sim = LeaseSim(nodes, ["alpha", "w1", "w2"], TIMING, seed=21, detection=DETECTION)
        sim.run_until(6.0)
        sim.at(6.0, lambda s: s.fail_service("alpha", "A"))
        sim.run_until(10.0)
        self.assertEqual(sim.running("A"), [])
        sim.run_until(14.0)
        self.assertEqual(sim.running("A"), ["alpha"])
        sim.check_safety()


class NActiveTests(unittest.TestCase):
    def test_slots_on_distinct_nodes_and_refilled_after_a_crash(self):
        sim = settle(five_voters(seed=30))
        self.assertEqual(sim.running("N"), ["n3", "n4"])
        sim.at(6.0, lambda s: s.crash("n4"))
        sim.run_until(6.0 + TIMING.reacquire_bound(DETECTION))
        self.assertEqual(sim.running("N"), ["n2", "n3"])
        for node in sim.nodes:
            self.assertLessEqual(sim.running("N").count(node), 1)


class TwoVoterFenceTests(unittest.TestCase):
    def test_survivor_fences_the_silent_peer_then_takes_over(self):
        fence = ("/usr/sbin/fence", "{node}", "{cluster}", "{epoch}")
        nodes = {
            "alpha": (cluster("A", 100, fence=fence),),
            "beta": (cluster("A", 50, fence=fence),),
        }
        sim = LeaseSim(nodes, ["alpha", "beta"], TIMING, seed=40, detection=DETECTION)
        sim.run_until(6.0)
        self.assertEqual(sim.running("A"), ["alpha"])
        sim.at(6.0, lambda s: s.isolate("alpha"))
        sim.run_until(14.0)
        self.assertEqual(sim.running("A"), ["beta"])
        fences = [h for _, node, h in sim.hooks if h.event == "fence" and node == "beta"]
        self.assertEqual(fences[0].node, "alpha")
        self.assertFalse(sim.nodes["alpha"].up)  # the fence powered it off
        sim.check_safety()


class BrokenVariantTests(unittest.TestCase):
    """The checker must catch a protocol with a safety rule removed."""

    def _restart_scenario(self, seed, voter_factory=None):
        # alpha and beta cannot talk; each reaches the witness.  The holder of
        # A then loses the witness too, and the witness and the other node
        # restart (forgetting every grant).  Services ignore TERM.
        sim = mutual_standby(seed=seed, voter_factory=voter_factory, stop_time=None)
        sim.block("alpha", "beta")
        sim.run_until(5.0)
        holder = holder_of(sim, "A")
        other = "beta" if holder == "alpha" else "alpha"

        def fault(s):
            s.block(holder, "witness")
            for name in ("witness", other):
                s.crash(name)
                s.restart(name)

        sim.at(5.5, fault, "holder loses the witness; witness and other restart")
        sim.run_until(12.0)
        return sim

    def test_no_quiet_period_after_voter_restart_is_caught(self):
        def forgetful(name, timing, now, floor):
            return LeaseVoter(name, timing, now, epoch_floor=floor,
                              reserve_block=DEFAULT_RESERVE_BLOCK, quiet=False)

        for seed in range(5):
            sim = self._restart_scenario(seed, forgetful)
            self.assertRaises(SafetyViolation, sim.check_safety)
            # Caught as two services really running at once, not only as beliefs.
            self.assertIn("service", [kind for kind, *_ in sim.overlaps()])

    def test_same_scenario_with_quiet_period_is_safe(self):
        for seed in range(5):
            sim = self._restart_scenario(seed)
            sim.check_safety()
            self.assertEqual(len(sim.running("A")), 1)

    def _drift_scenario(self, timing):
        # alpha's clock runs 2% slow, everyone else's 2% fast: the worst
        # case the margin must cover.  alpha's service ignores TERM.
        rates = {"alpha": 0.98, "beta": 1.02, "witness": 1.02}
        sim = mutual_standby(seed=50, timing=timing, rates=rates, stop_time=None,
                             delay=(0.0005, 0.001))
        sim.run_until(6.0)
        sim.at(6.0, lambda s: s.isolate("alpha"))
        sim.run_until(12.0)
        return sim

    def test_no_drift_margin_is_caught(self):
        sim = self._drift_scenario(LeaseTiming(lease=2.0, drift_margin=0.0))
        self.assertRaises(SafetyViolation, sim.check_safety)
        self.assertIn("service", [kind for kind, *_ in sim.overlaps()])

    def test_drift_within_the_margin_is_safe(self):
        sim = self._drift_scenario(TIMING)
        sim.check_safety()
        self.assertEqual(sim.running("A"), ["beta"])


class ClockSlewTests(unittest.TestCase):
    """chrony slews CLOCK_MONOTONIC far past the 500 ppm the margin covers; leases use the raw clock."""

    def _slew_scenario(self, lease_clock):
        # alpha's CLOCK_MONOTONIC is slewed 8 % slow; it holds A, its service
        # ignores TERM, and it is cut off: beta takes over at the voters' expiry.
        sim = mutual_standby(seed=51, slew={"alpha": 0.92}, lease_clock=lease_clock,
                             stop_time=None, drift=0.0, delay=(0.0005, 0.001))
        sim.run_until(6.0)
        sim.at(6.0, lambda s: s.isolate("alpha"))
        sim.run_until(12.0)
        return sim

    def test_leases_on_the_slewed_clock_overlap(self):
        sim = self._slew_scenario("monotonic")
        self.assertRaises(SafetyViolation, sim.check_safety)
        self.assertIn("service", [kind for kind, *_ in sim.overlaps()])

    def test_leases_on_the_raw_clock_do_not(self):
        sim = self._slew_scenario("raw")
        sim.check_safety()
        self.assertEqual(sim.running("A"), ["beta"])


class CheckerTests(unittest.TestCase):
    """The checks themselves, on hand-made interval logs."""

    def sim(self):
        sim = mutual_standby(seed=60)
        sim.now = 10.0
        return sim

    def test_overlapping_services_of_two_nodes(self):
        sim = self.sim()
        sim.service_log["A"] = [Interval("alpha", "A", 1, 1.0, 2.0),
                                Interval("beta", "A", 2, 1.999, 3.0)]
        self.assertEqual([k for k, *_ in sim.overlaps()], ["service"])
        self.assertRaises(SafetyViolation, sim.check_safety)

    def test_back_to_back_and_same_node_are_fine(self):
        sim = self.sim()
        sim.service_log["A"] = [Interval("alpha", "A", 1, 1.0, 2.0),
                                Interval("beta", "A", 2, 2.0, 3.0),
                                Interval("beta", "A", 3, 2.5, 4.0)]
        self.assertEqual(sim.overlaps(), [])

    def test_n_active_copies_may_overlap(self):
        sim = self.sim()
        sim.service_log["N/0"] = [Interval("n1", "N/0", 1, 1.0, 5.0)]
        sim.service_log["N/1"] = [Interval("n2", "N/1", 1, 1.0, 5.0)]
        self.assertEqual(sim.overlaps(), [])

    def test_overlapping_beliefs(self):
        sim = self.sim()
        sim.beliefs[("alpha", "A", 1)] = Interval("alpha", "A", 1, 1.0, 3.0)
        sim.beliefs[("beta", "A", 2)] = Interval("beta", "A", 2, 2.0, 4.0)
        self.assertEqual([k for k, *_ in sim.overlaps()], ["belief"])

    def test_epoch_must_grow(self):
        sim = self.sim()
        sim.service_log["A"] = [Interval("alpha", "A", 5, 1.0, 2.0),
                                Interval("beta", "A", 5, 3.0, 4.0)]
        self.assertEqual(len(sim.epoch_regressions()), 1)

    def test_service_outside_its_tenure(self):
        sim = self.sim()
        sim.beliefs[("alpha", "A", 1)] = Interval("alpha", "A", 1, 1.0, 3.0)
        sim.service_log["A"] = [Interval("alpha", "A", 1, 1.5, 3.0 + 2 * sim.kill_latency)]
        self.assertEqual(len(sim.services_outside_tenure()), 1)
        sim.service_log["A"] = [Interval("alpha", "A", 1, 1.5, 3.0 + sim.kill_latency)]
        self.assertEqual(sim.services_outside_tenure(), [])
        sim.service_log["A"] = [Interval("alpha", "A", 2, 1.5, 2.0)]  # no tenure at all
        self.assertEqual(len(sim.services_outside_tenure()), 1)
