"""The etcd arbiter's core: the sans-IO lease state machine (L{arbiter}), the actions it
returns (L{actions}) and the JSON gateway's messages (L{codec})."""
