"""Supervision: run a system, restart it with backoff, stop it cleanly, check its health."""
