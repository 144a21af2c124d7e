"""The status page in a real browser: Debian's chromium, headless, against the demo cluster.

The demo's three ``twistd -n clsd`` daemons (fast lease profile, loopback addresses reserved
from the rig's pool) serve the page on their metrics listeners. chromium loads beta's page
before and after alpha, the owner of A, is killed with -9: screenshots of both (kept in the
test's directory under ``_trial_temp``), the DOM after the page's own script has refreshed it
from ``/status.json``, and chromium's network log (every URL it asked for). Names with
``<script>`` cannot be in a configuration (names are checked at load), so the escaping test
serves a backend whose names carry markup, through the same resources, to the same browser.

``CLSD_UPDATE_SCREENSHOT=1`` also copies the after-failover screenshot to
doc/status-page.png (the README's picture).
"""

import json
import os
import re
import shutil
import tempfile
import time
import urllib.request

from twisted.internet import defer, reactor, utils
from twisted.trial import unittest

from clsd.admin.backend import ClusterInfo, MemberInfo, ServiceInfo
from clsd.admin.fake import FakeBackend
from clsd.config import MetricsConfig
from clsd.demo.cluster import ClusterDemo
from clsd.metrics import Metrics, make_metrics_service
from tests.integration.test_demo import reserved_first_address
from tests.support.rig_support import require_tool

BROWSER_BOUND = 60
#: The page (no external assets, 50 events) stays small.
PAGE_BYTES_BOUND = 64 * 1024
DOC_SCREENSHOT = os.path.join(os.path.dirname(__file__), "..", "..", "doc", "status-page.png")
EVIL = '<script>document.title="pwned"</script><img src="x" onerror="document.title=1">'


def fetch(url):
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read()


class Browser:
    """chromium --headless, one run per page, its profile and network log in C{directory}."""

    def __init__(self, test, directory):
        require_tool("chromium", "chromium")
        self.test = test
        self.directory = directory
        self.runs = 0

    @defer.inlineCallbacks
    def load(self, url, *, screenshot=None, budget_ms=4500):
        """(DOM after the budget of virtual time, the URLs chromium requested)."""
        self.runs += 1
        profile = os.path.join(self.directory, f"profile-{self.runs}")
        netlog = os.path.join(self.directory, f"netlog-{self.runs}.json")
        args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--disable-extensions", "--disable-default-apps",
                "--no-default-browser-check", "--hide-scrollbars", "--window-size=1000,760",
                "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.*",
                f"--user-data-dir={profile}", f"--log-net-log={netlog}",
                f"--virtual-time-budget={budget_ms}"]
        args += [f"--screenshot={screenshot}"] if screenshot else ["--dump-dom"]
        out, err, code = yield utils.getProcessOutputAndValue(
            shutil.which("chromium"), args + [url], env=dict(os.environ, HOME=self.directory),
            reactor=reactor).addTimeout(BROWSER_BOUND, reactor)
        self.test.assertEqual(code, 0, err.decode(errors="replace")[-2000:])
        return out.decode("utf-8"), page_requests(netlog, url)


def page_requests(netlog, url):
    """The URLs requested in the page's network partition: the page and all it asked for.

    chromium's own background requests (its updater, network time) are in other partitions
    (and go nowhere: --host-resolver-rules resolves no name).
    """
    site = re.match(r"(https?://[^:/]+)", url).group(1)
    with open(netlog, encoding="utf-8") as f:
        log = json.load(f)
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return sorted({e["params"]["url"] for e in log["events"]
                   if e["type"] == start and "url" in e.get("params", {})
                   and e["params"].get("network_isolation_key", "").split(" ")[0] == site})


def only_own(test, requested, origin):
    """Every URL the browser asked for is one of the page's own."""
    test.assertTrue(requested, "the network log lists the requests")
    own = {f"{origin}/", f"{origin}/status.json", f"{origin}/history.html"}
    test.assertEqual([u for u in requested if u not in own], [], requested)


class StatusPageBrowserTests(unittest.TestCase):
    timeout = 240

    @defer.inlineCallbacks
    def test_before_and_after_a_failover(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        browser = Browser(self, directory)
        workdir = tempfile.mkdtemp(prefix="clsd-page-")
        self.addCleanup(shutil.rmtree, workdir, True)
        demo = ClusterDemo(workdir, lambda line: None, fast=True,
                           first_address=reserved_first_address(self))
        self.addCleanup(demo.close)
        demo.start()
        page = demo.page_url("beta")
        origin = page.rstrip("/")

        size = len(fetch(page))
        self.assertLess(size, PAGE_BYTES_BOUND)
        before_png = os.path.join(directory, "before.png")
        yield browser.load(page, screenshot=before_png)
        dom, requested = yield browser.load(page)
        only_own(self, requested, origin)
        self.assertIn("/status.json", " ".join(requested), "the page refreshed itself")
        self.assertRegex(dom, r'<p id="updated" class="muted">updated \d{4}-')
        self.assertRegex(self.cluster_row(dom, "A"), r'class="owners">alpha<')

        old, new, _ = demo.failover()
        self.assertEqual((old, new), ("alpha", "beta"))
        deadline = time.monotonic() + 20
        while json.loads(fetch(origin + "/status.json"))["clusters"][0]["owners"] != ["beta"]:
            self.assertLess(time.monotonic(), deadline, "beta's page never showed A on beta")
            time.sleep(0.2)
        after_png = os.path.join(directory, "after.png")
        yield browser.load(page, screenshot=after_png)
        dom, requested = yield browser.load(page)
        only_own(self, requested, origin)
        row = self.cluster_row(dom, "A")
        self.assertRegex(row, r'class="owners">beta<')
        self.assertIn("running on beta", row)
        # The timeline: A's row has a failover mark whose title names the change and its cause.
        marks = re.findall(r'<g class="failover" data-cluster="A">.*?<title>(.*?)</title>', dom,
                           re.S)
        self.assertEqual(len(marks), 1, dom)
        self.assertRegex(marks[0], r"A: alpha -&gt; beta \(epoch \d+\)")
        self.assertIn("&lt;- ", marks[0], "the cause chain beta recorded")
        for png in (before_png, after_png):
            with open(png, "rb") as f:
                self.assertEqual(f.read(8), b"\x89PNG\r\n\x1a\n")
        print(f"\npage {size} bytes; screenshots {before_png}, {after_png}")
        if os.environ.get("CLSD_UPDATE_SCREENSHOT") == "1":
            shutil.copyfile(after_png, DOC_SCREENSHOT)

    def cluster_row(self, dom, cluster):
        found = re.search(rf'<tr data-cluster="{cluster}">(.*?)</tr>', dom, re.S)
        self.assertIsNotNone(found, dom)
        return found.group(1)

    @defer.inlineCallbacks
    def test_names_with_markup_show_as_text(self):
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        browser = Browser(self, directory)
        backend = EvilBackend()
        service = make_metrics_service(MetricsConfig(listen=("127.0.0.1", 0)),
                                       Metrics("evil").registry, reactor, status=backend)
        service.startService()
        self.addCleanup(service.stopService)
        port = yield service.when_listening()
        origin = f"http://127.0.0.1:{port.getHost().port}"
        dom, requested = yield browser.load(origin + "/")
        only_own(self, requested, origin)
        title = re.search(r"<title>(.*?)</title>", dom).group(1)
        self.assertTrue(title.startswith("CLSD "), title)
        self.assertEqual(dom.count("<script>"), 1, "only the page's own script")
        self.assertNotIn("<img", dom)
        escaped = EVIL.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        # Server-rendered and re-rendered by the script from /status.json: text both times.
        for where in ('data-member=', 'data-service=', 'data-cluster='):
            self.assertIn(where, dom)
        self.assertGreaterEqual(dom.count(escaped), 3, dom)
        self.assertRegex(dom, r'<p id="updated" class="muted">updated ')


class EvilBackend(FakeBackend):
    """The fake cluster, with markup in a member's, a cluster's and a service's name."""

    def __init__(self):
        super().__init__(asynchronous=True)
        self._members[EVIL] = MemberInfo(EVIL, "alive", "127.0.0.15:7400")
        self._clusters[EVIL] = ClusterInfo(EVIL, [EVIL], 1, "running")
        self._services[EVIL] = ServiceInfo(EVIL, "running", 4242, 0)
