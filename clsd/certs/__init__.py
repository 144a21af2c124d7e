"""Cluster certificates: the clsd-certs tool and certificate helpers."""
