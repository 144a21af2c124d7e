# The commands of the quick start: `make demo` and `make test`.
# Both create .venv when it is missing and install CLSD into it.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.PHONY: venv demo demo-cluster test test-unit test-integration lint soak bench bench-failover clean

$(STAMP): pyproject.toml setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# compat mode puts the checkout on sys.path, so Twisted's plugin loader
	# finds twisted/plugins/clsd_plugin.py without a reinstall.
	$(PY) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	@touch $(STAMP)

venv: $(STAMP)

# `make demo`: three nodes, a kill -9 and a failover, then everything stops.
# `make demo-cluster` (= `make demo DEMO_ARGS=--keep`): the cluster stays up
# for exploring with ssh until Ctrl-C. `make demo DEMO_ARGS=--single`: one node.
demo: $(STAMP)
	$(PY) -m clsd.demo $(DEMO_ARGS)

demo-cluster: $(STAMP)
	$(PY) -m clsd.demo --keep $(DEMO_ARGS)

# `make test` runs ruff and mypy first (one check each in the summary line), then every
# test; test-unit leaves out tests/integration/ (real daemons and processes, the slow
# part), test-integration runs only those.
test: $(STAMP)
	$(PY) tools/run_tests.py $(TESTS)

test-unit: $(STAMP)
	$(PY) tools/run_tests.py --unit

test-integration: $(STAMP)
	$(PY) tools/run_tests.py tests.integration

# The static checks alone (settings in pyproject.toml).
lint: $(STAMP)
	$(PY) -m ruff check
	$(PY) -m mypy

# Fault-schedule soak (doc/reliability.md): SEEDS schedules of DURATION seconds on
# NODES daemons, each its own run; the figures are appended to doc/reliability.md.
# Needs root for partitions and CPU quotas. SOAK_ARGS="--first-seed 7 --no-append".
SEEDS    ?= 10
NODES    ?= 3
DURATION ?= 60
soak: $(STAMP)
	$(PY) -m rig.faults.soak --seeds $(SEEDS) --nodes $(NODES) --duration $(DURATION) $(SOAK_ARGS)

# Benchmarks (not tests): see bench/README.md. BENCH_ARGS="--kills 20" for a quick look.
bench: $(STAMP)
	$(PY) bench/restart_latency.py $(BENCH_ARGS)
	$(PY) bench/idle_footprint.py

# Failover time on three real daemons (partitions need root and nft).
# FAILOVER_ARGS="--trials 10 --profile fast" for a quick look.
bench-failover: $(STAMP)
	$(PY) bench/failover.py $(FAILOVER_ARGS)

clean:
	rm -rf $(VENV) _trial_temp* build *.egg-info
