"""A node whose cluster-wide settings differ is refused at the hello and never becomes a member.

Real in-process Daemons on trial's reactor, mutual TLS on 127.0.0.x: alpha
and beta agree; "odd" has a valid certificate from the same CA but another
lease or voter list.  Its hello is refused with a log line naming the
reason, the refusal is counted in the peer stats, and no node lists it.
"""

from twisted.internet import defer, reactor, task
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from tests.support.cluster_rig import ClusterRig, poll
from clsd.admin.ownership_status import ownership_status

GOOD = {"voters": ["alpha", "beta"], "lease": 4.0}
#: How long odd keeps trying (it redials) while we check it stays out.
OBSERVE = 3.0


class SettingsMismatchTests(unittest.TestCase):
    timeout = 90

    def setUp(self):
        self.lines = []

        def observer(event):
            text = formatEvent(event)
            if text:
                self.lines.append(text)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def _stop(self, daemon):
        if daemon.running:
            return daemon.stopService()

    @defer.inlineCallbacks
    def refused(self, odd_quorum):
        rig = ClusterRig(self, ["alpha", "beta", "odd"], reactor=reactor)
        daemons = {}
        for name in rig.names:
            quorum = odd_quorum if name == "odd" else GOOD
            daemons[name] = rig.daemon(name, {"quorum": quorum})
        for name in ("alpha", "beta"):
            daemons[name].startService()
            self.addCleanup(self._stop, daemons[name])
        yield poll(reactor, lambda: rig.all_see(["alpha", "beta"],
                                                {"alpha": "alive", "beta": "alive"}),
                   30, "alpha and beta to join")
        daemons["odd"].startService()
        self.addCleanup(self._stop, daemons["odd"])
        alpha = daemons["alpha"].network.stats
        yield poll(reactor, lambda: alpha.rejected.get("settings-mismatch"), 15,
                   "alpha to refuse odd's hello")
        yield task.deferLater(reactor, OBSERVE, lambda: None)
        for name in ("alpha", "beta"):
            self.assertNotIn("odd", rig.member_states(name), name)
        self.assertEqual(set(rig.member_states("odd")), {"odd"})
        self.assertEqual(daemons["odd"].network.stats.established, 0)
        refusals = [line for line in self.lines if "settings-mismatch" in line]
        self.assertTrue(refusals, "no log line names the refusal")
        self.assertTrue(any("'odd'" in line and "cluster-wide settings" in line
                            for line in refusals), refusals)
        # The well-configured pair is unaffected.
        self.assertTrue(rig.all_see(["alpha", "beta"], {"alpha": "alive", "beta": "alive"}))
        return refusals

    @defer.inlineCallbacks
    def test_other_lease_is_refused(self):
        refusals = yield self.refused({"voters": GOOD["voters"], "lease": 5.0})
        # The line names the one setting that differs, as the configuration spells it.
        self.assertTrue(any("cluster-wide settings than this node: quorum.lease;" in line
                            for line in refusals), refusals)

    @defer.inlineCallbacks
    def test_other_voters_join_and_are_named_apart(self):
        """Voters are not in the hello: a node with another voter set (more than one
        step of a change away) joins, and every node names it and acquires nothing
        (doc/operations.md, "Changing the voters")."""
        rig = ClusterRig(self, ["alpha", "beta", "odd"], reactor=reactor)
        daemons = {}
        for name in rig.names:
            quorum = ({"voters": ["alpha", "beta", "odd"], "lease": GOOD["lease"]}
                      if name == "odd" else GOOD)
            daemons[name] = rig.daemon(name, {"quorum": quorum})
            daemons[name].startService()
            self.addCleanup(self._stop, daemons[name])
        everyone = dict.fromkeys(rig.names, "alive")
        yield poll(reactor, lambda: rig.all_see(rig.names, everyone), 30, "all three to join")
        yield poll(reactor, lambda: all(
            ownership_status(daemons[n].ownership)["quorum"]["voters_apart"] == ["odd"]
            for n in ("alpha", "beta")), 15, "alpha and beta to name odd's voters apart")
        status = ownership_status(daemons["odd"].ownership)["quorum"]
        self.assertEqual(status["voters_apart"], ["alpha", "beta"])
