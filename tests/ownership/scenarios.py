"""Shared set-ups for the ownership simulation tests (not a test module itself)."""

from clsd.config.cluster_id import ClusterConfig
from clsd.ownership.core.timing import LeaseTiming
from rig.sim.leases import LeaseSim

TIMING = LeaseTiming()
DETECTION = 0.6


def cluster(cid, priority, **kw):
    return ClusterConfig(id=cid, service=f"svc-{cid}", priority=priority, **kw)


def mutual_standby(**sim_kw):
    """The issue's example: alpha runs A and stands by for B, beta the reverse, plus a witness."""
    nodes = {
        "alpha": (cluster("A", 100), cluster("B", 50)),
        "beta": (cluster("A", 50), cluster("B", 100)),
        "witness": (),
    }
    return LeaseSim(nodes, ["alpha", "beta", "witness"], sim_kw.pop("timing", TIMING),
                    detection=DETECTION, **sim_kw)


def five_voters(**sim_kw):
    """Four service nodes and a witness, all five voting; one active-standby and one 2-active cluster."""
    names = ["n1", "n2", "n3", "n4"]
    nodes = {}
    for i, name in enumerate(names):
        nodes[name] = (
            cluster("A", 100 - 10 * i),
            cluster("N", 10 * i, mode="n-active", count=2),
        )
    nodes["w"] = ()
    return LeaseSim(nodes, names + ["w"], sim_kw.pop("timing", TIMING),
                    detection=DETECTION, **sim_kw)


def settle(sim, until=6.0):
    sim.run_until(until)
    return sim


FENCE = ("/usr/sbin/fence", "{node}", "{cluster}", "{epoch}")


def two_voters_fenced(**sim_kw):
    """Two machines, no witness: every cluster has a fence (the sim's fence powers the peer off)."""
    nodes = {
        "alpha": (cluster("A", 100, fence=FENCE), cluster("B", 50, fence=FENCE)),
        "beta": (cluster("A", 50, fence=FENCE), cluster("B", 100, fence=FENCE)),
    }
    return LeaseSim(nodes, ["alpha", "beta"], sim_kw.pop("timing", TIMING),
                    detection=DETECTION, **sim_kw)
