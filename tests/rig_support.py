"""Shared by the rig's tests: tools that must be present under CI, free loopback ports."""

import os
import shutil
import socket

from twisted.trial.unittest import SkipTest


def require(available, what):
    """Skip when C{what} is missing, but fail under CI=true: CI installs every tool."""
    if available:
        return
    message = f"{what} is not available here (.ci/run installs it)"
    if os.environ.get("CI") == "true":
        raise AssertionError(f"CI=true and {message}")
    raise SkipTest(message)


def require_tool(name, package):
    require(shutil.which(name) is not None, f"{name} (package {package})")


def require_root(what):
    require(os.geteuid() == 0, f"root, for {what}")


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]
