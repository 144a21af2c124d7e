"""Every example in doc/examples parses, and says what its comments say it does.

parse_config checks keys, types and cross-references (clusters name
services, voters, fences with two voters) but not that certificate paths
exist: the daemon checks [tls] files when it starts. So the examples may name
/etc/clsd/certs/... that this machine does not have.
"""

import glob
import os
import shutil
import subprocess

from twisted.trial import unittest

from clsd.config.model import load_config

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "doc", "examples")


def load(relative):
    return load_config(os.path.join(EXAMPLES, relative))


class EveryExampleParses(unittest.TestCase):
    def test_all(self):
        paths = sorted(glob.glob(os.path.join(EXAMPLES, "**", "*.toml"), recursive=True))
        self.assertGreaterEqual(len(paths), 12)
        for path in paths:
            config = load_config(path)  # raises ConfigError naming the file and key
            self.assertEqual(config.source, path)

    def test_same_quorum_within_a_layout(self):
        """Every node of a layout must have the same [quorum] (the peers compare it)."""
        for layout in ("mutual-standby", "web-tier", "five-voters"):
            configs = [load_config(p) for p in
                       sorted(glob.glob(os.path.join(EXAMPLES, layout, "*.toml")))]
            self.assertEqual(len({c.quorum for c in configs}), 1, layout)
            names = {c.node.name for c in configs}
            self.assertEqual(set(configs[0].quorum.voters), names, layout)


class Layouts(unittest.TestCase):
    def test_single_machine(self):
        config = load("single-machine/clsd.toml")
        self.assertIsNone(config.node.listen)
        self.assertEqual([s.name for s in config.services], ["app", "worker"])

    def test_mutual_standby(self):
        alpha, beta = load("mutual-standby/alpha.toml"), load("mutual-standby/beta.toml")
        prio = {c.id: c.priority for c in alpha.clusters}
        self.assertEqual(prio, {"A": 100, "B": 50})
        self.assertEqual({c.id: c.priority for c in beta.clusters}, {"A": 50, "B": 100})
        self.assertEqual(load("mutual-standby/witness.toml").clusters, ())

    def test_etcd(self):
        alpha, beta = load("etcd/alpha.toml"), load("etcd/beta.toml")
        self.assertEqual(alpha.quorum, beta.quorum)
        self.assertEqual((alpha.quorum.arbiter, alpha.quorum.voters), ("etcd", ()))
        self.assertEqual(alpha.etcd.prefix, beta.etcd.prefix)
        self.assertEqual(len(alpha.etcd.endpoints), 3)
        self.assertEqual({c.id: c.priority for c in beta.clusters}, {"A": 50, "B": 100})

    def test_web_tier(self):
        for name in ("web1", "web2", "web3"):
            (www,) = load(f"web-tier/{name}.toml").clusters
            self.assertEqual((www.mode, www.count), ("n-active", 2))

    def test_five_voters(self):
        priorities = {}
        for index in range(1, 6):
            config = load(f"five-voters/n{index}.toml")
            self.assertEqual(len(config.quorum.voters), 5)
            for cluster in config.clusters:
                self.assertTrue(cluster.preempt)
                self.assertIsNotNone(cluster.fence)
                priorities[config.node.name] = cluster.priority
        self.assertEqual(priorities, {"n1": 300, "n2": 200, "n3": 100})


class SystemdUnit(unittest.TestCase):
    path = os.path.join(EXAMPLES, "clsd.service")

    def read(self):
        with open(self.path) as f:
            return f.read()

    def test_runs_twistd_in_the_foreground(self):
        self.assertRegex(self.read(), r"\nExecStart=\S*twistd -n .*clsd --config /etc/clsd/clsd.toml\n")

    def test_the_daemon_alone_gets_sigterm(self):
        text = self.read()
        self.assertIn("\nKillMode=mixed\n", text)
        self.assertIn("\nRestart=always\n", text)

    def test_systemd_accepts_it(self):
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            if os.environ.get("CI") == "true":
                self.fail("systemd-analyze is missing")
            raise unittest.SkipTest("systemd-analyze is not installed")
        unit = os.path.join(os.path.abspath(self.mktemp()), "clsd.service")
        os.makedirs(os.path.dirname(unit))
        with open(unit, "w") as f:  # a binary that exists here, for verify's check
            f.write(self.read().replace("/opt/clsd/bin/twistd", "/bin/true"))
        result = subprocess.run([analyze, "verify", unit], capture_output=True, text=True,
                                timeout=60)
        problems = [line for line in result.stderr.splitlines() if "clsd.service" in line]
        self.assertEqual((result.returncode, problems), (0, []), result.stderr)
