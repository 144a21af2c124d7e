"""The membership core: sans-IO failure detection, cut decisions and dissemination. The
per-node state machine is L{node.Core}; fed events with the current time, it returns actions
and never touches a socket or a clock (L{clsd.membership.service} does)."""
