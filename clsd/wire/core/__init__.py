"""The peer protocol's core: message types and their schema, the codec, the per-connection
session state machine and the pre-authentication caps. No sockets, no TLS, no reactor (the
shells one level up: L{clsd.wire.protocol}, L{clsd.wire.network}, L{clsd.wire.router})."""
