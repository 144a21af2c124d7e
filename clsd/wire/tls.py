"""Mutual TLS for peer connections, from one node's identity.

The rules (doc/peer-protocol.md): TLS 1.2 at least (1.3 is negotiated when
both ends have it, which OpenSSL prefers); each side presents its node
certificate and requires the other's; the only trusted roots are the
cluster CA certificate(s) in ``[tls] ca`` (two during a CA rotation), never
the system store; there is no host name check, because a node dials
addresses, not names: the peer's node name is read from its verified
certificate instead, and the hello must claim the same name.

OpenSSL reports every verification failure as "certificate verify failed".
To log and count *why* (expired, not yet valid, unknown CA), each connection
gets a verify callback that remembers the first X.509 error it saw; the
connection protocol asks L{PeerTLS.verify_error} for it when the handshake
fails.

A revoked certificate passes the TLS handshake (OpenSSL would answer a
refusal from the verify callback with an "internal error" alert that tells
the other side nothing) and is refused by the session right after it, before
any hello, with a bye that says ``tls-revoked`` (L{clsd.wire.core.admission}).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from cryptography import x509
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import (
    IOpenSSLClientConnectionCreator,
    IOpenSSLServerConnectionCreator,
)
from zope.interface import implementer

from clsd.certs.authority import CertificateError, node_name_of
from clsd.wire.core.admission import Admission

if TYPE_CHECKING:
    from collections.abc import Iterable

    from OpenSSL import crypto
    from twisted.protocols.tls import TLSMemoryBIOProtocol

    from clsd.certs.identity import NodeIdentity
    from clsd.wire.network import PeerNetwork
    from clsd.wire.protocol import PeerProtocol

_VERIFY_FLAGS = SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT | SSL.VERIFY_CLIENT_ONCE

# X.509 verification error numbers (OpenSSL's X509_V_ERR_*), by what they mean
# for a peer connection.
X509_V_ERR_CERT_NOT_YET_VALID = 9
X509_V_ERR_CERT_HAS_EXPIRED = 10
_UNKNOWN_CA_ERRORS = frozenset({
    2,   # UNABLE_TO_GET_ISSUER_CERT
    7,   # CERT_SIGNATURE_FAILURE
    18,  # DEPTH_ZERO_SELF_SIGNED_CERT
    19,  # SELF_SIGNED_CERT_IN_CHAIN
    20,  # UNABLE_TO_GET_ISSUER_CERT_LOCALLY
    21,  # UNABLE_TO_VERIFY_LEAF_SIGNATURE
})


@implementer(IOpenSSLServerConnectionCreator, IOpenSSLClientConnectionCreator)
class PeerTLS:
    """The TLS settings of one node, for both its listener and its dialer.

    Pass it as the context factory of C{SSL4ServerEndpoint} and
    C{SSL4ClientEndpoint}.
    """

    def __init__(self, identity: NodeIdentity, allow: Iterable[str] | None = None) -> None:
        """
        @param allow: the ``[membership] allow`` patterns (C{None}: every name).
        """
        self.identity = identity
        #: Who is admitted; replaced (never changed in place) on reload.
        self.admission = Admission.of(identity, allow)
        # The key and certificate are cryptography objects, which pyOpenSSL
        # accepts (its own X509/PKey wrappers are deprecated).
        # CertificateOptions with a trustRoot sets VERIFY_PEER and
        # VERIFY_FAIL_IF_NO_PEER_CERT (requireCertificate) on the context and
        # trusts exactly that root; TLS 1.2 is the floor. (Twisted's annotations
        # name only pyOpenSSL's wrappers.)
        self.options = ssl.CertificateOptions(
            privateKey=identity.key,  # type: ignore[arg-type]
            certificate=identity.certificate,  # type: ignore[arg-type]
            # Twisted's own function is not annotated.
            trustRoot=ssl.trustRootFromCertificates(  # type: ignore[no-untyped-call]
                [ssl.Certificate.loadPEM(_pem(ca)) for ca in identity.ca_certificates]),
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
            enableSessions=False,
            enableSessionTickets=False,
        )
        self._verify_errors: weakref.WeakKeyDictionary[SSL.Connection, int] = (
            weakref.WeakKeyDictionary())

    # -- IOpenSSLServerConnectionCreator / IOpenSSLClientConnectionCreator ----

    def serverConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return self._watch(self.options.serverConnectionForTLS(tlsProtocol))

    def clientConnectionForTLS(self, tlsProtocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        return self._watch(self.options.clientConnectionForTLS(tlsProtocol))

    def _watch(self, connection: SSL.Connection) -> SSL.Connection:
        # The same flags as the context; only the callback is added, and it
        # returns OpenSSL's own verdict unchanged.
        connection.set_verify(_VERIFY_FLAGS, self._verify)
        return connection

    def _verify(self, connection: SSL.Connection, certificate: crypto.X509, errno: int,
                depth: int, ok: int) -> bool:
        if not ok and connection not in self._verify_errors:
            self._verify_errors[connection] = errno
        return bool(ok)

    def verify_error(self, transport: object) -> int | None:
        """The first X.509 error number seen on C{transport}'s connection, or C{None}."""
        handle = _handle(transport)
        if handle is None:
            return None
        return self._verify_errors.get(handle)


def _pem(certificate: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return certificate.public_bytes(Encoding.PEM)


def _handle(transport: object) -> SSL.Connection | None:
    get_handle: Callable[[], object] | None = getattr(transport, "getHandle", None)
    if get_handle is None:
        return None
    handle = get_handle()
    return handle if isinstance(handle, SSL.Connection) else None


def peer_certificate_name(transport: object) -> str:
    """The node name in the verified certificate of C{transport}'s peer.

    @raise CertificateError: no certificate, or no usable node name in it.
    """
    certificate = peer_certificate(transport)
    if certificate is None:
        raise CertificateError("the peer presented no certificate")
    return node_name_of(certificate)


def peer_certificate(transport: object) -> x509.Certificate | None:
    """The (cryptography) certificate of C{transport}'s peer, or C{None}."""
    handle = _handle(transport)
    if handle is None:
        return None
    return handle.get_peer_certificate(as_cryptography=True)


# -- why a handshake failed ------------------------------------------------------

#: OpenSSL reasons meaning "the other end does not speak TLS at all".
_PLAINTEXT_REASONS = (
    "wrong version number", "http request", "https proxy request",
    "unknown protocol", "packet length too long", "record layer failure",
    "unexpected message", "record length mismatch",
)

#: Alerts the peer sends when it refuses *our* certificate.
_ALERT_REASONS = {
    "unknown ca": "unknown-ca",
    "certificate expired": "expired",
    "bad certificate": "bad-certificate",
    "certificate required": "no-client-cert",
    "certificate unknown": "bad-certificate",
    "unsupported certificate": "bad-certificate",
    "decrypt error": "bad-certificate",
}


def _ssl_reasons(error: SSL.Error) -> list[str]:
    """The reason strings of an C{OpenSSL.SSL.Error}'s queue, lower case."""
    reasons = []
    for entry in error.args[0] if error.args and isinstance(error.args[0], list) else ():
        if isinstance(entry, tuple) and len(entry) == 3:
            reasons.append(str(entry[2]).lower())
    return reasons


def peer_hello_seen(transport: object, initiator: bool) -> bool:
    """Whether the TLS peer of C{transport} sent its hello (ClientHello or ServerHello).

    OpenSSL fills in the peer's random once it has read that hello: before,
    the client random is absent on a server and the server random is zero
    on a client.
    """
    handle = _handle(transport)
    if handle is None:
        return False
    random = handle.server_random() if initiator else handle.client_random()
    return random is not None and any(random)


def classify_tls_failure(error: BaseException, verify_errno: int | None, *,
                         hello_seen: bool = False) -> tuple[str, str]:
    """Name a failed handshake: C{(key, detail)} for counters and the log.

    @param error: the exception the connection ended with (usually an
        C{OpenSSL.SSL.Error}).
    @param verify_errno: what our verify callback recorded, or C{None}.
    @param hello_seen: the peer's TLS hello had arrived (L{peer_hello_seen}):
        data that is not TLS after it is ``tls-garbage``, not ``plaintext``.
    @return: C{key} is ``tls-<what>``: ``expired``, ``not-yet-valid``,
        ``unknown-ca``, ``no-client-cert``, ``plaintext``, ``garbage``,
        ``bad-certificate``;
        ``tls-refused-<what>`` when the peer refused *our* certificate; and
        ``tls-error`` for anything else.
    """
    if verify_errno is not None:
        if verify_errno == X509_V_ERR_CERT_HAS_EXPIRED:
            return "tls-expired", "the peer's certificate has expired"
        if verify_errno == X509_V_ERR_CERT_NOT_YET_VALID:
            return "tls-not-yet-valid", "the peer's certificate is not valid yet"
        if verify_errno in _UNKNOWN_CA_ERRORS:
            return "tls-unknown-ca", "the peer's certificate is not from the cluster CA"
        return "tls-bad-certificate", f"the peer's certificate failed verification (X509 error {verify_errno})"
    if not isinstance(error, SSL.Error):
        return "tls-error", f"{type(error).__name__}: {error}"
    reasons = _ssl_reasons(error)
    text = "; ".join(reasons) or str(error)
    for reason in reasons:
        if "peer did not return a certificate" in reason:
            return "tls-no-client-cert", "the peer presented no client certificate"
        if any(p in reason for p in _PLAINTEXT_REASONS):
            if hello_seen:
                return ("tls-garbage",
                        f"the peer began a TLS handshake, then sent data that is not TLS ({reason})")
            return "tls-plaintext", f"the peer does not speak TLS ({reason})"
        if "alert" in reason:
            for alert, key in _ALERT_REASONS.items():
                if alert in reason:
                    return f"tls-refused-{key}", f"the peer refused our certificate ({reason})"
            return "tls-alert", f"the peer ended the handshake ({reason})"
    return "tls-error", text


def connection_refusal(admission: Admission,
                       protocol: PeerProtocol) -> tuple[str, str] | None:
    """L{Admission.refusal} for a live connection (C{None} before its TLS handshake)."""
    name = protocol.name
    if name is None and protocol.session is not None:
        name = protocol.session.certificate_name
    if name is None:
        return None  # still in TLS: it is checked with the new admission when done
    return admission.refusal(name, peer_certificate(protocol.transport))


def enforce(network: PeerNetwork, admission: Admission) -> dict[str, tuple[str, str]]:
    """Put C{admission} in force on C{network}: new connections, and established ones.

    @return: C{{name: (reason key, detail)}} of the established peers expelled.
    """
    network.tls.admission = admission
    verdicts: dict[str, tuple[str, str]] = {}

    def refusal(protocol: PeerProtocol) -> tuple[str, str] | None:
        verdict = connection_refusal(admission, protocol)
        if verdict is not None and protocol.name is not None:
            verdicts[protocol.name] = verdict
        return verdict

    network.expel(refusal)
    return verdicts
