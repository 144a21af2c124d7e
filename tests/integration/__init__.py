"""Integration tests: real twistd daemons, real processes, TLS on loopback (slow; `make test-integration`)."""
