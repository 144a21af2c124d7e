"""[quorum] and [[cluster]]: valid files load; each kind of mistake is named and explained."""

import os

from twisted.trial import unittest

from clsd.config import ConfigError, load_config, parse_config
from clsd.ownership.core.timing import DEFAULT_DRIFT_MARGIN, DEFAULT_LEASE

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "doc", "examples", "mutual-standby")

HEAD = """
[node]
name = "alpha"
data_dir = "/tmp/clsd-test"

[[service]]
name = "web"
command = ["/bin/true"]

[[service]]
name = "db"
command = ["/bin/true"]
"""

QUORUM3 = """
[quorum]
voters = ["alpha", "beta", "witness"]
"""


def parse(text):
    return parse_config(HEAD + text, "test.toml", euid=1000)


class ValidTests(unittest.TestCase):
    def test_defaults(self):
        config = parse(QUORUM3 + '[[cluster]]\nid = "A"\nservice = "web"\n')
        self.assertEqual(config.quorum.voters, ("alpha", "beta", "witness"))
        self.assertEqual(config.quorum.lease, DEFAULT_LEASE)
        self.assertEqual(config.quorum.drift_margin, DEFAULT_DRIFT_MARGIN)
        self.assertEqual(config.quorum.majority, 2)
        (cluster,) = config.clusters
        self.assertEqual((cluster.id, cluster.service, cluster.priority, cluster.mode,
                          cluster.count, cluster.preempt, cluster.fence),
                         ("A", "web", 100, "active-standby", 1, False, None))

    def test_every_key(self):
        config = parse("""
[quorum]
voters = ["alpha", "beta", "witness", "d", "e"]
lease = 1
drift_margin = 0.05

[[cluster]]
id = "A"
service = "web"
priority = 7
mode = "n-active"
count = 3
preempt = true
preempt_delay = 5
fence = ["/sbin/fence", "{node}", "--cluster={cluster}", "{epoch}"]
notify = ["/bin/notify"]
cooldown = 60
""")
        cluster = config.clusters[0]
        self.assertEqual(config.quorum.lease, 1.0)
        self.assertEqual((cluster.mode, cluster.count, cluster.preempt, cluster.preempt_delay),
                         ("n-active", 3, True, 5.0))
        self.assertEqual(cluster.fence[2], "--cluster={cluster}")
        self.assertEqual(cluster.cooldown, 60.0)

    def test_single_machine(self):
        config = parse('[quorum]\nvoters = ["alpha"]\n[[cluster]]\nid = "A"\nservice = "web"\n')
        self.assertEqual(config.quorum.majority, 1)

    def test_two_voters_with_fence_everywhere(self):
        config = parse('[quorum]\nvoters = ["alpha", "beta"]\n[[cluster]]\nid = "A"\n'
                       'service = "web"\nfence = ["/sbin/fence", "{node}"]\n')
        self.assertEqual(len(config.quorum.voters), 2)

    def test_no_quorum_no_clusters(self):
        self.assertIsNone(parse("").quorum)

    def test_mutual_standby_example(self):
        configs = {name: load_config(os.path.join(EXAMPLES, f"{name}.toml"), euid=1000)
                   for name in ("alpha", "beta", "witness")}
        self.assertEqual({c.quorum for c in configs.values()}.__len__(), 1)
        priorities = {name: {c.id: c.priority for c in config.clusters}
                      for name, config in configs.items()}
        self.assertEqual(priorities, {"alpha": {"A": 100, "B": 50},
                                      "beta": {"A": 50, "B": 100}, "witness": {}})


class MistakeTests(unittest.TestCase):
    def assertMistake(self, text, path, *words):
        e = self.assertRaises(ConfigError, parse, text)
        self.assertTrue(str(e).startswith(f"test.toml: {path}: "), str(e))
        for word in words:
            self.assertIn(word, str(e))
        return e

    def test_quorum_mistakes(self):
        cases = [
            ("[quorum]\n", "quorum.voters", "is required"),
            ("[quorum]\nvoters = []\n", "quorum.voters", "must not be empty"),
            ('[quorum]\nvoters = ["a", "b", "c", "d"]\n', "quorum.voters",
             "1, 3 or 5", "got 4", "3 of 4", "no more failures than 3 would"),
            ('[quorum]\nvoters = ["a", "b", "c", "d", "e", "f", "g"]\n', "quorum.voters",
             "got 7", "more than 5"),
            ('[quorum]\nvoters = ["a", "b", "a"]\n', "quorum.voters[2]", "listed twice"),
            ('[quorum]\nvoters = ["-x"]\n', "quorum.voters[0]", "not a valid node name"),
            ('[quorum]\nvoters = ["a"]\nlease = 0.1\n', "quorum.lease", "at least 0.2"),
            ('[quorum]\nvoters = ["a"]\nlease = 600\n', "quorum.lease", "at most 60"),
            ('[quorum]\nvoters = ["a"]\nlease = 20\ndrift_margin = 0.01\n',
             "quorum.drift_margin", "at least 0.045", "500 ppm"),
            ('[quorum]\nvoters = ["a"]\ndrift_margin = 0.02\n',
             "quorum.drift_margin", "at least 0.027", "kill needs 0.025 s"),
            ('[quorum]\nvoters = ["a"]\ndrift_margin = 0.5\n', "quorum.drift_margin",
             "less than lease/4"),
            ('[quorum]\nvoters = ["a"]\nleas = 2\n', "quorum.leas", "unknown key"),
        ]
        for text, path, *words in cases:
            self.assertMistake(text, path, *words)

    def test_cluster_mistakes(self):
        base = QUORUM3 + "[[cluster]]\n"
        cases = [
            ('service = "web"\n', "cluster[0].id", "is required"),
            ('id = "A/1"\nservice = "web"\n', "cluster[0].id", "not a valid cluster ID"),
            ('id = "A"\n', "cluster[0].service", "is required"),
            ('id = "A"\nservice = "nginx"\n', "cluster[0].service",
             "names no [[service]]", "'nginx'", "db, web"),
            ('id = "A"\nservice = "web"\nmode = "active-active"\n', "cluster[0].mode",
             "active-standby | n-active"),
            ('id = "A"\nservice = "web"\ncount = 2\n', "cluster[0].count", "must be 1",
             "n-active"),
            ('id = "A"\nservice = "web"\nmode = "n-active"\ncount = 0\n', "cluster[0].count",
             "at least 1"),
            ('id = "A"\nservice = "web"\npriority = -1\n', "cluster[0].priority", "at least 0"),
            ('id = "A"\nservice = "web"\npreempt = "yes"\n', "cluster[0].preempt",
             "true or false"),
            ('id = "A"\nservice = "web"\npreempt_delay = -1\n', "cluster[0].preempt_delay",
             "at least 0"),
            ('id = "A"\nservice = "web"\nfence = []\n', "cluster[0].fence", "must not be empty"),
            ('id = "A"\nservice = "web"\nfence = "/sbin/fence"\n', "cluster[0].fence",
             "array of strings"),
            ('id = "A"\nservice = "web"\nfence = ["/f", "{host}"]\n', "cluster[0].fence[1]",
             "unknown placeholder {host}", "{node}, {cluster}, {epoch}, {event}"),
            ('id = "A"\nservice = "web"\nnotify = ["/n", "{node"]\n', "cluster[0].notify[1]",
             "bad placeholder"),
            ('id = "A"\nservice = "web"\ncooldown = 0\n', "cluster[0].cooldown",
             "greater than 0"),
            ('id = "A"\nservice = "web"\nservce = "x"\n', "cluster[0].servce", "unknown key"),
        ]
        for text, path, *words in cases:
            self.assertMistake(base + text, path, *words)

    def test_quorum_not_a_table(self):
        e = self.assertRaises(ConfigError, parse_config, "quorum = 3\n" + HEAD, "test.toml",
                              euid=1000)
        self.assertEqual(str(e), "test.toml: quorum: must be a table, got number 3")

    def test_duplicate_cluster_id(self):
        self.assertMistake(
            QUORUM3 + '[[cluster]]\nid = "A"\nservice = "web"\n'
            '[[cluster]]\nid = "A"\nservice = "db"\n',
            "cluster[1].id", "duplicate cluster ID 'A'", "cluster[0]")

    def test_one_service_two_clusters(self):
        self.assertMistake(
            QUORUM3 + '[[cluster]]\nid = "A"\nservice = "web"\n'
            '[[cluster]]\nid = "B"\nservice = "web"\n',
            "cluster[1].service", "already runs cluster 'A'")

    def test_clusters_need_a_quorum(self):
        self.assertMistake('[[cluster]]\nid = "A"\nservice = "web"\n', "quorum",
                           "is required", 'voters = ["alpha"]')

    def test_two_voters_without_fence_are_refused_with_the_reason(self):
        e = self.assertMistake(
            '[quorum]\nvoters = ["alpha", "beta"]\n'
            '[[cluster]]\nid = "A"\nservice = "web"\nfence = ["/sbin/fence", "{node}"]\n'
            '[[cluster]]\nid = "B"\nservice = "db"\n',
            "cluster[1].fence", "only two voters", "2 of 2", "witness")
        self.assertIn("powers off or isolates", str(e))

    def test_two_voters_and_no_clusters_is_a_witness_pair(self):
        self.assertEqual(len(parse('[quorum]\nvoters = ["alpha", "beta"]\n').quorum.voters), 2)


class BuildCoreTests(unittest.TestCase):
    def test_core_from_the_example_configs(self):
        import random

        from clsd.ownership.core.actions import PersistEpochFloor, PublishState
        from clsd.ownership.core.node import OwnershipNode

        alpha = load_config(os.path.join(EXAMPLES, "alpha.toml"), euid=1000)
        node = OwnershipNode.from_config(alpha, 5.0, generation=7, rng=random.Random(0),
                                         epoch_floor=40000)
        self.assertEqual(node.voter.floor, 40000)
        self.assertEqual(node.voter.quiet_until, 5.0 + 2.1)
        self.assertEqual(sorted(node.manager.clusters), ["A", "B"])
        actions = node.start(5.0)
        self.assertIn(PersistEpochFloor(50000), actions)
        (published,) = [a for a in actions if isinstance(a, PublishState)]
        self.assertEqual(published.state.registrations, {"A": 100, "B": 50})
        # Its own voter answers locally; the others get the Prepare.
        self.assertEqual(sorted({a.to for a in actions if hasattr(a, "to")}),
                         ["beta", "witness"])


class GroupTests(unittest.TestCase):
    """``services = [...]``: an ordered group runs a cluster."""

    def test_a_group_in_order(self):
        config = parse(QUORUM3 + '[[cluster]]\nid = "A"\nservices = ["db", "web"]\n')
        (cluster,) = config.clusters
        self.assertEqual(cluster.services, ("db", "web"))
        self.assertIsNone(cluster.service)
        self.assertEqual(cluster.members, ("db", "web"))
        self.assertTrue(cluster.group)
        self.assertEqual(cluster.label, "db, web")

    def test_a_single_service_is_a_group_of_one_member_to_the_daemon(self):
        (cluster,) = parse(QUORUM3 + '[[cluster]]\nid = "A"\nservice = "web"\n').clusters
        self.assertEqual(cluster.members, ("web",))
        self.assertFalse(cluster.group)

    def test_group_mistakes(self):
        base = QUORUM3 + '[[cluster]]\nid = "A"\n'
        cases = [
            ('service = "web"\nservices = ["db"]\n', "cluster[0].services",
             "and service are exclusive"),
            ('services = []\n', "cluster[0].services", "must not be empty"),
            ('services = "db"\n', "cluster[0].services", "array of strings"),
            ('services = ["db", "nginx"]\n', "cluster[0].services[1]",
             "names no [[service]]: 'nginx'", "db, web"),
            ('services = ["db", "db"]\n', "cluster[0].services[1]", "names 'db' twice",
             "services[0]"),
            ('', "cluster[0].service", "is required", "services = [...]"),
        ]
        for text, path, *words in cases:
            e = self.assertRaises(ConfigError, parse, base + text)
            self.assertEqual(e.path, path, str(e))
            for word in words:
                self.assertIn(word, str(e))
            self.assertNotIn("\n", str(e))

    def test_a_member_of_a_group_runs_no_other_cluster(self):
        e = self.assertRaises(
            ConfigError, parse,
            QUORUM3 + '[[cluster]]\nid = "A"\nservices = ["db", "web"]\n'
            '[[cluster]]\nid = "B"\nservice = "web"\n')
        self.assertEqual(e.path, "cluster[1].service")
        self.assertIn("service 'web' already runs cluster 'A'", str(e))
        e = self.assertRaises(
            ConfigError, parse,
            QUORUM3 + '[[cluster]]\nid = "A"\nservice = "web"\n'
            '[[cluster]]\nid = "B"\nservices = ["db", "web"]\n')
        self.assertEqual(e.path, "cluster[1].services[1]")


class DependencyTests(unittest.TestCase):
    """``after``, ``with``, ``not_with`` between clusters (doc/groups.md)."""

    def clusters(self, text):
        return parse(QUORUM3 + text).clusters

    def assertMistake(self, text, path, *words):
        e = self.assertRaises(ConfigError, parse, QUORUM3 + text)
        self.assertEqual(e.path, path, str(e))
        for word in words:
            self.assertIn(word, str(e))
        self.assertNotIn("\n", str(e))

    def test_the_keys(self):
        web, db = self.clusters(
            '[[cluster]]\nid = "WEB"\nservice = "web"\nafter = ["DB", "CACHE"]\n'
            'with = ["DB"]\nnot_with = ["BATCH"]\nafter_failover = "stop"\n'
            '[[cluster]]\nid = "DB"\nservice = "db"\n')
        self.assertEqual((web.after, web.with_, web.not_with, web.after_failover),
                         (("DB", "CACHE"), ("DB",), ("BATCH",), "stop"))
        self.assertEqual((db.after, db.with_, db.not_with, db.after_failover),
                         ((), (), (), "keep"))

    def test_after_and_not_with_may_name_clusters_run_elsewhere(self):
        (web,) = self.clusters('[[cluster]]\nid = "WEB"\nservice = "web"\nafter = ["DB"]\n'
                               'not_with = ["BATCH"]\n')
        self.assertEqual((web.after, web.not_with), (("DB",), ("BATCH",)))

    def test_mistakes(self):
        head = '[[cluster]]\nid = "WEB"\nservice = "web"\n'
        db = '[[cluster]]\nid = "DB"\nservice = "db"\n'
        self.assertMistake(head + 'after = ["WEB"]\n', "cluster[0].after[0]",
                           "names the cluster itself")
        self.assertMistake(head + 'after = ["D/B"]\n', "cluster[0].after[0]",
                           "not a valid cluster ID")
        self.assertMistake(head + 'not_with = ["B", "B"]\n', "cluster[0].not_with[1]",
                           "names 'B' twice")
        self.assertMistake(head + 'with = ["DB"]\n', "cluster[0].with[0]",
                           "names no [[cluster]] of this node: 'DB'")
        self.assertMistake(head + 'with = ["DB"]\nnot_with = ["DB"]\n' + db,
                           "cluster[0].not_with[0]", "with names too")
        self.assertMistake(head + 'after_failover = "maybe"\n', "cluster[0].after_failover",
                           "keep | stop")
        self.assertMistake(head + 'with = ["DB"]\n' + db + 'mode = "n-active"\ncount = 2\n',
                           "cluster[0].with[0]", "n-active cluster 'DB'",
                           "active-standby cluster 'WEB'")

    def test_cycles_are_named(self):
        self.assertMistake(
            '[[cluster]]\nid = "WEB"\nservice = "web"\nafter = ["DB"]\n'
            '[[cluster]]\nid = "DB"\nservice = "db"\nwith = ["WEB"]\n',
            "cluster[0].after", "a cycle of after/with: WEB -> DB -> WEB")
