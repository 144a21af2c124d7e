"""Tests of clsd.ownership.etcd: etcd v3 as the lease arbiter."""
