"""The few etcd-specific pieces L{clsd.ownership.service.OwnershipService} needs, kept here
so that the ownership shell stays arbiter-neutral."""

from clsd.config.reader import ConfigError
from clsd.ownership.etcd.client import EtcdDriver, EtcdTLSError


def etcd_driver(config, reactor, deliver, events, monotonic):
    """The L{EtcdDriver} for C{config.etcd}; L{ConfigError} (one line) if its TLS files are unusable."""
    try:
        return EtcdDriver.from_config(config.etcd, reactor, deliver, events,
                                      monotonic=monotonic, bind_host=config.node.source_host)
    except EtcdTLSError as e:
        raise ConfigError(config.source, "etcd", str(e)) from None


def etcd_status(config, node, now):
    """What ``status`` shows under ``quorum`` when etcd arbitrates."""
    arbiter = node.manager.arbiter if node is not None else None
    reachable = arbiter is not None and arbiter.reachable(now)
    return {
        "arbiter": "etcd",
        "endpoints": list(config.etcd.endpoints),
        "prefix": config.etcd.prefix,
        "majority": 0,
        "have_quorum": reachable,
        "etcd_counters": dict(arbiter.counters) if arbiter is not None else {},
    }
