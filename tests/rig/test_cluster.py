"""Real-cluster template parts: every generated config is accepted by clsd and means what we say."""

import tempfile

from twisted.trial import unittest

from clsd.certs import authority, store
from clsd.config import parse_config
from rig.cluster import (
    FAST_TIMING, ClusterRig, active_standby, mutual_standby, ring_layout, service_name,
)
from tests.support.fake_launcher import FakeLauncher


class ClusterPartsTests(unittest.TestCase):
    def setUp(self):
        self.directory = tempfile.mkdtemp(prefix="clsd-cluster-parts-")
        self.addCleanup(__import__("shutil").rmtree, self.directory, True)

    def render(self, rig, launcher, name):
        spec = launcher.node(name).spec
        text = rig.template().render(spec, launcher)
        return parse_config(text, f"{name}.toml")

    def test_mutual_standby_configs_parse_and_mirror_each_other(self):
        rig = ClusterRig(mutual_standby())
        launcher = FakeLauncher(rig.layout.nodes, directory=self.directory)
        configs = {name: self.render(rig, launcher, name) for name in rig.layout.nodes}
        for name, config in configs.items():
            self.assertEqual(config.quorum.voters, ("alpha", "beta", "witness"))
            self.assertEqual(config.node.listen, rig.peer_address(launcher, name))
            self.assertEqual(config.node.advertise, config.node.listen)
            self.assertEqual(
                set(config.node.join),
                {rig.peer_address(launcher, other) for other in rig.layout.nodes if other != name})
        priorities = {name: {c.id: c.priority for c in config.clusters}
                      for name, config in configs.items()}
        self.assertEqual(priorities, {"alpha": {"A": 100, "B": 50},
                                      "beta": {"A": 50, "B": 100}, "witness": {}})
        self.assertEqual(configs["witness"].services, ())
        service = configs["beta"].service(service_name("A"))
        self.assertEqual(service.command[-2:],
                         ("--http", "{}:{}".format(*rig.http_address(launcher, "beta", "A"))))
        # The daemon, not the config, names the cluster and epoch.
        self.assertNotIn("CLSD_CLUSTER", service.env)
        self.assertEqual((service.check.type, service.check.target),
                         ("http", rig.http_url(launcher, "beta", "A")))

    def test_each_node_has_its_own_certificate_from_one_ca(self):
        rig = ClusterRig(mutual_standby())
        launcher = FakeLauncher(rig.layout.nodes, directory=self.directory)
        ca = None
        for name in rig.layout.nodes:
            tls = self.render(rig, launcher, name).tls
            ca_cert = store.load_certificate(tls.ca)
            ca = ca or ca_cert
            self.assertEqual(authority.fingerprint(ca_cert), authority.fingerprint(ca))
            cert = store.load_certificate(tls.cert)
            self.assertEqual(authority.node_name_of(cert), name)
            self.assertTrue(authority.signed_by(cert, ca_cert))
            self.assertTrue(authority.key_matches(store.load_private_key(tls.key), cert))

    def test_ports_and_certificates_are_stable_across_rerenders(self):
        rig = ClusterRig(active_standby())
        launcher = FakeLauncher(rig.layout.nodes, directory=self.directory)
        first = self.render(rig, launcher, "alpha")
        again = self.render(rig, launcher, "alpha")
        self.assertEqual(first.node.listen, again.node.listen)
        self.assertEqual(first.services, again.services)
        with open(first.tls.cert, "rb") as a, open(again.tls.cert, "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_active_standby_and_fast_profile(self):
        rig = ClusterRig(active_standby(), FAST_TIMING)
        launcher = FakeLauncher(rig.layout.nodes, directory=self.directory)
        alpha = self.render(rig, launcher, "alpha")
        self.assertEqual((alpha.quorum.lease, alpha.quorum.drift_margin), (0.6, 0.05))
        self.assertEqual(alpha.membership.heartbeat_interval, 0.1)
        self.assertEqual([(c.id, c.priority) for c in alpha.clusters], [("A", 100)])
        self.assertEqual([(c.id, c.priority) for c in self.render(rig, launcher, "beta").clusters],
                         [("A", 50)])
        self.assertEqual(rig.layout.witnesses, ("witness",))
        self.assertEqual(rig.layout.candidates("A"), ["alpha", "beta"])


class RingLayoutTests(unittest.TestCase):
    def test_three_nodes_are_the_mutual_standby_example(self):
        layout = ring_layout(["n1", "n2", "n3"])
        self.assertEqual(layout.voters, ("n1", "n2", "n3"))
        self.assertEqual(layout.clusters, {"c1": {"n1": 100, "n2": 50},
                                           "c2": {"n2": 100, "n1": 50}})
        self.assertEqual(layout.witnesses, ("n3",))

    def test_five_nodes_ring_and_voters(self):
        layout = ring_layout([f"n{i}" for i in range(1, 6)])
        self.assertEqual(len(layout.voters), 5)
        self.assertEqual(layout.candidates("c4"), ["n4", "n1"])
        self.assertEqual(len(ring_layout([f"n{i}" for i in range(1, 5)]).voters), 3)
        self.assertRaises(ValueError, ring_layout, ["n1", "n2"])

    def test_spares_and_n_active(self):
        layout = ring_layout(["n1", "n2", "n3"], spares=("j1", "j2"), n_active=2)
        self.assertEqual(layout.all_nodes, ("n1", "n2", "n3", "j1", "j2"))
        self.assertEqual(layout.candidates("c1"), ["n1", "n2", "j1"])
        self.assertEqual(layout.candidates("c2"), ["n2", "n1", "j2"])
        self.assertEqual(layout.candidates("nx"), ["n1", "n2", "j1", "j2"])
        self.assertEqual((layout.count("nx"), layout.count("c1")), (2, 1))
        self.assertEqual(layout.voters, ("n1", "n2", "n3"))
        self.assertRaises(ValueError, ring_layout, ["n1", "n2", "n3"], n_active=3)
        self.assertRaises(ValueError, ring_layout, ["n1", "n2", "n3"], spares=("n1",))

    def test_clusters_scenario_renders_valid_configs(self):
        from rig.faults.runner import SCENARIOS
        from rig.launcher import ConfigTemplate

        directory = tempfile.mkdtemp(prefix="clsd-cluster-scenario-")
        self.addCleanup(__import__("shutil").rmtree, directory, True)
        launcher = FakeLauncher(["n1", "n2", "n3"], directory=directory, spares=("j1",))
        scenario = SCENARIOS["clusters"]()
        template = ConfigTemplate()
        for part in scenario.template_parts():
            template = template.with_part(part)
        configs = {n: parse_config(template.render(launcher.node(n).spec, launcher), n)
                   for n in ("n1", "n2", "n3", "j1")}
        self.assertEqual([(c.id, c.priority) for c in configs["n1"].clusters],
                         [("c1", 100), ("c2", 50), ("nx", 90)])
        [nx] = [c for c in configs["n2"].clusters if c.id == "nx"]
        self.assertEqual((nx.mode, nx.count, nx.priority), ("n-active", 2, 80))
        self.assertEqual(configs["n3"].clusters, ())
        # The spare stands by for c1 and nx, joins through the others, never votes.
        self.assertEqual([(c.id, c.priority) for c in configs["j1"].clusters],
                         [("c1", 30), ("nx", 30)])
        self.assertEqual(len(configs["j1"].node.join), 3)
        self.assertEqual(len(configs["n1"].node.join), 2)
        self.assertNotIn("j1", configs["n1"].quorum.voters)
        self.assertEqual(scenario.expected_clusters(launcher), ["c1", "c2", "nx"])
        self.assertEqual(scenario.capacity(launcher), {"nx": 2})

    def test_reshaped_node_and_escaping_services_render_valid_configs(self):
        from rig.faults.runner import SCENARIOS
        from rig.launcher import ConfigTemplate

        directory = tempfile.mkdtemp(prefix="clsd-cluster-reshape-")
        self.addCleanup(__import__("shutil").rmtree, directory, True)
        launcher = FakeLauncher(["n1", "n2", "n3"], directory=directory)
        launcher.spares = ()
        scenario = SCENARIOS["clusters"](escaping=True)
        template = ConfigTemplate()
        for part in scenario.template_parts():
            template = template.with_part(part)

        def config(name):
            return parse_config(template.render(launcher.node(name).spec, launcher), name)

        cluster, settings, undo = scenario.reshape(launcher, "n1", "mode")
        self.assertEqual((cluster, settings), ("c1", {"mode": "n-active", "count": 1}))
        [c1] = [c for c in config("n1").clusters if c.id == "c1"]
        self.assertEqual((c1.mode, c1.count), ("n-active", 1))
        [c1_n2] = [c for c in config("n2").clusters if c.id == "c1"]
        self.assertEqual(c1_n2.mode, "active-standby")
        undo()
        [c1] = [c for c in config("n1").clusters if c.id == "c1"]
        self.assertEqual(c1.mode, "active-standby")
        self.assertEqual(scenario.reshape(launcher, "n2", "count")[:2],
                         ("nx", {"mode": "n-active", "count": 3}))
        [nx] = [c for c in config("n2").clusters if c.id == "nx"]
        self.assertEqual(nx.count, 3)
        for service in config("n1").services:
            self.assertEqual(service.command[-1], "--escape")
