"""Tests of clsd.config: parsing, validation and the shipped examples."""
