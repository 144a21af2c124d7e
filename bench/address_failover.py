#!/usr/bin/env python3
"""Failover at a floating address: fail the owner; how long until the client is answered there?

Run as ``python bench/failover.py --address`` (or this file). It builds a
network of namespaces (rig/netns.py: alpha, beta, witness, client on one
bridge; 192.0.2.0/24 only, all inside the namespaces) and runs three real
``twistd clsd`` daemons there (rig/address_cluster.py): cluster A with the
floating address 192.0.2.10/24, its service answering with its node's name.
In the client's namespace a watch asks every 20 ms who answers ARP for the
address and what answers HTTP at it and at each node's own address.

Each trial applies one fault to the owner:
  - ``kill``: kill -9 of its daemon (its lease guard removes the address);
  - ``stop``: SIGSTOP of its daemon (the guard removes it at the deadline);
  - ``partition``: nft drops between the owner and the other two daemons
    (not the client, which could otherwise not see a second holder).
Per trial: *floating* = fault to the first client answer from the standby at
the floating address; *node address* = fault to the first answer from the
standby's service at its own address (the per-node-address figure of the
same run); *switch* = from the standby's ``address.added`` event to that
first answer at the floating address (adding, the announcement, the
service's start under ``address_order = "before"``, the first request);
*gap* = from the last round in which the old owner's MAC answered ARP for
the address (its removal, seen by the client) to that first answer; *dual
rounds* = watch rounds in which two MACs
answered ARP for the address (must be 0). The fault is then undone (daemon
restarted, SIGCONT, partition healed) and the cluster left to settle.

A trial starts only once one node holds the address and the client is
answered there; a trial that does not settle within SETTLE_TIMEOUT, or
whose standby is not answering at the address within FAILOVER_TIMEOUT of
the fault, is recorded as *failed* with what the network showed at that
moment (who holds the address, where the client's neighbour entry points,
who answered last), and the run goes on with the next trial.

``--keepalived`` runs Debian's keepalived in the same kind of network beside
it: VRRP between alpha and beta (advert_int 1 s, priorities 100/50,
nopreempt) holding the same address, the same service running on both all
the time (keepalived moves addresses, not services), the same faults
applied to keepalived's processes. keepalived does not remove the address
of a killed or stopped instance, or of a partitioned one: its dual rounds
are what VRRP without fencing does.

Usage: python bench/failover.py --address [--trials 30] [--kinds kill,stop,partition]
           [--keepalived]
Writes bench/results/address_failover.json and prints a table. Needs root,
``ip`` and ``nft``. Every namespace and process is removed at the end.
"""

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _harness import (  # noqa: E402
    interrupts_as_exceptions, machine_info, remove_tree, summary_ms, uninterruptible,
    write_json,
)

from clsd.polling import WaitTimeout, wait_for  # noqa: E402
from rig.address_cluster import (  # noqa: E402
    FLOATING, HTTP_PORT, AddressCluster, ClientWatch, ip_of,
)
from rig.netns import Netns  # noqa: E402

KINDS = ("kill", "stop", "partition")
FAILOVER_TIMEOUT = 30.0
#: Before a trial: one holder, the client answered by it. Linux keeps a
#: neighbour entry that nobody confirms for up to about 50 s (reachable
#: 15-45 s, delay 5 s, probes 3 s) before it asks again.
SETTLE_TIMEOUT = 60.0
PAIR = ("alpha", "beta")

KEEPALIVED_CONF = """\
global_defs {{
    router_id {node}
    enable_script_security
}}
vrrp_instance A {{
    state BACKUP
    interface eth0
    virtual_router_id 51
    priority {priority}
    advert_int 1
    nopreempt
    virtual_ipaddress {{
        {address} dev eth0
    }}
}}
"""


class Trial:
    def __init__(self, kind, owner):
        self.kind = kind
        self.owner = owner
        self.standby = PAIR[1] if owner == PAIR[0] else PAIR[0]
        self.floating = None
        self.node_address = None
        self.switch = None
        self.gap = None
        self.dual_rounds = 0
        #: Why the trial has no figure (it did not settle, or nobody took over), or None.
        self.failed = None

    def as_dict(self):
        return {"kind": self.kind, "owner": self.owner, "failed": self.failed,
                "floating_s": _round(self.floating), "node_address_s": _round(self.node_address),
                "switch_s": _round(self.switch), "gap_s": _round(self.gap),
                "dual_rounds": self.dual_rounds}


def _round(value):
    return None if value is None else round(value, 4)


def holders(rig):
    return [node for node in PAIR if FLOATING in {str(a) for a in rig.addresses(node)}]


def owner_of(rig):
    found = holders(rig)
    return found[0] if found else None


def settled(rig, watch):
    """The one holder of the address, when the client's latest answer there is its; else None."""
    found = holders(rig)
    last = watch.last()
    if len(found) == 1 and last is not None and last["answers"][0] == found[0]:
        return found[0]
    return None


def network_state(rig, watch):
    """What the network shows now, in words: for a failed trial's reason."""
    names = {rig.node(n).mac: n for n in (*PAIR, "witness", "client")}
    entry = rig.neigh("client", ip_of(FLOATING))
    last = watch.last()
    answered = last["answers"][0] if last is not None else None
    return (f"holders: {', '.join(holders(rig)) or 'none'}; the client's neighbour entry: "
            f"{names.get(entry, entry) or 'none'}; last answer at the address: "
            f"{answered or 'none'}")


def begin(rig, watch, kind):
    """A L{Trial} against the settled owner, or a failed one (C{owner} None) when it did not settle."""
    try:
        owner = wait_for(lambda: settled(rig, watch), SETTLE_TIMEOUT,
                         what="one holder, answering the client")
    except WaitTimeout as e:
        trial = Trial(kind, PAIR[0])
        trial.owner = None
        trial.failed = f"not settled before the fault: {e} ({network_state(rig, watch)})"
        return trial
    return Trial(kind, owner)


def measure(trial, watch, t0, rig):
    """Fill C{trial} from the watch's rounds since C{t0} (failed if the standby never answers)."""
    index = 1 + PAIR.index(trial.standby)
    try:
        wait_for(lambda: watch.first(lambda r: r["answers"][0] == trial.standby, t0),
                 FAILOVER_TIMEOUT, what=f"{trial.standby} to answer at the floating address")
    except WaitTimeout as e:
        trial.failed = f"{e} ({network_state(rig, watch)})"
        trial.dual_rounds = sum(1 for r in watch.rounds()
                                if r["t"] >= t0 and len(r["macs"]) > 1)
        return
    answered = watch.first(lambda r: r["answers"][0] == trial.standby, t0)
    trial.floating = answered - t0
    own = watch.first(lambda r: r["answers"][index] == trial.standby, t0)
    trial.node_address = None if own is None else own - t0
    old_mac = watch.macs[trial.owner]
    removed = [r["t"] for r in watch.rounds() if r["t"] <= answered and old_mac in r["macs"]]
    if removed:
        trial.gap = answered - removed[-1]
    time.sleep(0.3)  # rounds after the switch count for the dual check too
    trial.dual_rounds = sum(1 for r in watch.rounds() if r["t"] >= t0 and len(r["macs"]) > 1)


def describe(trial):
    if trial.owner is None:
        return f"FAILED {trial.failed}"
    text = f"{trial.owner} -> {trial.standby} "
    if trial.failed is not None:
        return text + f"FAILED {trial.failed}, dual rounds {trial.dual_rounds}"
    text += f"floating {trial.floating * 1000:.0f} ms"
    if trial.node_address is not None:
        text += f", node address {trial.node_address * 1000:.0f} ms"
    return text + f", dual rounds {trial.dual_rounds}"


# -- CLSD ----------------------------------------------------------------------------


def run_clsd(args, workdir, say):
    cleanups = []
    rig = Netns.create(None)
    try:
        cluster = AddressCluster(str(workdir / "clsd"), rig, cleanups.append,
                                 lease=args.lease, drift_margin=args.lease / 10)
        cluster.start_all()
        wait_for(lambda: owner_of(rig) is not None, 60, what="an owner of the address")
        watch = ClientWatch(str(workdir / "watch-clsd.jsonl"), rig, cluster, cleanups.append,
                            nodes=PAIR)
        watch.macs = {n: rig.node(n).mac for n in PAIR}
        trials = []
        for kind in args.kinds:
            for number in range(args.trials):
                trial = clsd_trial(rig, cluster, watch, kind, args)
                trials.append(trial)
                say(f"  clsd {kind} {number + 1}/{args.trials}: {describe(trial)}")
        return trials
    finally:
        with uninterruptible():
            for cleanup in reversed(cleanups):
                try:
                    cleanup()
                except Exception as e:  # noqa: BLE001
                    say(f"cleanup failed: {e}")
            rig.destroy()


def clsd_trial(rig, cluster, watch, kind, args):
    trial = begin(rig, watch, kind)
    if trial.owner is None:
        time.sleep(args.settle)
        return trial
    before = len(cluster.events(trial.standby))
    t0 = time.monotonic()
    if kind == "kill":
        os.kill(cluster.daemon_pid(trial.owner), signal.SIGKILL)
    elif kind == "stop":
        os.kill(cluster.daemon_pid(trial.owner), signal.SIGSTOP)
    else:
        rig.partition(trial.owner, trial.standby)
        rig.partition(trial.owner, "witness")
    measure(trial, watch, t0, rig)
    added = [e for e in cluster.events(trial.standby)[before:]
             if e["kind"] == "address" and e["fields"].get("what") == "added"]
    if added and trial.failed is None:
        answered = watch.first(lambda r: r["answers"][0] == trial.standby, t0)
        trial.switch = answered - added[0]["mono"]
    if kind == "kill":
        cluster.daemons[trial.owner].wait(10)
        cluster.start(trial.owner)
    elif kind == "stop":
        os.kill(cluster.daemon_pid(trial.owner), signal.SIGCONT)
    else:
        rig.heal()
    time.sleep(args.settle)
    return trial


# -- keepalived -------------------------------------------------------------------------


def run_keepalived(args, workdir, say, trials):
    rig = Netns.create(None)
    processes = []
    daemons = {}
    try:
        for node, priority in zip(PAIR, (100, 50)):
            env = dict(os.environ, CLSD_NODE=node)
            processes.append(subprocess.Popen(
                rig.exec_argv(node, [sys.executable, "-m", "rig.address_http_service",
                                     str(HTTP_PORT)]),
                env=env, stdin=subprocess.DEVNULL))
            daemons[node] = Keepalived(rig, workdir, node, priority)
        for daemon in daemons.values():
            daemon.start()
        wait_for(lambda: owner_of(rig) is not None, 30, what="a VRRP master")

        class Urls:  # what ClientWatch needs of a cluster
            def url(self, name=None):
                host = ip_of(FLOATING) if name is None else str(rig.node(name).ipv4.ip)
                return f"http://{host}:{HTTP_PORT}/"

        watch = ClientWatch(str(workdir / "watch-keepalived.jsonl"), rig, Urls(),
                            processes.append, nodes=PAIR)
        watch.macs = {n: rig.node(n).mac for n in PAIR}
        for kind in args.kinds:
            for number in range(args.trials):
                trial = keepalived_trial(rig, daemons, watch, kind, args)
                trial.node_address = trial.switch = None  # its service runs on both nodes all the time
                trials.append(trial)
                say(f"  keepalived {kind} {number + 1}/{args.trials}: {describe(trial)}")
    finally:
        with uninterruptible():
            for daemon in daemons.values():
                daemon.stop()
            for process in processes:
                if callable(process):
                    process()
                elif process.poll() is None:
                    process.kill()
                    process.wait(5)
            rig.destroy()


class Keepalived:
    """One keepalived (VRRP only) in a node's namespace.

    It runs in the foreground (``-n``) as this process's child, so that this
    process reaps it and its console log (``-l``) lands in keepalived.log.
    A daemonized keepalived, once killed, stays a zombie until init reaps it
    (seconds here); a restart reading its pid file then took it for running
    and exited at once, and every later trial had no standby.
    """

    def __init__(self, rig, workdir, node, priority):
        self.rig = rig
        self.node = node
        self.directory = workdir / f"keepalived-{node}"
        self.directory.mkdir(parents=True)
        self.config = self.directory / "keepalived.conf"
        self.config.write_text(KEEPALIVED_CONF.format(node=node, priority=priority,
                                                      address=FLOATING))
        self.pid_files = (self.directory / "keepalived.pid", self.directory / "vrrp.pid")
        self.process = None

    def start(self):
        for path in self.pid_files:  # a killed instance's: it is gone
            path.unlink(missing_ok=True)
        with open(self.directory / "keepalived.log", "ab") as log:
            self.process = subprocess.Popen(self.rig.exec_argv(self.node, [
                "keepalived", "-n", "-f", str(self.config), "-p", str(self.pid_files[0]),
                "-r", str(self.pid_files[1]), "--vrrp", "-l", "-D", "-G"]),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_for(lambda: len(self.pids()) == 2 and all(map(_running, self.pids())), 10,
                 what=f"keepalived on {self.node} to run (its VRRP process)")

    def pids(self):
        pids = []
        for path in self.pid_files:
            try:
                pids.append(int(path.read_text().split()[0]))
            except (OSError, ValueError, IndexError):
                pass
        return pids

    def signal(self, signum):
        for pid in self.pids():
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill(self):
        self.signal(signal.SIGKILL)
        if self.process is not None:
            self.process.wait(10)

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.signal(signal.SIGCONT)
            self.kill()


def _running(pid):
    """Whether C{pid} is a live process (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def keepalived_trial(rig, daemons, watch, kind, args):
    trial = begin(rig, watch, kind)
    if trial.owner is None:
        time.sleep(args.settle)
        return trial
    owner = daemons[trial.owner]
    t0 = time.monotonic()
    if kind == "kill":
        owner.signal(signal.SIGKILL)
    elif kind == "stop":
        owner.signal(signal.SIGSTOP)
    else:
        rig.partition(trial.owner, trial.standby)
    measure(trial, watch, t0, rig)
    if kind == "kill":
        owner.kill()
        # keepalived leaves the address of a killed instance behind: clear it, as an
        # operator would, before the instance comes back.
        rig.ip(trial.owner, "addr", "del", FLOATING, "dev", "eth0", check=False)
        owner.start()
    elif kind == "stop":
        owner.signal(signal.SIGCONT)
    else:
        rig.heal()
    time.sleep(args.settle)
    return trial


# -- report -----------------------------------------------------------------------------


def summarize(trials):
    by_kind = {}
    for kind in sorted({t.kind for t in trials}):
        every = [t for t in trials if t.kind == kind]
        mine = [t for t in every if t.failed is None]
        entry = {"trials": len(every), "failed": len(every) - len(mine),
                 "failures": [t.failed for t in every if t.failed is not None],
                 "floating": summary_ms([t.floating for t in mine]) if mine else None,
                 "dual_rounds": sum(t.dual_rounds for t in every),
                 "trials_with_dual": sum(1 for t in every if t.dual_rounds)}
        node = [t.node_address for t in mine if t.node_address is not None]
        if node:
            entry["node_address"] = summary_ms(node)
        for key in ("switch", "gap"):
            values = [getattr(t, key) for t in mine if getattr(t, key) is not None]
            if values:
                entry[key] = summary_ms(values)
        by_kind[kind] = entry
    return by_kind


def table(results):
    lines = [f"{'system':11} {'fault':10} {'floating p50/p99 ms':>22} {'node addr p50/p99':>20} "
             f"{'switch p50/p99':>16} {'gap p50/p99':>14} {'dual rounds (trials)':>21} "
             f"{'failed':>7}"]
    for system, by_kind in results.items():
        for kind, entry in by_kind.items():
            def pair(key, entry=entry):
                if entry.get(key) is None:
                    return "-"
                return f"{entry[key]['p50_ms']:.0f} / {entry[key]['p99_ms']:.0f}"
            lines.append(f"{system:11} {kind:10} {pair('floating'):>22} "
                         f"{pair('node_address'):>20} {pair('switch'):>16} {pair('gap'):>14} "
                         f"{entry['dual_rounds']:>12} ({entry['trials_with_dual']})"
                         f" {entry['failed']:>4}/{entry['trials']}")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--address", action="store_true", help="(the mode of failover.py)")
    parser.add_argument("--trials", type=int, default=30, help="trials per fault kind")
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--lease", type=float, default=1.0, help="CLSD's lease (s)")
    parser.add_argument("--settle", type=float, default=4.0,
                        help="seconds after undoing a fault before the next trial")
    parser.add_argument("--keepalived", action="store_true",
                        help="also run keepalived (VRRP) in the same kind of network")
    parser.add_argument("--only", choices=("clsd", "keepalived"),
                        help="run one system only (keepalived: implies --keepalived)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the logs and watch files (the path is printed)")
    parser.add_argument("--output", default="address_failover.json")
    args = parser.parse_args(argv)
    args.kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
    args.keepalived = args.keepalived or args.only == "keepalived"
    for kind in args.kinds:
        if kind not in KINDS:
            parser.error(f"--kinds: unknown fault {kind!r} (known: {', '.join(KINDS)})")
    if args.keepalived and shutil.which("keepalived") is None:
        parser.error("--keepalived: keepalived is not installed (apt-get install keepalived)")
    workdir = Path(tempfile.mkdtemp(prefix="clsd-bench-address-"))
    info = machine_info()
    results, raw, errors = {}, {}, {}
    status = 0
    try:
        with interrupts_as_exceptions():
            if args.only != "keepalived":
                trials = run_clsd(args, workdir, print)
                results["clsd"], raw["clsd"] = summarize(trials), [t.as_dict() for t in trials]
            if args.keepalived and args.only != "clsd":
                done = []
                try:
                    run_keepalived(args, workdir, print, done)
                except Exception as e:  # noqa: BLE001 (the CLSD figures are kept)
                    print(f"keepalived run failed after {len(done)} trials: {e}",
                          file=sys.stderr)
                    errors["keepalived"] = f"{type(e).__name__}: {e} (after {len(done)} trials)"
                if done:
                    results["keepalived"] = summarize(done)
                    raw["keepalived"] = [t.as_dict() for t in done]
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        status = 130
    finally:
        if status or args.keep_workdir:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            remove_tree(workdir)
    if not results:
        return status or 1
    version = subprocess.run(["keepalived", "--version"], capture_output=True,
                             text=True).stderr.splitlines()[:1] if args.keepalived else None
    data = {"benchmark": "address_failover", "description": __doc__.split("\n\n")[0],
            "address": FLOATING, "trials_per_kind": args.trials, "lease_s": args.lease,
            "machine": info, "keepalived": version, "goal": "the address adds <= 50 ms to "
            "the p50 failover (floating against node address); dual rounds 0",
            "results": results, "trials": raw, "errors": errors}
    path = write_json(args.output, data)
    print(table(results))
    print(f"written to {path}")
    if results.get("clsd") and any(e["dual_rounds"] for e in results["clsd"].values()):
        print("DUAL: two machines answered for the address at once", file=sys.stderr)
        return 2
    return status


if __name__ == "__main__":
    sys.exit(main())
