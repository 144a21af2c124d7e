"""``twistd clsd``: command-line options and service construction; parsing and wiring only."""

import os
import sys

from twisted.python import usage

from clsd.config import ConfigError, load_config

DEFAULT_CONFIG = "/etc/clsd/clsd.toml"


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run the CLSD high-availability daemon. Settings come from the TOML "
        "file given with --config; the options below override it."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "The TOML configuration file."],
        ["node-name", None, None, "Override [node] name."],
        ["data-dir", None, None, "Override [node] data_dir."],
        ["json-log", None, None,
         "Also log one JSON event per line to this file ('-': standard output); "
         "overrides [log] json."],
    ]

    def opt_version(self):
        """Display CLSD's version and peer protocol range, and exit."""
        from clsd.version import describe

        print(describe())
        sys.exit(0)

    def overrides(self):
        """Command-line values as dotted config keys, for L{load_config}."""
        mapping = {"node-name": "node.name", "data-dir": "node.data_dir",
                   "json-log": "log.json"}
        result = {key: self[option] for option, key in mapping.items()
                  if self[option] is not None}
        json_log = result.get("log.json")
        if json_log and json_log != "-":
            # A path on the command line is relative to where it was typed.
            result["log.json"] = os.path.abspath(result["log.json"])
        return result


def load_or_exit(options):
    """Load the configuration, or leave with one clear line and no traceback."""
    try:
        return load_config(options["config"], overrides=options.overrides())
    except ConfigError as e:
        sys.stderr.write(f"clsd: configuration error: {e}\n")
        raise SystemExit(2) from None


def prepare_data_dir_or_exit(config):
    """Create C{[node] data_dir} now, so a bad one is a clear error, not a traceback later."""
    path = config.node.data_dir
    try:
        os.makedirs(path, exist_ok=True)
        if not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(13, "not writable")
    except OSError as e:
        sys.stderr.write(
            f"clsd: {config.source}: node.data_dir: cannot use {path!r}: "
            f"{e.strerror or e}\n")
        raise SystemExit(2) from None


def check_interfaces_or_exit(config):
    """Every floating address's interface must exist here: one line if not."""
    from clsd.config.floating import check_interfaces, local_interfaces

    if not any(c.floating is not None for c in config.clusters):
        return
    try:
        check_interfaces(config.source, config.clusters, local_interfaces())
    except ConfigError as e:
        sys.stderr.write(f"clsd: cannot start: {e}\n")
        raise SystemExit(2) from None


def start_json_log_or_exit(config, reactor):
    """Open the JSON log now: before twistd starts logging, sheds privileges, daemonizes."""
    from clsd.logs import start_json_log

    try:
        return start_json_log(config.log, reactor)
    except OSError as e:
        sys.stderr.write(f"clsd: cannot open the JSON log {config.log.json!r}: "
                         f"{e.strerror or e}\n")
        raise SystemExit(2) from None


def exit_on_listen_error(daemon):
    """Make C{daemon}'s start stop the process with one line when an address is taken.

    twistd starts the service after logging has begun, and an exception
    from C{startService} would end the process with its traceback written
    line by line into the log. A listener that cannot bind raises
    L{clsd.listener.ListenError}, which names the setting and the address:
    that line is all the operator needs.
    """
    from clsd.listener import ListenError

    start = daemon.startService

    def startService():
        try:
            start()
        except ListenError as e:
            sys.stderr.write(f"clsd: cannot start: {daemon.config.source}: {e}\n")
            raise SystemExit(2) from None

    daemon.startService = startService
    return daemon


def makeService(options):
    from twisted.internet import reactor

    from clsd.daemon import Daemon
    from clsd.membership.generation import GenerationError

    config = load_or_exit(options)
    prepare_data_dir_or_exit(config)
    check_interfaces_or_exit(config)
    start_json_log_or_exit(config, reactor)
    try:
        return exit_on_listen_error(Daemon(config, reactor, overrides=options.overrides()))
    except ConfigError as e:  # e.g. [tls] files unusable (read when the peer network is built)
        sys.stderr.write(f"clsd: configuration error: {e}\n")
        raise SystemExit(2) from None
    except GenerationError as e:  # data_dir/membership/generation unreadable or unwritable
        sys.stderr.write(f"clsd: cannot start: {e}\n")
        raise SystemExit(2) from None
