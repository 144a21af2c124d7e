"""The ``/metrics`` HTTP endpoint and the status page: a twisted.web Site on the ``[metrics]
listen`` address.

The daemon adds it in one line::

    make_metrics_service(config.metrics, metrics.registry, reactor,
                         status=DaemonBackend(daemon)).setServiceParent(daemon)

With no ``listen`` configured it listens on nothing. Given the admin backend (C{status}), it
also serves the read-only status page (L{clsd.admin.page}): ``/`` the page, ``/status.json``
the document of ``status --json``, ``/history.html`` the page's events and timeline.

Why not C{prometheus_client.twisted.MetricsResource}: it imports the global
reactor (library code here takes the reactor it is given) and renders in the
reactor's thread pool, where reading the daemon's state from the
collectors' callbacks would race the reactor thread that changes it.
L{MetricsResource} renders on the reactor thread with the same encoder
choice (text format 0.0.4, or OpenMetrics when the scraper asks for it): a
scrape of a typical node costs a few milliseconds of reactor time
(doc/metrics.md has the figure).
"""

import time

from prometheus_client.exposition import choose_encoder
from twisted.internet import defer, task
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from clsd.admin.commands import status_json
from clsd.admin.page import (
    CONTENT_SECURITY_POLICY, PAGE_EVENTS, history_fragment, render_page,
)
from clsd.admin.timeline import OwnerTimeline
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


#: The status page's timeline is sampled this often (seconds), and at every request.
SAMPLE_INTERVAL = 1.0
#: The timeline's failover marks take their causes from this many recent events.
CAUSE_EVENTS = 100


class StatusSource:
    """What the status page shows, read from an admin backend (L{clsd.admin.backend}).

    It keeps the owner timeline (L{clsd.admin.timeline.OwnerTimeline}), sampled by
    L{sample}: the daemon's history has no event when another node takes a cluster.
    """

    def __init__(self, backend, wall=time.time):
        self.backend = backend
        self.wall = wall
        self.timeline = OwnerTimeline()

    def sample(self):
        """Take the clusters' owners in now (the timer's sample: the clusters only)."""
        d = defer.maybeDeferred(self.backend.clusters)
        return d.addCallback(lambda clusters: self.timeline.observe(self.wall(), clusters))

    def status(self):
        """A Deferred L{clsd.admin.backend.Status}, its clusters taken into the timeline."""
        d = defer.maybeDeferred(self.backend.status)

        def observe(status):
            self.timeline.observe(self.wall(), status.clusters)
            return status
        return d.addCallback(observe)

    def history(self):
        """A Deferred (events for the page, the timeline view)."""
        d = defer.maybeDeferred(self.backend.history, CAUSE_EVENTS)
        return d.addCallback(lambda events: (tuple(events)[-PAGE_EVENTS:],
                                             self.timeline.view(self.wall(), events)))


class _Deferred(Resource):
    """A leaf whose body comes from a Deferred; an error is a short 500 (details logged)."""

    isLeaf = True
    log = Logger()
    content_type = b"text/html; charset=utf-8"

    def __init__(self, source):
        super().__init__()
        self.source = source

    def body(self):
        raise NotImplementedError

    def render_GET(self, request):
        request.setHeader(b"content-type", self.content_type)
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii"))
        gone = []  # the client went away before the body was ready
        request.notifyFinish().addBoth(gone.append)
        d = defer.maybeDeferred(self.body)

        def done(text):
            if not gone:
                request.write(text.encode("utf-8"))
                request.finish()

        def failed(failure):
            self.log.failure("status page: cannot render {path}", failure,
                             path=request.path.decode("latin-1"))
            if not gone:
                request.setResponseCode(500)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                request.write(b"internal error (details in the daemon log)\n")
                request.finish()
        d.addCallbacks(done, failed)
        return NOT_DONE_YET


class StatusPageResource(_Deferred):
    """``/``: the whole page, rendered on the server."""

    def body(self):
        d = self.source.status()
        d.addCallback(lambda status: self.source.history().addCallback(
            lambda found: render_page(status, found[0], found[1], self.source.wall())))
        return d


class StatusJsonResource(_Deferred):
    """``/status.json``: the document of ``status --json``."""

    content_type = b"application/json"

    def body(self):
        return self.source.status().addCallback(status_json)


class HistoryFragmentResource(_Deferred):
    """``/history.html``: the page's timeline and events, for its script to swap in."""

    def body(self):
        return self.source.history().addCallback(lambda found: history_fragment(*found))


def metrics_site(registry, source=None):
    root = Resource()
    if source is None:
        root.putChild(b"", _Index())
    else:
        root.putChild(b"", StatusPageResource(source))
        root.putChild(b"status.json", StatusJsonResource(source))
        root.putChild(b"history.html", HistoryFragmentResource(source))
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

    def __init__(self, address, registry, reactor, status=None):
        self.address = address
        self.source = StatusSource(status) if status is not None else None
        self.site = metrics_site(registry, self.source)
        self.reactor = reactor
        self._sampler = None
        endpoint = server_endpoint(reactor, address) if address is not None else None
        super().__init__(endpoint, self.site)

    def startService(self):
        super().startService()
        if self.source is not None and self.address is not None:
            self._sampler = task.LoopingCall(self._sample)
            self._sampler.clock = self.reactor
            self._sampler.start(SAMPLE_INTERVAL, now=True)

    def _sample(self):
        self.source.sample().addErrback(
            lambda f: self.log.failure("status page: cannot sample the clusters", f))

    def stopService(self):
        if self._sampler is not None and self._sampler.running:
            self._sampler.stop()
        self._sampler = None
        return super().stopService()

    def announce(self, port):
        host = port.getHost()
        address = f"[{host.host}]:{host.port}" if ":" in host.host else f"{host.host}:{host.port}"
        if self.source is not None:
            emit(self.log, "metrics.listening",
                 "metrics at http://{address}/metrics, status page at http://{address}/",
                 address=address)
        else:
            emit(self.log, "metrics.listening", "metrics at http://{address}/metrics",
                 address=address)


def make_metrics_service(metrics_config, registry, reactor, status=None):
    """The L{MetricsService} for L{clsd.config.MetricsConfig} C{metrics_config}; with
    C{status} (an L{clsd.admin.backend.IAdminBackend}) it serves the status page too."""
    return MetricsService(metrics_config.listen, registry, reactor, status)
