"""Certificates and identities for peer-layer tests, made by the clsd-certs library."""

import datetime
import os

from zope.interface import implementer

from clsd.certs import store
from clsd.certs.authority import create_authority, issue_node_certificate
from clsd.certs.identity import NodeIdentity
from clsd.wire.core.interfaces import IPeerHandler

DAY = datetime.timedelta(days=1)


def utcnow():
    return datetime.datetime.now(datetime.UTC)


class TestCA:
    """A cluster CA that issues node identities, good or deliberately bad."""

    def __init__(self, name=None):
        self.authority = create_authority(name)

    @property
    def certificate(self):
        return self.authority.certificate

    def issue(self, name, **kwargs):
        return issue_node_certificate(self.authority, name, **kwargs)

    def identity(self, name, *, trust=None, **kwargs):
        """A L{NodeIdentity} for C{name}; C{trust}: the CA it trusts (default: us)."""
        pair = self.issue(name, **kwargs)
        trusted = (trust or self).certificate
        return NodeIdentity(name=name, key=pair.key, certificate=pair.certificate,
                            ca_certificates=(trusted,))

    def expired_identity(self, name):
        now = utcnow()
        return self.identity(name, not_before=now - 10 * DAY, not_after=now - DAY)

    def future_identity(self, name):
        now = utcnow()
        return self.identity(name, not_before=now + DAY, not_after=now + 10 * DAY)

    def write_files(self, directory, name, pair=None, **kwargs):
        """Write ca.pem, NAME.pem and NAME.key into C{directory}; return the paths."""
        os.makedirs(directory, exist_ok=True)
        pair = pair or self.issue(name, **kwargs)
        ca_path = os.path.join(directory, "ca.pem")
        if not os.path.exists(ca_path):
            store.write_file(ca_path, self.authority.certificate_pem(), private=False)
        cert_path, key_path = store.node_paths(directory, name)
        store.write_pair(pair, cert_path, key_path, force=True)
        return ca_path, cert_path, key_path


# -- real-socket helpers (integration tests on 127.0.0.x only) -------------------


@implementer(IPeerHandler)
class RecordingHandler:
    """Records what an upper layer would be told."""

    def __init__(self):
        self.events = []
        self.messages = []

    def peer_connected(self, peer):
        self.events.append(("connected", peer.name))

    def message_received(self, peer, message):
        self.messages.append((peer.name, message))

    def peer_disconnected(self, peer, reason):
        self.events.append(("disconnected", peer.name, reason.key))
