"""CLSD: a high-availability cluster daemon."""

__version__ = "0.1.0.dev0"
