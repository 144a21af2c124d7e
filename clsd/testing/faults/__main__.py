"""``python -m clsd.testing.faults``: see L{clsd.testing.faults.cli}."""

from clsd.testing.faults.cli import main

main()
