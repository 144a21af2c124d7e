"""plan_reload: what a reload would add, remove, change, and what it must refuse."""

from twisted.trial import unittest

from clsd.config import parse_config
from clsd.config.changes import plan_reload

NODE = '[node]\nname = "alpha"\ndata_dir = "/tmp/clsd-plan-test"\n'


def service(name, command="sleep 100", extra=""):
    return f'[[service]]\nname = "{name}"\ncommand = "{command}"\nshell = true\n{extra}'


def config(*parts, node=NODE):
    return parse_config(node + "".join(parts), base_dir="/tmp")


CLUSTER = ('[quorum]\nvoters = ["alpha"]\n'
           '[[cluster]]\nid = "A"\nservice = "db"\n')


class ServicePlanTests(unittest.TestCase):
    def test_identical_configs_change_nothing(self):
        old = config(service("web"), service("api"))
        plan = plan_reload(old, config(service("web"), service("api")))
        self.assertTrue(plan.allowed)
        self.assertTrue(plan.empty)
        self.assertEqual(plan.unchanged, ("api", "web"))
        self.assertEqual(plan.summary(), "no changes")
        self.assertIsNone(plan.refusal())

    def test_added_removed_changed_unchanged(self):
        old = config(service("keep"), service("gone"), service("edit"))
        new = config(service("keep"), service("edit", "sleep 200"), service("fresh"))
        plan = plan_reload(old, new)
        self.assertEqual((plan.added, plan.removed, plan.changed, plan.unchanged),
                         (("fresh",), ("gone",), ("edit",), ("keep",)))
        self.assertTrue(plan.allowed)
        self.assertEqual(plan.summary(), "+fresh, -gone, ~edit")

    def test_any_field_counts_as_a_change(self):
        old = config(service("web"))
        for extra in ('stop_timeout = 3.0\n', 'env = { A = "1" }\n',
                      'backoff = { initial = 0.5 }\n', 'stop_signal = "INT"\n'):
            plan = plan_reload(old, config(service("web", extra=extra)))
            self.assertEqual(plan.changed, ("web",), extra)

    def test_order_of_services_is_no_change(self):
        plan = plan_reload(config(service("a"), service("b")),
                           config(service("b"), service("a")))
        self.assertTrue(plan.empty)


class RefusalTests(unittest.TestCase):
    def test_restart_only_settings_are_named(self):
        old = config(service("web"))
        new = config(service("web", "sleep 5"),
                     '[metrics]\nlisten = "127.0.0.1:9100"\n',
                     node='[node]\nname = "alpha"\ndata_dir = "/tmp/elsewhere"\n')
        plan = plan_reload(old, new)
        self.assertFalse(plan.allowed)
        # admin.host_key defaults to a file under data_dir: it moves with it.
        self.assertEqual(plan.restart_only,
                         ("node.data_dir", "admin.host_key", "metrics.listen"))
        self.assertIn("only change at a restart: node.data_dir, admin.host_key, "
                      "metrics.listen", plan.refusal())

    def test_node_name_is_restart_only(self):
        plan = plan_reload(config(), config(node='[node]\nname = "beta"\n'
                                                 'data_dir = "/tmp/clsd-plan-test"\n'))
        self.assertIn("node.name", plan.restart_only)

    def test_a_whole_new_section_is_named(self):
        plan = plan_reload(config(service("db")), config(service("db"), CLUSTER))
        self.assertIn("quorum", plan.restart_only)

    def test_in_place_cluster_change(self):
        old = config(service("db"), CLUSTER)
        new = config(service("db"), CLUSTER, "priority = 5\nnotify = [\"/bin/n\"]\n")
        plan = plan_reload(old, new)
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.clusters_changed, ("A",))
        self.assertEqual(plan.clusters_withdrawn, ())
        self.assertEqual((plan.plain_stop, plan.plain_start), ((), ()))
        self.assertEqual(plan.summary(), "~cluster A")
        self.assertFalse(plan.empty)

    def test_structural_cluster_change_is_a_replacement(self):
        old = config(service("db"), CLUSTER)
        new = config(service("db"), CLUSTER, 'mode = "n-active"\ncount = 1\n')
        plan = plan_reload(old, new)
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.clusters_replaced, ("A",))
        self.assertEqual(plan.clusters_withdrawn, ("A",))
        self.assertEqual(plan.clusters_registered, ("A",))

    def test_cluster_added_and_removed(self):
        two = CLUSTER + '[[cluster]]\nid = "B"\nservice = "web"\n'
        plan = plan_reload(config(service("db"), service("web"), CLUSTER),
                           config(service("db"), service("web"), two))
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.clusters_added, ("B",))
        # web ran unleased: stopped first, then started only under B's lease.
        self.assertEqual(plan.plain_stop, ("web",))
        self.assertEqual(plan.plain_start, ())
        back = plan_reload(config(service("db"), service("web"), two),
                           config(service("db"), CLUSTER))
        self.assertEqual(back.clusters_removed, ("B",))
        self.assertEqual(back.plain_start, ())
        self.assertTrue(back.allowed, back.refusal())

    def test_removing_a_cluster_but_keeping_its_service_is_refused(self):
        two = CLUSTER + '[[cluster]]\nid = "B"\nservice = "web"\n'
        plan = plan_reload(config(service("db"), service("web"), two),
                           config(service("db"), service("web"), CLUSTER))
        self.assertFalse(plan.allowed)
        self.assertIn("without its lease", plan.refusal())
        self.assertIn("web (cluster B)", plan.refusal())

    def test_a_leased_service_change_replaces_its_cluster(self):
        plan = plan_reload(config(service("db"), CLUSTER),
                           config(service("db", "sleep 7"), CLUSTER))
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.changed, ("db",))
        self.assertEqual(plan.clusters_replaced, ("A",))
        self.assertEqual((plan.plain_stop, plan.plain_start), ((), ()))

    def test_quorum_change_beside_a_cluster_change_refuses_everything(self):
        plan = plan_reload(config(service("db"), CLUSTER),
                           config(service("db"), CLUSTER.replace('["alpha"]',
                                                                 '["alpha", "b", "c"]')))
        self.assertFalse(plan.allowed)
        self.assertIn("quorum.voters", plan.refusal())

    def test_unleased_services_change_beside_unchanged_clusters(self):
        plan = plan_reload(config(service("db"), CLUSTER),
                           config(service("db"), service("side"), CLUSTER))
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.added, ("side",))


GROUP = ('[quorum]\nvoters = ["alpha"]\n'
         '[[cluster]]\nid = "A"\nservices = ["db", "web"]\n')


class GroupPlanTests(unittest.TestCase):
    """An ordered group's members are leased services: they come and go with the cluster."""

    def test_a_changed_member_replaces_the_group(self):
        plan = plan_reload(config(service("db"), service("web"), GROUP),
                           config(service("db"), service("web", "sleep 7"), GROUP))
        self.assertTrue(plan.allowed, plan.refusal())
        self.assertEqual(plan.clusters_replaced, ("A",))
        self.assertEqual((plan.plain_stop, plan.plain_start), ((), ()))

    def test_another_member_list_replaces_the_group(self):
        plan = plan_reload(config(service("db"), service("web"), GROUP),
                           config(service("db"), service("web"),
                                  GROUP.replace('["db", "web"]', '["web", "db"]')))
        self.assertEqual(plan.clusters_replaced, ("A",))

    def test_a_member_left_behind_as_a_plain_service_is_refused(self):
        plan = plan_reload(config(service("db"), service("web"), GROUP),
                           config(service("db"), service("web"), CLUSTER))
        self.assertFalse(plan.allowed)
        self.assertIn("web (cluster A)", plan.refusal())
