"""The daemon: one MultiService that owns every part of a running node."""

import collections
import os
import random as _random
import time

from twisted.application.service import MultiService, Service
from twisted.internet import defer
from twisted.logger import Logger

from clsd import clock
from clsd.events import EVENT_FILE_NAME, EventLog
from clsd.metrics import Metrics, make_metrics_service
from clsd.supervision.containment import ContainmentError, Containments
from clsd.supervision.orphans import RECORD_DIR, GroupRegistry, reap_leftovers
from clsd.supervision.pgroups import OSProcessGroups
from clsd.supervision.runner import ServiceRunner
from clsd.supervision.spawn import command_runner, service_spawner


def _health_checker_factory():
    # Imported only when a service has a check: the health checkers pull in
    # HTTP client code a node without checks never needs.
    from clsd.supervision.health import make_checker

    return make_checker


class _InOrder(MultiService):
    """Children start in order and stop one at a time in reverse order.

    The cluster stack needs it: ownership hands its clusters over (messages)
    before membership announces the leave (messages) before the peer
    network says goodbye and closes; a plain MultiService stops all three
    at once and the network would cut the other two short.
    """

    log = Logger()

    def stopService(self):
        Service.stopService(self)
        d = defer.succeed(None)
        for child in reversed(list(self)):
            d.addCallback(lambda _, child=child: child.stopService())
            d.addErrback(lambda f, child=child: self.log.failure(
                "stopping {child} failed", f, child=child.name))
        return d


def _membership_notary(config, identity):
    """Membership's notary: this node's TLS key signs its reports (doc/membership.md).

    @raise clsd.config.ConfigError: the key cannot sign them (not elliptic-curve).
    """
    from clsd.config import ConfigError
    from clsd.membership.core.notary import NotaryError, X509Notary

    try:
        return X509Notary(identity)
    except NotaryError as e:
        raise ConfigError(config.source, "tls.key", str(e)) from None


def cluster_settings(config):
    """The settings every node of a cluster must share (their hash travels in the hello).

    The arbiter and lease, the etcd prefix when etcd arbitrates, and
    membership's K and H (the observer rings must be the same everywhere).
    Not the voters: nodes in adjacent steps of a change of voters must talk
    (to one another's voters, and to see one another in membership); the
    voters compare voter sets on every request instead
    (L{clsd.ownership.core.voterset}).

    The keys are the configuration's own (``quorum.lease``), so that a
    refused hello names the setting to fix
    (L{clsd.wire.core.messages.settings_digests}).  A setting
    added here later is compared and named with no other change; add it only
    when it differs from its default, so that nodes of the release before
    still agree with the ones that have it.
    """
    quorum = config.quorum
    settings = {
        "quorum": {"arbiter": quorum.arbiter if quorum is not None else None,
                   "lease": quorum.lease if quorum is not None else None},
        "membership": {"observers": config.membership.observers,
                       "quorum": config.membership.quorum},
    }
    if config.etcd is not None:  # one arbiter for all: same etcd keys everywhere
        settings["etcd"] = {"prefix": config.etcd.prefix}
    return settings


class ReloadError(Exception):
    """A reload that changed nothing; the message (one line) says why."""


class Daemon(MultiService):
    """Everything one node runs, built from a L{clsd.config.Config}.

    Start-up order matters for "never run a service twice": the data
    directory is created, process groups and cgroups left by a previous run
    of the daemon are emptied, and only then are the services started
    (L{ready} fires at that point). C{stopService} returns a Deferred that
    fires when nothing of any service is left (its process group, or its
    cgroup under cgroup containment).
    """

    log = Logger()

    def __init__(self, config, reactor, *, groups=None, checker_factory=None,
                 monotonic=None, lease_clock=None, random=_random.random, overrides=None,
                 containments=None):
        super().__init__()
        self.config = config
        #: The command-line overrides the config was loaded with; L{reload} re-applies them.
        self.overrides = dict(overrides or {})
        self.reactor = reactor
        self.data_dir = config.node.data_dir
        # Leases are timed on a clock no time daemon slews (clsd.clock); an
        # injected monotonic clock (tests) drives them too.
        self._lease_clock = lease_clock or monotonic or clock.lease_clock
        monotonic = monotonic or time.monotonic
        self.events = EventLog(monotonic=monotonic)
        self._monotonic = monotonic
        if containments is None:
            # A fake `groups` stands for the whole OS in tests: no real cgroups then.
            containments = (Containments.detect(reactor, config.node.name, self.data_dir)
                            if groups is None else
                            Containments.process_groups_only(reactor, groups))
        #: How each service's processes are held together (cgroup or process group).
        self.containments = containments
        self.groups = groups if groups is not None else OSProcessGroups()
        self.registry = GroupRegistry(os.path.join(self.data_dir, RECORD_DIR))
        #: Fires (with None) once leftovers are reaped and services started.
        self.ready = defer.Deferred()
        self._reaping = None
        self._stopping = False
        if checker_factory is None and any(s.check for s in config.services):
            checker_factory = _health_checker_factory()
        self.metrics = Metrics(config.node.name)
        #: The peer network, its router and membership, when node.listen is set.
        self.network = self.router = self.membership = None
        stack = self
        if config.node.listen is not None:
            stack = _InOrder()
            stack.setName("cluster")
            stack.setServiceParent(self)
            self._add_cluster(stack)
        #: Lease ownership (clsd.ownership.service.OwnershipService) when [quorum] is set.
        self.ownership = None
        if config.quorum is not None:
            from clsd.ownership.service import OwnershipService

            self.ownership = OwnershipService(config, reactor, events=self.events,
                                              monotonic=self._lease_clock)
            self.ownership.setServiceParent(stack)
            if self.membership is not None:
                self._connect_ownership()
        self._checker_factory = checker_factory
        self._random = random
        self._reloading = False
        #: Services whose leftover process group survived the reaping: never autostarted.
        self._stuck = set()
        self._services_started = False
        self._runners = {}
        for service in config.services:
            self._runners[service.name] = self._make_runner(service)
            if self._managed(service.name):
                self.ownership.attach(self._runners[service.name])
        self.metrics.watch_services(lambda: [r.status() for r in self.supervisors()])
        self._watch_cluster_metrics(self._lease_clock)
        from clsd.admin.daemon_backend import DaemonBackend

        # The status page on the metrics listener reads what the admin shell reads.
        self.metrics_service = make_metrics_service(
            config.metrics, self.metrics.registry, reactor, status=DaemonBackend(self))
        self.metrics_service.setServiceParent(self)
        if config.admin.ssh is not None or config.admin.telnet is not None:
            self._add_admin()

    def _add_cluster(self, stack):
        """The peer network, the router and membership (see doc/architecture.md).

        The generation of this start (peer hello and membership record) is
        chosen larger than every previous one and stored in data_dir.

        @raise clsd.config.ConfigError: the [tls] files are unusable.
        @raise clsd.membership.generation.GenerationError: the stored
            generation cannot be read, or the new one cannot be stored.
        """
        from clsd.layers import node_registry
        from clsd.membership.generation import next_generation
        from clsd.membership.service import MembershipService
        from clsd.wire.network import PeerNetwork
        from clsd.wire.router import Router

        config = self.config
        self.router = Router(clock=self.reactor)
        self.network = PeerNetwork.from_config(
            config, reactor=self.reactor, handler=self.router, registry=node_registry(),
            settings=cluster_settings(config), monotonic=self._monotonic, join=(),
            generation=next_generation(self.data_dir))
        self.network.setServiceParent(stack)
        self.membership = MembershipService(
            name=config.node.name, config=config.membership, network=self.network,
            router=self.router, reactor=self.reactor, events=self.events,
            seeds=config.node.join, monotonic=self._monotonic,
            notary=_membership_notary(config, self.network.tls.identity))
        self.membership.setServiceParent(stack)
        if config.quorum is None:
            # No ownership state to publish: an empty one (registered for
            # nothing), so that every member still learns this node's version.
            from clsd.ownership.core.placement import MemberState
            from clsd.ownership.core.published import state_to_wire

            self._publish(state_to_wire(MemberState(config.node.name)))

    def _make_runner(self, service):
        if service.check is not None and self._checker_factory is None:
            self._checker_factory = _health_checker_factory()
        managed = self._managed(service.name)
        containment = self._containment(self.config, service)
        spawn = service_spawner(self.reactor, service, containment)
        run_command = command_runner(self.reactor, service, containment,
                                     extra_env=lambda: spawn.extra_env)
        return ServiceRunner(
            service, self.reactor,
            spawn=self.ownership.spawner(service, base_spawn=spawn) if managed else spawn,
            groups=self.groups,
            containment=containment,
            events=self.events,
            registry=self.registry,
            checker_factory=self.metrics.instrument_checker_factory(
                service.name, self._checker_factory),
            monotonic=self._monotonic,
            random=self._random,
            run_command=run_command,
        )

    def _connect_ownership(self):
        from clsd.layers import OWNERSHIP_TYPES, ownership_message

        ownership, network = self.ownership, self.network
        ownership.connect(
            send=lambda to, wire: network.send_to(to, ownership_message(wire)),
            publish=self._publish)
        self.router.route([t.name for t in OWNERSHIP_TYPES],
                          lambda peer, message: ownership.receive(peer.name, message.parsed))
        self.membership.add_listener(ownership.members_changed)
        self.membership.add_change_listener(ownership.member_event)

    def _publish(self, wire):
        """Gossip this node's metadata: its ownership state, and its version for every member."""
        from clsd.wire.core.versions import publication

        network = self.network
        self.membership.set_meta({**wire, **publication(network.software, network.protocols)})

    def member_versions(self):
        """C{{name: (software version, L{ProtocolRange})}} of this node and the live members,
        as each published them (C{None} where one published nothing yet); {} alone."""
        from clsd.wire.core.versions import published

        if self.membership is None:
            return {}
        versions = {name: published(meta)
                    for name, meta in self.membership.live_members().items()}
        versions[self.config.node.name] = (self.network.software, self.network.protocols)
        return versions

    def cluster_protocol(self):
        """The L{clsd.wire.core.versions.ClusterProtocol} of the live members: a behaviour
        added in protocol N turns on only when C{versions.enabled(N, this)}."""
        from clsd.wire.core.versions import ClusterProtocol, ProtocolRange, cluster_protocol

        versions = self.member_versions()
        if not versions:
            from clsd.version import protocol_range

            return ClusterProtocol(ProtocolRange(*protocol_range()).high, ())
        return cluster_protocol({name: r for name, (_, r) in versions.items()})

    def _managed(self, service_name):
        """Whether the service runs only under its cluster's lease (started by ownership)."""
        return self.ownership is not None and self.ownership.manages(service_name)

    def _containment(self, config, service):
        """The service's containment; a ConfigError when it cannot be contained as set."""
        in_cluster = any(service.name in cluster.members for cluster in config.clusters)
        try:
            return self.containments.for_service(service, in_cluster)
        except ContainmentError as e:
            from clsd.config import ConfigError

            index = [s.name for s in config.services].index(service.name)
            raise ConfigError(config.source, f"service[{index}].containment", str(e)) \
                from None

    def _watch_cluster_metrics(self, monotonic):
        """Members, peer traffic and leases, read from their owners at scrape time."""
        if self.network is not None:
            network, router = self.network, self.router
            self.metrics.watch_peers(
                lambda: dict(network.stats.snapshot(), forged=dict(router.forged)))
            self.metrics.watch_members(self._member_counts)
            self.metrics.watch_membership_refused(self.membership.refused)
        if self.ownership is not None:
            ownership = self.ownership
            ownership.add_report_listener(self._report_metrics)
            self.metrics.watch_leases(
                lambda: ownership.node.manager.status(monotonic())
                if ownership.node is not None else {})
            self.metrics.watch_addresses(ownership.address_status)

    def _report_metrics(self, report):
        """Renewal latency and failovers, as the lease manager reports them."""
        if report.what == "renewed" and report.round_trip is not None:
            self.metrics.lease_renewed(report.resource, report.round_trip)
        elif report.what == "moved":
            from clsd.ownership.core.cause import is_planned

            self.metrics.failover(report.resource, is_planned(report))

    def _member_counts(self):
        core = self.membership.core
        if core is None:
            return {}
        return collections.Counter(info.member.state.value for info in core.members())

    def _add_admin(self):
        # Imported only when configured: conch is not needed otherwise.
        from clsd.admin.daemon_backend import DaemonBackend
        from clsd.admin.service import make_admin_service

        self.admin = make_admin_service(self.config.admin, DaemonBackend(self), self.reactor)
        self.admin.setServiceParent(self)

    # -- for the admin shell -------------------------------------------------------

    def supervisor(self, name):
        """The L{ServiceRunner} of service C{name} (C{start}, C{stop}, C{reset}, C{status})."""
        try:
            return self._runners[name]
        except KeyError:
            known = ", ".join(sorted(self._runners)) or "none"
            raise KeyError(f"no service named {name!r} (services: {known})") from None

    def supervisors(self):
        return [self._runners[name] for name in sorted(self._runners)]

    # -- reload --------------------------------------------------------------------

    def reload(self):
        """Re-read the config file; add, remove or change services and cluster registrations.

        Everything is validated and planned before anything changes: a bad
        file, a restart-only setting or a change the node cannot make yet
        fails the Deferred with L{ReloadError} and changes nothing.  Fires
        with a one-line summary once removed services' process groups are
        gone and changed ones are started again.
        """
        from clsd.config.changes import plan_reload

        try:
            if self._stopping:
                raise ReloadError("the daemon is stopping")
            if not self.ready.called:
                raise ReloadError("the daemon is still starting (reaping leftover groups)")
            if not self._services_started:
                raise ReloadError("services were not started (reaping leftovers failed)")
            if self._reloading:
                raise ReloadError("a reload is already in progress")
            new, identity = self._read_config()
            plan = plan_reload(self.config, new)
            if not plan.allowed:
                raise ReloadError(plan.refusal())
            touched = (plan.clusters_added + plan.clusters_removed + plan.clusters_changed
                       + plan.clusters_replaced)
            if touched and (self.ownership is None or self.ownership.node is None):
                reason = self.ownership.inactive_reason if self.ownership else None
                raise ReloadError(
                    "cluster registrations cannot change: lease ownership is not running "
                    "on this node" + (f" ({reason})" if reason else ""))
            self._check_shape_changes(new, plan)
            self._check_interfaces(new)
        except ReloadError as e:
            self.events.record("daemon", self.config.node.name, f"reload refused: {e}")
            return defer.fail(e)
        self._reloading = True
        expelled = self._enforce_admission(new, identity)
        d = self._apply(new, plan)
        if expelled:
            d.addCallback(lambda result: f"{result}; expelled {', '.join(expelled)}")

        def done(result):
            self._reloading = False
            return result
        d.addBoth(done)
        return d

    def _check_interfaces(self, new, interfaces=None):
        """L{ReloadError} when a floating address names an interface this machine lacks."""
        from clsd.config import ConfigError
        from clsd.config.floating import check_interfaces, local_interfaces

        if not any(c.floating is not None for c in new.clusters):
            return
        try:
            check_interfaces(new.source, new.clusters,
                             local_interfaces() if interfaces is None else interfaces)
        except ConfigError as e:
            raise ReloadError(str(e)) from None

    def _check_shape_changes(self, new, plan):
        """L{ReloadError} if a cluster's mode or count changes here too early
        (L{clsd.ownership.core.shape.change_refusal})."""
        from clsd.ownership.core.shape import shape_changed

        old = {c.id: c for c in self.config.clusters}
        for cluster in new.clusters:
            if cluster.id in plan.clusters_replaced and shape_changed(old[cluster.id], cluster):
                refusal = self.ownership.node.manager.shape_change_refusal(
                    cluster, self._monotonic())
                if refusal is not None:
                    raise ReloadError(refusal)

    def _read_config(self):
        """The file again, with the start's overrides, and its TLS identity (or
        C{None}), fully checked; L{ReloadError}."""
        from clsd.config import ConfigError, load_config

        source = self.config.source
        if not os.path.isfile(source):
            raise ReloadError(f"the configuration did not come from a file ({source!r})")
        identity = None
        try:
            new = load_config(source, overrides=self.overrides)
            if new.tls is not None:
                from clsd.certs.identity import check_identity

                # Re-reads [tls] crl too: a reload puts a new list in force.
                identity = check_identity(new.node.name, new.tls, source=new.source)
            for service in new.services:
                self._containment(new, service)
        except ConfigError as e:
            raise ReloadError(str(e)) from None
        return new, identity

    def _enforce_admission(self, new, identity):
        """Put the admission of C{new} in force (allow, revocation list): peers it
        no longer admits are disconnected at once and declared gone here.

        @return: the names expelled, sorted.
        """
        if self.network is None or identity is None:
            return []
        from clsd.wire.core.admission import Admission
        from clsd.wire.tls import enforce

        admission = Admission.of(identity, new.membership.allow)
        if admission == self.network.tls.admission:
            return []
        reasons = {name: detail for name, (_, detail) in
                   enforce(self.network, admission).items()}
        if self.membership is not None:
            # Live members known only through others (not connected here)
            # whose name is no longer allowed go too.
            for info in self.membership.members():
                name = info.member.name
                if name == new.node.name or not info.member.in_ring:
                    continue
                detail = admission.name_refusal(name)
                if detail is not None:
                    reasons.setdefault(name, detail)
            for name in sorted(reasons):
                self.membership.expel(name, reasons[name])
        expelled = sorted(reasons)
        self.events.record("daemon", new.node.name,
                           f"admission changed: {len(admission.revoked)} revoked "
                           f"certificate(s), allow {', '.join(admission.allow or ('any',))}; "
                           f"expelled {', '.join(expelled) or 'nobody'}",
                           expelled=expelled)
        return expelled

    @defer.inlineCallbacks
    def _apply(self, new, plan):
        """Carry out C{plan}, in an order that never runs a service twice here.

        1. Withdraw removed and replaced clusters (graceful handover: stop,
           release, the successor acquires) and stop unleased runners that go
           or change, all at once; wait until every one is gone.
        2. Start the new and changed unleased runners.
        3. Update clusters whose in-place fields changed.
        4. Register added and replaced clusters with fresh runners.
        """
        old = self.config
        summary = plan.summary()
        self.events.record("daemon", old.node.name, f"reloading: {summary}",
                           added=list(plan.added), removed=list(plan.removed),
                           changed=list(plan.changed),
                           clusters_added=list(plan.clusters_added),
                           clusters_removed=list(plan.clusters_removed),
                           clusters_changed=list(plan.clusters_changed),
                           clusters_replaced=list(plan.clusters_replaced))
        # The new config is in force from here: status shows it, and a
        # second reload compares against it.
        self.config = new
        if self.ownership is not None:
            self.ownership.config = new
        old_clusters = {c.id: c for c in old.clusters}
        new_clusters = {c.id: c for c in new.clusters}
        labels, waits = [], []
        for cluster_id in plan.clusters_withdrawn:
            for name in old_clusters[cluster_id].members:
                self._runners.pop(name, None)
            labels.append(f"cluster {cluster_id}")
            waits.append(defer.maybeDeferred(self.ownership.unregister, cluster_id))
        for name in plan.plain_stop:
            labels.append(name)
            waits.append(defer.maybeDeferred(self._runners.pop(name).disownServiceParent))
        results = yield defer.DeferredList(waits, consumeErrors=True)
        for label, (ok, result) in zip(labels, results):
            if not ok:
                self.log.failure("reload: stopping {name} failed", result, name=label)
        for name in plan.plain_start:
            runner = self._runners[name] = self._make_runner(new.service(name))
            if name in self._stuck:
                runner.autostart = False
            runner.setServiceParent(self)
        for cluster_id in plan.clusters_changed:
            self.ownership.update_cluster(new_clusters[cluster_id])
        for cluster_id in plan.clusters_registered:
            cluster = new_clusters[cluster_id]
            blocked = None
            if any(name in self._stuck for name in cluster.members):
                blocked = "a process group of its previous run is still present"
            self.ownership.add_cluster(cluster, blocked=blocked)
            for name in cluster.members:
                runner = self._runners[name] = self._make_runner(new.service(name))
                self.ownership.attach(runner)
                runner.setServiceParent(self.ownership)
            yield self.ownership.register(cluster)
        self.events.record("daemon", new.node.name, f"reloaded: {summary}")
        return f"reloaded: {summary}"

    # -- IService ------------------------------------------------------------------

    def startService(self):
        os.makedirs(self.data_dir, exist_ok=True)
        self.events.open(os.path.join(self.data_dir, EVENT_FILE_NAME))
        self.events.record("daemon", self.config.node.name, "starting",
                           pid=os.getpid(), services=sorted(self._runners))
        super().startService()
        self._reaping = reap_leftovers(self.registry, self.reactor, self.groups,
                                       self.events, monotonic=self._monotonic,
                                       tree=self.containments.tree)
        self._reaping.addCallback(self._remove_leftover_addresses)
        self._reaping.addErrback(self._reap_failed)

    def _remove_leftover_addresses(self, stuck):
        """Floating addresses of this node's clusters left on an interface by a killed run."""
        if self.ownership is None:
            return self._start_services(stuck)
        d = self.ownership.remove_leftover_addresses()
        d.addCallback(lambda _: self._start_services(stuck))
        return d

    def _start_services(self, stuck):
        if self._stopping:
            return
        stuck_services = {record.service for record in stuck}
        self._stuck = stuck_services
        for name in sorted(self._runners):
            runner = self._runners[name]
            if name in stuck_services:
                self.events.record(
                    "daemon", self.config.node.name,
                    f"not starting {name}: a process group of its previous run is "
                    "still present")
                # Supervised (so stop() and status() work) but not started.
                runner.autostart = False
            runner.setServiceParent(self.ownership if self._managed(name) else self)
        if self.ownership is not None:
            self.ownership.activate(stuck_services)
        self._services_started = True
        self.events.record("daemon", self.config.node.name, "services started",
                           phase="started", pid=os.getpid())
        self.ready.callback(None)

    def _reap_failed(self, failure):
        self.log.failure("cannot reap leftover process groups; starting no service",
                         failure)
        self.events.record("daemon", self.config.node.name,
                           "services not started: reaping leftovers failed: "
                           f"{failure.getErrorMessage()}")
        if not self.ready.called:
            self.ready.callback(None)

    def stopService(self):
        self._stopping = True
        self.events.record("daemon", self.config.node.name, "stopping", phase="stopping")
        reaping = self._reaping if self._reaping is not None else defer.succeed(None)
        d = defer.Deferred()
        reaping.addBoth(lambda _: d.callback(None))
        d.addCallback(lambda _: super(Daemon, self).stopService())
        d.addCallback(self._stopped)
        return d

    def _stopped(self, _):
        self.events.record("daemon", self.config.node.name, "stopped", phase="stopped")
        self.events.close()
        self.containments.close()
