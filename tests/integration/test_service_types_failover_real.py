"""Real nginx under each service type, failed over between real daemons.

Debian's ``nginx`` in its stock style (``daemon on``, a master and workers, a
pidfile) is the protected system three ways: ``type = "forking"`` (the nginx
binary as start command), ``type = "ocf"`` (resource-agents' own
``ocf:heartbeat:nginx``) and ``type = "lsb"`` (an init script written here).
Three ``twistd clsd`` daemons as in tests/integration/test_failover_real.py: alpha runs
cluster A, beta stands by, a witness votes. Each node's nginx listens on the
node's own 127.0.0.x and serves the node's name.

For each type: it starts on alpha; ``kill -9`` of the nginx master is a crash
the supervisor repairs on alpha; ``kill -9`` of alpha's daemon fails the
cluster over to beta; a stop of beta's daemon leaves no nginx process.
Throughout, L{DualActiveWatch} asks both nodes every 20 ms: no round may find
both answering.

Needs root, a writable cgroup v2 and nginx + resource-agents (installed by
.ci/run); skipped elsewhere, failing under CI=true.
"""

import os
import re
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request

from twisted.trial import unittest

from clsd.supervision import cgroupfs
from clsd.supervision.forking import read_pidfile
from clsd.supervision.pgroups import pid_alive
from rig.cluster import ClusterRig, active_standby, service_name
from rig.failover import FailoverRig
from rig.faults.cleanup import OWNER_ENV, Cleanups
from rig.launcher import RIG_ENV, Launcher
from clsd.polling import wait_for
from tests.support.rig_support import require
from tests.integration.test_containment_real import require_cgroups
from tests.integration.test_supervision_agents_real import write_executable

NGINX = "/usr/sbin/nginx"
NGINX_AGENT = "/usr/lib/ocf/resource.d/heartbeat/nginx"
FIRST_OWNER_TIMEOUT = 60.0
FAILOVER_TIMEOUT = 30.0
#: The watch's period: how often both nodes are asked.
WATCH_INTERVAL = 0.02
#: One request gives up after this long (a stopped nginx on loopback refuses at once).
REQUEST_TIMEOUT = 0.2

NGINX_CONF = """\
daemon on;
master_process on;
worker_processes 2;
user nobody nogroup;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    server {{
        listen {host}:{port};
        location = / {{ default_type text/plain; return 200 "{node}\n"; }}
        location /nginx_status {{ stub_status; }}
    }}
}}
"""

#: An init script for that nginx: start | stop | status with LSB's codes.
LSB_NGINX = """\
#!/bin/sh
CONF={dir}/nginx.conf
PIDFILE={dir}/nginx.pid
running() {{ [ -s $PIDFILE ] && kill -0 $(cat $PIDFILE) 2>/dev/null; }}
case "$1" in
start)
    running && exit 0
    exec {nginx} -c $CONF ;;
stop)
    running || exit 0
    {nginx} -c $CONF -s quit
    for i in $(seq 50); do running || exit 0; sleep 0.1; done
    exit 1 ;;
status)
    running && exit 0
    [ -e $PIDFILE ] && exit 1
    exit 3 ;;
*)
    exit 3 ;;
esac
"""


def http_body(url, timeout=REQUEST_TIMEOUT):
    """What answers at C{url} (text), or None."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.read().decode("utf-8", "replace").strip()
    except (OSError, urllib.error.URLError):
        return None


class DualActiveWatch:
    """Ask every node's address every 20 ms, in a thread; remember who answered.

    A round asks the nodes one after the other (a few ms apart on loopback);
    two nodes answering in one round is an overlap at this resolution.
    """

    def __init__(self, urls):
        self.urls = dict(urls)
        self.rounds = 0
        self.seen = set()
        self.overlaps = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        self._thread.join(5)

    def _run(self):
        while not self._stop.is_set():
            t = time.monotonic()
            answering = {node: body for node, body in
                         ((node, http_body(url)) for node, url in self.urls.items())
                         if body is not None}
            self.rounds += 1
            self.seen.update(answering)
            if len(answering) > 1:
                self.overlaps.append((round(t, 3), answering))
            self._stop.wait(max(0.0, WATCH_INTERVAL - (time.monotonic() - t)))


class NginxClusterRig(ClusterRig):
    """The cluster rig with nginx of C{kind} ("forking", "ocf", "lsb") as the protected system."""

    def __init__(self, layout, kind, **kwargs):
        super().__init__(layout, health_check=False, **kwargs)
        self.kind = kind

    def nginx_dir(self, launcher, node):
        return os.path.join(launcher.node(node).spec.directory, "nginx")

    def write_nginx(self, launcher, node, cluster):
        """nginx's config, document root and init script for C{node}; their directory."""
        directory = self.nginx_dir(launcher, node)
        host, port = self.http_address(launcher, node, cluster)
        os.makedirs(os.path.join(directory, "tmp"), exist_ok=True)
        with open(os.path.join(directory, "nginx.conf"), "w") as f:
            f.write(NGINX_CONF.format(dir=directory, host=host, port=port, node=node))
        write_executable(os.path.join(directory, "init.sh"),
                         LSB_NGINX.format(dir=directory, nginx=NGINX))
        return directory

    def clusters_part(self, node, launcher):
        tables = super().clusters_part(node, launcher)
        for service, cluster in zip(tables.get("service", ()), tables.get("cluster", ())):
            directory = self.write_nginx(launcher, node.name, cluster["id"])
            host, port = self.http_address(launcher, node.name, cluster["id"])
            conf = os.path.join(directory, "nginx.conf")
            table = {"name": service["name"], "restart": "always",
                     "env": {RIG_ENV: launcher.rig_id, OWNER_ENV: str(launcher.owner_pid)}}
            if self.kind == "forking":
                table.update(type="forking", command=[NGINX, "-c", conf], stop_timeout=5.0,
                             pidfile=os.path.join(directory, "nginx.pid"),
                             stop_command=[NGINX, "-c", conf, "-s", "quit"])
            elif self.kind == "ocf":
                table.update(type="ocf", agent="heartbeat:nginx", monitor_interval=0.5,
                             params={"configfile": conf, "httpd": NGINX,
                                     "status10url": f"http://{host}:{port}/nginx_status"},
                             timeouts={"start": 10.0, "stop": 15.0, "monitor": 5.0})
            else:
                table.update(type="lsb", script=os.path.join(directory, "init.sh"),
                             monitor_interval=0.5,
                             timeouts={"start": 10.0, "stop": 10.0, "monitor": 5.0})
            service.clear()
            service.update(table)
        return tables


def nginx_processes(directory):
    """Pids of every nginx process whose command line names the config in C{directory}.

    Anchored: the daemon keeps a warm start gate for the next start (a ``/bin/sh`` waiting
    to exec this very command line, outside the cgroup until used), which is no nginx.
    """
    pattern = f"^(nginx: master process )?{NGINX} -c {re.escape(directory)}/nginx\\.conf"
    found = subprocess.run(["pgrep", "-f", pattern],
                           capture_output=True, text=True).stdout.split()
    masters = [int(p) for p in found]
    workers = []
    for master in masters:
        children = subprocess.run(["pgrep", "-P", str(master)], capture_output=True,
                                  text=True).stdout.split()
        workers += [int(c) for c in children]
    return masters + workers


class NginxTestCase(unittest.TestCase):
    timeout = 300
    kind = None

    def setUp(self):
        require(os.access(NGINX, os.X_OK), f"{NGINX} (Debian package nginx)")
        require(os.access(NGINX_AGENT, os.X_OK), f"{NGINX_AGENT} (package resource-agents)")
        require(shutil.which("pgrep") is not None, "pgrep (package procps)")
        self.cleanups = Cleanups()
        self.addCleanup(self.cleanups.run_all)
        self.layout = active_standby()
        self.cluster_rig = NginxClusterRig(self.layout, self.kind)
        self.launcher = Launcher(self.mktemp(), list(self.layout.nodes),
                                 template=self.cluster_rig.template(), cleanups=self.cleanups)
        for name in self.layout.nodes:
            require_cgroups(self, name, self.launcher.node(name).spec.data_dir)
        self.addCleanup(self.launcher.teardown)
        self.addCleanup(self.kill_every_nginx)
        self.rig = FailoverRig(self.launcher, self.cluster_rig)
        self.dirs = {n: self.cluster_rig.nginx_dir(self.launcher, n) for n in ("alpha", "beta")}
        self.urls = {n: self.cluster_rig.http_url(self.launcher, n, "A") for n in self.dirs}

    def kill_every_nginx(self):
        """Whatever a failed test left: no nginx of this rig outlives it."""
        for directory in self.dirs.values():
            for pid in nginx_processes(directory):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wait_answer(self, node, timeout, *, other_than=None):
        """Until C{node}'s nginx serves its name (with a master other than C{other_than})."""
        def answered():
            if http_body(self.urls[node]) != node:
                return False
            master = self.master(node)
            return master is not None and master != other_than and pid_alive(master)

        wait_for(answered, timeout=timeout, what=f"nginx answering on {node}")
        return self.master(node)

    def master(self, node):
        return read_pidfile(os.path.join(self.dirs[node], "nginx.pid"))

    def service_cgroup(self, node):
        return os.path.join(self.launcher.service_cgroups(node), service_name("A"))

    def assertContained(self, node):
        """Every nginx process of C{node} is in its service's cgroup."""
        pids = nginx_processes(self.dirs[node])
        self.assertTrue(pids, f"no nginx on {node}")
        inside = set(cgroupfs.pids_below(self.service_cgroup(node)))
        self.assertEqual(set(pids) - inside, set(), f"nginx of {node} outside its cgroup")


class ServiceTypeFailoverMixin:
    """Start, crash, failover and stop of one type, watched every 20 ms."""

    def test_start_crash_failover_and_stop_without_two_copies(self):
        self.launcher.start_all()
        first = self.wait_answer("alpha", FIRST_OWNER_TIMEOUT)
        self.assertContained("alpha")
        watch = DualActiveWatch(self.urls).start()
        self.addCleanup(watch.stop)

        # A crash of the master: the supervisor starts nginx again on alpha.
        os.kill(first, signal.SIGKILL)
        second = self.wait_answer("alpha", FAILOVER_TIMEOUT, other_than=first)
        self.assertContained("alpha")

        # alpha's machine "dies" (its daemon, kill -9): the lease guard empties
        # alpha's cgroup, beta takes over.
        self.rig.kill_daemon("alpha")
        self.wait_answer("beta", FAILOVER_TIMEOUT)
        self.assertFalse(pid_alive(second), "alpha's nginx outlived its daemon's lease")
        self.assertEqual(nginx_processes(self.dirs["alpha"]), [])
        self.assertContained("beta")

        # A daemon stopped as by `systemctl stop` leaves no process of its service.
        self.launcher.stop("beta")
        self.assertEqual(nginx_processes(self.dirs["beta"]), [])
        watch.stop()
        self.assertEqual(watch.seen, {"alpha", "beta"}, "the watch never saw both nodes")
        self.assertGreater(watch.rounds, 100)
        self.assertEqual(watch.overlaps, [], "two nodes served cluster A at once")


class ForkingNginxTests(ServiceTypeFailoverMixin, NginxTestCase):
    kind = "forking"


class OCFNginxTests(ServiceTypeFailoverMixin, NginxTestCase):
    kind = "ocf"


class LSBNginxTests(ServiceTypeFailoverMixin, NginxTestCase):
    kind = "lsb"

    def test_copies_started_by_hand_are_never_a_second_copy(self):
        """Before the daemons on the preferred node: restarted contained. On the standby: rogue."""
        init = {n: os.path.join(self.dirs[n], "init.sh") for n in self.dirs}
        # The config (and init script) are written when the launcher writes the configs.
        for name in self.layout.nodes:
            self.launcher.write_config(name)
        subprocess.run([init["alpha"], "start"], check=True)
        by_hand = self.master("alpha")
        self.assertTrue(pid_alive(by_hand))

        self.launcher.start_all()
        # alpha's copy was outside alpha's cgroup, where the guard could not
        # reach it: stopped, then started inside. Which rule stops it depends
        # on timing: the standby's look for rogue copies (alpha does not hold
        # the lease for its first second) or the probe when the lease comes.
        self.wait_answer("alpha", FIRST_OWNER_TIMEOUT, other_than=by_hand)
        self.assertFalse(pid_alive(by_hand))
        self.assertContained("alpha")
        log = self.launcher.log_text("alpha")
        self.assertTrue("outside CLSD's containment" in log or "the rogue copy is stopped" in log,
                        "the copy started by hand was stopped by neither rule")

        # A copy started by hand on the standby is stopped and reported.
        subprocess.run([init["beta"], "start"], check=True)
        rogue = self.master("beta")
        wait_for(lambda: not pid_alive(rogue) and http_body(self.urls["beta"]) is None,
                 timeout=FAILOVER_TIMEOUT, what="the rogue copy on beta stopped")
        # The stop action returns once its own wait is over: the event follows it.
        wait_for(lambda: "the rogue copy is stopped" in self.launcher.log_text("beta"),
                 timeout=10, what="beta to report the rogue copy stopped")
        self.assertIn("[service.rogue] system-a: running on this node without the lease",
                      self.launcher.log_text("beta"))
        self.assertEqual(http_body(self.urls["alpha"]), "alpha", "the owner's copy was touched")
