"""The daemon: one MultiService that owns every part of a running node."""

from twisted.application.service import MultiService


class Daemon(MultiService):
    """Everything one node runs, built from a L{clsd.config.Config}."""

    def __init__(self, config, reactor):
        super().__init__()
        self.config = config
        self.reactor = reactor
