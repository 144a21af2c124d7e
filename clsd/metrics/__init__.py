"""Prometheus metrics of one daemon: the figures (L{Metrics}) and the ``/metrics`` endpoint."""

from clsd.metrics.registry import Metrics
from clsd.metrics.web import MetricsResource, MetricsService, make_metrics_service

__all__ = ["Metrics", "MetricsResource", "MetricsService", "make_metrics_service"]
