"""Tests of clsd.admin: the admin SSH/telnet shells, commands and reload."""
