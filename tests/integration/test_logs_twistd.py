"""``twistd -n clsd --json-log FILE`` as a real process: the JSON observer under twistd.

Checks the installation claim of clsd.logs: the observer added in
makeService sees twistd's start-up banner (logged before the reactor runs)
exactly once, the text log stays text, and the shutdown is in the file.

SIGTERM is sent only once the daemon answers on its metrics port: twistd
installs its signal handlers as the reactor starts, after the banner and
after makeService, so a signal sent on the banner alone can meet Python's
default action and kill the process without a log line.
"""

import json
import os
import signal
import subprocess
import sys
import urllib.request

from twisted.internet import defer, reactor
from twisted.trial import unittest

from clsd.polling import poll


def json_lines(path):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        text = f.read()
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


class TwistdJsonLogTests(unittest.TestCase):
    timeout = 60

    def setUp(self):
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(self.dir)
        with open(os.path.join(self.dir, "clsd.toml"), "w") as f:
            f.write('[node]\nname = "alpha"\ndata_dir = "data"\n'
                    '[metrics]\nlisten = "127.0.0.1:0"\n')

    @defer.inlineCallbacks
    def test_banner_once_text_stays_text_shutdown_recorded(self):
        json_path = os.path.join(self.dir, "clsd.json")
        stdout_path = os.path.join(self.dir, "stdout.log")
        with open(stdout_path, "wb") as stdout:
            process = subprocess.Popen(
                [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
                 "-n", "--pidfile=", "clsd", "--config", "clsd.toml",
                 "--json-log", "clsd.json"],
                cwd=self.dir, stdout=stdout, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: process.poll() is None and process.kill())

        def texts():
            return [line.get("text", "") for line in json_lines(json_path)]

        def metrics_url():
            for line in json_lines(json_path):
                if line.get("event") == "metrics.listening":
                    return f"http://{line['address']}/metrics"
            return None

        def serving():
            url = metrics_url()
            if url is None:
                return False
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        yield poll(reactor, serving, 30, "the daemon to serve its metrics (its reactor running)")
        self.assertTrue(any("reactor class" in t for t in texts()), texts())
        process.send_signal(signal.SIGTERM)
        yield poll(reactor, lambda: process.poll() is not None, 30, "twistd to exit")

        lines = json_lines(json_path)
        self.assertEqual(sum("starting up" in t for t in texts()), 1, texts())
        self.assertTrue(any("Received SIGTERM" in t for t in texts()), texts())
        for line in lines:
            self.assertIn("log_namespace", line)
            self.assertIn("log_time", line)
        with open(stdout_path, encoding="utf-8") as f:
            text_log = f.read()
        self.assertIn("starting up", text_log)
        self.assertNotIn('"log_namespace"', text_log)
