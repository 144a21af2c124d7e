"""Floating service addresses: add and remove them (L{driver}), announce them (L{announce})."""
