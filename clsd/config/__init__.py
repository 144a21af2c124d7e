"""CLSD's configuration: TOML in, frozen attrs classes out, every error named by file and key path."""

from clsd.config.membership import MembershipConfig
from clsd.config.model import Config, NodeConfig, load_config, parse_config
from clsd.config.reader import ConfigError
from clsd.config.service import Backoff, CrashLoop, HealthCheck, LogFiles, ServiceConfig

__all__ = [
    "Backoff", "Config", "MembershipConfig", "ConfigError", "CrashLoop", "HealthCheck", "LogFiles",
    "NodeConfig", "ServiceConfig", "load_config", "parse_config",
]
