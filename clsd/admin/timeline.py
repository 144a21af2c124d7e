"""Who owned each cluster when, as this node saw it: the status page's timeline; pure.

The daemon's history records only this node's own lease events (an acquisition elsewhere
is not an event here), so the timeline is sampled instead: L{OwnerTimeline.observe} is
given the cluster records now and then (the status page's service does it every second and
at every request) and keeps a segment per owner set, dropping what is older than its span.
A failover mark is where a cluster's owners change to others; its cause comes from the
history when this node recorded the move (``moved from X to Y (epoch N)``).
"""

import collections

import attrs

#: The timeline covers the last hour (or the time since start, if shorter).
DEFAULT_SPAN = 3600.0


@attrs.frozen
class Segment:
    """C{cluster} was owned by C{owners} under C{epoch} from C{start} to C{end} (None: now)."""

    cluster: str
    owners: tuple
    epoch: int
    summary: str
    start: float
    end: float | None = None


@attrs.frozen
class Failover:
    """The owners of C{cluster} changed from C{before} to C{after} at C{time}."""

    cluster: str
    time: float
    before: tuple
    after: tuple
    epoch: int
    #: The cause chain, oldest fact first, when this node recorded the move; else ().
    cause: tuple = ()


@attrs.frozen
class TimelineView:
    start: float
    end: float
    #: cluster -> its segments in time order, clipped to [start, end].
    segments: dict
    failovers: tuple


class OwnerTimeline:
    """Segments of each cluster's owners over the last C{span} seconds (wall-clock time)."""

    def __init__(self, span=DEFAULT_SPAN):
        self.span = span
        self._segments = collections.defaultdict(collections.deque)
        self._failovers = collections.deque()
        #: cluster -> the last non-empty owner set, to mark a failover across an unowned gap.
        self._last_owners = {}
        self._first = None

    def observe(self, now, clusters):
        """Take in the cluster records (L{clsd.admin.backend.ClusterInfo}) as they are at C{now}."""
        if self._first is None:
            self._first = now
        for info in clusters:
            owners = tuple(sorted(info.owners))
            segments = self._segments[info.id]
            current = segments[-1] if segments else None
            summary = info.summary or info.state
            if current is not None and current.owners == owners and (
                    current.epoch == info.epoch or not owners):
                if current.summary != summary:
                    segments[-1] = attrs.evolve(current, summary=summary)
                continue
            if current is not None:
                segments[-1] = attrs.evolve(current, end=now)
            segments.append(Segment(info.id, owners, info.epoch, summary, now))
            before = self._last_owners.get(info.id)
            if owners:
                # A failover is a new owner: not the old one's claim fading after it.
                new = tuple(o for o in owners if o not in (before or ()))
                if before is not None and new:
                    self._failovers.append(Failover(info.id, now, before, new, info.epoch))
                self._last_owners[info.id] = owners
        self._forget(now)

    def _forget(self, now):
        horizon = now - self.span
        for segments in self._segments.values():
            while segments and segments[0].end is not None and segments[0].end < horizon:
                segments.popleft()
        while self._failovers and self._failovers[0].time < horizon:
            self._failovers.popleft()

    def view(self, now, history=()):
        """The last span up to C{now}; C{history} (L{clsd.admin.backend.HistoryEvent}s) gives
        the failovers this node recorded their causes."""
        start = max(now - self.span, self._first if self._first is not None else now)
        segments = {
            cluster: [attrs.evolve(s, start=max(s.start, start)) for s in found
                      if s.end is None or s.end >= start]
            for cluster, found in sorted(self._segments.items())
        }
        failovers = tuple(attrs.evolve(f, cause=_cause_of(f, history))
                          for f in self._failovers if f.time >= start)
        return TimelineView(start, now, segments, failovers)


def _cause_of(failover, history):
    """The cause chain of the move this node recorded for C{failover}, or ()."""
    tag = f"(epoch {failover.epoch})"
    for event in reversed(history):
        if (event.kind == f"{failover.cluster}:cluster" and event.detail.startswith("moved from ")
                and event.detail.endswith(tag)):
            return tuple(event.cause) or (event.detail,)
    return ()
