"""What the etcd arbiter core asks its shell to do, and what the shell feeds back.

Actions (core -> shell) and inputs (shell -> core, through
C{IArbiter.receive}) are frozen attrs classes with no behaviour.  Bodies are
JSON-able dicts for the gateway (see L{clsd.ownership.etcd.core.codec}).
"""

import attrs

from clsd.ownership.etcd.core.codec import JsonObject

#: The C{sender} the shell passes with every input, so logs can tell etcd's
#: answers from peers' messages (no peer can have this name: node names
#: start with a letter or digit).
ETCD_SENDER = "<etcd>"


# -- actions -------------------------------------------------------------------

@attrs.frozen
class EtcdCall:
    """POST C{body} to C{path}; give up after C{timeout} s; answer with L{EtcdReply}(C{id})."""

    id: int
    path: str
    body: JsonObject
    timeout: float


@attrs.frozen
class EtcdWatch:
    """Open a watch stream (POST C{body} to /v3/watch), replacing any open one.

    Every JSON message on it comes back as L{EtcdWatchMessage}(C{id}); its
    end (or failure to open) as L{EtcdWatchClosed}(C{id}).
    """

    id: int
    body: JsonObject
    timeout: float


@attrs.frozen
class EtcdLog:
    """Something the operator should see (a bad answer, etcd unreachable): log it."""

    resource: str
    text: str


ETCD_ACTIONS = (EtcdCall, EtcdWatch, EtcdLog)


# -- inputs ------------------------------------------------------------------------

@attrs.frozen
class EtcdReply:
    """The answer to L{EtcdCall} C{id}.

    C{status}: the HTTP status, or None when no answer came (C{error} says
    why: timeout, refused, TLS failure).  C{body}: the raw response bytes.
    """

    id: int
    status: int | None
    body: bytes = b""
    error: str | None = None


@attrs.frozen
class EtcdWatchMessage:
    """One line (one JSON object, raw bytes) of the watch stream C{id}."""

    id: int
    body: bytes


@attrs.frozen
class EtcdWatchClosed:
    """Watch stream C{id} ended or could not be opened (C{reason})."""

    id: int
    reason: str


ETCD_INPUTS = (EtcdReply, EtcdWatchMessage, EtcdWatchClosed)
