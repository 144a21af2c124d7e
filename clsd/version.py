"""What this release of CLSD is: its software version and the peer protocols it speaks.

The software version has one source, ``version`` in pyproject.toml, read back from the
installed package's metadata.  The protocol range is what the hello offers
(L{clsd.wire.core.versions}): two nodes use the highest version both speak, so a release
keeps C{PROTOCOL_MIN} at the previous minor release's C{PROTOCOL_MAX} and a mixed cluster
keeps talking during a rolling upgrade (doc/releases.md lists each release's range).
"""

import os
from importlib import metadata

#: The oldest peer protocol this release speaks.  Protocol 1 is the unversioned hello of
#: the releases before the first row of doc/releases.md, which no release speaks.
PROTOCOL_MIN = 2
#: The newest peer protocol this release speaks.
PROTOCOL_MAX = 2

#: Test hook: ``LOW-HIGH`` replaces the protocol range this process offers (and marks its
#: software version), so that a rolling upgrade to a "next" release (one that also speaks
#: this one's newest protocol) can be rehearsed while doc/releases.md has one row.  Never
#: set in production.
PROTOCOL_RANGE_ENV = "CLSD_TEST_PROTOCOL_RANGE"


def _installed_version() -> str:
    try:
        return metadata.version("clsd")
    except metadata.PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


#: This release's software version (PEP 440), as pyproject.toml says.
VERSION: str = _installed_version()


def _test_range() -> tuple[int, int] | None:
    text = os.environ.get(PROTOCOL_RANGE_ENV, "").strip()
    if not text:
        return None
    low, _, high = text.partition("-")
    try:
        result = int(low), int(high or low)
    except ValueError:
        result = (0, 0)
    if not 0 < result[0] <= result[1]:
        raise SystemExit(f"clsd: {PROTOCOL_RANGE_ENV}={text!r} is not a range like '2-3'")
    return result


def protocol_range() -> tuple[int, int]:
    """The protocol versions this process offers in its hello: C{(lowest, highest)}."""
    return _test_range() or (PROTOCOL_MIN, PROTOCOL_MAX)


def software_version() -> str:
    """The version this process reports to peers and operators (the test hook marks it)."""
    test = _test_range()
    return VERSION if test is None else f"{VERSION}+protocol{test[0]}.{test[1]}"


def describe() -> str:
    """One line for ``twistd clsd --version``."""
    low, high = protocol_range()
    protocols = str(low) if low == high else f"{low} to {high}"
    return f"clsd {software_version()} (peer protocol {protocols})"
