"""Earlier releases of CLSD, built from git history, for the rolling-upgrade test.

doc/releases.md lists every release with the full commit it was made from
(``| version | commit | protocol |``). L{build} installs one of them into a
virtualenv of its own, from ``git archive`` of that commit, so a test can run
real daemons of the old release beside this tree's.
"""

import os
import pathlib
import subprocess
import sys

import attrs

ROOT = pathlib.Path(__file__).resolve().parent.parent
RELEASES = ROOT / "doc" / "releases.md"


@attrs.frozen
class Release:
    version: str
    commit: str
    protocols: str


def rows(path=RELEASES):
    """The rows of doc/releases.md's table, oldest first."""
    found = []
    with open(path) as f:
        for line in f:
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if line.startswith("|") and len(cells) == 3 and cells[0] not in ("version", "---"):
                found.append(Release(*cells))
    return found


def previous(current_version, releases):
    """The release a rolling upgrade to this tree starts from.

    The newest row, unless that row is this tree's own version with an older
    row before it (then the one before). When the newest row is this tree's
    own version and the only one, it is that release itself: the test then
    upgrades to this tree with a synthetic next protocol range.
    """
    if releases[-1].version == current_version and len(releases) > 1:
        return releases[-2]
    return releases[-1]


def own_environment(environ=None):
    """C{environ} without C{PYTHONPATH}: trial's parallel workers set it to their own
    C{sys.path} (this tree), and an old release must import only its own code."""
    env = dict(os.environ if environ is None else environ)
    env.pop("PYTHONPATH", None)
    return env


def build(release, directory, repo=ROOT):
    """Install C{release} from git history into C{directory}/venv; its twistd command.

    Needs the commit in C{repo} (a CI clone has the history; a shallow one
    does not, and this says so).
    """
    source = os.path.join(directory, "src")
    os.makedirs(source)
    archive = subprocess.run(["git", "-C", str(repo), "archive", release.commit],
                             capture_output=True)
    if archive.returncode != 0:
        raise RuntimeError(f"release {release.version}: commit {release.commit} is not in "
                           f"{repo} ({archive.stderr.decode().strip()}); a full clone has it")
    subprocess.run(["tar", "-x", "-C", source], input=archive.stdout, check=True)
    venv = os.path.join(directory, "venv")
    env = own_environment()
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, env=env)
    pip = subprocess.run([os.path.join(venv, "bin", "python"), "-m", "pip", "install", "-q",
                          source], capture_output=True, text=True, env=env)
    if pip.returncode != 0:
        raise RuntimeError(f"release {release.version}: pip install failed:\n{pip.stderr}")
    # The old release's own code, not this tree's: checked, since a stray path would make
    # the test compare this tree with itself.
    probe = subprocess.run(
        [os.path.join(venv, "bin", "python"), "-c",
         "import clsd, clsd.version; print(clsd.__file__); print(clsd.version.VERSION)"],
        capture_output=True, text=True, cwd=directory, check=True, env=env)
    location, installed = probe.stdout.split()
    if not location.startswith(venv) or installed != release.version:
        raise RuntimeError(f"release {release.version}: the built venv imports clsd "
                           f"{installed} from {location}, not its own")
    return [os.path.join(venv, "bin", "twistd")]
