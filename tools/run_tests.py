"""Run the static checks and the whole trial suite; end with the line ``N passed, N failed``.

The static checks (ruff, then mypy; their settings are in pyproject.toml) come
first and count as one check each. Trial's own closing line (``PASSED
(successes=12, skips=1)``) is parsed rather than re-implementing a reporter, so
the other counts are trial's.
Usage: ``python tools/run_tests.py [TEST ...]`` (default: the ``tests`` package), or
``python tools/run_tests.py --unit``: everything but ``tests.integration`` (the tests that
start real daemons and processes; ``make test-integration`` runs those alone).
"""

import os
import re
import signal
import subprocess
import sys
import threading

#: The whole suite must end within this many seconds (CI allows 15 minutes for it); a
#: test that hangs (trial times out only tests that return Deferreds) is killed
#: and the run fails with the summary line instead of hanging CI.
SUITE_TIMEOUT = float(os.environ.get("CLSD_SUITE_TIMEOUT", 1800))

SUMMARY = re.compile(r"^(PASSED|FAILED) \((?P<counts>[^)]*)\)\s*$")
FAILING_KINDS = ("failures", "errors", "unexpectedSuccesses")

#: The static checks: a name and the command (run from the checkout's root).
STATIC_CHECKS = (
    ("ruff", [sys.executable, "-m", "ruff", "check", "--no-cache"]),
    ("mypy", [sys.executable, "-m", "mypy"]),
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_counts(line):
    """Turn ``FAILED (failures=1, successes=3)`` into a dict of ints."""
    match = SUMMARY.match(line.strip())
    if match is None:
        return None
    counts = {}
    for item in match.group("counts").split(","):
        if "=" in item:
            key, value = item.split("=", 1)
            counts[key.strip()] = int(value)
    return counts


def run_static_checks():
    """Run each static check, printing its output; return (passed, failed) counts."""
    passed = failed = 0
    for name, command in STATIC_CHECKS:
        print(f"== {name}: {' '.join(command[2:])}", flush=True)
        try:
            result = subprocess.run(command, cwd=ROOT, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
        except OSError as e:
            print(f"{name}: cannot run {command[0]}: {e.strerror}")
            failed += 1
            continue
        sys.stdout.write(result.stdout)
        if result.returncode == 0:
            passed += 1
        else:
            print(f"{name} failed (exit {result.returncode})")
            failed += 1
    sys.stdout.flush()
    return passed, failed


#: The folder of tests that start real daemons; ``--unit`` leaves it out.
INTEGRATION = "integration"


def unit_tests(root="tests"):
    """Every test package and top-level test module under C{root} except the integration tests."""
    names = []
    for entry in sorted(os.listdir(root)):
        path = os.path.join(root, entry)
        if entry == INTEGRATION:
            continue
        if os.path.isfile(os.path.join(path, "__init__.py")):
            names.append(f"{root}.{entry}")
        elif entry.startswith("test_") and entry.endswith(".py"):
            names.append(f"{root}.{entry[:-3]}")
    return names


def main(argv):
    if argv == ["--unit"]:
        argv = unit_tests()
    tests = argv or ["tests"]
    checks_passed, checks_failed = run_static_checks()
    jobs = os.environ.get("TRIAL_JOBS", "2")
    command = [sys.executable, "-m", "twisted.trial", f"--jobs={jobs}", *tests]
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
        start_new_session=True,  # its workers too, so that the watchdog can kill them all
    )
    timed_out = threading.Event()

    def kill():
        timed_out.set()
        os.killpg(process.pid, signal.SIGKILL)

    watchdog = threading.Timer(SUITE_TIMEOUT, kill)
    watchdog.daemon = True
    watchdog.start()
    counts = None
    for line in process.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        parsed = parse_counts(line)
        if parsed is not None:
            counts = parsed
    code = process.wait()
    watchdog.cancel()
    if timed_out.is_set():
        print(f"the suite did not end within {SUITE_TIMEOUT:g} s and was killed "
              "(a test hangs: run the modules one by one to find it)")
        counts = None
    if counts is None:
        print(f"trial ended without a summary line (exit {code})")
        print(f"{checks_passed} passed, {checks_failed + 1} failed")
        return 1
    passed = checks_passed + counts.get("successes", 0) + counts.get("expectedFailures", 0)
    failed = checks_failed + sum(counts.get(kind, 0) for kind in FAILING_KINDS)
    line = f"{passed} passed, {failed} failed"
    if counts.get("skips"):
        line += f", {counts['skips']} skipped"
    print(line)
    return 0 if failed == 0 and code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
