"""Tests of clsd.supervision: spawning, policies, health checks, containment."""
