"""The software version has one source (pyproject.toml) and ``twistd clsd --version`` prints it."""

import io
import os
import pathlib
import re
import tomllib
from contextlib import redirect_stdout

from twisted.trial import unittest

from clsd import __version__, tap, version
from rig import releases

ROOT = pathlib.Path(__file__).resolve().parent.parent


def pyproject_version():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


class VersionTests(unittest.TestCase):
    def setUp(self):
        saved = os.environ.pop(version.PROTOCOL_RANGE_ENV, None)
        if saved is not None:
            self.addCleanup(os.environ.__setitem__, version.PROTOCOL_RANGE_ENV, saved)

    def test_version_is_pyprojects(self):
        """The installed metadata, the package's __version__ and pyproject.toml agree
        (a stale editable install is caught here: run `make venv` again)."""
        self.assertEqual(version.VERSION, pyproject_version())
        self.assertEqual(__version__, version.VERSION)

    def test_twistd_version_option(self):
        """``twistd clsd --version`` prints CLSD's version and protocol range, not Twisted's."""
        out = io.StringIO()
        with redirect_stdout(out):
            e = self.assertRaises(SystemExit, tap.Options().parseOptions, ["--version"])
        self.assertEqual(e.code, 0)
        low, high = version.PROTOCOL_MIN, version.PROTOCOL_MAX
        protocols = str(low) if low == high else f"{low} to {high}"
        self.assertEqual(out.getvalue(),
                         f"clsd {pyproject_version()} (peer protocol {protocols})\n")
        self.assertNotIn("Twisted", out.getvalue())

    def test_range_is_ordered(self):
        self.assertLessEqual(version.PROTOCOL_MIN, version.PROTOCOL_MAX)
        self.assertEqual(version.protocol_range(), (version.PROTOCOL_MIN, version.PROTOCOL_MAX))

    def test_range_hook(self):
        """The test hook sets the range and marks the version, so a rehearsal is visible."""
        os.environ[version.PROTOCOL_RANGE_ENV] = "2-3"
        self.addCleanup(os.environ.pop, version.PROTOCOL_RANGE_ENV, None)
        self.assertEqual(version.protocol_range(), (2, 3))
        self.assertEqual(version.software_version(), f"{version.VERSION}+protocol2.3")
        os.environ[version.PROTOCOL_RANGE_ENV] = "4"
        self.assertEqual(version.protocol_range(), (4, 4))
        for bad in ("soon", "3-2", "0-1"):
            os.environ[version.PROTOCOL_RANGE_ENV] = bad
            e = self.assertRaises(SystemExit, version.protocol_range)
            self.assertIn(version.PROTOCOL_RANGE_ENV, str(e))


def release_rows():
    """The rows of doc/releases.md's table: (version, commit, protocol), oldest first."""
    return [(r.version, r.commit, r.protocols) for r in releases.rows()]


class ReleasesTests(unittest.TestCase):
    def test_newest_release_is_pyprojects(self):
        rows = release_rows()
        self.assertTrue(rows, "doc/releases.md has no release row")
        newest, commit, protocols = rows[-1]
        self.assertEqual(newest, pyproject_version())
        low, high = version.PROTOCOL_MIN, version.PROTOCOL_MAX
        self.assertEqual(protocols, str(low) if low == high else f"{low}-{high}")

    def test_commits_are_full_hashes(self):
        """Every released row names its 40-hex commit on main; only the newest may still
        wait for its merge."""
        rows = release_rows()
        for version_, commit, _ in rows[:-1]:
            self.assertRegex(commit, r"^[0-9a-f]{40}$", version_)
        self.assertTrue(re.fullmatch(r"[0-9a-f]{40}|\(set at merge\)", rows[-1][1]),
                        rows[-1])

    def test_versions_and_protocols_only_grow(self):
        rows = release_rows()

        def key(text):
            return tuple(int(part) for part in re.findall(r"\d+", text))

        for older, newer in zip(rows, rows[1:]):
            self.assertLess(key(older[0]), key(newer[0]))
            old_high = key(older[2])[-1]
            self.assertIn(old_high, range(key(newer[2])[0], key(newer[2])[-1] + 1),
                          f"{newer[0]} must speak {older[0]}'s newest protocol")
