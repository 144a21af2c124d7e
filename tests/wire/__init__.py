"""Tests of clsd.wire: the peer protocol, sessions, TLS and admission."""
