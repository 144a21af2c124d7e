"""Who this node accepts as a peer, beyond "the cluster CA signed it".

Two rules, each with its own refusal reason (doc/peer-protocol.md):

- ``tls-revoked``: the peer's certificate is on the ``[tls] crl`` list
  (matched by issuer and serial).
- ``not-allowed``: the name in the peer's certificate matches none of the
  ``[membership] allow`` glob patterns (no list: every name is allowed, the
  CA is trusted completely).

The session (L{clsd.wire.core.session.Session.tls_ready}) checks both as soon as
TLS has verified the certificate, before any hello, on the accepting and the
dialling side alike.  An L{Admission} is an immutable value: a ``reload``
builds a new one and L{clsd.wire.tls.enforce}s it, which gives it to
L{clsd.wire.tls.PeerTLS} for new connections and expels the established
peers it refuses (L{clsd.wire.network.PeerNetwork.expel}).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
from cryptography import x509

from clsd.config.membership import allows

#: Close reasons (the keys of the rejected/dropped counters).
NOT_ALLOWED = "not-allowed"
REVOKED = "tls-revoked"


@attrs.frozen
class Admission:
    #: ``[membership] allow`` patterns, or C{None} for every name.
    allow: tuple[str, ...] | None = None
    #: Revoked certificates as C{(issuer name DER, serial)} pairs.
    revoked: frozenset[tuple[bytes, int]] = frozenset()

    @classmethod
    def of(cls, identity: object, allow: Iterable[str] | None = None) -> Admission:
        """The admission of a node with C{identity} (its CRL) and C{allow} patterns."""
        return cls(allow=tuple(allow) if allow is not None else None,
                   revoked=getattr(identity, "revoked", frozenset()))

    def name_refusal(self, name: str) -> str | None:
        """C{None} when node C{name} may connect, else why not (one sentence)."""
        if allows(self.allow, name):
            return None
        return f"{name!r} is not admitted by this node's [membership] allow"

    def is_revoked(self, certificate: x509.Certificate) -> bool:
        """Whether C{certificate} (a cryptography certificate) is on the revocation list."""
        if not self.revoked:
            return False
        return (certificate.issuer.public_bytes(), certificate.serial_number) in self.revoked

    def refusal(self, name: str,
                certificate: x509.Certificate | None) -> tuple[str, str] | None:
        """C{(reason key, detail)} when peer C{name} with C{certificate} is not admitted, else C{None}."""
        if certificate is not None and self.is_revoked(certificate):
            return REVOKED, (f"the certificate of {name!r} (serial "
                             f"{certificate.serial_number:x}) has been revoked ([tls] crl)")
        detail = self.name_refusal(name)
        if detail is not None:
            return NOT_ALLOWED, detail
        return None

