"""CLSD's configuration: TOML in, frozen attrs classes out, every error named by file and key path."""

from clsd.config.admin import AdminConfig
from clsd.config.cluster_id import ClusterConfig
from clsd.config.log import LogConfig
from clsd.config.membership import MembershipConfig
from clsd.config.metrics import MetricsConfig
from clsd.config.model import Config, NodeConfig, load_config, parse_config
from clsd.config.quorum import QuorumConfig
from clsd.config.reader import ConfigError
from clsd.config.service import Backoff, CrashLoop, HealthCheck, LogFiles, ServiceConfig
from clsd.config.tls import TLSConfig

__all__ = [
    "AdminConfig", "Backoff", "ClusterConfig", "Config", "ConfigError", "CrashLoop",
    "HealthCheck", "LogConfig", "LogFiles", "MembershipConfig", "MetricsConfig", "NodeConfig",
    "QuorumConfig", "ServiceConfig", "TLSConfig", "load_config", "parse_config",
]
