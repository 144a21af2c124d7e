"""The ownership core: sans-IO state machines for leases, epochs, placement and
escalation. Fed events with the current time, they return actions; they never touch a socket,
a process, a file or a clock (the shells one level up do)."""
