"""CLSD's configuration: TOML in, frozen attrs classes out, every error named by file and key path."""

from clsd.config.cluster import ClusterConfig
from clsd.config.model import Config, NodeConfig, load_config, parse_config
from clsd.config.quorum import QuorumConfig
from clsd.config.reader import ConfigError
from clsd.config.service import Backoff, CrashLoop, HealthCheck, LogFiles, ServiceConfig

__all__ = [
    "Backoff", "ClusterConfig", "Config", "ConfigError", "CrashLoop", "HealthCheck",
    "LogFiles", "NodeConfig", "QuorumConfig", "ServiceConfig", "load_config", "parse_config",
]
