"""Package list for setuptools; all other metadata lives in pyproject.toml.

``twisted.plugins`` is listed explicitly: it is a namespace portion (no
``__init__.py``) that Twisted's plugin loader scans, and ``find_packages``
would not see it.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["clsd", "clsd.*"]) + ["twisted.plugins"],
    package_data={"clsd": ["py.typed"]},
)
