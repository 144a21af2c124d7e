"""``twistd clsd``: command-line options and service construction; parsing and wiring only."""

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
    ]

    def overrides(self):
        """Command-line values as dotted config keys, for L{load_config}."""
        mapping = {"node-name": "node.name", "data-dir": "node.data_dir"}
        return {key: self[option] for option, key in mapping.items()
                if self[option] is not None}


def load_or_exit(options):
    """Load the configuration, or leave with one clear line and no traceback."""
    try:
        return load_config(options["config"], overrides=options.overrides())
    except ConfigError as e:
        sys.stderr.write(f"clsd: configuration error: {e}\n")
        raise SystemExit(2)


def makeService(options):
    from twisted.internet import reactor

    from clsd.daemon import Daemon

    config = load_or_exit(options)
    return Daemon(config, reactor)
