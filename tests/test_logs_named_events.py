"""The stable event names of doc/logging.md, emitted by the parts that see them.

Each area runs its real part (on a Clock where it has timers) with a
capturing log observer and checks the event name and its documented fields;
one test checks that every name of the catalogue is emitted somewhere in
clsd/ (as a literal), so the doc, clsd.logs.EVENTS and the code stay in step.
"""

import io
import json
import os
import re
import signal

from twisted.logger import globalLogPublisher
from twisted.trial import unittest

import clsd
from clsd.admin.ownership_status import ownership_status
from clsd.config.membership import MembershipConfig
from clsd.events import EventLog
from clsd.logs import EVENTS, json_observer
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import Gossip, MemberUpdate
from clsd.membership.core.messages import Report as MembershipReport
from tests.support.membership_signing import signed_update
from clsd.membership.core.notary import FakeNotary
from clsd.named_events import named_events
from clsd.ownership.core.actions import Report
from clsd.ownership.core.cause import Departures, move_cause
from tests.membership import test_service as membership_fixture
from tests.membership.test_service import deliver
from tests.ownership.test_hooks import FakeHooks
from tests.ownership.test_service import ThreeNodeCluster, pump
from tests.supervision.test_runner import RunnerTestCase


class Captured:
    """Every log event with an ``event`` name, also written through the JSON observer."""

    def __init__(self, test):
        self.events = []
        self.json = io.StringIO()
        write_json = json_observer(self.json)

        def observe(event):
            if "event" in event:
                self.events.append(event)
                write_json(event)

        globalLogPublisher.addObserver(observe)
        test.addCleanup(globalLogPublisher.removeObserver, observe)

    def named(self, name):
        return [e for e in self.events if e["event"] == name]

    def one(self, test, name):
        found = self.named(name)
        test.assertTrue(found, f"no {name} event; saw {[e['event'] for e in self.events]}")
        return found[-1]

    def json_lines(self):
        return [json.loads(line) for line in self.json.getvalue().splitlines()]


class ServiceEventTests(RunnerTestCase):
    def setUp(self):
        self.log = Captured(self)

    def test_start_exit_backoff_restart_stop(self):
        runner = self.make_runner()
        runner.startService()
        started = self.log.one(self, "service.started")
        self.assertEqual((started["service"], started["pid"]), ("web", 501))
        self.assertIsNone(started["cluster"])
        self.os.exit(501, code=1)
        exited = self.log.one(self, "service.exited")
        self.assertEqual((exited["pid"], exited["reason"]), (501, "exited code=1"))
        restarted = self.log.one(self, "service.restarted")  # the first restart is at once
        self.assertEqual((restarted["service"], restarted["restarts"], restarted["reason"]),
                         ("web", 1, "exited code=1"))
        self.os.exit(502, code=1)
        backoff = self.log.one(self, "service.backoff")
        self.assertEqual((backoff["service"], backoff["delay"], backoff["failures"]),
                         ("web", 1.0, 2))
        self.clock.advance(1.0)
        restarted = self.log.one(self, "service.restarted")
        self.assertEqual((restarted["restarts"], restarted["reason"]), (2, "backoff elapsed"))
        runner.stop()
        stopped = self.log.one(self, "service.stopped")
        self.assertEqual(stopped["service"], "web")
        # A stop we asked for is not an unexpected exit.
        self.assertEqual(len(self.log.named("service.exited")), 2)
        names = [line["event"] for line in self.log.json_lines()]
        self.assertEqual(names, ["service.started", "service.exited", "service.restarted",
                                 "service.started", "service.exited", "service.backoff",
                                 "service.restarted", "service.started", "service.stopped"])

    def test_crash_loop_is_service_failed(self):
        from clsd.config import CrashLoop

        runner = self.make_runner(crash_loop=CrashLoop(max_failures=1, window=60.0))
        runner.startService()
        self.os.exit(501, code=3)
        failed = self.log.one(self, "service.failed")
        self.assertEqual(failed["service"], "web")
        self.assertIn("crash-loop", failed["reason"])

    def test_managed_start_carries_cluster_and_epoch(self):
        runner = self.make_runner()
        runner.tenure = lambda: ("A", 8)
        runner.startService()
        started = self.log.one(self, "service.started")
        self.assertEqual((started["cluster"], started["epoch"]), ("A", 8))

    def test_health_rise_and_fall(self):
        from clsd.config import HealthCheck

        runner = self.make_runner(check=HealthCheck(type="tcp", target=("127.0.0.1", 1),
                                                    interval=1.0, timeout=0.5, rise=1,
                                                    fall=2, grace=0.0))
        runner.startService()
        checker = self.checkers[0]
        self.clock.advance(1.0)
        checker.answer(True, "port open")
        rise = self.log.one(self, "health.rise")
        self.assertEqual((rise["service"], rise["detail"]), ("web", "port open"))
        for _ in range(2):
            self.clock.advance(1.0)
            checker.answer(False, "refused")
        fall = self.log.one(self, "health.fall")
        self.assertEqual((fall["service"], fall["detail"]), ("web", "refused"))


class MemberEventTests(unittest.TestCase):
    """The membership shell on a Clock with a fake network (its own tests' fixture)."""

    def setUp(self):
        membership_fixture.ServiceTests.setUp(self)
        self.log = Captured(self)

    def service(self, seeds=()):
        return membership_fixture.ServiceTests.service(self, seeds)

    def test_joined_left_and_dead_with_reporters(self):
        self.config = MembershipConfig(quorum=2)
        service = self.service(seeds=())
        changes = []
        service.add_change_listener(changes.append)
        beta = Member("beta", "127.0.0.12:7400", 7, 0, State.ALIVE)
        deliver(self.router, "beta", Gossip((signed_update(beta),)))
        joined = self.log.one(self, "member.joined")
        self.assertEqual((joined["node"], joined["address"], joined["generation"]),
                         ("beta", "127.0.0.12:7400", 7))
        gamma = Member("gamma", "127.0.0.13:7400", 9, 2, State.ALIVE)
        delta = Member("delta", "127.0.0.14:7400", 3, 0, State.ALIVE)
        deliver(self.router, "beta", Gossip((signed_update(gamma), signed_update(delta))))
        # Two of gamma's observers (H = 2) report it: dead, by the rule.
        deliver(self.router, "beta", Gossip(tuple(
            MembershipReport("gamma", 9, 2, name).signed(FakeNotary(name)) for name in ("beta", "delta"))))
        dead = self.log.one(self, "member.dead")
        self.assertEqual((dead["node"], dead["reporters"]), ("gamma", ["beta", "delta"]))
        left = MemberUpdate(beta.evolve(state=State.LEFT)).signed(FakeNotary("beta"))
        deliver(self.router, "beta", Gossip((left,)))
        self.assertEqual(self.log.one(self, "member.left")["node"], "beta")
        # The change listener (ownership's departures) gets the records, reporters included.
        self.assertEqual([(r["subject"], r["fields"]["state"]) for r in changes],
                         [("beta", "alive"), ("gamma", "alive"), ("delta", "alive"),
                          ("gamma", "suspect"), ("gamma", "dead"), ("beta", "left")])
        self.assertEqual(changes[4]["fields"]["reporters"], ["beta", "delta"])


class MappingTests(unittest.TestCase):
    """Records whose part is awkward to drive here: the mapping itself."""

    def record(self, kind, subject, reason, **fields):
        return {"kind": kind, "subject": subject, "reason": reason, "fields": fields}

    def test_members(self):
        cases = [
            (dict(state="suspect", previous="alive", incarnation=3, reporters=["c"]),
             "member.suspect", {"node": "b", "incarnation": 3, "reporters": ["c"]}),
            (dict(state="alive", previous="suspect", incarnation=4),
             "member.alive", {"node": "b", "incarnation": 4}),
            (dict(state="removed", previous="dead"), "member.reaped", {"node": "b"}),
        ]
        for fields, name, expected in cases:
            [(got, got_fields)] = named_events(self.record("member", "b", "x", **fields))
            self.assertEqual((got, got_fields), (name, expected))

    def test_hooks(self):
        ok = self.record("hook", "A", "fence ok", event="fence", epoch=8, attempt=1, ok=True)
        self.assertEqual(named_events(ok),
                         [("hook.ran", {"cluster": "A", "hook": "fence", "epoch": 8,
                                        "attempt": 1})])
        bad = self.record("hook", "A", "fence ...", event="fence", epoch=8, attempt=3,
                          ok=False, detail="exited code=1")
        [(name, fields)] = named_events(bad)
        self.assertEqual((name, fields["reason"]), ("hook.failed", "exited code=1"))

    def test_floating_addresses(self):
        added = self.record("address", "A", "added 192.0.2.10/24 to eth0 (epoch 7)",
                            what="added", address="192.0.2.10/24", interface="eth0", epoch=7)
        self.assertEqual(named_events(added), [("address.added", {
            "cluster": "A", "address": "192.0.2.10/24", "interface": "eth0", "epoch": 7})])
        failed = self.record("address", "A", "not up: x", what="up-failed")
        self.assertEqual(named_events(failed), [])

    def test_rogue_and_adopted_copies(self):
        rogue = self.record("rogue", "db", "running on this node without the lease",
                            stopped=False)
        self.assertEqual(named_events(rogue), [("service.rogue", {
            "service": "db", "stopped": False,
            "reason": "running on this node without the lease"})])
        [(name, _)] = named_events(self.record("adopted", "db", "already running"))
        self.assertEqual(name, "service.adopted")

    def test_unnamed_records_stay_unnamed(self):
        self.assertEqual(named_events(self.record("orphan", "web", "reaped")), [])
        self.assertEqual(named_events(self.record("daemon", "n", "reloading: x")), [])


class HookEventTests(unittest.TestCase):
    def test_hook_runner_results_are_named(self):
        from twisted.internet.task import Clock

        from clsd.ownership.core.actions import RunHook
        from clsd.ownership.hooks import HookRunner

        log = Captured(self)
        clock = Clock()
        events = EventLog(monotonic=clock.seconds)
        hooks = FakeHooks()
        runner = HookRunner(clock, events=events, monotonic=clock.seconds, spawn=hooks.spawn,
                            signal_group=lambda pgid, signum: None, max_attempts=1)
        runner.run(RunHook("A", "fence", ("fence-{node}",), "beta", 8), None)
        hooks.finish(code=1)
        failed = log.one(self, "hook.failed")
        self.assertEqual((failed["cluster"], failed["hook"], failed["epoch"]), ("A", "fence", 8))
        self.assertEqual(failed["reason"], "exited code=1")
        runner.run(RunHook("A", "acquire", ("notify-{node}",), "beta", 9), None)
        clock.advance(0)
        hooks.finish(code=0)
        ran = log.one(self, "hook.ran")
        self.assertEqual((ran["cluster"], ran["hook"], ran["epoch"]), ("A", "acquire", 9))


class OwnershipEventTests(ThreeNodeCluster, unittest.TestCase):
    """Three ownership shells on a Clock and an in-memory network: lease and cluster events."""

    def test_acquired_renewed_moved_with_cause(self):
        log = Captured(self)
        self.build()
        pump(self.clock, 3.0)  # a few renewals
        acquired = [e for e in log.named("lease.acquired") if e["subject"] == "A"]
        self.assertTrue(acquired)
        self.assertEqual((acquired[0]["resource"], acquired[0]["previous"]), ("A", None))
        renewed = log.one(self, "lease.renewed")
        self.assertEqual(renewed["resource"], "A")
        self.assertGreaterEqual(renewed["round_trip"], 0.0)
        # Sparingly: several renewals happened, one line per tenure so far.
        self.assertEqual(len(log.named("lease.renewed")), 1)
        alpha, beta = self.nodes["alpha"], self.nodes["beta"]
        epoch = ownership_status(alpha.service)["clusters"][0]["epoch"]
        # Membership (here: a record as the membership shell makes it) declared alpha dead.
        dead = beta.events.record("member", "alpha", "reported unreachable by beta, gamma "
                                  "(2 of 2 observers)", state="dead", previous="suspect",
                                  reporters=["beta", "gamma"])
        beta.service.member_event(dead)
        pid = alpha.runner().pid
        self.net.isolate("alpha")
        pump(self.clock, 6.0)
        if alpha.runner().process_alive:
            alpha.os.exit(pid, signum=signal.SIGKILL)
        moved = log.one(self, "cluster.moved")
        self.assertEqual((moved["cluster"], moved["from"], moved["to"]), ("A", "alpha", "beta"))
        self.assertGreater(moved["epoch"], epoch)
        self.assertTrue(moved["cause"][0].startswith(
            f"previous owner alpha declared dead at {dead['ts']}: reported unreachable"),
            moved["cause"])
        self.assertIn("beta, gamma", moved["cause"][0])
        self.assertIn(f"lease epoch {epoch} of alpha expired unrenewed", moved["cause"])
        self.assertEqual(moved["cause"][-1], f"acquired epoch {moved['epoch']}")
        lost = [e for e in log.named("lease.lost") if e["subject"] == "A"]
        self.assertEqual([e["epoch"] for e in lost], [epoch])
        # The history record of the move carries the cause chain for `history`.
        [record] = [r for r in beta.events.recent() if r["kind"] == "cluster"]
        self.assertEqual(record["fields"]["cause"], moved["cause"])

    def test_move_is_released_then_moved_planned(self):
        log = Captured(self)
        self.build()
        self.nodes["gamma"].service.move("A", "beta")
        pump(self.clock, 3.0)
        released = log.one(self, "lease.released")
        self.assertEqual((released["resource"], released["reason"]), ("A", "handover"))
        moved = log.one(self, "cluster.moved")
        self.assertEqual((moved["from"], moved["to"]), ("alpha", "beta"))
        self.assertIn("alpha stopped the service and handed", moved["cause"][0])


class CauseTests(unittest.TestCase):
    def report(self, **kw):
        values = dict(what="moved", cluster="A", resource="A", epoch=8, previous="beta",
                      previous_epoch=7)
        values.update(kw)
        return Report(**values)

    def test_death_expiry_fence_epoch(self):
        departures = Departures()
        departures.member_changed({"subject": "beta", "ts": "2026-01-02T03:12:04.512Z",
                                   "reason": "reported unreachable by c, d (2 of 3 observers)",
                                   "fields": {"state": "dead", "reporters": ["c", "d"]}})
        lines = move_cause(self.report(fenced=True), departures.of("beta"))
        self.assertEqual(lines, [
            "previous owner beta declared dead at 2026-01-02T03:12:04.512Z: reported "
            "unreachable by c, d (2 of 3 observers)",
            "lease epoch 7 of beta expired unrenewed",
            "fence hook against beta ran ok",
            "acquired epoch 8",
        ])

    def test_reporters_named_when_the_reason_does_not(self):
        departures = Departures()
        departures.member_changed({"subject": "beta", "ts": "T", "reason": "dead",
                                   "fields": {"state": "dead", "reporters": ["c"]}})
        self.assertIn("(reporters: c)", move_cause(self.report(), departures.of("beta"))[0])

    def test_back_alive_forgets_the_death(self):
        departures = Departures()
        departures.member_changed({"subject": "beta", "ts": "T", "reason": "x",
                                   "fields": {"state": "dead"}})
        departures.member_changed({"subject": "beta", "ts": "T2", "reason": "restarted",
                                   "fields": {"state": "alive"}})
        self.assertIsNone(departures.of("beta"))
        self.assertEqual(move_cause(self.report(), departures.of("beta"))[0],
                         "lease epoch 7 of beta expired unrenewed")

    def test_released_and_handed_over(self):
        self.assertEqual(move_cause(self.report(previous_released=True))[0],
                         "beta released lease epoch 7 (it stopped the service)")
        self.assertIn("handed lease epoch 7 over",
                      move_cause(self.report(handed_over=True, previous_released=True))[0])


class CatalogueTests(unittest.TestCase):
    def test_every_catalogued_name_is_emitted_in_the_source(self):
        """Each name of clsd.logs.EVENTS appears as a literal in a clsd/ module that logs it.

        Names built from a record (``f"health.{change}"``, ``f"daemon.{phase}"``) are
        listed by clsd.named_events with their prefix; the rest must appear whole.
        """
        root = os.path.dirname(clsd.__file__)
        source = ""
        for directory, _, files in os.walk(root):
            for name in files:
                if name.endswith(".py") and name != "logs.py":  # logs.py is the catalogue
                    with open(os.path.join(directory, name)) as f:
                        source += f.read()
        built = {"health.": ("rise", "fall"), "daemon.": ("started", "stopping", "stopped"),
                 "address.": ("added", "removed", "announced")}
        missing = []
        for name in EVENTS:
            prefix, _, suffix = name.partition(".")
            if f'"{name}"' in source:
                continue
            if prefix + "." in built and suffix in built[prefix + "."] and (
                    f'f"{prefix}.{{' in source and f'"{suffix}"' in source):
                continue
            missing.append(name)
        self.assertEqual(missing, [])

    def test_doc_lists_the_catalogue(self):
        doc = os.path.join(os.path.dirname(os.path.dirname(clsd.__file__)), "doc", "logging.md")
        with open(doc) as f:
            names = re.findall(r"^\| `([a-z]+\.[a-z]+)` \|", f.read(), re.M)
        self.assertEqual(sorted(names), sorted(EVENTS))


class AdminEventTests(unittest.TestCase):
    def test_login_and_command(self):
        from clsd.admin.audit import Audit, Who
        from clsd.admin.commands import Outcome

        log = Captured(self)
        audit = Audit()
        who = Who("ssh", "admin", "admin", "SHA256:abc", "127.0.0.1:50022")
        audit.login(who)
        audit.command(who, "status", Outcome(0, "ok\n"))
        login = log.one(self, "admin.login")
        self.assertEqual((login["user"], login["role"], login["peer"]),
                         ("admin", "admin", "127.0.0.1:50022"))
        command = log.one(self, "admin.command")
        self.assertEqual((command["user"], command["command"], command["peer"]),
                         ("admin", "status", "127.0.0.1:50022"))
