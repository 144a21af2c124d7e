"""The status page and its owner timeline, pure: no reactor, no HTTP."""

import base64
import hashlib
import html.parser
import re

from twisted.trial import unittest

from clsd.admin.backend import ClusterInfo, HistoryEvent, MemberInfo, QuorumInfo, ServiceInfo, Status
from clsd.admin.fake import FakeBackend
from clsd.admin.ownership_status import cluster_view
from clsd.admin.page import (
    CONTENT_SECURITY_POLICY, SCRIPT, STYLE, history_fragment, render_page, timeline_svg,
)
from clsd.admin.timeline import OwnerTimeline

T = 1_700_000_000.0
EVIL = "<script>alert(1)</script>"


def cluster(cid, owners, epoch, node="alpha", standbys=()):
    view = cluster_view(node=node, owners=owners, targets=owners or [None], standbys=standbys)
    return ClusterInfo(cid, owners, epoch, "running").with_view(view)


class Elements(html.parser.HTMLParser):
    """Every start tag with its attributes, and the text of each element id'd or classed."""

    def __init__(self, text):
        super().__init__()
        self.tags = []
        self.text = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


class TimelineTests(unittest.TestCase):

    def test_segments_and_a_failover_across_an_unowned_gap(self):
        timeline = OwnerTimeline(span=3600)
        timeline.observe(T, [cluster("A", ["alpha"], 7)])
        timeline.observe(T + 10, [cluster("A", ["alpha"], 7)])
        timeline.observe(T + 20, [cluster("A", [], 7)])
        timeline.observe(T + 22, [cluster("A", ["beta"], 8)])
        cause = ("previous owner alpha declared dead", "acquired epoch 8")
        history = [HistoryEvent(T + 22, "A:cluster", "moved from alpha to beta (epoch 8)",
                                cause=cause)]
        view = timeline.view(T + 30, history)
        self.assertEqual([(s.owners, s.epoch, s.start, s.end) for s in view.segments["A"]],
                         [(("alpha",), 7, T, T + 20), ((), 7, T + 20, T + 22),
                          (("beta",), 8, T + 22, None)])
        [failover] = view.failovers
        self.assertEqual((failover.before, failover.after, failover.epoch, failover.time,
                          failover.cause), (("alpha",), ("beta",), 8, T + 22, cause))

    def test_the_old_owners_fading_claim_is_one_failover(self):
        timeline = OwnerTimeline()
        timeline.observe(T, [cluster("A", ["alpha"], 7)])
        timeline.observe(T + 1, [cluster("A", ["alpha", "beta"], 8)])
        timeline.observe(T + 2, [cluster("A", ["beta"], 8)])
        [failover] = timeline.view(T + 3).failovers
        self.assertEqual((failover.before, failover.after, failover.time),
                         (("alpha",), ("beta",), T + 1))

    def test_a_new_epoch_on_the_same_owner_is_a_new_segment_but_no_failover(self):
        timeline = OwnerTimeline()
        timeline.observe(T, [cluster("A", ["alpha"], 7)])
        timeline.observe(T + 5, [cluster("A", ["alpha"], 9)])
        view = timeline.view(T + 6)
        self.assertEqual([s.epoch for s in view.segments["A"]], [7, 9])
        self.assertEqual(view.failovers, ())

    def test_only_the_last_span_is_kept_and_shown(self):
        timeline = OwnerTimeline(span=100)
        timeline.observe(T, [cluster("A", ["alpha"], 1)])
        timeline.observe(T + 10, [cluster("A", ["beta"], 2)])
        timeline.observe(T + 50, [cluster("A", ["alpha"], 3)])
        timeline.observe(T + 200, [cluster("A", ["alpha"], 3)])
        view = timeline.view(T + 200)
        self.assertEqual(view.start, T + 100)
        self.assertEqual([(s.owners, s.start) for s in view.segments["A"]],
                         [(("alpha",), T + 100)])
        self.assertEqual(view.failovers, ())

    def test_since_start_when_younger_than_the_span(self):
        timeline = OwnerTimeline(span=3600)
        timeline.observe(T, [cluster("A", ["alpha"], 1)])
        self.assertEqual(timeline.view(T + 60).start, T)


class PageTests(unittest.TestCase):

    def page(self, status=None, events=(), timeline=None):
        status = status or FakeBackend().status()
        if timeline is None:
            timeline = OwnerTimeline()
            timeline.observe(T - 600, status.clusters)
        return render_page(status, list(events), timeline.view(T), T)

    def test_every_part_server_rendered(self):
        page = self.page(events=[HistoryEvent(T - 5, "A:cluster", "moved from gamma to alpha "
                                              "(epoch 7)", cause=("lease epoch 6 expired",))])
        parsed = Elements(page)
        rows = {(tag, a.get("data-cluster") or a.get("data-member") or a.get("data-service"))
                for tag, a in parsed.tags if tag == "tr"}
        self.assertTrue({("tr", "alpha"), ("tr", "gamma"), ("tr", "A"), ("tr", "B"),
                         ("tr", "web"), ("tr", "db")} <= rows, rows)
        text = "".join(parsed.text)
        for words in ("running on alpha", "standby #1", "quorum: yes", "1234",
                      "moved from gamma to alpha (epoch 7)", "lease epoch 6 expired"):
            self.assertIn(words, text)
        self.assertIn('<svg id="timeline"', page)

    def test_standbys_in_priority_order(self):
        status = Status("alpha", (), (cluster("A", ["alpha"], 3, standbys=["gamma", "beta"]),),
                        (), QuorumInfo(("alpha",), True))
        self.assertIn('<td class="standbys">gamma, beta</td>', self.page(status))

    def test_each_members_version_and_protocols(self):
        status = Status("alpha", (MemberInfo("alpha", "alive", "127.0.0.1:1", version="0.1.0",
                                             protocols=(2, 3)),
                                  MemberInfo("beta", "alive", "127.0.0.2:1", version="0.1.0",
                                             protocols=(2, 2)),
                                  MemberInfo("gamma", "alive", "127.0.0.3:1")),
                        (), (), QuorumInfo(("alpha",), True))
        page = self.page(status)
        self.assertIn('<td class="version">0.1.0 (protocol 2-3)</td>', page)
        self.assertIn('<td class="version">0.1.0 (protocol 2)</td>', page)
        self.assertIn('<td class="version">-</td>', page)
        self.assertIn("versionText(m)", SCRIPT)  # the refresh keeps the column

    def test_names_from_a_config_or_a_peer_are_text(self):
        status = Status(
            EVIL, (MemberInfo(EVIL, "alive", "127.0.0.1:1"),),
            (cluster(EVIL, [EVIL], 3, node=EVIL),),
            (ServiceInfo('x" onmouseover="alert(1)', "running", 1, 0),),
            QuorumInfo((EVIL,), True))
        events = [HistoryEvent(T, f"{EVIL}:cluster", EVIL, cause=(EVIL,))]
        page = self.page(status, events)
        parsed = Elements(page)
        self.assertEqual([tag for tag, _ in parsed.tags].count("script"), 1)
        self.assertFalse(any("onmouseover" in a for _, attrs in parsed.tags for a in attrs))
        self.assertIn(EVIL, "".join(parsed.text))
        self.assertNotIn(EVIL, page)

    def test_no_external_assets(self):
        page = self.page()
        parsed = Elements(page)
        for tag, attrs in parsed.tags:
            self.assertNotIn("src", attrs, (tag, attrs))
            if tag == "link":  # the empty favicon, so that the browser asks for none
                self.assertEqual(attrs, {"rel": "icon", "href": "data:,"})
            else:
                self.assertNotIn("href", attrs, (tag, attrs))
        self.assertEqual(re.findall(r"https?://", page.replace("http://www.w3.org/2000/svg", "")),
                         [])
        self.assertEqual(sorted(set(re.findall(r'fetch\("([^"]+)"', SCRIPT))),
                         ["/history.html", "/status.json"])

    def test_the_policy_allows_exactly_the_inline_style_and_script(self):
        page = self.page()
        script = page.split("<script>")[1].split("</script>")[0]
        style = page.split("<style>")[1].split("</style>")[0]
        for source in (script, style):
            digest = base64.b64encode(hashlib.sha256(source.encode()).digest()).decode()
            self.assertIn(f"'sha256-{digest}'", CONTENT_SECURITY_POLICY)
        self.assertEqual((script, style), (SCRIPT, STYLE))
        self.assertIn("default-src 'none'", CONTENT_SECURITY_POLICY)

    def test_failover_mark_with_epoch_and_cause_in_its_title(self):
        timeline = OwnerTimeline()
        timeline.observe(T - 100, [cluster("A", ["alpha"], 7)])
        timeline.observe(T - 50, [cluster("A", ["beta"], 8)])
        history = [HistoryEvent(T - 50, "A:cluster", "moved from alpha to beta (epoch 8)",
                                cause=("lease epoch 7 of alpha expired unrenewed",))]
        svg = timeline_svg(timeline.view(T, history))
        parsed = Elements(svg)
        self.assertEqual([a.get("data-cluster") for tag, a in parsed.tags
                          if tag == "g" and a.get("class") == "failover"], ["A"])
        self.assertEqual([a["data-owner"] for tag, a in parsed.tags if tag == "rect"],
                         ["alpha", "beta"])
        titles = "".join(parsed.text)
        self.assertIn("A: alpha -> beta (epoch 8)\n<- lease epoch 7 of alpha expired unrenewed",
                      titles)
        self.assertIn("A on beta, epoch 8", titles)

    def test_the_fragment_is_the_pages_history_section(self):
        timeline = OwnerTimeline()
        timeline.observe(T - 10, FakeBackend().status().clusters)
        events = [HistoryEvent(T, "web:running", "started")]
        fragment = history_fragment(events, timeline.view(T))
        self.assertIn(f'<section id="history">{fragment}</section>',
                      render_page(FakeBackend().status(), events, timeline.view(T), T))
