"""Package list for setuptools; all other metadata lives in pyproject.toml.

Only ``clsd`` and the plugin are installed: ``rig/`` (the test rig), ``tests/``
and ``bench/`` run from a checkout and stay out of the wheel.
``twisted.plugins`` is listed explicitly: it is a namespace portion (no
``__init__.py``) that Twisted's plugin loader scans, and ``find_packages``
would not see it.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["clsd", "clsd.*"]) + ["twisted.plugins"],
    package_data={"clsd": ["py.typed"]},
)
