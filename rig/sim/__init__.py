"""In-memory simulation: many nodes' pure cores on one shared clock and a faulty network."""
