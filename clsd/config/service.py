"""The ``[[service]]`` tables: how this node runs one system, and how it checks it."""

import os
import signal
import stat

import attrs

RESTART_POLICIES = ("always", "on-failure", "never")
#: ``containment``: see clsd/supervision/containment.py and doc/supervision.md.
CONTAINMENTS = ("auto", "cgroup", "process-group")

#: Upper bounds of the backoff keys: beyond them a service would sit in
#: backoff for days, silently (1e308 was accepted once).
BACKOFF_INITIAL_MAX = 3600.0
BACKOFF_MAX_MAX = 86400.0
BACKOFF_FACTOR_MAX = 100.0
CHECK_TYPES = ("exec", "tcp", "http")
#: ``type``: how a service is started and watched (doc/supervision.md).
SERVICE_TYPES = ("simple", "forking", "lsb", "ocf")
#: Types driven by an agent's actions (start, stop, status/monitor).
AGENT_TYPES = ("lsb", "ocf")
#: Keys that only LSB and OCF services take.
AGENT_KEYS = ("script", "agent", "params", "ocf_root", "monitor_interval", "timeouts")
#: Keys that only a ``type = "forking"`` service takes.
FORKING_KEYS = ("pidfile", "stop_command", "start_timeout")

#: Signals an operator may name as ``stop_signal`` (without the SIG prefix).
STOP_SIGNALS = ("TERM", "INT", "QUIT", "HUP", "USR1", "USR2", "KILL")


@attrs.frozen
class Backoff:
    """Delay before restart number n (n >= 2): ``initial * factor**(n-2)``, capped, jittered.

    The first restart after a crash is immediate; the backoff starts with the
    second consecutive failure.
    """

    initial: float = 0.1
    max: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1


@attrs.frozen
class CrashLoop:
    """The C{max_failures}-th failure within C{window} seconds makes the service FAILED."""

    max_failures: int = 5
    window: float = 60.0


@attrs.frozen
class HealthCheck:
    type: str
    #: URL for http, (host, port) for tcp, argv tuple for exec.
    target: object
    interval: float = 1.0
    timeout: float = 0.5
    rise: int = 2
    fall: int = 3
    #: Seconds after each start during which failed checks do not count.
    grace: float = 0.0
    #: Seconds between probes after each start until the check first rises
    #: (None: C{interval}); a service that is ready soon is found running soon.
    startup_interval: float | None = None


@attrs.frozen
class LogFiles:
    """Where a service's output goes; files rotate at C{max_bytes}."""

    stdout: str
    stderr: str
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5


@attrs.frozen
class ServiceConfig:
    name: str
    command: tuple
    shell: bool = False
    env: dict = attrs.field(factory=dict)
    cwd: str | None = None
    user: str | None = None
    restart: str = "on-failure"
    backoff: Backoff = Backoff()
    stable_after: float = 10.0
    crash_loop: CrashLoop = CrashLoop()
    stop_signal: str = "TERM"
    stop_timeout: float = 10.0
    logs: LogFiles | None = None
    check: HealthCheck | None = None
    #: How its processes are held together: auto, cgroup or process-group.
    containment: str = "auto"
    #: How it is started and watched: "simple" (a foreground program) or
    #: "forking" (a start command that daemonizes; see doc/supervision.md).
    type: str = "simple"
    #: Forking: the file the daemon writes its main pid to (None: the
    #: cgroup is the service).
    pidfile: str | None = None
    #: Forking: run to stop it (None: stop_signal to the main process).
    stop_command: tuple | None = None
    #: Forking: the start command and the main pid must be there within
    #: this; LSB/OCF: the start action's timeout.
    start_timeout: float = 30.0
    #: LSB: the init script; OCF: the agent's path.
    script: str | None = None
    #: OCF: the agent as configured ("heartbeat:IPaddr2").
    agent: str | None = None
    #: OCF: the agent's parameters (OCF_RESKEY_<name>).
    params: dict = attrs.field(factory=dict)
    ocf_root: str = "/usr/lib/ocf"
    #: LSB/OCF: seconds between status/monitor actions, and their timeout.
    monitor_interval: float = 10.0
    monitor_timeout: float = 20.0

    @property
    def stop_signum(self):
        return getattr(signal, "SIG" + self.stop_signal)

    @property
    def argv(self):
        """The argv to execute: the command itself, or ``/bin/sh -c`` for shell services.

        LSB/OCF: the start action (other actions: L{action_argv}).
        """
        if self.script is not None:
            return self.action_argv("start")
        if self.shell:
            return ("/bin/sh", "-c", self.command[0])
        return self.command

    def action_argv(self, action):
        """LSB/OCF: the argv of one action of the script or agent."""
        return (self.script, action)


def parse_service(table, data_dir, base_dir, euid):
    """Build a L{ServiceConfig} from one ``[[service]]`` L{Table}."""
    name = table.name("name", "service name")
    service_type = table.choice("type", SERVICE_TYPES, "simple")
    if service_type in AGENT_TYPES:
        for key in ("command", "shell", "stop_signal", "stop_timeout", "check"):
            if table.raw(key, None) is not None:
                raise table.error(key, f"does not apply to type = {service_type!r} "
                                       "(its agent's actions start, stop and monitor it)")
    else:
        for key in AGENT_KEYS:
            if table.raw(key, None) is not None:
                raise table.error(key, 'only applies to type = "lsb" or "ocf", '
                                       f"not {service_type!r}")
    agent = _parse_agent(table, name, service_type, base_dir) \
        if service_type in AGENT_TYPES else {}
    shell = table.boolean("shell", False)
    command = _parse_command(table, shell) if not agent else (agent["script"],)
    env = table.string_map("env", {})
    cwd = table.string("cwd", None)
    if cwd is not None:
        cwd = _resolve(base_dir, cwd)
    user = table.string("user", None)
    if user is not None:
        _check_user(table, user, euid)
    restart = table.choice("restart", RESTART_POLICIES, "on-failure")
    backoff = _parse_backoff(table.table("backoff"))
    stable_after = table.number("stable_after", 10.0, minimum=0.0)
    crash_loop = _parse_crash_loop(table.table("crash_loop"))
    stop_signal = _parse_signal(table)
    stop_timeout = agent.pop("stop_timeout") if agent else \
        table.number("stop_timeout", 10.0, positive=True)
    logs = _parse_logs(table, name, data_dir, base_dir)
    check_table = table.table("check")
    check = _parse_check(check_table) if check_table is not None else None
    containment = table.choice("containment", CONTAINMENTS, "auto")
    forking = _parse_forking(table, service_type, base_dir)
    table.finish()
    return ServiceConfig(
        name=name,
        command=command,
        shell=shell,
        env=env,
        cwd=cwd,
        user=user,
        restart=restart,
        backoff=backoff,
        stable_after=stable_after,
        crash_loop=crash_loop,
        stop_signal=stop_signal,
        stop_timeout=stop_timeout,
        logs=logs,
        check=check,
        containment=containment,
        type=service_type,
        **forking,
        **agent,
    )


def _parse_forking(table, service_type, base_dir):
    """The forking keys (pidfile, stop_command, start_timeout), refused on other types."""
    if service_type != "forking":
        if service_type in AGENT_TYPES:
            return {}
        for key in FORKING_KEYS:
            if table.raw(key, None) is not None:
                raise table.error(key, f'only applies to type = "forking", not {service_type!r}')
        return {}
    pidfile = table.string("pidfile", None)
    if pidfile is not None:
        if not pidfile:
            raise table.error("pidfile", "must not be empty")
        pidfile = _resolve(base_dir, pidfile)
    stop_command = None
    if table.raw("stop_command", None) is not None:
        stop_command = table.string_list("stop_command", nonempty=True)
        if not stop_command[0]:
            raise table.error("stop_command[0]", "the program name must not be empty")
    start_timeout = table.number("start_timeout", 30.0, positive=True)
    return {"pidfile": pidfile, "stop_command": stop_command, "start_timeout": start_timeout}


def _parse_agent(table, name, service_type, base_dir):
    """The LSB script or OCF agent, its parameters and action timeouts (checked against it)."""
    from clsd.supervision import ocf

    metadata = None
    if service_type == "lsb":
        for key in ("agent", "params", "ocf_root"):
            if table.raw(key, None) is not None:
                raise table.error(key, 'only applies to type = "ocf"')
        script = _resolve(base_dir, table.string("script"))
        if not _executable(script):
            raise table.error("script", f"{script} is not an executable file")
        found = {"script": script}
    else:
        if table.raw("script", None) is not None:
            raise table.error("script", 'only applies to type = "lsb" (use agent)')
        ocf_root = _resolve(base_dir, table.string("ocf_root", ocf.DEFAULT_OCF_ROOT))
        agent = table.string("agent")
        params = _parse_params(table)
        try:
            _, _, path = ocf.resolve_agent(agent, ocf_root)
            metadata = ocf.read_metadata(path, ocf_root)
            ocf.check_params(agent, metadata, params)
        except ocf.AgentError as e:
            raise table.error("agent", str(e)) from None
        found = {"script": path, "agent": agent, "params": params, "ocf_root": ocf_root}
    found["monitor_interval"] = table.number("monitor_interval", 10.0, positive=True)
    advised = metadata.timeouts if metadata is not None else {}
    timeouts = table.table("timeouts")
    values = {}
    for action in ("start", "stop", "monitor"):
        default = advised.get(action, ocf.DEFAULT_ACTION_TIMEOUT)
        values[action] = timeouts.number(action, default, positive=True) \
            if timeouts is not None else default
    if timeouts is not None:
        timeouts.finish()
    found.update(start_timeout=values["start"], stop_timeout=values["stop"],
                 monitor_timeout=values["monitor"])
    return found


def _executable(path):
    """A regular file that may be executed (root's access() ignores missing x bits)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISREG(mode) and bool(mode & 0o111) and os.access(path, os.X_OK)


def _parse_params(table):
    """``params``: strings, numbers or booleans, all handed to the agent as strings."""
    value = table.raw("params", {})
    if not isinstance(value, dict):
        raise table.error("params", "must be a table of name = value")
    params = {}
    for key, item in value.items():
        if isinstance(item, bool):
            item = "true" if item else "false"
        elif isinstance(item, (int, float)):
            item = f"{item:g}" if isinstance(item, float) else str(item)
        elif not isinstance(item, str):
            raise table.error(f"params.{key}", "must be a string, number or boolean")
        params[key] = item
    return params


def _resolve(base_dir, path):
    return os.path.normpath(os.path.join(base_dir, os.path.expanduser(path)))


def _parse_command(table, shell):
    if shell:
        value = table.raw("command")
        if isinstance(value, str) and value:
            return (value,)
        if (isinstance(value, list) and len(value) == 1
                and isinstance(value[0], str) and value[0]):
            return (value[0],)
        raise table.error(
            "command", "with shell = true, must be one non-empty string of shell code"
        )
    command = table.string_list("command", nonempty=True)
    if not command[0]:
        raise table.error("command[0]", "the program name must not be empty")
    return command


def _check_user(table, user, euid):
    import pwd

    try:
        pwd.getpwnam(user)
    except KeyError:
        raise table.error("user", f"no such user {user!r} on this machine") from None
    if euid != 0:
        raise table.error(
            "user", "can only be set when clsd runs as root (it is not running as root)"
        )


def _parse_backoff(table):
    if table is None:
        return Backoff()
    initial = table.number("initial", 0.1, minimum=0.0, maximum=BACKOFF_INITIAL_MAX)
    maximum = table.number("max", 30.0, minimum=0.0, maximum=BACKOFF_MAX_MAX)
    factor = table.number("factor", 2.0, minimum=1.0, maximum=BACKOFF_FACTOR_MAX)
    jitter = table.number("jitter", 0.1, minimum=0.0, maximum=1.0)
    if maximum < initial:
        raise table.error("max", f"must be at least initial ({initial!r}), got {maximum!r}")
    table.finish()
    return Backoff(initial=initial, max=maximum, factor=factor, jitter=jitter)


def _parse_crash_loop(table):
    if table is None:
        return CrashLoop()
    max_failures = table.integer("max_failures", 5, minimum=1)
    window = table.number("window", 60.0, positive=True)
    table.finish()
    return CrashLoop(max_failures=max_failures, window=window)


def _parse_signal(table):
    value = table.string("stop_signal", "TERM").upper()
    if value.startswith("SIG"):
        value = value[3:]
    if value not in STOP_SIGNALS:
        raise table.error(
            "stop_signal", f"must be one of {', '.join(STOP_SIGNALS)}, got {value!r}"
        )
    return value


def _parse_logs(table, name, data_dir, base_dir):
    default = os.path.join(data_dir, "logs", f"{name}.log")
    stdout = table.string("stdout", None)
    stdout = _resolve(base_dir, stdout) if stdout is not None else default
    stderr = table.string("stderr", None)
    stderr = _resolve(base_dir, stderr) if stderr is not None else stdout
    max_bytes = table.integer("log_max_bytes", 10 * 1024 * 1024, minimum=1024)
    backups = table.integer("log_backups", 5, minimum=0, maximum=1000)
    return LogFiles(stdout=stdout, stderr=stderr, max_bytes=max_bytes, backups=backups)


def _parse_check(table):
    kind = table.choice("type", CHECK_TYPES)
    target = _parse_check_target(table, kind)
    interval = table.number("interval", 1.0, positive=True)
    timeout = table.number("timeout", 0.5, positive=True)
    if timeout > interval:
        raise table.error(
            "timeout", f"must not exceed interval ({interval!r}), got {timeout!r}"
        )
    rise = table.integer("rise", 2, minimum=1)
    fall = table.integer("fall", 3, minimum=1)
    grace = table.number("grace", 0.0, minimum=0.0)
    startup_interval = table.number("startup_interval", positive=True) \
        if "startup_interval" in table else None
    if startup_interval is not None and startup_interval > interval:
        raise table.error(
            "startup_interval",
            f"must not exceed interval ({interval!r}), got {startup_interval!r}")
    table.finish()
    return HealthCheck(
        type=kind, target=target, interval=interval, timeout=timeout,
        rise=rise, fall=fall, grace=grace, startup_interval=startup_interval,
    )


def _parse_check_target(table, kind):
    if kind == "exec":
        return table.string_list("target", nonempty=True)
    target = table.string("target")
    if kind == "http":
        if not target.startswith(("http://", "https://")):
            raise table.error(
                "target", f"must be an http:// or https:// URL, got {target!r}"
            )
        return target
    return parse_host_port(table, "target", target)


def parse_host_port(table, key, value):
    """Split ``host:port`` (IPv6 in brackets) into C{(host, port)}."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise table.error(
            key, f"must be host:port (IPv6 as [addr]:port), got {value!r}"
        )
    return (host, int(port))
