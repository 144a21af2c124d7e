"""Many real membership cores on one simulated clock and a faulty in-memory network.

The network models what the peer layer gives membership: persistent
connections (a link exists while either end wants it and both run), messages
with per-link latency and loss, partitions (messages across are dropped and
new connections fail, existing ones stay open as TCP would), node pauses
(SIGSTOP: events wait and are handled on resume, late), crashes (connections
close, peers see LinkDown) and restarts (a new core, a new generation).
Everything random comes from one seed: a run is reproducible.
"""

import heapq
import json
import random

from clsd.config.membership import MembershipConfig
from clsd.membership.core import node as mcore
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import from_wire, record_statement
from clsd.membership.core.notary import FakeNotary, VerifiedCache
from clsd.membership.core.rings import SnapshotCache
from clsd.membership.core.table import build_snapshots
from rig.sim.scheduler import Scheduler


def node_name(index):
    return f"n{index:05d}"


def node_address(index):
    """Each node its own loopback address (never used for real packets here)."""
    host = index + 2
    return f"127.{(host >> 16) & 255}.{(host >> 8) & 255}.{host & 255}:7400"


class SimNode:
    __slots__ = ("index", "name", "address", "core", "alive", "paused", "epoch",
                 "timers", "wants", "links", "peers", "pending", "group", "joined_at",
                 "generation", "sent", "left")

    def __init__(self, index):
        self.index = index
        self.name = node_name(index)
        self.address = node_address(index)
        self.core = None
        self.alive = False
        self.paused = False
        self.epoch = 0
        self.timers = {}
        self.wants = {}
        #: Indices of the nodes this one has a connection to ...
        self.links = set()
        #: ... and the same nodes by name (what a Send names), for delivery.
        self.peers = {}
        self.pending = []
        self.group = 0
        self.joined_at = None
        self.generation = 0
        self.sent = 0
        self.left = False


class SimCluster:
    def __init__(self, n, config=None, *, seed=0, latency=0.0005, jitter=0.0005,
                 formed=True, seeds=3, stagger=1.0, wire_check=False, on_change=None):
        """
        @param formed: start every node already knowing every other (a cluster
            that has converged); otherwise every node joins through the seeds,
            starting at a random time within C{stagger} seconds.
        @param seeds: how many of the first nodes serve as seeds.
        @param wire_check: pass every message through to_wire/JSON/from_wire.
        @param on_change: called as C{on_change(cluster, node, MemberChanged)}.
        """
        self.config = config if config is not None else MembershipConfig()
        self.scheduler = Scheduler()
        self.rng = random.Random(seed)
        self.seed = seed
        self.latency = latency
        self.jitter = jitter
        self.wire_check = wire_check
        self.on_change = on_change
        self.cache = SnapshotCache()
        #: Verdicts on signed reports, shared like the snapshots (a verdict
        #: does not depend on who asks).
        self.verified = VerifiedCache()
        self.nodes = [SimNode(i) for i in range(n)]
        self.by_name = {node.name: node for node in self.nodes}
        self.by_address = {node.address: node for node in self.nodes}
        self.seed_addresses = tuple(node.address for node in self.nodes[:seeds])
        self.loss = 0.0
        self.node_loss = {}
        self.link_loss = {}
        self.node_latency = {}
        self.link_latency = {}
        self.partitioned = False
        #: Every MemberChanged to dead: (time, observer name, member).
        self.deaths = []
        self.messages = 0
        self.dropped = 0
        snapshot = ring_snapshot = None
        #: Each member's signature of its record in the formed list (shared).
        self.lives = {}
        if formed:
            members = [Member(node.name, node.address, 1, 0, State.ALIVE) for node in self.nodes]
            snapshot, ring_snapshot = build_snapshots(members, self.config.observers)
            self.lives = signed_lives(members, self.verified)
        for node in self.nodes:
            if formed:
                self._start(node, 1, snapshot, ring_snapshot, at=0.0)
            else:
                self._start(node, 1, None, None, at=self.rng.uniform(0, stagger))

    # -- time ------------------------------------------------------------------

    @property
    def now(self):
        return self.scheduler.now

    def run_for(self, duration):
        self.scheduler.run_for(duration)

    def run_until(self, when):
        self.scheduler.run_until(when)

    # -- node lifecycle -----------------------------------------------------------

    def _start(self, node, generation, snapshot, ring_snapshot, at):
        node.generation = generation
        node.epoch += 1
        node.alive = True
        node.paused = False
        node.left = False
        node.pending = []
        node.timers = {}
        node.wants = {}
        node.joined_at = None
        node.core = mcore.Core(
            node.name, node.address, generation, self.config,
            rng=random.Random((self.seed << 20) ^ (node.index << 4) ^ generation),
            cache=self.cache, snapshot=snapshot, ring_snapshot=ring_snapshot,
            notary=FakeNotary(node.name, self.verified),
            lives=self.lives if snapshot is not None else None)
        self.scheduler.at(at, self._deliver_event, node, node.epoch,
                          mcore.JoinRequested(self.seed_addresses))

    def crash(self, name):
        """Kill a node: its connections close, its state is lost."""
        node = self.by_name[name]
        if not node.alive:
            return
        node.alive = False
        node.epoch += 1
        self._drop_links(node)

    def restart(self, name):
        """Start a crashed node again: a new generation, joining through the seeds."""
        node = self.by_name[name]
        if node.alive:
            self.crash(name)
        self._start(node, node.generation + 1, None, None, at=self.now)
        for other in self.nodes:
            if other.alive and node.address in other.wants:
                self._try_connect(other, node)

    def pause(self, name):
        self.by_name[name].paused = True

    def resume(self, name):
        node = self.by_name[name]
        node.paused = False
        pending, node.pending = node.pending, []
        for function, args in pending:
            function(*args)

    def leave(self, name):
        node = self.by_name[name]
        self._run(node, node.core.handle(mcore.LeaveRequested(), self.now))

    def force_remove(self, at_name, name):
        node = self.by_name[at_name]
        self._run(node, node.core.handle(mcore.ForceRemove(name), self.now))

    # -- faults ----------------------------------------------------------------------

    def partition(self, *groups):
        """Cut the network: nodes in different groups (lists of names) cannot talk;
        nodes in no group form group 0."""
        for node in self.nodes:
            node.group = 0
        for number, names in enumerate(groups, start=1):
            for name in names:
                self.by_name[name].group = number
        self.partitioned = True

    def heal(self):
        for node in self.nodes:
            node.group = 0
        self.partitioned = False
        for node in self.nodes:
            if node.alive:
                for address in list(node.wants):
                    target = self.by_address.get(address)
                    if target is not None:
                        self._try_connect(node, target)

    def set_latency(self, name, latency, *, peer=None):
        """Extra one-way latency for every message of a node, or of one link."""
        index = self.by_name[name].index
        if peer is None:
            self.node_latency[index] = latency
        else:
            other = self.by_name[peer].index
            self.link_latency[(min(index, other), max(index, other))] = latency

    def _extra_latency(self, node, target):
        extra = self.node_latency.get(node.index, 0.0) + self.node_latency.get(target.index, 0.0)
        if self.link_latency:
            a, b = node.index, target.index
            extra += self.link_latency.get((min(a, b), max(a, b)), 0.0)
        return extra

    def set_loss(self, name=None, loss=0.0, *, peer=None):
        """Loss probability for every message (name None), a node's messages, or one link."""
        if name is None:
            self.loss = loss
        elif peer is None:
            self.node_loss[self.by_name[name].index] = loss
        else:
            a, b = self.by_name[name].index, self.by_name[peer].index
            self.link_loss[(min(a, b), max(a, b))] = loss

    # -- links --------------------------------------------------------------------------

    def _try_connect(self, node, target):
        if not (node.alive and target.alive) or target.index in node.links or node is target:
            return
        if node.group != target.group:
            return  # retried on heal
        delay = 2 * self.latency + self.rng.random() * self.jitter
        self.scheduler.at(self.now + delay, self._establish, node, node.epoch, target, target.epoch)

    def _establish(self, node, epoch, target, target_epoch):
        if node.epoch != epoch or target.epoch != target_epoch or not (node.alive and target.alive):
            return
        if target.index in node.links or target.address not in node.wants:
            return
        if node.group != target.group:
            return
        node.links.add(target.index)
        target.links.add(node.index)
        node.peers[target.name] = target
        target.peers[node.name] = node
        self._deliver_event(node, node.epoch, mcore.LinkUp(target.name, target.address))
        self._deliver_event(target, target.epoch, mcore.LinkUp(node.name, node.address))

    def _drop_links(self, node):
        for index in list(node.links):
            peer = self.nodes[index]
            peer.links.discard(node.index)
            peer.peers.pop(node.name, None)
            self.scheduler.at(self.now + self.latency, self._deliver_event, peer, peer.epoch,
                              mcore.LinkDown(node.name))
        node.links.clear()
        node.peers.clear()

    def _unlink(self, node, peer):
        node.links.discard(peer.index)
        peer.links.discard(node.index)
        node.peers.pop(peer.name, None)
        peer.peers.pop(node.name, None)
        self._deliver_event(node, node.epoch, mcore.LinkDown(peer.name))
        self.scheduler.at(self.now + self.latency, self._deliver_event, peer, peer.epoch,
                          mcore.LinkDown(node.name))

    # -- running cores ---------------------------------------------------------------------

    def _deliver_event(self, node, epoch, event):
        if node.epoch != epoch or not node.alive:
            return
        if node.paused:
            node.pending.append((self._deliver_event, (node, epoch, event)))
            return
        self._run(node, node.core.handle(event, self.now))

    def _deliver_message(self, node, epoch, sender, message):
        if node.epoch != epoch or not node.alive:
            return
        if node.paused:
            node.pending.append((self._deliver_message, (node, epoch, sender, message)))
            return
        actions = node.core.receive(sender, message, self.scheduler.now)
        if actions:
            self._run(node, actions)

    def _fire(self, node, epoch, name, version):
        if node.epoch != epoch or not node.alive or node.timers.get(name) != version:
            return
        if node.paused:
            node.pending.append((self._fire, (node, epoch, name, version)))
            return
        self._run(node, node.core.timer_fired(name, self.scheduler.now))

    def _run(self, node, actions):
        scheduler = self.scheduler
        now = scheduler.now
        Send = mcore.Send
        # The same message to several peers (a heartbeat to the watchers)
        # travels as one scheduled delivery: consecutive Sends of one
        # message object are gathered into `names`.
        message = names = None
        for action in actions:
            kind = type(action)
            if kind is Send:
                if action.message is message:
                    names.append(action.to)
                    continue
                if names is not None:
                    self._send_many(node, names, message)
                message = action.message
                names = [action.to]
                continue
            if names is not None:
                self._send_many(node, names, message)
                message = names = None
            if kind is mcore.SetTimer:
                timers = node.timers
                version = timers.get(action.name, 0) + 1
                timers[action.name] = version
                at = action.at
                heapq.heappush(scheduler._heap, (
                    at if at > now else now, next(scheduler._seq),
                    self._fire, (node, node.epoch, action.name, version)))
            elif kind is mcore.MemberChanged:
                if action.member.state is State.DEAD and not action.removed:
                    self.deaths.append((now, node.name, action.member))
                if self.on_change is not None:
                    self.on_change(self, node, action)
            elif kind is mcore.Connect:
                node.wants[action.address] = action.name
                target = self.by_address.get(action.address)
                if target is not None:
                    self._try_connect(node, target)
            elif kind is mcore.Disconnect:
                node.wants.pop(action.address, None)
                target = self.by_address.get(action.address)
                if target is not None and target.index in node.links and (
                        node.address not in target.wants):
                    self._unlink(node, target)
            elif kind is mcore.CancelTimer:
                node.timers[action.name] = node.timers.get(action.name, 0) + 1
            elif kind is mcore.Joined:
                node.joined_at = now
            elif kind is mcore.LeaveDone:
                node.left = True
                node.alive = False
                node.epoch += 1
                self._drop_links(node)
        if names is not None:
            self._send_many(node, names, message)

    def _send_many(self, node, names, message):
        if len(names) == 1 or self.node_latency or self.link_latency:
            for name in names:
                self._send(node, name, message)
            return
        count = len(names)
        node.sent += count
        self.messages += count
        peers = node.peers
        group = node.group
        lossy = self.loss or self.node_loss or self.link_loss
        rng = self.rng
        targets = []
        for to in names:
            target = peers.get(to)  # None: unknown name or no connection
            if target is None or target.group != group or (
                    lossy and rng.random() < self._loss(node, target)):
                self.dropped += 1
                continue
            targets.append((target, target.epoch))
        if not targets:
            return
        if self.wire_check:
            message = from_wire(json.loads(json.dumps(message.to_wire())))
        scheduler = self.scheduler
        heapq.heappush(scheduler._heap, (
            scheduler.now + self.latency + rng.random() * self.jitter, next(scheduler._seq),
            self._deliver_many, (targets, node.name, message)))

    def _deliver_many(self, targets, sender, message):
        now = self.scheduler.now
        for node, epoch in targets:
            # A crash or restart bumps the epoch; a crash also clears alive.
            if node.epoch != epoch or not node.alive:
                continue
            if node.paused:
                node.pending.append((self._deliver_message, (node, epoch, sender, message)))
                continue
            actions = node.core.receive(sender, message, now)
            if actions:
                self._run(node, actions)

    def _loss(self, node, target):
        loss = max(self.loss, self.node_loss.get(node.index, 0.0),
                   self.node_loss.get(target.index, 0.0))
        if self.link_loss:
            a, b = node.index, target.index
            loss = max(loss, self.link_loss.get((min(a, b), max(a, b)), 0.0))
        return loss

    def _send(self, node, to, message):
        node.sent += 1
        self.messages += 1
        target = node.peers.get(to)  # None: unknown name or no connection
        if target is None or node.group != target.group:
            self.dropped += 1
            return
        rng = self.rng
        if self.loss or self.node_loss or self.link_loss:
            if rng.random() < self._loss(node, target):
                self.dropped += 1
                return
        if self.wire_check:
            message = from_wire(json.loads(json.dumps(message.to_wire())))
        delay = self.latency + rng.random() * self.jitter
        if self.node_latency or self.link_latency:
            delay += self._extra_latency(node, target)
        scheduler = self.scheduler
        heapq.heappush(scheduler._heap, (
            scheduler.now + delay, next(scheduler._seq),
            self._deliver_message, (target, target.epoch, node.name, message)))

    # -- observations -------------------------------------------------------------------------

    def live(self):
        return [node for node in self.nodes if node.alive]

    def view(self, observer, subject):
        """The record of C{subject} at C{observer}, or None."""
        return self.by_name[observer].core.member(subject)

    def all_see(self, subject, state, generation=None):
        """Whether every live, joined node other than C{subject} sees it in C{state}."""
        for node in self.nodes:
            if not node.alive or node.name == subject or node.joined_at is None:
                continue
            member = node.core.member(subject)
            if state is None:
                if member is not None:
                    return False
                continue
            if member is None or member.state is not state:
                return False
            if generation is not None and member.generation != generation:
                return False
        return True

    def converged(self):
        """Every live node holds the same member list and sees every live node alive."""
        live = [node for node in self.nodes if node.alive]
        if not live:
            return True
        digest = live[0].core.digest()
        for node in live:
            if node.core.digest() != digest:
                return False
        core = live[0].core
        for node in live:
            member = core.member(node.name)
            if member is None or member.state is not State.ALIVE or (
                    member.generation != node.generation):
                return False
        return True


def signed_lives(members, verified=None):
    """name -> (record, life signature) of C{members}, each signed by its own
    L{FakeNotary} (for cores started from a formed list)."""
    lives = {}
    for member in members:
        notary = FakeNotary(member.name, verified)
        lives[member.name] = (member, notary.sign_life(record_statement(member)))
    return lives
