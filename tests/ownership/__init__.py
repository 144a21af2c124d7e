"""Tests of clsd.ownership: leases, voters, placement, the guard and the shell."""
