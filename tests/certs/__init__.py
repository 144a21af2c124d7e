"""Tests of clsd.certs: the CA, node certificates, revocation and the CLI."""
