"""Ownership: quorum leases, epochs and placement of cluster IDs (a sans-IO core)."""
