"""Tests of clsd.membership: the membership core, its messages and its shell."""
