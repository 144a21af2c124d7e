"""Test support shared by several test packages: fixtures, in-process rigs, helper programs."""
