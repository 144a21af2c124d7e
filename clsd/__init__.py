"""CLSD: a high-availability cluster daemon."""

from clsd.version import VERSION as __version__

__all__ = ["__version__"]
