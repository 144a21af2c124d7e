"""The whole configuration: ``[node]`` and every section, as frozen attrs classes."""

import os
import tomllib

import attrs

from clsd.config.address import ip_version, is_wildcard, parse_host_port
from clsd.config.admin import AdminConfig, parse_admin, settle_manhole_budget
from clsd.config.cluster_id import ClusterConfig, check_clusters, parse_cluster
from clsd.config.etcd import EtcdConfig, parse_etcd
from clsd.config.log import LogConfig, parse_log
from clsd.config.membership import MembershipConfig, parse_membership
from clsd.config.metrics import MetricsConfig, parse_metrics
from clsd.config.peer import PeerConfig, parse_peer
from clsd.config.quorum import QuorumConfig, parse_quorum
from clsd.config.reader import ConfigError, Table
from clsd.config.service import ServiceConfig, parse_service
from clsd.config.tls import TLSConfig, parse_tls

DEFAULT_DATA_DIR = "/var/lib/clsd"


@attrs.frozen
class NodeConfig:
    name: str
    data_dir: str
    #: ``(host, port)`` the peer listener binds to; C{None}: a node alone.
    listen: tuple | None = None
    #: ``(host, port)`` other nodes dial; defaults to C{listen}.
    advertise: tuple | None = None
    #: Seed peers, ``((host, port), ...)``, dialled to join a cluster.
    join: tuple = ()

    @property
    def source_host(self):
        """The address outgoing peer connections are bound to.

        The host of C{listen}, so that every packet this node sends carries
        its own address (firewall rules and test partitions key on it); when
        C{listen} is a wildcard, the advertised address if it is an IP.
        """
        if self.listen is None:
            return None
        if not is_wildcard(self.listen[0]):
            return self.listen[0]
        if self.advertise is not None and ip_version(self.advertise[0]) is not None:
            return self.advertise[0]
        return None


@attrs.frozen
class Config:
    #: The file it came from (or a label such as ``<string>``), for messages.
    source: str
    node: NodeConfig
    services: tuple[ServiceConfig, ...] = ()
    admin: AdminConfig = AdminConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()
    #: Required when C{node.listen} is set: peer connections are mutual TLS.
    tls: TLSConfig | None = None
    #: None when the file has no ``[quorum]`` (allowed only without clusters).
    quorum: QuorumConfig | None = None
    clusters: tuple[ClusterConfig, ...] = ()
    membership: MembershipConfig = MembershipConfig()
    #: Where etcd is, when ``[quorum] arbiter = "etcd"``; None otherwise.
    etcd: EtcdConfig | None = None
    #: Bounds on unauthenticated peer connections (``[peer]``).
    peer: PeerConfig = PeerConfig()

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
    admin = parse_admin(root.table("admin"), node.data_dir, base_dir)
    metrics = parse_metrics(root.table("metrics"))
    log = parse_log(root.table("log"), base_dir)
    tls_table = root.table("tls")
    tls = parse_tls(tls_table, base_dir) if tls_table is not None else None
    if node.listen is not None and tls is None:
        raise ConfigError(
            source, "tls",
            "is required when node.listen is set (peer connections are mutual TLS): "
            "give ca, cert and key",
        )
    quorum_table = root.table("quorum")
    quorum = parse_quorum(quorum_table) if quorum_table is not None else None
    etcd = _parse_etcd_section(root, quorum, base_dir)
    clusters = tuple(parse_cluster(table) for table in root.tables("cluster"))
    check_clusters(source, clusters, services, quorum, node.name)
    membership = parse_membership(root.table("membership"), node.name)
    peer = parse_peer(root.table("peer"))
    admin = settle_manhole_budget(source, admin, quorum, membership)
    root.finish()
    return Config(source=source, node=node, services=services, admin=admin,
                  metrics=metrics, log=log, tls=tls, quorum=quorum, clusters=clusters,
                  membership=membership, etcd=etcd, peer=peer)


def _parse_etcd_section(root, quorum, base_dir):
    """``[etcd]``: required with ``quorum.arbiter = "etcd"``, refused without it."""
    table = root.table("etcd")
    wants_etcd = quorum is not None and quorum.arbiter == "etcd"
    if table is None:
        if wants_etcd:
            raise ConfigError(root.source, "etcd",
                              'is required when quorum.arbiter = "etcd" (give endpoints, '
                              "ca, cert and key)")
        return None
    if not wants_etcd:
        both = " and quorum.voters" if quorum is not None else ""
        raise ConfigError(
            root.source, "etcd",
            f'is set{both} but quorum.arbiter is not "etcd": leases come either from the '
            'built-in voters or from etcd (set [quorum] arbiter = "etcd" without voters, '
            "or remove [etcd])")
    return parse_etcd(table, base_dir)


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
    name = table.name("name", "node name")
    data_dir = table.string("data_dir", DEFAULT_DATA_DIR)
    data_dir = os.path.normpath(os.path.join(base_dir, os.path.expanduser(data_dir)))
    listen, advertise, join = _parse_peer_addresses(table)
    table.finish()
    return NodeConfig(name=name, data_dir=data_dir, listen=listen,
                      advertise=advertise, join=join)


def _parse_peer_addresses(table):
    """``listen``, ``advertise`` and ``join`` of ``[node]``, checked together."""
    listen = advertise = None
    if "listen" in table:
        listen = parse_host_port(table, "listen", table.string("listen"))
        if ip_version(listen[0]) is None:
            raise table.error(
                "listen",
                f"the host must be an IP address, got {listen[0]!r} "
                "(outgoing peer connections are bound to it)",
            )
    if "advertise" in table:
        advertise = parse_host_port(table, "advertise", table.string("advertise"))
        if listen is None:
            raise table.error("advertise", "needs node.listen (the address it stands for)")
        if is_wildcard(advertise[0]):
            raise table.error(
                "advertise", f"must be an address others can dial, not {advertise[0]!r}"
            )
    elif listen is not None:
        if is_wildcard(listen[0]):
            raise table.error(
                "advertise",
                f"is required when listen is the wildcard {listen[0]!r}: "
                "give the address other nodes dial",
            )
        advertise = listen
    join = []
    for index, value in enumerate(table.string_list("join", [])):
        key = f"join[{index}]"
        address = parse_host_port(table, key, value)
        version = ip_version(address[0])
        if listen is not None and version is not None and version != ip_version(listen[0]):
            raise table.error(
                key, f"is an IPv{version} address but listen is IPv{ip_version(listen[0])}: "
                "outgoing connections leave from the listen address",
            )
        join.append(address)
    if join and listen is None:
        raise table.error("join", "needs node.listen (a joining node must accept peers)")
    return listen, advertise, tuple(join)


def _check_unique(root, key, names):
    seen = {}
    for index, name in enumerate(names):
        if name in seen:
            raise ConfigError(
                root.source, f"{key}[{index}].name",
                f"duplicate name {name!r} (also {key}[{seen[name]}])",
            )
        seen[name] = index
