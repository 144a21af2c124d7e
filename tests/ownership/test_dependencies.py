"""Clusters that depend on each other (``after``, ``with``, ``not_with``): the pure rules, then
the lease simulation (real cores, a true clock, no overlap checked throughout)."""

import os

import attrs

from twisted.trial import unittest

from clsd.ownership.core.dependencies import (
    after_wait, followed_gone, local_wait, placeable, running_dependents,
)
from clsd.ownership.core.placement import MemberState
from rig.sim.leases import LeaseSim
from tests.ownership.scenarios import DETECTION, TIMING, cluster


def member(name, holding=(), running=(), registrations=None, follows=None, standby=False):
    return MemberState(name, registrations=registrations or {}, standby=standby,
                       holding={r: 1 for r in holding}, running=frozenset(running),
                       follows=follows or {})


class RuleTests(unittest.TestCase):
    def test_after_waits_for_an_owner_that_reports_running(self):
        self.assertEqual(after_wait(["DB"], [member("a", registrations={"DB": 1})]),
                         "after DB (no owner)")
        self.assertEqual(after_wait(["DBB"], [member("a", registrations={"DB": 1})]),
                         "after DBB (no live node has a cluster DBB)")
        self.assertEqual(after_wait(["DB"], [member("a", holding=["DB"])]),
                         "after DB (a: not running yet)")
        self.assertIsNone(after_wait(["DB"], [member("a", holding=["DB"], running=["DB"])]))
        self.assertIsNone(after_wait(["N"], [member("a", holding=["N/1"], running=["N"])]),
                          "a slot of an n-active cluster is an owner")
        self.assertIsNone(after_wait([], [member("a")]))

    def test_a_failover_of_the_followed_cluster_keeps_the_follower_by_default(self):
        standby = member("b", registrations={"DB": 50})  # eligible: it will take DB
        self.assertIsNone(followed_gone(["DB"], "keep", [member("a"), standby]))
        self.assertEqual(followed_gone(["DB"], "keep", [member("a")]),
                         "DB stops (no live node may run it)")
        self.assertIn("after_failover", followed_gone(["DB"], "stop", [member("a"), standby]))
        running = member("c", holding=["DB"], running=["DB"], registrations={"DB": 1})
        self.assertIsNone(followed_gone(["DB"], "stop", [running]))

    def test_a_holder_leaving_with_no_successor_is_a_stop_for_good(self):
        leaving = member("a", holding=["DB"], running=["DB"], registrations={"DB": 1},
                         standby=True)
        self.assertEqual(followed_gone(["DB"], "keep", [leaving]),
                         "DB stops (no live node may run it)")
        successor = member("b", registrations={"DB": 1})
        self.assertIsNone(followed_gone(["DB"], "keep", [leaving, successor]))

    def test_running_dependents_of_a_cluster(self):
        members = [member("a", running=["WEB"], follows={"WEB": ("DB",)}),
                   member("b", follows={"WEB": ("DB",)}),
                   member("c", running=["X"], follows={"X": ("Y",)})]
        self.assertEqual(running_dependents("DB", members), ["a"])
        self.assertEqual(running_dependents("Q", members), [])

    def test_placement_with_and_not_with(self):
        anchors = {"DB": ("a",)}
        self.assertTrue(placeable(member("a"), ["DB"], [], anchors))
        self.assertFalse(placeable(member("b"), ["DB"], [], anchors))
        self.assertFalse(placeable(member("a", holding=["BATCH"]), [], ["BATCH"], {}))
        self.assertTrue(placeable(member("a", holding=["OTHER"]), [], ["BATCH"], {}))
        # Nor on a node placement chooses for BATCH (it is coming there).
        self.assertFalse(placeable(member("a"), [], ["BATCH"], {}, {"BATCH": ("a",)}))
        self.assertTrue(placeable(member("b"), [], ["BATCH"], {}, {"BATCH": ("a",)}))

    def test_local_wait(self):
        self.assertEqual(local_wait("B", ["DB"], [], member("a", holding=["DB"])),
                         "with DB (not running here)")
        self.assertIsNone(local_wait("B", ["DB"], [],
                                     member("a", holding=["DB"], running=["DB"])))
        self.assertEqual(local_wait("WEB", [], ["BATCH"], member("a", holding=["BATCH/0"])),
                         "not with BATCH (held here)")
        declaring = member("a", holding=["WEB"], registrations={"WEB": 1, "BATCH": 1})
        declaring = attrs.evolve(declaring, avoids={"WEB": ("BATCH",)})
        self.assertEqual(local_wait("BATCH", [], [], declaring),
                         "WEB leaves first (WEB is not_with BATCH)")
        self.assertIsNone(local_wait("OTHER", [], [], declaring))
        self.assertIsNone(local_wait("BATCH", [], [], attrs.evolve(declaring, holding={})))


def sim_of(nodes, **kw):
    voters = kw.pop("voters", [n for n in nodes])
    return LeaseSim(nodes, voters, TIMING, detection=DETECTION, **kw)


def first_start(sim, resource):
    return min(i.start for i in sim.service_log[resource])


class AfterSimTests(unittest.TestCase):
    def test_an_after_chain_cold_starts_in_order_and_says_what_it_waits_for(self):
        # WEB follows APP, which follows DB; each on another node.
        nodes = {"alpha": (cluster("DB", 100),),
                 "beta": (cluster("APP", 100, after=("DB",)),),
                 "gamma": (cluster("WEB", 100, after=("APP",)),)}
        for seed in range(4):
            sim = sim_of(nodes, seed=seed, start_time=0.3)
            waits = []
            sim.at(1.0, lambda s: waits.append(
                s.nodes["gamma"].core.manager.dependency_wait("WEB", s.local("gamma"))))
            sim.run_until(15.0)
            sim.check_safety()
            self.assertEqual(waits, ["after APP (no owner)"])
            db, app, web = (first_start(sim, c) for c in ("DB", "APP", "WEB"))
            self.assertGreaterEqual(app, db + 0.3, "APP started before DB ran")
            self.assertGreaterEqual(web, app + 0.3, "WEB started before APP ran")
            self.assertEqual([sim.running(c) for c in ("DB", "APP", "WEB")],
                             [["alpha"], ["beta"], ["gamma"]])
            # Said once when it began to wait, once when it stopped (history).
            said = [(r.what, r.reason) for _, n, r in sim.reports
                    if n == "gamma" and r.what in ("waiting", "waited")]
            # Before it sees beta, no live node has APP; then beta has it, unheld.
            self.assertEqual(said[:2], [("waiting", "after APP (no live node has a cluster APP)"),
                                        ("waiting", "after APP (no owner)")], said)
            self.assertEqual(said[-1][0], "waited")
            self.assertLessEqual(len(said), 4, said)

    def test_a_failover_of_the_followed_cluster_leaves_the_follower_running(self):
        nodes = {"alpha": (cluster("DB", 100),), "beta": (cluster("DB", 50),),
                 "gamma": (cluster("WEB", 100, after=("DB",)),)}
        sim = sim_of(nodes, seed=1)
        sim.run_until(10.0)
        [web] = sim.service_log["WEB"]
        sim.crash("alpha")
        sim.run_until(20.0)
        sim.check_safety()
        self.assertEqual(sim.running("DB"), ["beta"])
        self.assertEqual(sim.service_log["WEB"], [web], "WEB kept running")

    def test_the_option_stops_the_follower_during_the_failover(self):
        nodes = {"alpha": (cluster("DB", 100),), "beta": (cluster("DB", 50),),
                 "gamma": (cluster("WEB", 100, after=("DB",), after_failover="stop"),)}
        sim = sim_of(nodes, seed=1)
        sim.run_until(10.0)
        sim.crash("alpha")
        sim.run_until(25.0)
        sim.check_safety()
        first, second = sim.service_log["WEB"]
        db_again = max(i.start for i in sim.service_log["DB"])
        self.assertLessEqual(first.end, db_again)
        self.assertGreaterEqual(second.start, db_again)

    def test_a_followed_cluster_stopping_for_good_stops_its_follower_first(self):
        nodes = {"alpha": (cluster("DB", 100),),
                 "gamma": (cluster("WEB", 100, after=("DB",)),), "w": ()}
        sim = sim_of(nodes, seed=2)
        sim.run_until(10.0)
        self.assertEqual((sim.running("DB"), sim.running("WEB")), (["alpha"], ["gamma"]))
        sim.operator("alpha", "set_standby", True)   # nobody else may run DB
        sim.run_until(20.0)
        sim.check_safety()
        [db], [web] = sim.service_log["DB"], sim.service_log["WEB"]
        self.assertLess(web.end, db.end, "WEB must stop before DB")
        self.assertEqual((sim.running("DB"), sim.running("WEB")), ([], []))


class WithSimTests(unittest.TestCase):
    def nodes(self):
        return {"alpha": (cluster("A", 100), cluster("B", 10, with_=("A",))),
                "beta": (cluster("A", 50), cluster("B", 90, with_=("A",))),
                "w": ()}

    def test_a_colocated_cluster_runs_where_its_anchor_runs(self):
        sim = sim_of(self.nodes(), seed=3)
        sim.run_until(12.0)
        sim.check_safety()
        # B prefers beta (90), but runs with A, which alpha holds.
        self.assertEqual((sim.running("A"), sim.running("B")), (["alpha"], ["alpha"]))
        self.assertGreaterEqual(first_start(sim, "B"), first_start(sim, "A"))

    def test_a_move_of_the_anchor_moves_it_in_dependency_order(self):
        sim = sim_of(self.nodes(), seed=3)
        sim.run_until(12.0)
        sim.operator("alpha", "move", "A", "beta")
        sim.run_until(25.0)
        sim.check_safety()
        self.assertEqual((sim.running("A"), sim.running("B")), (["beta"], ["beta"]))
        a_old, a_new = sorted(sim.service_log["A"], key=lambda i: i.start)
        b_old, b_new = sorted(sim.service_log["B"], key=lambda i: i.start)
        self.assertLessEqual(b_old.end, a_old.end, "B stops before A on alpha")
        self.assertLessEqual(a_new.start, b_new.start, "A starts before B on beta")
        self.assertLessEqual(a_old.end, a_new.start)
        self.assertLessEqual(b_old.end, b_new.start)


class NotWithSimTests(unittest.TestCase):
    def test_not_with_keeps_two_clusters_apart_when_a_node_fails(self):
        # WEB prefers n1, then n2, then n3; BATCH runs on n2.
        nodes = {"n1": (cluster("WEB", 100, not_with=("BATCH",)),),
                 "n2": (cluster("WEB", 50, not_with=("BATCH",)), cluster("BATCH", 100)),
                 "n3": (cluster("WEB", 30, not_with=("BATCH",)),)}
        for seed in range(3):
            sim = sim_of(nodes, seed=seed)
            sim.run_until(10.0)
            self.assertEqual((sim.running("WEB"), sim.running("BATCH")), (["n1"], ["n2"]))
            sim.crash("n1")
            sim.run_until(25.0)
            sim.check_safety()
            self.assertEqual(sim.running("WEB"), ["n3"])
            self.assertNotIn("n2", {i.node for i in sim.service_log["WEB"]})


def side_by_side(sim, one, other):
    """The moments C{one} and C{other} ran on the same node: C{(node, start, end)} each."""
    found = []
    for a in sim.service_log.get(one, ()):
        for b in sim.service_log.get(other, ()):
            start, end = max(a.start, b.start), min(a.end, b.end, sim.now)
            if a.node == b.node and start < end:
                found.append((a.node, start, end))
    return found


class NotWithBothWaysTests(unittest.TestCase):
    """``not_with`` holds both ways: the cluster it names, failing over onto the node, waits
    there until the declaring cluster has moved away (it does not run beside it meanwhile)."""

    def nodes(self, web_elsewhere=True):
        web = cluster("WEB", 100, not_with=("BATCH",))
        return {"n1": (web, cluster("BATCH", 50)),
                "n2": (cluster("BATCH", 100),),
                "n3": (cluster("WEB", 30, not_with=("BATCH",)),) if web_elsewhere else ()}

    def test_the_named_cluster_waits_until_the_declaring_one_has_left(self):
        for seed in range(3):
            sim = sim_of(self.nodes(), seed=seed)
            sim.run_until(10.0)
            self.assertEqual((sim.running("WEB"), sim.running("BATCH")), (["n1"], ["n2"]))
            sim.crash("n2")  # BATCH's only other node is n1, where WEB runs
            sim.run_until(25.0)
            sim.check_safety()
            self.assertEqual((sim.running("WEB"), sim.running("BATCH")), (["n3"], ["n1"]),
                             f"seed {seed}")
            self.assertEqual(side_by_side(sim, "WEB", "BATCH"), [], f"seed {seed}")

    def test_with_nowhere_else_to_go_the_declaring_cluster_stops(self):
        sim = sim_of(self.nodes(web_elsewhere=False), seed=1)
        sim.run_until(10.0)
        sim.crash("n2")
        sim.run_until(25.0)
        sim.check_safety()
        self.assertEqual((sim.running("WEB"), sim.running("BATCH")), ([], ["n1"]))
        self.assertEqual(side_by_side(sim, "WEB", "BATCH"), [])
        self.assertEqual(sim.nodes["n1"].core.manager.dependency_wait("WEB", sim.local("n1")),
                         "not with BATCH (held here)")

    def test_the_named_cluster_prefers_a_node_without_the_declaring_one(self):
        # BATCH prefers n1 (50 > 10), where WEB runs: it goes to n3 instead.
        nodes = {"n1": (cluster("WEB", 100, not_with=("BATCH",)), cluster("BATCH", 50)),
                 "n3": (cluster("BATCH", 10),), "w": ()}
        sim = sim_of(nodes, seed=2)
        sim.run_until(10.0)
        sim.check_safety()
        self.assertEqual((sim.running("WEB"), sim.running("BATCH")), (["n1"], ["n3"]))


class ShapeAndStatusTests(unittest.TestCase):
    def test_dependencies_are_part_of_the_shape(self):
        from clsd.ownership.core.shape import fingerprint

        plain = fingerprint(cluster("WEB", 1), TIMING, "voters")
        self.assertEqual(plain, fingerprint(cluster("WEB", 2), TIMING, "voters"))
        variants = [cluster("WEB", 1, after=("DB",)), cluster("WEB", 1, with_=("DB",)),
                    cluster("WEB", 1, not_with=("DB",)),
                    cluster("WEB", 1, after=("DB",), after_failover="stop")]
        prints = {fingerprint(c, TIMING, "voters") for c in variants}
        self.assertEqual(len(prints | {plain}), 5)

    def test_status_says_what_a_waiting_cluster_waits_for(self):
        from twisted.internet.task import Clock

        from clsd.admin.ownership_status import ownership_status
        from tests.ownership.test_service import ShellNode, pump, service_table

        clock = Clock()
        clock.advance(1000)
        node = ShellNode(self, clock, "alpha", ["alpha"],
                         [{"id": "WEB", "service": "web", "after": ["DB"]}],
                         services=[service_table("web")]).start()
        pump(clock, 4.0)
        [web] = ownership_status(node.service)["clusters"]
        self.assertEqual((web["state"], web["waiting"]),
                         ("waiting", "after DB (no live node has a cluster DB)"))
        self.assertEqual(node.spawns, [])
        self.assertEqual(node.reasons("cluster"),
                         ["waiting: after DB (no live node has a cluster DB)"])

    def test_running_and_after_are_published_and_checked(self):
        from clsd.ownership.core.messages import WireError
        from clsd.ownership.core.published import state_from_wire, state_to_wire

        state = MemberState("a", registrations={"WEB": 1, "DB": 2}, holding={"DB": 3},
                            running=frozenset({"DB"}), follows={"WEB": ("DB",)},
                            avoids={"WEB": ("BATCH",)})
        wire = state_to_wire(state)
        self.assertEqual((wire["running"], wire["after"], wire["not_with"]),
                         (["DB"], {"WEB": ["DB"]}, {"WEB": ["BATCH"]}))
        self.assertEqual(state_from_wire("a", wire), state)
        self.assertNotIn("running", state_to_wire(MemberState("b")))
        for bad, words in (({"running": ["X"]}, "not registered for"),
                           ({"running": "DB"}, "list of cluster IDs"),
                           ({"after": {"X": ["DB"]}}, "not registered for"),
                           ({"after": {"WEB": "DB"}}, "list of at most"),
                           ({"not_with": {"X": ["B"]}}, "'not_with' names 'X'"),
                           ({"not_with": ["B"]}, "must be an object")):
            e = self.assertRaises(WireError, state_from_wire, "a", dict(wire, **bad))
            self.assertIn(words, str(e))


class ShutdownOrderTests(unittest.TestCase):
    def test_a_colocated_cluster_stops_before_its_anchor_at_shutdown(self):
        import signal

        from twisted.internet.task import Clock

        from tests.ownership.test_service import ShellNode, pump, service_table

        clock = Clock()
        clock.advance(1000)
        node = ShellNode(self, clock, "alpha", ["alpha"],
                         [{"id": "A", "service": "a"},
                          {"id": "B", "service": "b", "with": ["A"]}],
                         services=[service_table("a"), service_table("b")]).start()
        pump(clock, 5.0)
        pids = {name: node.runner(name).pid for name in ("a", "b")}
        self.assertTrue(all(pids.values()))
        node.os.obey = False       # each ends only at its SIGKILL (stop_timeout 5 s)
        d = node.service.stopService()
        pump(clock, 13.0)
        self.assertTrue(d.called)
        signals = node.os.signals
        self.assertLess(signals.index((pids["b"], signal.SIGKILL)),
                        signals.index((pids["a"], signal.SIGTERM)),
                        f"A was stopped while B, which runs with it, still ran: {signals}")


class AdminViewTests(unittest.TestCase):
    def test_the_admin_view_says_waiting_for_what_and_shows_group_members(self):
        import types

        from twisted.internet.task import Clock

        from clsd.admin.daemon_backend import DaemonBackend
        from tests.ownership.test_service import ShellNode, pump, service_table

        clock = Clock()
        clock.advance(1000)
        node = ShellNode(self, clock, "alpha", ["alpha"],
                         [{"id": "WEB", "service": "web", "after": ["DB"]},
                          {"id": "G", "services": ["g1", "g2"]}],
                         services=[service_table(n) for n in ("web", "g1", "g2")]).start()
        pump(clock, 4.0)
        daemon = types.SimpleNamespace(config=node.config, ownership=node.service)
        web, group = DaemonBackend(daemon).clusters()
        self.assertEqual((web.id, web.state, web.members),
                         ("WEB", "waiting: after DB (no live node has a cluster DB)", ()))
        self.assertEqual((group.id, group.state, group.members),
                         ("G", "running", (("g1", "running"), ("g2", "running"))))


class RandomFaultTests(unittest.TestCase):
    """Dependencies under random crashes, restarts, isolations and moves: never two copies of a
    cluster, and once the faults stop, every cluster runs again where its rules allow."""

    def nodes(self):
        def clusters(a, b, db, web):
            return (cluster("A", a), cluster("B", b, with_=("A",)), cluster("DB", db),
                    cluster("WEB", web, after=("DB",), not_with=("B",)))
        return {"n1": clusters(100, 10, 100, 10), "n2": clusters(50, 90, 50, 50),
                "n3": clusters(10, 50, 10, 100)}

    def test_random_faults(self):
        import random

        for seed in range(int(os.environ.get("CLSD_DEPENDENCY_SEEDS", "12"))):
            rng = random.Random(seed)
            sim = sim_of(self.nodes(), seed=seed)
            t = 8.0
            for _ in range(6):
                name = rng.choice(["n1", "n2", "n3"])
                fault = rng.choice(["crash", "isolate", "move", "standby"])
                if fault == "crash":
                    sim.at(t, lambda s, n=name: s.crash(n))
                    sim.at(t + rng.uniform(1, 4), lambda s, n=name: s.restart(n))
                elif fault == "isolate":
                    sim.at(t, lambda s, n=name: s.isolate(n))
                    sim.at(t + rng.uniform(1, 4), lambda s: s.heal())
                elif fault == "move":
                    target = rng.choice(["n1", "n2", "n3"])
                    sim.at(t, lambda s, n=name, to=target: s.operator(n, "move", "A", to))
                else:
                    sim.at(t, lambda s, n=name: s.operator(n, "set_standby", True))
                    sim.at(t + rng.uniform(1, 4),
                           lambda s, n=name: s.operator(n, "set_standby", False))
                t += rng.uniform(2, 6)
            sim.at(t, lambda s: s.heal())
            for name in ("n1", "n2", "n3"):
                sim.at(t, lambda s, n=name: s.restart(n))
                sim.at(t + 0.1, lambda s, n=name: s.operator(n, "set_standby", False))
            sim.run_until(t + 45.0)
            sim.check_safety()
            running = {c: sim.running(c) for c in ("A", "B", "DB", "WEB")}
            self.assertTrue(all(len(nodes) == 1 for nodes in running.values()),
                            f"seed {seed}: {running}; faults {sim.faults}")
            self.assertEqual(running["A"], running["B"], f"seed {seed}: B not with A")
            self.assertNotEqual(running["WEB"], running["B"], f"seed {seed}: WEB with B")
            self.assertEqual(side_by_side(sim, "WEB", "B"), [],
                             f"seed {seed}: WEB ran beside B; faults {sim.faults}")
