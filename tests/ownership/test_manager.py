"""The cluster manager against a scripted arbiter: the order and content of its actions.

The scripted arbiter implements IArbiter too, which is the point: the manager
works with any arbiter (the voter quorum, later etcd).
"""

from twisted.trial import unittest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from clsd.config.cluster_id import ClusterConfig
from clsd.ownership.core.actions import (
    KillAt, PublishState, Report, RunHook, Send, StartService, StopService,
)
from clsd.ownership.core.arbiter import IArbiter
from clsd.ownership.core.arbiter_events import (
    LeaseAcquired, LeaseEnding, LeaseLost, LeaseObserved, LeaseRenewed,
)
from clsd.ownership.core.manager import ACQUIRING, IDLE, RUNNING, ClusterManager, ManagerError
from clsd.ownership.core.messages import Handover, MoveRequest
from clsd.ownership.core.placement import MemberState
from clsd.ownership.core.timing import LeaseTiming

T = LeaseTiming()
FENCE = ("/sbin/fence", "{node}", "{cluster}", "{epoch}")


@implementer(IArbiter)
class ScriptedArbiter:
    node = "alpha"

    def __init__(self):
        self.calls = []
        self.held = {}

    def acquire(self, resource, now):
        self.calls.append(("acquire", resource))
        return []

    def hurry(self, resource, now):
        self.calls.append(("hurry", resource))
        return []

    def abandon(self, resource, now):
        self.calls.append(("abandon", resource))
        return []

    def release(self, resource, now):
        self.calls.append(("release", resource))
        self.held.pop(resource, None)
        return [Send("v", ("released", resource))]

    def holding(self, resource, now):
        return self.held.get(resource)

    def receive(self, sender, message, now):
        return [message]  # tests pass arbiter events through as "messages"

    def accepts(self, message):
        return isinstance(message, (LeaseAcquired, LeaseRenewed, LeaseEnding, LeaseLost,
                                    LeaseObserved))

    def tick(self, now):
        return []

    def next_wakeup(self):
        return None

    def assume_granted(self, resource, voter):
        self.calls.append(("assume", resource, voter))

    def silent_voters(self, resource, now, longer_than):
        return ()


def spec(cid="A", priority=100, **kw):
    return ClusterConfig(id=cid, service=f"svc-{cid}", priority=priority, **kw)


def of(kind, actions):
    return [a for a in actions if isinstance(a, kind)]


class ManagerTests(unittest.TestCase):
    def setUp(self):
        self.arbiter = ScriptedArbiter()

    def manager(self, *clusters, voters=("alpha", "beta", "w")):
        m = ClusterManager("alpha", clusters or (spec(),), self.arbiter, T, 0.0, voters=voters)
        self.start_actions = m.start(0.0)
        return m

    def grant(self, m, now=1.0, epoch=7, previous=None, released=False, resource="A"):
        self.arbiter.held[resource] = (epoch, now + 1.9)
        return m.receive("alpha", LeaseAcquired(resource, epoch, now + 1.9, previous, released), now)

    def test_arbiter_interface(self):
        self.assertTrue(verifyObject(IArbiter, self.arbiter))

    def test_alone_it_acquires_and_publishes(self):
        m = self.manager()
        self.assertIn(("acquire", "A"), self.arbiter.calls)
        (published,) = of(PublishState, self.start_actions)
        self.assertEqual(published.state.registrations, {"A": 100})
        self.assertEqual(m.status(0.0), {"A": (ACQUIRING, 0)})

    def test_kill_deadline_before_start_and_epoch_passed_on(self):
        m = self.manager()
        actions = self.grant(m, epoch=7)
        kinds = [type(a) for a in actions]
        self.assertLess(kinds.index(KillAt), kinds.index(StartService))
        self.assertEqual(of(KillAt, actions), [KillAt("A", 2.9)])
        self.assertEqual(of(StartService, actions), [StartService("A", "svc-A", 7, 0)])
        self.assertEqual(of(PublishState, actions)[0].state.holding, {"A": 7})
        renewed = m.receive("alpha", LeaseRenewed("A", 7, 3.6, 0.002), 1.7)
        self.assertEqual(of(KillAt, renewed), [KillAt("A", 3.6)])
        self.assertEqual(of(Report, renewed),
                         [Report("renewed", "A", "A", 7, round_trip=0.002)])

    def test_fence_previous_owner_before_starting(self):
        m = self.manager(spec(fence=FENCE))
        actions = self.grant(m, epoch=9, previous="beta", released=False)
        self.assertEqual(of(StartService, actions), [])
        self.assertEqual(of(RunHook, actions), [RunHook("A", "fence", FENCE, "beta", 9)])
        actions = m.hook_done("A", "fence", 9, True, 1.2)
        self.assertEqual(of(StartService, actions), [StartService("A", "svc-A", 9, 0)])

    def test_no_fence_after_a_graceful_release(self):
        m = self.manager(spec(fence=FENCE))
        actions = self.grant(m, epoch=9, previous="beta", released=True)
        self.assertEqual(len(of(StartService, actions)), 1)
        self.assertEqual(of(RunHook, actions), [])

    def test_failed_fence_gives_the_lease_back(self):
        m = self.manager(spec(fence=FENCE))
        self.grant(m, previous="beta")
        actions = m.hook_done("A", "fence", 7, False, 1.2)
        self.assertEqual(of(StartService, actions), [])
        self.assertIn(("release", "A"), self.arbiter.calls)
        self.assertEqual(m.status(1.2)["A"][0], IDLE)

    def test_lease_ending_stops_with_the_deadline_then_releases(self):
        m = self.manager()
        self.grant(m)
        actions = m.receive("alpha", LeaseEnding("A", 7, 2.9), 2.4)
        self.assertEqual(of(StopService, actions)[0].deadline, 2.9)
        self.assertIn(("abandon", "A"), self.arbiter.calls)
        actions = m.service_stopped("A", 2.6)
        self.assertIn(("release", "A"), self.arbiter.calls)
        self.assertIn(Send("v", ("released", "A")), actions)

    def test_lease_taken_before_its_deadline_rearms_the_guard_now(self):
        m = self.manager()
        self.grant(m)
        actions = m.receive("alpha", LeaseEnding("A", 7, 1.1), 1.1)
        self.assertEqual(of(KillAt, actions), [KillAt("A", 1.1)])
        self.assertLess(actions.index(of(KillAt, actions)[0]),
                        actions.index(of(StopService, actions)[0]))
        self.assertEqual(of(StopService, actions)[0].deadline, 1.1)

    def test_lease_lost_while_running_kills_now(self):
        m = self.manager()
        self.grant(m)
        actions = m.receive("alpha", LeaseLost("A", 7), 5.0)
        self.assertEqual(of(StopService, actions), [StopService("A", 5.0, "lease expired")])

    def test_crash_loop_gives_up_and_publishes_failed(self):
        m = self.manager(spec(notify=("/bin/n",)))
        self.grant(m)
        actions = m.service_failed("A", 3.0)
        self.assertIn(("release", "A"), self.arbiter.calls)
        self.assertEqual(of(PublishState, actions)[-1].state.failed, frozenset({"A"}))
        # Alone and failed: the cluster is FAILED, and we are the notifier.
        failed = [h for h in of(RunHook, actions) if h.event == "failed"]
        self.assertEqual(len(failed), 1)
        # Not retried while cooling down.
        self.arbiter.calls.clear()
        m.tick(10.0)
        self.assertNotIn(("acquire", "A"), self.arbiter.calls)

    def test_standby_hands_over_to_the_next_candidate(self):
        m = self.manager()
        self.grant(m)
        beta = MemberState("beta", registrations={"A": 50})
        m.members_changed([beta], 1.5)
        actions = m.set_standby(True, 2.0)
        (stop,) = of(StopService, actions)
        self.assertIsNone(stop.deadline)  # graceful: the lease is still renewed
        actions = m.service_stopped("A", 2.2)
        self.assertIn(Send("beta", Handover("A", 7)), actions)
        self.assertTrue(of(PublishState, actions)[-1].state.standby)

    def test_handover_received_makes_us_acquire_at_once(self):
        m = self.manager(spec(priority=10))
        beta = MemberState("beta", registrations={"A": 50}, holding={"A": 3})
        m.members_changed([beta], 1.0)
        # The successor of a live holder polls its lease, to take over when it lapses.
        self.assertEqual(m.status(1.0)["A"][0], ACQUIRING)
        m.receive("beta", Handover("A", 3), 2.0)
        self.assertIn(("hurry", "A"), self.arbiter.calls)

    def test_a_grant_beside_a_not_with_partner_held_here_is_given_back(self):
        """A and B are not_with each other and both placed here (each avoiding where the other
        would go elsewhere): B's grant, arriving after A's, is given straight back."""
        m = self.manager(spec("A", not_with=("B",)), spec("B", not_with=("A",)))
        m.members_changed([MemberState("beta", registrations={"A": 50, "B": 50})], 0.5)
        self.assertEqual(m.status(0.5), {"A": (ACQUIRING, 0), "B": (ACQUIRING, 0)})
        started = of(StartService, self.grant(m, resource="A"))
        self.assertEqual([s.cluster for s in started], ["A"])
        actions = self.grant(m, resource="B", epoch=8)
        self.assertEqual(of(StartService, actions), [])
        self.assertIn(("release", "B"), self.arbiter.calls)

    def test_move_errors_are_explained(self):
        m = self.manager()
        e = self.assertRaises(ManagerError, m.move, "Z", "beta", 1.0)
        self.assertIn("not registered for cluster 'Z'", str(e))
        e = self.assertRaises(ManagerError, m.move, "A", "gamma", 1.0)
        self.assertIn("not a live member", str(e))
        m.members_changed([MemberState("beta", registrations={"B": 1})], 1.0)
        e = self.assertRaises(ManagerError, m.move, "A", "beta", 1.0)
        self.assertIn("not eligible", str(e))

    def test_move_refused_while_stopping_or_paused(self):
        m = self.manager()
        self.grant(m)
        m.members_changed([MemberState("beta", registrations={"A": 50})], 1.5)
        m.move("A", "beta", 2.0)
        e = self.assertRaises(ManagerError, m.move, "A", "beta", 2.1)
        self.assertIn("stopping here already", str(e))
        m.pause("A", 2.2)
        e = self.assertRaises(ManagerError, m.move, "A", "beta", 2.3)
        self.assertIn("paused", str(e))

    def test_move_asked_elsewhere_is_forwarded_to_the_holder(self):
        m = self.manager(spec(priority=10))
        beta = MemberState("beta", registrations={"A": 50}, holding={"A": 3})
        gamma = MemberState("gamma", registrations={"A": 1})
        m.members_changed([beta, gamma], 1.0)
        self.assertEqual(m.move("A", "gamma", 2.0),
                         [Send("beta", MoveRequest("A", "gamma", by="alpha"))])

    def test_third_candidate_does_not_poll(self):
        m = self.manager(spec(priority=10))
        beta = MemberState("beta", registrations={"A": 50}, holding={"A": 3})
        gamma = MemberState("gamma", registrations={"A": 20})
        m.members_changed([beta, gamma], 1.0)
        self.assertEqual(m.status(1.0)["A"][0], IDLE)
        self.assertIn(("abandon", "A"), self.arbiter.calls)

    def test_pause_abandons_acquisition_and_resume_restarts_it(self):
        m = self.manager()
        m.pause("A", 1.0)
        self.assertIn(("abandon", "A"), self.arbiter.calls)
        self.arbiter.calls.clear()
        m.tick(2.0)
        self.assertNotIn(("acquire", "A"), self.arbiter.calls)
        m.resume("A", 3.0)
        self.assertIn(("acquire", "A"), self.arbiter.calls)
        self.assertRaises(ManagerError, m.pause, "nope", 1.0)

    def test_two_voter_mode_fences_a_silent_peer(self):
        arbiter = self.arbiter
        arbiter.silent_voters = lambda resource, now, longer_than: ("beta",)
        m = self.manager(spec(fence=FENCE), voters=("alpha", "beta"))
        actions = m.tick(5.0)
        self.assertEqual(of(RunHook, actions), [RunHook("A", "fence", FENCE, "beta", 0)])
        m.hook_done("A", "fence", 0, True, 5.5)
        self.assertIn(("assume", "A", "beta"), arbiter.calls)
        self.assertIn(("hurry", "A"), arbiter.calls)
        self.assertEqual(m.status(5.5)["A"][0], ACQUIRING)
        # Once acquired, the peer it already fenced is not fenced again.
        actions = self.grant(m, now=6.0, previous="beta")
        self.assertEqual(len(of(StartService, actions)), 1)
        self.assertEqual(m.status(6.0)["A"][0], RUNNING)


class RegistrationTests(unittest.TestCase):
    """Registrations added, changed and withdrawn at runtime (reload)."""

    def setUp(self):
        self.arbiter = ScriptedArbiter()

    def manager(self, *clusters):
        m = ClusterManager("alpha", clusters, self.arbiter, T, 0.0, voters=("alpha", "beta", "w"))
        m.start(0.0)
        return m

    def grant(self, m, now=1.0, epoch=7, resource="A"):
        self.arbiter.held[resource] = (epoch, now + 1.9)
        return m.receive("alpha", LeaseAcquired(resource, epoch, now + 1.9, None, False), now)

    def test_register_publishes_and_acquires(self):
        m = self.manager()
        actions = m.register(spec("B", priority=70), 1.0)
        self.assertEqual(of(PublishState, actions)[-1].state.registrations, {"B": 70})
        self.assertIn(("acquire", "B"), self.arbiter.calls)
        self.assertTrue(m.registered("B"))

    def test_in_place_change_of_priority_and_hooks(self):
        m = self.manager(spec())
        self.grant(m)
        actions = m.register(spec(priority=5, notify=("/bin/n",)), 2.0)
        self.assertEqual(of(PublishState, actions)[-1].state.registrations, {"A": 5})
        self.assertEqual(of(StopService, actions), [])  # still the only candidate
        # The running tenure uses the new notify hook when it ends.
        m.set_standby(True, 2.1)
        actions = m.service_stopped("A", 2.2)
        self.assertEqual([h.event for h in of(RunHook, actions)], ["release"])

    def test_structural_change_is_refused(self):
        m = self.manager(spec())
        e = self.assertRaises(ManagerError, m.register, spec(mode="n-active", count=2), 1.0)
        self.assertIn("unregister it", str(e))

    def test_lower_priority_moves_only_with_preempt(self):
        m = self.manager(spec(priority=100))
        self.grant(m)
        beta = MemberState("beta", registrations={"A": 50})
        m.members_changed([beta], 1.1)
        actions = m.register(spec(priority=10), 2.0)
        self.assertEqual(of(StopService, actions), [])  # sticky without preempt
        # beta has been eligible since 1.1, longer than the delay: it takes over.
        actions = m.register(spec(priority=10, preempt=True, preempt_delay=1.0), 2.5)
        self.assertEqual(len(of(StopService, actions)), 1)
        actions = m.service_stopped("A", 3.2)
        self.assertIn(Send("beta", Handover("A", 7)), actions)

    def test_unregister_hands_over_then_forgets(self):
        m = self.manager(spec(), spec("B"))
        self.grant(m)
        beta = MemberState("beta", registrations={"A": 50})
        m.members_changed([beta], 1.1)
        actions = m.unregister("A", 2.0)
        (stop,) = of(StopService, actions)
        self.assertIsNone(stop.deadline)  # graceful, like standby
        self.assertEqual(of(PublishState, actions)[-1].state.registrations, {"B": 100})
        from clsd.ownership.core.actions import ForgetCluster
        self.assertEqual(of(ForgetCluster, actions), [])  # not while it may run
        self.assertFalse(m.registered("A"))
        self.assertRaises(ManagerError, m.register, spec(), 2.05)  # still stopping
        self.assertRaises(ManagerError, m.pause, "A", 2.05)
        self.assertNotIn(("release", "A"), self.arbiter.calls)
        actions = m.service_stopped("A", 2.3)
        kinds = [type(a) for a in actions]
        self.assertIn(Send("beta", Handover("A", 7)), actions)
        self.assertIn(("release", "A"), self.arbiter.calls)
        self.assertEqual(of(ForgetCluster, actions), [ForgetCluster("A")])
        self.assertLess(kinds.index(Send), kinds.index(ForgetCluster))
        self.assertNotIn("A", m.clusters)
        self.assertNotIn("A", m.status(2.3))
        # Registered again: a candidate once more (acquires as the only one left... or polls).
        self.arbiter.calls.clear()
        actions = m.register(spec(), 2.4)
        self.assertEqual(of(PublishState, actions)[-1].state.registrations,
                         {"A": 100, "B": 100})

    def test_unregister_while_acquiring_abandons_and_forgets_at_once(self):
        m = self.manager(spec())
        from clsd.ownership.core.actions import ForgetCluster
        actions = m.unregister("A", 1.0)
        self.assertIn(("abandon", "A"), self.arbiter.calls)
        self.assertEqual(of(ForgetCluster, actions), [ForgetCluster("A")])
        # A grant that raced the abandon is given straight back.
        self.arbiter.calls.clear()
        self.grant(m, now=1.1)
        self.assertIn(("release", "A"), self.arbiter.calls)

    def test_unregister_of_a_paused_cluster_still_stops_it(self):
        m = self.manager(spec())
        self.grant(m)
        m.pause("A", 1.5)
        actions = m.unregister("A", 2.0)
        self.assertEqual(len(of(StopService, actions)), 1)

    def test_unknown_cluster(self):
        m = self.manager()
        self.assertRaises(ManagerError, m.unregister, "Z", 1.0)
