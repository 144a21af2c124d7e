"""Test rigs that run real daemons: launcher, recorder, checker, fault injection."""
