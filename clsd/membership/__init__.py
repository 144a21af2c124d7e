"""Membership: who is in the cluster and who has failed (a sans-IO core)."""
