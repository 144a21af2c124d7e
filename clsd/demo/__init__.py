"""``python -m clsd.demo``: CLSD in under a minute, on loopback addresses only.

Everything it needs ships with clsd: L{cluster} (three nodes, a kill -9 and a
failover), L{single} (one node supervising a service), L{nodes} (the demo's
daemons, and nothing left behind), L{system} (the small HTTP system each
cluster runs).
"""
