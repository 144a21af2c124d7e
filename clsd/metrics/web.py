"""The ``/metrics`` HTTP endpoint: a twisted.web Site on the ``[metrics] listen`` address.

The daemon adds it in one line::

    make_metrics_service(config.metrics, metrics.registry, reactor).setServiceParent(daemon)

With no ``listen`` configured it listens on nothing.

Why not C{prometheus_client.twisted.MetricsResource}: it imports the global
reactor (library code here takes the reactor it is given) and renders in the
reactor's thread pool, where reading the daemon's state from the
collectors' callbacks would race the reactor thread that changes it.
L{MetricsResource} renders on the reactor thread with the same encoder
choice (text format 0.0.4, or OpenMetrics when the scraper asks for it): a
scrape of a typical node costs a few milliseconds of reactor time
(doc/metrics.md has the figure).
"""

from prometheus_client.exposition import choose_encoder
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Site

from clsd.listener import ListeningService, server_endpoint
from clsd.logs import emit

INDEX = b"<html><body><p>CLSD metrics: <a href='/metrics'>/metrics</a></p></body></html>\n"


class MetricsResource(Resource):
    """Serves the samples of a L{prometheus_client.CollectorRegistry}."""

    isLeaf = True

    def __init__(self, registry):
        super().__init__()
        self.registry = registry

    def render_GET(self, request):
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else None)
        body = encoder(self.registry)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        return body


class _Index(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        return INDEX


class _QuietSite(Site):
    """A Site that does not log every scrape (one line every 15 s per scraper)."""

    noisy = False

    def log(self, request):
        pass


def metrics_site(registry):
    root = Resource()
    root.putChild(b"", _Index())
    root.putChild(b"metrics", MetricsResource(registry))
    return _QuietSite(root)


class MetricsService(ListeningService):
    """Listens on the configured address while running (or on nothing).

    A listen failure (address in use) raises from C{startService}, as the
    admin listeners do, so that the mistake is seen at start-up.
    """

    name = "metrics"  # type: ignore[assignment]  # Service declares name = None
    setting = "metrics.listen"
    log = Logger()

    def __init__(self, address, registry, reactor):
        self.address = address
        self.site = metrics_site(registry)
        self.reactor = reactor
        endpoint = server_endpoint(reactor, address) if address is not None else None
        super().__init__(endpoint, self.site)

    def announce(self, port):
        host = port.getHost()
        emit(self.log, "metrics.listening", "metrics at http://{address}/metrics",
             address=f"[{host.host}]:{host.port}" if ":" in host.host
             else f"{host.host}:{host.port}")


def make_metrics_service(metrics_config, registry, reactor):
    """The L{MetricsService} for L{clsd.config.MetricsConfig} C{metrics_config}."""
    return MetricsService(metrics_config.listen, registry, reactor)
