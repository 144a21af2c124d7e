"""``python -m rig.faults``: see L{rig.faults.cli}."""

from rig.faults.cli import main

main()
