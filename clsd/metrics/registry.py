"""One daemon's metrics: a private CollectorRegistry and the calls the parts make.

Two kinds of figures, two kinds of calls:

- What a part already knows (member states, lease epochs, service states and
  restart counts, the peer layer's counters) is I{read at scrape time} from a
  callback the part registers with a C{watch_*} method. Nothing is copied
  or counted twice, and the figures are exactly the part's own.
- What nobody keeps (latencies, failovers) is I{reported} by the part that
  sees it happen: L{Metrics.health_checked}, L{Metrics.lease_renewed},
  L{Metrics.failover}. These are plain counters and buckets in this object.

Everything is exposed by one custom collector, so the registry holds no
prometheus_client metric objects: no process-global state (several daemons
live in one test process), no locks, no ``_created`` series. It runs on the
reactor thread (see L{clsd.metrics.web}), where reading the parts is safe.
The names, types and labels are listed in doc/metrics.md.
"""

import collections
import math

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
)
from twisted.internet import defer
from twisted.logger import Logger

#: Seconds. A check's default timeout is 0.5 s: fine steps below it, a few
#: above it for custom timeouts and slow exec probes.
HEALTH_CHECK_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                        2.5, 5.0, 10.0)

#: Seconds from sending a renewal to its majority grant. On one host about a
#: millisecond, on a LAN a few; near the lease period (seconds) is trouble.
LEASE_RENEWAL_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                         0.5, 1.0, 2.5, 5.0)

#: Always present in clsd_members, at 0 when no member is in that state, so
#: that a graph or alert on "dead" exists before the first death.
MEMBER_STATES = ("alive", "suspect", "dead", "left")

#: Always present in clsd_service_state (see clsd.supervision.core.policy.State).
SERVICE_STATES = ("stopped", "starting", "running", "backoff", "stopping", "failed",
                  "exited")

#: The phases of a resource in clsd.ownership.core.manager, always present in
#: clsd_lease_phase.
LEASE_PHASES = ("idle", "acquiring", "fencing", "running", "stopping", "stuck")

#: Phases in which this node surely holds the lease: fencing the previous
#: owner, or running the service. Not "stopping": that may be a lease that
#: could not be renewed (the tenure is over while the service stops).
HELD_PHASES = frozenset({"fencing", "running"})


class Histogram:
    """Bucket counts, sum and count of observed values; cumulative on output."""

    def __init__(self, bounds):
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value):
        index = len(self.bounds)
        for i, bound in enumerate(self.bounds):
            if value <= bound:
                index = i
                break
        self.counts[index] += 1
        self.sum += value

    def buckets(self):
        """``[(le, cumulative count), ...]`` ending with ``("+Inf", total)``."""
        result, running = [], 0
        for bound, count in zip(self.bounds + (math.inf,), self.counts):
            running += count
            result.append(("+Inf" if bound == math.inf else repr(bound), running))
        return result


def _state_name(state):
    """An enum member's value, or the string itself."""
    return str(getattr(state, "value", state))


class Metrics:
    """The metrics of one daemon.

    @ivar registry: the L{CollectorRegistry} to serve (see
        L{clsd.metrics.web.make_metrics_service}); a fresh one unless given.
    """

    log = Logger()

    def __init__(self, node, *, version=None, registry=None):
        if version is None:
            from clsd import __version__ as version
        self.node = node
        self.version = version
        self.registry = registry if registry is not None else CollectorRegistry()
        self._watched = {}
        self._failovers = collections.Counter()
        self._health_results = collections.Counter()
        self._health_latency = {}
        self._renewal_latency = {}
        self._collect_errors = collections.Counter()
        self.registry.register(_Collector(self))

    # -- read at scrape time ---------------------------------------------------------

    def _watch(self, source, callback):
        if source in self._watched:
            raise ValueError(f"metrics: {source} are already watched")
        self._watched[source] = callback

    def watch_members(self, callback):
        """C{callback()} returns C{{state: count}} of the members this node knows.

        States are strings or enums with a string C{value} (``alive``,
        ``suspect``, ``dead``, ``left``).
        """
        self._watch("members", callback)

    def watch_membership_refused(self, callback):
        """C{callback()} returns C{{reason: count}}: membership news refused since start
        (C{MembershipService.refused}; reasons in doc/membership.md)."""
        self._watch("membership_refused", callback)

    def watch_leases(self, callback):
        """C{callback()} returns C{{resource: (phase, epoch)}}.

        That is C{ClusterManager.status(now)}: every resource (cluster ID, or
        ``ID/slot``) this node has dealt with, and its phase (``idle``,
        ``acquiring``, ``fencing``, ``running``, ``stopping``).
        """
        self._watch("leases", callback)

    def watch_addresses(self, callback):
        """C{callback()} returns C{{cluster: {address: up}}}: each floating address of
        this node's clusters and whether it is up here (L{AddressKeeper.status})."""
        self._watch("addresses", callback)

    def watch_services(self, callback):
        """C{callback()} returns an iterable of C{ServiceRunner.status()} dicts.

        The keys read are C{name}, C{state}, C{restarts} (automatic restarts
        so far) and C{healthy} (C{None} when the service has no check).
        """
        self._watch("services", callback)

    def watch_peers(self, callback):
        """C{callback()} returns C{PeerStats.snapshot()}: counts since start.

        Keys read: C{connections}, C{established}, C{messages_in},
        C{messages_out}, C{bytes_in}, C{bytes_out}, and C{rejected} and
        C{dropped} (C{{reason: count}}), and C{forged} (C{{peer: count}}).
        """
        self._watch("peers", callback)

    # -- reported as it happens ------------------------------------------------------

    def health_checked(self, service, ok, seconds):
        """One health check of C{service} finished, passing or not, in C{seconds}.

        C{seconds} is C{None} when the checker itself broke (no latency).
        """
        self._health_results[(service, "pass" if ok else "fail")] += 1
        if seconds is None:
            return
        histogram = self._health_latency.get(service)
        if histogram is None:
            histogram = self._health_latency[service] = Histogram(HEALTH_CHECK_BUCKETS)
        histogram.observe(seconds)

    def lease_renewed(self, resource, seconds):
        """A renewal of C{resource} was granted C{seconds} after it was sent."""
        histogram = self._renewal_latency.get(resource)
        if histogram is None:
            histogram = self._renewal_latency[resource] = Histogram(LEASE_RENEWAL_BUCKETS)
        histogram.observe(seconds)

    def failover(self, resource, planned):
        """This node took C{resource} over from another node.

        @param planned: the previous holder released it (move, drain,
            preemption) rather than failed or vanished.
        """
        self._failovers[(resource, "true" if planned else "false")] += 1

    def instrument_checker_factory(self, service, factory):
        """Wrap a C{checker_factory(check, reactor)} so that C{service}'s checks are counted.

        The checkers' results (L{clsd.supervision.health.CheckResult}: C{ok},
        C{latency}) go to L{health_checked}; C{None} stays C{None}.
        """
        if factory is None:
            return None

        def make(check, reactor):
            return _CountedChecker(factory(check, reactor), service, self)

        return make

    # -- the collector's side ----------------------------------------------------------

    def _read(self, source):
        """The watched callback's value, or C{None} (not watched, or it failed)."""
        callback = self._watched.get(source)
        if callback is None:
            return None
        try:
            return callback()
        except Exception:
            # A broken part must not break the scrape of all the others.
            self._collect_errors[source] += 1
            self.log.failure("metrics: cannot read the {source}", source=source)
            return None


class _CountedChecker:
    """A health checker whose results are also reported to L{Metrics}."""

    def __init__(self, checker, service, metrics):
        self._checker = checker
        self._service = service
        self._metrics = metrics

    def check(self):
        d = defer.maybeDeferred(self._checker.check)

        def report(result):
            self._metrics.health_checked(self._service, result.ok, result.latency)
            return result

        def broken(failure):
            # The runner counts a broken checker as a failed check; so do we.
            self._metrics.health_checked(self._service, False, None)
            return failure

        return d.addCallbacks(report, broken)

    def __getattr__(self, name):
        return getattr(self._checker, name)


class _Collector:
    """Builds every clsd_ family at scrape time from a L{Metrics}."""

    def __init__(self, metrics):
        self._metrics = metrics

    def describe(self):
        # Names only, so that registering reads no part (and finds clashes).
        return self._families()

    def collect(self):
        m = self._metrics
        families = self._families()
        by_name = {family.name: family for family in families}

        def add(name, labels, value):
            by_name[name].add_metric(labels, value)

        add("clsd_node_info", [m.node, m.version], 1)

        members = m._read("members")
        if members is not None:
            counts = dict.fromkeys(MEMBER_STATES, 0)
            for state, count in members.items():
                counts[_state_name(state)] = counts.get(_state_name(state), 0) + count
            for state, count in counts.items():
                add("clsd_members", [state], count)

        for reason, count in sorted((m._read("membership_refused") or {}).items()):
            add("clsd_membership_refused", [reason], count)

        leases = m._read("leases")
        for resource, (phase, epoch) in sorted((leases or {}).items()):
            add("clsd_lease_held", [resource], 1 if phase in HELD_PHASES else 0)
            for known in LEASE_PHASES + (() if phase in LEASE_PHASES else (phase,)):
                add("clsd_lease_phase", [resource, known], 1 if known == phase else 0)
            add("clsd_lease_epoch", [resource], epoch)
        for cluster, addresses in sorted((m._read("addresses") or {}).items()):
            for address, up in sorted(addresses.items()):
                add("clsd_cluster_address_up", [cluster, address], 1 if up else 0)
        for (resource, planned), count in sorted(m._failovers.items()):
            add("clsd_failovers", [resource, planned], count)
        for resource, histogram in sorted(m._renewal_latency.items()):
            by_name["clsd_lease_renewal_seconds"].add_metric(
                [resource], histogram.buckets(), histogram.sum)

        services = m._read("services")
        for status in services or ():
            name, state = status["name"], _state_name(status["state"])
            for known in SERVICE_STATES + (() if state in SERVICE_STATES else (state,)):
                add("clsd_service_state", [name, known], 1 if known == state else 0)
            add("clsd_service_restarts", [name], status.get("restarts", 0))
            add("clsd_service_rogue_copies", [name], status.get("rogue_found", 0))
            if status.get("healthy") is not None:
                add("clsd_service_healthy", [name], 1 if status["healthy"] else 0)
        for (service, result), count in sorted(m._health_results.items()):
            add("clsd_health_checks", [service, result], count)
        for service, histogram in sorted(m._health_latency.items()):
            by_name["clsd_health_check_seconds"].add_metric(
                [service], histogram.buckets(), histogram.sum)

        peers = m._read("peers")
        if peers is not None:
            add("clsd_peer_connections", [], peers.get("connections", 0))
            add("clsd_peer_connections_established", [], peers.get("established", 0))
            add("clsd_peer_pending_handshakes", [], peers.get("pending", 0))
            for direction in ("in", "out"):
                add("clsd_peer_messages", [direction], peers.get(f"messages_{direction}", 0))
                add("clsd_peer_bytes", [direction], peers.get(f"bytes_{direction}", 0))
            for reason, count in sorted(peers.get("rejected", {}).items()):
                add("clsd_peer_connections_rejected", [reason], count)
            for reason, count in sorted(peers.get("dropped", {}).items()):
                add("clsd_peer_connections_dropped", [reason], count)
            for peer, count in sorted(peers.get("forged", {}).items()):
                add("clsd_peer_forged", [peer], count)

        for source, count in sorted(m._collect_errors.items()):
            add("clsd_metrics_collect_errors", [source], count)
        return families

    @staticmethod
    def _families():
        """Every family, empty, in exposition order. The catalogue of names."""
        return [
            GaugeMetricFamily(
                "clsd_node_info", "This daemon: its node name and CLSD version (always 1).",
                labels=["node", "version"]),
            GaugeMetricFamily(
                "clsd_members", "Members of the cluster in each state, as this node sees them.",
                labels=["state"]),
            GaugeMetricFamily(
                "clsd_lease_held",
                "1 while this node holds the lease of the resource (fencing or running).",
                labels=["resource"]),
            GaugeMetricFamily(
                "clsd_lease_phase", "1 for the phase each resource is in on this node.",
                labels=["resource", "phase"]),
            GaugeMetricFamily(
                "clsd_cluster_address_up",
                "1 while the cluster's floating address is on this node's interface "
                "(added by this node under the lease).",
                labels=["cluster", "address"]),
            GaugeMetricFamily(
                "clsd_lease_epoch",
                "Epoch (fencing token) of this node's latest tenure of the resource.",
                labels=["resource"]),
            CounterMetricFamily(
                "clsd_failovers",
                "Times this node took the resource over from another node "
                "(planned: the other released it).",
                labels=["resource", "planned"]),
            HistogramMetricFamily(
                "clsd_lease_renewal_seconds",
                "Seconds from sending a lease renewal to its grant by a majority of voters.",
                labels=["resource"]),
            GaugeMetricFamily(
                "clsd_service_state", "1 for the state each supervised service is in.",
                labels=["service", "state"]),
            CounterMetricFamily(
                "clsd_service_restarts",
                "Automatic restarts of the service (after an exit or a failed check).",
                labels=["service"]),
            CounterMetricFamily(
                "clsd_service_rogue_copies",
                "Copies of an LSB/OCF service found running on this node without its lease "
                "(started by hand) and stopped.",
                labels=["service"]),
            GaugeMetricFamily(
                "clsd_service_healthy",
                "1 while the service's health check says healthy (only services with a check).",
                labels=["service"]),
            CounterMetricFamily(
                "clsd_health_checks", "Health checks run, by result (pass or fail).",
                labels=["service", "result"]),
            HistogramMetricFamily(
                "clsd_health_check_seconds", "Seconds one health check took, pass or fail.",
                labels=["service"]),
            CounterMetricFamily(
                "clsd_peer_connections", "Peer connections opened (accepted or made)."),
            CounterMetricFamily(
                "clsd_membership_refused",
                "Membership news refused: a report without its observer's valid signature, "
                "a join for another node, an impossible incarnation, a removal of a live "
                "member; by reason.",
                labels=["reason"]),
            CounterMetricFamily(
                "clsd_peer_connections_established",
                "Peer connections that completed TLS and the hello."),
            GaugeMetricFamily(
                "clsd_peer_pending_handshakes",
                "Accepted peer connections not yet past TLS and the hello (capped by "
                "[peer] max_pending)."),
            CounterMetricFamily(
                "clsd_peer_messages", "Peer protocol messages, by direction (in or out).",
                labels=["direction"]),
            CounterMetricFamily(
                "clsd_peer_bytes",
                "Bytes of the peer line protocol (inside TLS), by direction (in or out).",
                labels=["direction"]),
            CounterMetricFamily(
                "clsd_peer_connections_rejected",
                "Connections refused before the hello completed, by reason.",
                labels=["reason"]),
            CounterMetricFamily(
                "clsd_peer_connections_dropped",
                "Established peer connections this node cut off, by reason.",
                labels=["reason"]),
            CounterMetricFamily(
                "clsd_peer_forged",
                "Peer connections closed because a message spoke for another node, by sender.",
                labels=["peer"]),
            CounterMetricFamily(
                "clsd_metrics_collect_errors",
                "Scrapes in which reading a part failed (see the log), by part.",
                labels=["source"]),
        ]
