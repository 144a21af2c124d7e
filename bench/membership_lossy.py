"""Membership under stress: no false declarations with saturated cores and a lossy node.

The goal (issue 4): zero false declarations over a 10-minute run of 64 real
nodes while both cores are saturated by other processes and one node loses
20% of its packets (nft numgen drop on lo).

  1. N real nodes (default 64) in P worker processes (rig.multiproc),
     every member change into suspect or dead streamed to this coordinator;
  2. once all have joined and settled: B busy processes (default 2, one per
     core) and an nft rule dropping --loss of the packets to and from ONE
     node's address on lo (a dedicated table, clsd_faults_<pid>_lossy);
  3. --duration seconds (default 600) of that; nobody is crashed, so every
     "dead" is a false declaration. Suspicions are allowed (refuted by the
     suspect) but counted;
  4. rule and burners removed, then every node must again see all N alive.

Needs root (nft). The table and the burners are removed at the end, on
failure, on Ctrl-C and SIGTERM/SIGHUP (and by atexit); the burners also
exit on their own when this process dies, and
``python -m rig.faults cleanup-all`` finds the table by its name.

    sudo .venv/bin/python bench/membership_lossy.py --duration 60   # a short check
    sudo .venv/bin/python bench/membership_lossy.py                  # the 10-minute run
"""

import argparse
import collections
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as h  # noqa: E402
from membership_scale import run_in_reactor  # noqa: E402

#: A busy loop that checks every ~50 ms whether its parent is still there,
#: so that even a kill -9 of this bench leaves no burner behind.
BURNER = ("import os\n"
          "parent = os.getppid()\n"
          "while os.getppid() == parent:\n"
          "    for _ in range(200000):\n"
          "        pass\n")
#: Progress lines this often during the run.
PROGRESS_EVERY = 60.0


class Burners:
    """C{count} busy processes competing for the CPU; registered for cleanup."""

    def __init__(self, count, cleanups):
        from rig.faults.cleanup import OWNER_ENV

        env = {**os.environ, OWNER_ENV: str(os.getpid())}
        self.procs = []
        self._token = cleanups.add(self.stop, f"stop {count} CPU burners")
        self._cleanups = cleanups
        for _ in range(count):
            self.procs.append(subprocess.Popen([sys.executable, "-c", BURNER], env=env,
                                               stdin=subprocess.DEVNULL))

    def cpu_seconds(self):
        return sum(h.cpu_seconds(p.pid) for p in self.procs if p.poll() is None)

    def stop(self):
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self.procs:
            proc.wait()

    def close(self):
        self._cleanups.run(self._token)


def udp_loss(address, count=2000):
    """Share of UDP datagrams from 127.0.0.1 to C{address} that do not arrive: the rule works."""
    import socket

    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind((address, 0))
        receiver.setblocking(False)
        sender.bind(("127.0.0.1", 0))
        target = receiver.getsockname()
        got = 0
        for i in range(count):
            sender.sendto(b"x", target)
            if i % 100 == 99:  # drain before the socket buffer fills
                got += _drain(receiver)
        time.sleep(0.05)
        got += _drain(receiver)
        return round(1 - got / count, 3)
    finally:
        receiver.close()
        sender.close()


def _drain(sock):
    got = 0
    while True:
        try:
            sock.recv(16)
        except BlockingIOError:
            return got
        got += 1


def lossy_run(reactor, args, result):
    from twisted.internet import defer, task

    from rig.faults.cleanup import default_cleanups, owned_name
    from rig.faults.network import Firewall, NftBackend
    from rig.multinode import node_name
    from rig.multiproc import MultiProcessHost

    def sleep(seconds):
        return task.deferLater(reactor, seconds, lambda: None)

    @defer.inlineCallbacks
    def wait_converged(host, n, timeout):
        """The time every node again sees all C{n} alive, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = yield host.status()
            if status["live"] == n and status["min_alive"] >= n:
                return time.monotonic()
            yield sleep(0.5)
        return None

    # Whatever stops the reactor (Ctrl-C, SIGTERM), the rule and the burners go first.
    reactor.addSystemEventTrigger("before", "shutdown", default_cleanups.run_all)
    signal.signal(signal.SIGHUP, lambda *a: reactor.callFromThread(reactor.stop))

    @defer.inlineCallbacks
    def main():
        host = MultiProcessHost(reactor, args.nodes, args.procs, seeds=args.seeds,
                                declarations=True)
        firewall = burners = None
        try:
            yield host.spawn()
            t0 = yield host.start(batch=args.batch, pause=args.pause)
            joined = yield host.joined(args.join_timeout)
            if joined is None:
                status = yield host.status()
                raise RuntimeError(f"not all joined within {args.join_timeout:g} s: the node "
                                   f"seeing fewest sees {status['min_alive']} of {args.nodes}")
            result["join_s"] = round(joined - t0, 3)
            yield sleep(args.settle)
            # Churn while joining (suspicions, even deaths refuted since) is
            # counted apart: the fault starts from a converged cluster.
            settled = yield wait_converged(host, args.nodes, args.converge_timeout)
            if settled is None:
                raise RuntimeError(f"the views did not converge within "
                                   f"{args.converge_timeout:g} s after the join")
            before_window = len(host.declarations)
            result["declarations_while_joining"] = summarize(host.declarations[:before_window],
                                                            None)
            lossy = node_name(args.lossy_index, args.nodes)
            address = host.addresses[lossy]
            result["lossy_node"] = {"name": lossy, "address": address,
                                    "process": host.owner[lossy].index}

            counters_a = yield host.counters()
            burners = Burners(args.burners, default_cleanups)
            firewall = Firewall(name=owned_name("lossy"), backend=NftBackend(),
                                cleanups=default_cleanups)
            firewall.loss(address, args.loss)
            result["nft_table"] = firewall.table
            result["udp_loss_from_127_0_0_1"] = udp_loss(address)
            print(f"fault on: {args.burners} burners, {args.loss:.0%} loss at {lossy} "
                  f"({address}), table {firewall.table}; UDP loss to it "
                  f"{result['udp_loss_from_127_0_0_1']}", flush=True)
            fault_on = time.monotonic()
            burn_a = burners.cpu_seconds()
            loads, min_alive = [], []
            deadline = fault_on + args.duration
            next_progress = fault_on + min(PROGRESS_EVERY, args.duration)
            while time.monotonic() < deadline:
                yield sleep(min(5.0, max(0.0, deadline - time.monotonic())))
                status = yield host.status()
                min_alive.append(status["min_alive"])
                loads.append(os.getloadavg()[0])
                if time.monotonic() >= next_progress:
                    next_progress += PROGRESS_EVERY
                    window = summarize(host.declarations[before_window:], lossy)
                    print(f"  {time.monotonic() - fault_on:5.0f} s: load {loads[-1]:.2f}, "
                          f"suspect {window['suspect']}, dead {window['dead']}, "
                          f"fewest alive seen {min(min_alive)}", flush=True)
            fault_span = time.monotonic() - fault_on
            burn_b = burners.cpu_seconds()
            counters_b = yield host.counters()
            firewall.close()
            burners.close()
            fault_off = time.monotonic()
            result["fault"] = {
                "duration_s": round(fault_span, 1),
                "loadavg_1min": {"min": round(min(loads), 2), "max": round(max(loads), 2),
                                 "mean": round(sum(loads) / len(loads), 2)},
                "burners_cpu_percent_of_core": round(100 * (burn_b - burn_a) / fault_span, 1),
                "nodes_cpu_percent_of_core": round(
                    100 * (counters_b["cpu_s"] - counters_a["cpu_s"]) / fault_span, 1),
                "fewest_alive_seen_by_any_node": min(min_alive) if min_alive else None,
            }
            during = host.declarations[before_window:]
            result["declarations_during_fault"] = summarize(during, lossy)
            # after the fault: every node must see all N alive again
            converged = yield wait_converged(host, args.nodes, args.converge_timeout)
            result["converged_after_s"] = (round(converged - fault_off, 2)
                                           if converged is not None else None)
            after = host.declarations[before_window + len(during):]
            result["declarations_after_fault"] = summarize(after, lossy)
            # nobody was crashed: every death from the fault on is false
            result["false_deaths"] = sum(1 for d in host.declarations[before_window:]
                                         if d["state"] in ("dead", "removed"))
            result["events"] = host.declarations[before_window:][:500]
            if host.errors:
                result["worker_errors"] = host.errors[:10]
        finally:
            if firewall is not None:
                firewall.close()
            if burners is not None:
                burners.close()
            yield host.shutdown()

    return main()


def summarize(declarations, lossy):
    """Counts of suspect and dead declarations, and who was declared and by whom."""
    counts = collections.Counter(d["state"] for d in declarations)
    subjects = collections.Counter((d["subject"], d["state"]) for d in declarations)
    return {
        "suspect": counts.get("suspect", 0),
        "dead": counts.get("dead", 0) + counts.get("removed", 0),
        "left": counts.get("left", 0),
        "suspect_of_lossy_node": sum(1 for d in declarations
                                     if d["state"] == "suspect" and d["subject"] == lossy),
        "suspect_by_lossy_node": sum(1 for d in declarations
                                     if d["state"] == "suspect" and d["observer"] == lossy),
        "subjects": {f"{s} {state}": c for (s, state), c in subjects.most_common(20)},
        # who started suspicions: the first observer named in each report
        "reported_by": dict(collections.Counter(
            d["reason"].split("reported unreachable by ", 1)[1].split(",")[0].split(" ")[0]
            for d in declarations
            if (d.get("reason") or "").startswith("reported unreachable by ")).most_common(10)),
        "reasons": dict(collections.Counter(
            f"{d['state']}: {_shape(d.get('reason'))}" for d in declarations).most_common(10)),
    }


def _shape(reason):
    """A reason without its node names, so that alike reasons count together."""
    import re

    return re.sub(r"n\d{4,}", "N", reason or "?")


def table(result):
    rows = [("nodes / processes", f"{result['nodes']} / {result['procs']}"),
            ("all joined", f"{result.get('join_s')} s")]
    fault = result.get("fault") or {}
    if fault:
        rows += [
            ("fault", f"{fault['duration_s']} s: {result['settings']['loss']:.0%} loss at "
                      f"{result['lossy_node']['name']} ({result['lossy_node']['address']}), "
                      f"{result['settings']['burners']} burners"),
            ("UDP loss to it (rule check)", f"{result.get('udp_loss_from_127_0_0_1')}"),
            ("load average (1 min)", f"{fault['loadavg_1min']}"),
            ("burners' CPU, % of a core", f"{fault['burners_cpu_percent_of_core']}"),
            ("nodes' CPU, % of a core", f"{fault['nodes_cpu_percent_of_core']}"),
            ("fewest alive seen", f"{fault['fewest_alive_seen_by_any_node']}"),
        ]
    for key, label in (("declarations_during_fault", "during the fault"),
                       ("declarations_after_fault", "after the fault")):
        d = result.get(key)
        if d:
            rows.append((f"suspect / dead {label}",
                         f"{d['suspect']} / {d['dead']} (suspect of lossy node "
                         f"{d['suspect_of_lossy_node']}, by it {d['suspect_by_lossy_node']})"))
    joining = result.get("declarations_while_joining")
    if joining:
        rows.append(("suspect / dead while joining", f"{joining['suspect']} / {joining['dead']} "
                     "(before the fault; refuted and converged before it began)"))
    rows += [("false deaths (fault on to end)", f"{result.get('false_deaths')}"),
             ("converged after healing", f"{result.get('converged_after_s')} s")]
    if result.get("error"):
        rows.append(("ERROR", result["error"]))
    width = max(len(r[0]) for r in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--nodes", type=int, default=64)
    p.add_argument("--procs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--pause", type=float, default=0.25)
    p.add_argument("--join-timeout", type=float, default=120.0)
    p.add_argument("--settle", type=float, default=15.0, help="after join, before the fault")
    p.add_argument("--duration", type=float, default=600.0, help="seconds under the fault")
    p.add_argument("--loss", type=float, default=0.2, help="share of the lossy node's packets dropped")
    p.add_argument("--lossy-index", type=int, default=None,
                   help="which node loses packets (default: the middle one, not a seed)")
    p.add_argument("--burners", type=int, default=os.cpu_count() or 1,
                   help="busy processes (default: one per core)")
    p.add_argument("--converge-timeout", type=float, default=120.0)
    p.add_argument("--output", default="membership_lossy.json",
                   help="file name under bench/results/")
    args = p.parse_args()
    if args.lossy_index is None:
        args.lossy_index = args.nodes // 2
    if not 0 <= args.lossy_index < args.nodes:
        p.error(f"--lossy-index must be 0-{args.nodes - 1}")
    if os.geteuid() != 0 or shutil.which("nft") is None:
        p.error("needs root and nft (the loss is an nft rule on lo)")
    machine = h.machine_info()
    settings = {k: v for k, v in vars(args).items() if k != "output"}
    result = {"nodes": args.nodes, "procs": min(args.procs, args.nodes), "settings": settings}
    try:
        run_in_reactor(lossy_run, args, result)
    except KeyboardInterrupt:
        result["error"] = "interrupted"
    except Exception as e:
        result["error"] = f"{type(e).__name__}: {e}"
    finally:
        from rig.faults.cleanup import default_cleanups

        with h.uninterruptible():
            errors = default_cleanups.run_all()
        if errors:
            result["cleanup_errors"] = errors
    machine["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = h.write_json(args.output, {"machine": machine, **result})
    print(table(result))
    print(f"written to {path}")
    return 1 if result.get("error") else 0


if __name__ == "__main__":
    sys.exit(main())
