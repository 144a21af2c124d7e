"""The etcd-specific piece L{clsd.ownership.service.OwnershipService} needs, kept here
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

