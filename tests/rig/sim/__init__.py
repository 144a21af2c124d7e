"""Tests of rig.sim: the discrete-event scheduler."""
