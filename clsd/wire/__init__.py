"""The peer wire: message codec, TLS contexts, and the peer connection protocol."""
