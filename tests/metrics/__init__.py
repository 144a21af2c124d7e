"""Tests of clsd.metrics: the registry, the HTTP endpoint and the cluster's figures."""
