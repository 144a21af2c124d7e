"""The supervision core: the sans-IO service lifecycle policy, its backoff, and the agents' exit
codes. Processes, process groups, cgroups and health probes are the shells one level up."""
