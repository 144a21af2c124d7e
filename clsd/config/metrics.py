"""The ``[metrics]`` table: where the Prometheus endpoint listens, if anywhere.

Off unless ``listen`` is set: an HTTP port nobody asked for is an exposure,
and the endpoint carries no authentication (bind it to loopback or a
management network).
"""

import attrs

from clsd.config.address import parse_listen_address


@attrs.frozen
class MetricsConfig:
    #: C{(ip, port)} that serves ``/metrics``; C{None}: no metrics endpoint.
    #: Port 0 takes any free port (tests; the ``metrics.listening`` log
    #: event says which).
    listen: tuple | None = None


def parse_metrics(table):
    """Build a L{MetricsConfig} from the ``[metrics]`` L{Table} (C{None}: no such table)."""
    if table is None:
        return MetricsConfig()
    value = table.string("listen", None, nonempty=False)
    table.finish()
    if not value:
        return MetricsConfig()
    return MetricsConfig(listen=parse_listen_address(table, "listen", value, 9400))

