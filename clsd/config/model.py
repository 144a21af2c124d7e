"""The whole configuration: ``[node]`` and every section, as frozen attrs classes."""

import os
import re
import tomllib

import attrs

from clsd.config.membership import MembershipConfig, parse_membership
from clsd.config.reader import ConfigError, Table
from clsd.config.service import ServiceConfig, parse_service

NODE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
DEFAULT_DATA_DIR = "/var/lib/clsd"


@attrs.frozen
class NodeConfig:
    name: str
    data_dir: str


@attrs.frozen
class Config:
    #: The file it came from (or a label such as ``<string>``), for messages.
    source: str
    node: NodeConfig
    services: tuple[ServiceConfig, ...] = ()
    membership: MembershipConfig = MembershipConfig()

    def service(self, name):
        """The L{ServiceConfig} called C{name}; L{KeyError} if there is none."""
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(name)


def parse_config(text, source="<string>", *, base_dir=None, overrides=None, euid=None):
    """Parse TOML C{text} into a L{Config}.

    @param base_dir: relative paths are resolved against it (the config
        file's directory; the working directory when C{None}).
    @param overrides: C{{"node.name": "beta"}}: command-line values that
        replace keys of the file before validation, so they are checked alike.
    @param euid: the effective uid to validate ``user`` against (default: ours).
    @raise ConfigError: on the first mistake, naming C{source} and the key path.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"not valid TOML: {e}") from None
    for dotted, value in (overrides or {}).items():
        _apply_override(data, dotted, value)
    base_dir = os.path.abspath(base_dir if base_dir is not None else os.getcwd())
    euid = os.geteuid() if euid is None else euid
    root = Table(data, "", source)
    node = _parse_node(root.table("node") or Table({}, "node", source), base_dir)
    services = tuple(
        parse_service(table, node.data_dir, base_dir, euid)
        for table in root.tables("service")
    )
    _check_unique(root, "service", [service.name for service in services])
    membership = parse_membership(root.table("membership"))
    root.finish()
    return Config(source=source, node=node, services=services, membership=membership)


def load_config(path, *, overrides=None, euid=None):
    """Read and parse the file at C{path}; every failure is a L{ConfigError}."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(path, "", f"cannot read the file: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(path, "", f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_config(
        text, path, base_dir=os.path.dirname(os.path.abspath(path)),
        overrides=overrides, euid=euid,
    )


def _apply_override(data, dotted, value):
    *parents, last = dotted.split(".")
    table = data
    for part in parents:
        table = table.setdefault(part, {})
        if not isinstance(table, dict):
            return  # the file has a non-table there; validation reports it
    table[last] = value


def _parse_node(table, base_dir):
    if "name" not in table:
        raise table.error("name", "is required (or give --node-name)")
    name = table.string("name")
    if not NODE_NAME_PATTERN.match(name):
        raise table.error(
            "name",
            f"{name!r} is not a valid node name "
            "(letters, digits, '_', '.', '-'; starts with a letter or digit; at most 63)",
        )
    data_dir = table.string("data_dir", DEFAULT_DATA_DIR)
    data_dir = os.path.normpath(os.path.join(base_dir, os.path.expanduser(data_dir)))
    table.finish()
    return NodeConfig(name=name, data_dir=data_dir)


def _check_unique(root, key, names):
    seen = {}
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(
                root.source, f"{key}[{index}].name",
                f"duplicate name {name!r} (also {key}[{seen[name]}])",
            )
        seen[name] = index
