"""Tests of the test rig itself (rig/): checker, recorder, faults, schedules, node hosts."""
