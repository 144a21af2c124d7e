"""The status wording, pure: a cluster's state as the cluster is, and this node's role in it."""

import attrs
from twisted.trial import unittest

from clsd.admin import commands
from clsd.admin.backend import ClusterInfo
from clsd.admin.ownership_status import (
    cluster_view, duration_text, placement_view, role_text, summary_text,
)
from clsd.ownership.core.placement import MemberState


def member(name, priority=None, cluster="A", *, holding=None, standby=False, failed=()):
    registrations = {} if priority is None else {cluster: priority}
    return MemberState(name, registrations=registrations, standby=standby,
                       failed=frozenset(failed), holding=holding or {})


class ClusterConditionTests(unittest.TestCase):
    """Every condition a cluster can be in, in words."""

    def test_running_on_its_owner(self):
        view = cluster_view(node="alpha", owners=["beta"], targets=["beta"], standbys=["alpha"])
        self.assertEqual((view.condition, view.summary), ("running", "running on beta"))
        self.assertIsNone(view.moving)

    def test_n_active_running_short_of_its_count(self):
        view = cluster_view(node="alpha", owners=["beta", "alpha"], targets=["alpha", "beta", None],
                            standbys=[], count=3)
        self.assertEqual(view.summary, "running on alpha, beta (2 of 3)")

    def test_failover_in_progress_names_both_nodes(self):
        """The owner died: its lease has not lapsed, the successor is about to take it."""
        view = cluster_view(node="alpha", owners=[], targets=["alpha"], standbys=["alpha"],
                            previous=["beta"], here=["acquiring"])
        self.assertEqual((view.condition, view.summary, view.moving),
                         ("moving", "moving beta -> alpha", ("beta", "alpha")))
        self.assertEqual((view.role, view.role_text), ("taking-over", "taking over"))

    def test_two_owners_of_one_slot_is_the_newer_taking_over(self):
        """The old owner's published claim outlives it briefly; the new one holds the lease."""
        view = cluster_view(node="beta", owners=["alpha", "beta"], targets=["beta"],
                            standbys=[], epochs={"alpha": 7, "beta": 8})
        self.assertEqual((view.summary, view.role_text), ("moving alpha -> beta", "owner"))

    def test_a_move_handed_to_this_node(self):
        """The old holder released it to beta; placement from published states still says
        alpha (it is registered higher), but beta is the one acquiring."""
        view = cluster_view(node="beta", owners=[], targets=["alpha"], standbys=["alpha", "beta"],
                            previous=["alpha"], here=["acquiring"])
        self.assertEqual((view.summary, view.role_text), ("moving alpha -> beta", "taking over"))

    def test_a_successor_polling_a_live_owners_lease_is_a_standby(self):
        view = cluster_view(node="beta", owners=["alpha"], targets=["alpha"], standbys=["beta"],
                            here=["acquiring"])
        self.assertEqual((view.summary, view.role_text), ("running on alpha", "standby #1"))

    def test_owner_no_longer_placed_is_moving(self):
        view = cluster_view(node="gamma", owners=["beta"], targets=["alpha"],
                            standbys=["alpha", "gamma"])
        self.assertEqual(view.summary, "moving beta -> alpha")
        self.assertEqual(view.role_text, "standby #2")

    def test_handing_over_on_this_node(self):
        view = cluster_view(node="beta", owners=["beta"], targets=["beta"], standbys=["alpha"],
                            here=["stopping"])
        self.assertEqual(view.summary, "moving beta -> alpha")
        self.assertEqual(view.role_text, "stopping (handing over)")

    def test_starting_where_nobody_held_it(self):
        view = cluster_view(node="alpha", owners=[], targets=["alpha"], standbys=["alpha", "beta"],
                            here=["fencing"])
        self.assertEqual(view.summary, "starting on alpha")
        self.assertEqual(view.role_text, "taking over")

    def test_unowned_when_nobody_is_eligible(self):
        view = cluster_view(node="alpha", owners=[], targets=[None], standbys=[],
                            previous=["beta"], cooldown_left=240)
        self.assertEqual((view.condition, view.summary), ("unowned", "unowned"))
        self.assertEqual(view.role_text, "ineligible: cooldown 4m")

    def test_failed(self):
        view = cluster_view(node="alpha", owners=[], targets=[None], standbys=[], failed=True,
                            cooldown_left=10)
        self.assertEqual(view.summary, "failed")
        self.assertEqual(view.role_text, "ineligible: cooldown 10s")

    def test_paused_wins_over_everything_else(self):
        view = cluster_view(node="alpha", owners=["alpha"], targets=["beta"], standbys=["beta"],
                            paused=True)
        self.assertEqual((view.summary, view.role_text), ("paused", "owner"))

    def test_stuck_here(self):
        view = cluster_view(node="alpha", owners=["alpha"], targets=["alpha"], standbys=[],
                            here=["stuck"])
        self.assertEqual(view.summary, "stuck on alpha")

    def test_waiting_for_a_dependency(self):
        view = cluster_view(node="alpha", owners=[], targets=["alpha"], standbys=["alpha"],
                            waiting="after B")
        self.assertEqual((view.condition, view.summary), ("waiting", "waiting: after B"))

    def test_settings_mismatch_with_no_owner(self):
        view = cluster_view(node="alpha", owners=[], targets=["alpha"], standbys=["alpha"],
                            mismatch=["beta"])
        self.assertEqual(view.summary, "shape-mismatch")
        self.assertEqual(view.role_text, "ineligible: settings differ from beta")


class RoleTests(unittest.TestCase):
    """This node's role, in a column of its own."""

    def test_owner(self):
        view = cluster_view(node="alpha", owners=["alpha"], targets=["alpha"], standbys=["beta"])
        self.assertEqual((view.role, view.role_text, view.standby_rank), ("owner", "owner", None))

    def test_standby_rank_is_its_place_in_line(self):
        view = cluster_view(node="gamma", owners=["alpha"], targets=["alpha"],
                            standbys=["beta", "gamma"])
        self.assertEqual((view.role, view.standby_rank, view.role_text),
                         ("standby", 2, "standby #2"))

    def test_on_standby(self):
        view = cluster_view(node="alpha", owners=["beta"], targets=["beta"], standbys=[],
                            standby_mode=True)
        self.assertEqual(view.role_text, "ineligible: on standby")

    def test_not_registered(self):
        view = cluster_view(node="witness", owners=["beta"], targets=["beta"],
                            standbys=["alpha"], registered=False)
        self.assertEqual((view.summary, view.role_text), ("running on beta", "not registered"))

    def test_unregistering(self):
        view = cluster_view(node="alpha", owners=["beta"], targets=["beta"], standbys=[],
                            withdrawing=True)
        self.assertEqual(view.role_text, "unregistering")

    def test_stalled_node_is_not_placed(self):
        view = cluster_view(node="alpha", owners=["beta"], targets=["beta"], standbys=[])
        self.assertEqual(view.role_text, "ineligible: not placed")


class TextTests(unittest.TestCase):

    def test_durations_round_up(self):
        self.assertEqual([duration_text(s) for s in (0.2, 45, 89.5, 91, 239.1, 7200, 7500)],
                         ["1s", "45s", "90s", "2m", "4m", "2h", "2h5m"])

    def test_summary_without_a_known_side(self):
        self.assertEqual(summary_text("moving", [], (None, "alpha")), "moving ? -> alpha")

    def test_role_text_of_plain_roles(self):
        self.assertEqual(role_text("ineligible"), "ineligible")
        self.assertEqual(role_text("not-registered"), "not registered")


class PlacementViewTests(unittest.TestCase):
    """Targets and standbys from the members' published states, as placement decides."""

    def test_standbys_in_priority_order_without_the_owner(self):
        members = [member("alpha", 100, holding={"A": 3}), member("beta", 50),
                   member("gamma", 80), member("witness")]
        targets, standbys = placement_view("A", members, {"alpha": 3})
        self.assertEqual((targets, standbys), (("alpha",), ("gamma", "beta")))

    def test_owner_keeps_its_slot_over_a_better_node(self):
        members = [member("alpha", 100), member("beta", 50, holding={"A": 3})]
        targets, standbys = placement_view("A", members, {"beta": 3})
        self.assertEqual((targets, standbys), (("beta",), ("alpha",)))

    def test_ineligible_and_skipped_nodes_are_left_out(self):
        members = [member("alpha", 100, failed=["A"]), member("beta", 50, standby=True),
                   member("gamma", 10), member("delta", 90)]
        targets, standbys = placement_view("A", members, {}, skipped={"delta"})
        self.assertEqual((targets, standbys), (("gamma",), ("gamma",)))


    def test_a_node_holding_a_cluster_not_with_this_one_comes_last(self):
        web = attrs.evolve(member("alpha", 100, holding={"WEB": 2}),
                           registrations={"A": 100, "WEB": 1}, avoids={"WEB": ("A",)})
        members = [web, member("beta", 50)]
        self.assertEqual(placement_view("A", members, {}), (("beta",), ("beta", "alpha")))


class TableTests(unittest.TestCase):
    """The clusters table: the cluster's state, then this node's role in its own column."""

    def test_columns(self):
        view = cluster_view(node="alpha", owners=["beta"], targets=["beta"], standbys=["alpha"])
        info = ClusterInfo("B", ["beta"], 6, "standing-by").with_view(view)
        lines = commands.clusters_table([info]).splitlines()
        self.assertEqual(lines[0].split("  ")[0:1], ["CLUSTER"])
        self.assertEqual([c.strip() for c in lines[0].split("  ") if c.strip()],
                         ["CLUSTER", "STATE", "OWNERS", "EPOCH", "THIS NODE"])
        self.assertEqual(lines[1].split(), ["B", "running", "on", "beta", "beta", "6",
                                            "standby", "#1"])

    def test_json_keeps_the_old_fields_and_adds_the_new(self):
        view = cluster_view(node="alpha", owners=[], targets=["alpha"], standbys=["alpha"],
                            previous=["beta"], here=["acquiring"])
        info = ClusterInfo("A", [], 0, "acquiring").with_view(view)
        [data] = commands._list_data("clusters")([info])["clusters"]
        self.assertEqual((data["id"], data["owners"], data["epoch"], data["state"],
                          data["addresses"]), ("A", (), 0, "acquiring", ()))
        self.assertEqual((data["condition"], data["summary"], data["moving"], data["role"],
                          data["role_text"], data["standbys"]),
                         ("moving", "moving beta -> alpha", ("beta", "alpha"), "taking-over",
                          "taking over", ("alpha",)))

    def test_a_record_without_wording_shows_its_state(self):
        lines = commands.clusters_table([ClusterInfo("A", ["alpha"], 3, "running")]).splitlines()
        self.assertEqual(lines[1].split(), ["A", "running", "alpha", "3", "-"])
