"""The status page (``GET /`` on the metrics listener): one read-only HTML page; pure.

Server-rendered, so it reads right without JavaScript; a small inline script then refreshes
the tables from ``/status.json`` (the document of ``status --json``) every 2 s, and the
events and timeline from ``/history.html`` (the same fragment this module renders) when the
status changed or every 10 s. No external assets: the style, the script and the SVG timeline
are inline, and the Content-Security-Policy (L{CONTENT_SECURITY_POLICY}) allows nothing else,
not even another inline script.

Every text that may come from a configuration or a peer (node, cluster and service names,
event details) is escaped here; the script sets text with ``textContent`` only.
"""

import base64
import hashlib
import html
import zlib

from clsd.admin.commands import member_version
from clsd.admin.table import utc_time

#: The page shows the last this many events.
PAGE_EVENTS = 50
#: The timeline's drawing size (SVG user units).
TIMELINE_WIDTH = 900
ROW_HEIGHT = 26
LABEL_WIDTH = 70
AXIS_HEIGHT = 18

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1em 2em;color:#222;background:#fff}
h1{font-size:1.4em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .3em}
table{border-collapse:collapse}th,td{padding:2px 10px 2px 0;text-align:left;vertical-align:top}
th{border-bottom:1px solid #999;font-weight:600}td.num{text-align:right}td.time{white-space:nowrap}
.bad{color:#b00020;font-weight:600}.good{color:#1b5e20}.muted{color:#777}
ul.cause{margin:0;padding-left:1.2em;color:#555;font-size:.9em}
svg text{font:11px system-ui,sans-serif}
""".strip()

SCRIPT = """
(function(){
  var last = null, lastHistory = 0;
  function text(tag, value, cls){
    var e = document.createElement(tag);
    e.textContent = (value === null || value === undefined || value === "") ? "-" : String(value);
    if (cls) e.className = cls;
    return e;
  }
  function fill(id, rows){
    var body = document.querySelector("#" + id + " tbody");
    if (!body) return;
    while (body.firstChild) body.removeChild(body.firstChild);
    rows.forEach(function(r){
      var tr = document.createElement("tr");
      Object.keys(r.data || {}).forEach(function(k){ tr.setAttribute("data-" + k, r.data[k]); });
      r.cells.forEach(function(c){ tr.appendChild(text("td", c[1], c[0])); });
      body.appendChild(tr);
    });
  }
  function list(v){ return (v && v.length) ? v.join(", ") : "-"; }
  function versionText(m){
    if (!m.version) return "-";
    var p = m.protocols || [];
    if (p.length !== 2) return m.version;
    return m.version + " (protocol " + (p[0] === p[1] ? p[0] : p[0] + "-" + p[1]) + ")";
  }
  function render(doc){
    var q = doc.quorum;
    document.getElementById("quorum").textContent =
      "quorum: " + (q.have_quorum ? "yes" : "NO") + " (voters: " + list(q.voters) + ")";
    document.getElementById("quorum").className = q.have_quorum ? "good" : "bad";
    fill("members", doc.members.map(function(m){
      return {data: {member: m.name}, cells: [["name", m.name],
        [m.state === "alive" ? "state" : "state bad", m.state], ["address", m.address],
        ["version", versionText(m)]]};
    }));
    fill("clusters", doc.clusters.map(function(c){
      return {data: {cluster: c.id}, cells: [["id", c.id],
        [c.condition === "running" ? "state" : "state bad", c.summary || c.state],
        ["owners", list(c.owners)], ["epoch num", c.epoch], ["role", c.role_text],
        ["standbys", list(c.standbys)]]};
    }));
    fill("services", doc.services.map(function(s){
      return {data: {service: s.name}, cells: [["name", s.name],
        [s.state === "running" ? "state" : "state bad", s.state], ["pid num", s.pid],
        ["restarts num", s.restarts], ["type", s.type]]};
    }));
  }
  function history(){
    lastHistory = Date.now();
    fetch("/history.html", {cache: "no-store"}).then(function(r){
      if (!r.ok) throw new Error(r.status); return r.text();
    }).then(function(fragment){
      document.getElementById("history").innerHTML = fragment;
    }).catch(function(){});
  }
  function tick(){
    fetch("/status.json", {cache: "no-store"}).then(function(r){
      if (!r.ok) throw new Error(r.status); return r.text();
    }).then(function(body){
      var changed = body !== last;
      last = body;
      render(JSON.parse(body));
      document.getElementById("updated").textContent =
        "updated " + new Date().toISOString().replace("T", " ").slice(0, 19) + "Z";
      document.getElementById("updated").className = "muted";
      if (changed || Date.now() - lastHistory > 10000) history();
    }).catch(function(){
      document.getElementById("updated").textContent = "cannot reach the daemon; retrying";
      document.getElementById("updated").className = "bad";
    });
  }
  setInterval(tick, 2000);
})();
""".strip()


def _csp_hash(source):
    digest = hashlib.sha256(source.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: Only this page's own inline style and script, and fetches of its own JSON and fragment.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; "
    f"style-src {_csp_hash(STYLE)}; script-src {_csp_hash(SCRIPT)}; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


def esc(value):
    """Text for HTML content and attribute values; None and empty lists as ``-``."""
    if value is None or value == () or value == [] or value == "":
        return "-"
    if isinstance(value, (list, tuple)):
        value = ", ".join(str(v) for v in value)
    return html.escape(str(value), quote=True)


def _row(data, cells):
    attrs_text = "".join(f' data-{name}="{esc(value)}"' for name, value in data.items())
    tds = "".join(f'<td class="{cls}">{esc(value)}</td>' for cls, value in cells)
    return f"<tr{attrs_text}>{tds}</tr>"


def _table(table_id, headers, rows):
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    return (f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def members_html(members):
    return _table("members", ["member", "state", "address", "version"], [
        _row({"member": m.name}, [("name", m.name),
                                  ("state" if m.state == "alive" else "state bad", m.state),
                                  ("address", m.address),
                                  ("version", member_version(m))]) for m in members])


def clusters_html(clusters):
    return _table("clusters", ["cluster", "state", "owners", "epoch", "this node",
                               "standbys (next first)"], [
        _row({"cluster": c.id}, [
            ("id", c.id),
            ("state" if (c.condition or "running") == "running" else "state bad",
             c.summary or c.state),
            ("owners", c.owners), ("epoch num", c.epoch), ("role", c.role_text),
            ("standbys", c.standbys)]) for c in clusters])


def services_html(services):
    return _table("services", ["service", "state", "pid", "restarts", "type"], [
        _row({"service": s.name}, [
            ("name", s.name), ("state" if s.state == "running" else "state bad", s.state),
            ("pid num", s.pid), ("restarts num", s.restarts), ("type", s.type)])
        for s in services])


def events_html(events):
    """The events, newest first, each with its cause chain under it."""
    rows = []
    for e in reversed(events):
        cause = ""
        if e.cause:
            cause = '<ul class="cause">' + "".join(
                f"<li>&larr; {esc(fact)}</li>" for fact in e.cause) + "</ul>"
        rows.append(f'<tr class="event"><td class="time">{esc(utc_time(e.time))}</td>'
                    f'<td class="kind">{esc(e.kind)}</td>'
                    f'<td class="detail">{esc(e.detail)}{cause}</td></tr>')
    return _table("events", ["time (UTC)", "event", "detail"], rows)


def _colour(owners):
    """A stable colour per owner set (the same node is the same colour in every row)."""
    if not owners:
        return "#d0d0d0"
    hue = zlib.crc32(",".join(owners).encode("utf-8")) % 360
    return f"hsl({hue},55%,62%)"


def _clock(posix_time):
    return utc_time(posix_time)[11:]


def timeline_svg(view):
    """Each cluster's owners over the view's span, one row each, failovers marked in red."""
    clusters = list(view.segments)
    span = max(view.end - view.start, 1e-9)
    plot = TIMELINE_WIDTH - LABEL_WIDTH
    height = AXIS_HEIGHT + ROW_HEIGHT * max(len(clusters), 1) + 4

    def x(t):
        return LABEL_WIDTH + (min(max(t, view.start), view.end) - view.start) / span * plot

    parts = [f'<svg id="timeline" xmlns="http://www.w3.org/2000/svg" width="{TIMELINE_WIDTH}" '
             f'height="{height}" viewBox="0 0 {TIMELINE_WIDTH} {height}" role="img" '
             f'aria-label="owners of each cluster over time">']
    # The time axis: a tick every 10 minutes (every minute when the span is short).
    step = 600 if span > 1200 else 60 if span > 120 else 10
    tick = (int(view.start) // step + 1) * step
    while tick < view.end:
        parts.append(f'<line x1="{x(tick):.1f}" y1="{AXIS_HEIGHT - 4}" x2="{x(tick):.1f}" '
                     f'y2="{height}" stroke="#eee"/><text x="{x(tick):.1f}" y="11" '
                     f'text-anchor="middle" fill="#777">{esc(_clock(tick)[:5 if step >= 60 else 8])}'
                     "</text>")
        tick += step
    for row, cluster in enumerate(clusters):
        top = AXIS_HEIGHT + row * ROW_HEIGHT
        parts.append(f'<g class="cluster" data-cluster="{esc(cluster)}">'
                     f'<text x="0" y="{top + 16}" fill="#222">{esc(cluster)}</text>')
        for seg in view.segments[cluster]:
            left, right = x(seg.start), x(seg.end if seg.end is not None else view.end)
            until = _clock(seg.end) if seg.end is not None else "now"
            who = ", ".join(seg.owners) or "nobody"
            title = (f"{cluster} on {who}" + (f", epoch {seg.epoch}" if seg.owners else "")
                     + f" ({seg.summary}), {_clock(seg.start)} - {until}")
            parts.append(
                f'<rect class="owner" data-owner="{esc(seg.owners)}" x="{left:.1f}" '
                f'y="{top + 3}" width="{max(right - left, 1):.1f}" height="{ROW_HEIGHT - 6}" '
                f'fill="{_colour(seg.owners)}"><title>{esc(title)}</title></rect>')
            if right - left > 8 * len(who) + 6:
                parts.append(f'<text x="{left + 4:.1f}" y="{top + 16}" fill="#111">'
                             f"{esc(who)}</text>")
        parts.append("</g>")
    for f in view.failovers:
        if f.cluster not in view.segments:
            continue
        top = AXIS_HEIGHT + clusters.index(f.cluster) * ROW_HEIGHT
        title = (f"{_clock(f.time)} {f.cluster}: {', '.join(f.before)} -> {', '.join(f.after)}"
                 f" (epoch {f.epoch})" + "".join(f"\n<- {fact}" for fact in f.cause))
        parts.append(
            f'<g class="failover" data-cluster="{esc(f.cluster)}">'
            f'<line x1="{x(f.time):.1f}" y1="{top}" x2="{x(f.time):.1f}" y2="{top + ROW_HEIGHT}" '
            f'stroke="#b00020" stroke-width="3"/>'
            f'<path d="M{x(f.time) - 5:.1f},{top} h10 l-5,6 z" fill="#b00020"/>'
            f"<title>{esc(title)}</title></g>")
    parts.append("</svg>")
    return "".join(parts)


def history_fragment(events, timeline):
    """The part the script replaces: the timeline and the last events."""
    return ("<h2>Owners since " + esc(utc_time(timeline.start)) + "</h2>"
            + timeline_svg(timeline)
            + f"<h2>Last {len(events)} events</h2>" + events_html(events))


def render_page(status, events, timeline, now):
    """The whole page: C{status} (L{clsd.admin.backend.Status}), C{events} (the last
    L{PAGE_EVENTS} L{clsd.admin.backend.HistoryEvent}s, oldest first), C{timeline}
    (L{clsd.admin.timeline.TimelineView}), C{now} (wall-clock)."""
    quorum = status.quorum
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width">'
        # No favicon: the browser asks for nothing the page does not name.
        '<link rel="icon" href="data:,">'
        f"<title>CLSD {esc(status.node)}</title><style>{STYLE}</style></head><body>"
        f'<h1>CLSD node <span id="node">{esc(status.node)}</span></h1>'
        f'<p id="quorum" class="{"good" if quorum.have_quorum else "bad"}">quorum: '
        f'{"yes" if quorum.have_quorum else "NO"} (voters: {esc(quorum.voters)})</p>'
        f'<p id="updated" class="muted">as of {esc(utc_time(now))} (read-only; refreshes '
        "every 2 s with JavaScript)</p>"
        "<h2>Members</h2>" + members_html(status.members)
        + "<h2>Clusters</h2>" + clusters_html(status.clusters)
        + "<h2>Services</h2>" + services_html(status.services)
        + '<section id="history">' + history_fragment(events, timeline) + "</section>"
        + f"<script>{SCRIPT}</script></body></html>\n"
    )
