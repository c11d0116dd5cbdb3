# Every target builds what it needs: a fresh clone runs `make demo` or `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install emulators test lint typecheck unit slow demo bench bench-fleet bench-daemon docker-steps wheel wheel-check reliability reliability-short servers servers-test kfp mlflow bench-peers bench-tools clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev,tensorflow,s3,azure,oms,pubsub]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check modelsync tests bench examples integrations
	$(BIN)/ruff format --check modelsync tests bench examples integrations

typecheck: $(STAMP)
	$(BIN)/mypy

# Azure's Blob API server for the contract suite, from npm (3.35.0 is the last
# release that runs on Node 20); moto and gcp-storage-emulator come with '.[dev]'.
EMULATORS := .emulators
AZURITE   := azurite@3.35.0
# The install is checked by loading Azurite's blob server code: a node_modules that
# npm thinks complete but is not (one copied with files missing) fails here, not in
# the middle of the suite.
AZURITE_LOADS := node -e "require('azurite/dist/src/blob/BlobServer.js')"

$(EMULATORS)/.installed:
	mkdir -p $(EMULATORS)
	cd $(EMULATORS) && npm install --silent --no-audit --no-fund --save-exact $(AZURITE) >/dev/null
	cd $(EMULATORS) && $(AZURITE_LOADS)
	touch $@

emulators: $(EMULATORS)/.installed

# Two workers: most of the suite waits on child processes and servers, so two halves
# side by side take about half the time on two cores (689-789 s against 1,358 s in
# series on the same machine, 2026-12-07).
unit: $(STAMP) emulators kfp mlflow
	$(BIN)/pytest -q -n 2 --durations=25

# The README's test command: lint, types, the whole suite and the real-server suite.
test: lint typecheck unit servers-test

# The reliability campaign: kill -9, storage faults, corruption, fuzzing; then invariants.
# Then the variant campaign (issue 21): generated hostile inputs of every class, on
# file://, gs, s3 and az, through the CLI and the daemon; both run, either fails the target.
# bench.largest_revision: the largest revision a bucket writer can publish must fit
# every memory limit the shipped deployments set (exit 1 otherwise).
reliability: $(STAMP)
	$(BIN)/python -m bench.reliability; a=$$?; $(BIN)/python -m bench.variants --long; b=$$?; \
	$(BIN)/python -m bench.largest_revision; c=$$?; exit $$((a | b | c))

reliability-short: $(STAMP)
	$(BIN)/python -m bench.reliability --short; a=$$?; $(BIN)/python -m bench.variants --short; b=$$?; \
	$(BIN)/python -m bench.largest_revision; c=$$?; exit $$((a | b | c))

# The Dockerfile's install steps, run without a Docker engine.
docker-steps: $(STAMP)
	$(BIN)/python .ci/dockerfile_steps.py

# A wheel in dist/ for hosts that install modelsync without the source tree:
#   python3 -m venv /opt/modelsync && /opt/modelsync/bin/pip install dist/modelsync-*.whl
# (docs/operations.md#install). Built from a clean build/: a stale one would ship
# modules that no longer exist.
DIST := dist
wheel:
	rm -rf $(DIST) build
	$(PYTHON) -m venv $(DIST)/.build-env
	$(DIST)/.build-env/bin/pip wheel --quiet --disable-pip-version-check --no-deps -w $(DIST) .
	rm -rf $(DIST)/.build-env build

# The wheel in a fresh virtual environment: --version, publish, sync, status, verify.
wheel-check: wheel
	$(PYTHON) .ci/wheel_check.py $(DIST)/modelsync-*.whl

# The real model servers, each in its own virtual environment (their pins conflict
# with each other and with TensorFlow): installed once, reused by every run.
SERVERS := .venv-servers
SERVER_PKGS_triton   := nvidia-pytriton==0.7.0
# MLServer's workers crash-loop with uvloop 0.23.
SERVER_PKGS_mlserver := mlserver==1.7.1 mlserver-sklearn==1.7.1 'uvloop<0.22'
SERVER_PKGS_kserve   := kserve==0.21.0

$(SERVERS)/%/.installed:
	rm -rf $(SERVERS)/$*
	$(PYTHON) -m venv $(SERVERS)/$*
	$(SERVERS)/$*/bin/pip install --quiet --disable-pip-version-check $(SERVER_PKGS_$*)
	touch $@

servers: $(SERVERS)/triton/.installed $(SERVERS)/mlserver/.installed $(SERVERS)/kserve/.installed

# The MLflow tracking/registry server for the MLflow source's tests (tests/mlflowserver.py):
# its pins conflict with the main venv, so it gets its own; boto3 lets it keep
# artifacts on S3 (moto in the tests). Installed once, reused by every run.
ENVS          := .envs
MLFLOW_PKGS   := mlflow==3.17.2 boto3
$(ENVS)/mlflow/.installed:
	rm -rf $(ENVS)/mlflow
	$(PYTHON) -m venv $(ENVS)/mlflow
	$(ENVS)/mlflow/bin/pip install --quiet --disable-pip-version-check $(MLFLOW_PKGS)
	touch $@

mlflow: $(ENVS)/mlflow/.installed

# modelsync against Triton (explicit and poll), MLServer, KServe and TF Serving's shape.
servers-test: $(STAMP) servers
	$(BIN)/pytest -q -m servers --durations=15

# Kubeflow Pipelines (integrations/kfp/): kfp 2.17 needs protobuf<7, the main
# virtualenv has protobuf 7 (TensorFlow's), so it gets its own, with modelsync and its
# S3 extra for the component to import; tests/test_kfp.py runs pipelines in it. Pinned:
# modelsync_step.yaml names the kfp version it was compiled with.
KFP_ENV := $(ENVS)/kfp
$(KFP_ENV)/.installed: pyproject.toml
	rm -rf $(KFP_ENV)
	$(PYTHON) -m venv $(KFP_ENV)
	$(KFP_ENV)/bin/pip install --quiet --disable-pip-version-check 'kfp==2.17.3' -e '.[s3]'
	touch $@

kfp: $(KFP_ENV)/.installed

# Long trials (e.g. 50 kill -9 runs); by hand or nightly.
slow: $(STAMP)
	$(BIN)/pytest -q -m slow

# The download benchmark (issue 23): modelsync beside rclone, s5cmd, gcsfs and KServe's
# storage initializer on fake-gcs-server, moto and Azurite, beside `curl --parallel` and
# a durable write; medians of 3 rounds; then the fleet simulation.
# rclone and curl come from Debian; s5cmd and fake-gcs-server from the dev extra; the
# Python peers from their own virtualenv (their pins are not modelsync's), with the
# HTTP cores bench/transport_planes.py compares (pycurl, obstore).
BENCH_PEERS := .envs/benchpeers
$(BENCH_PEERS)/.installed:
	rm -rf $(BENCH_PEERS)
	$(PYTHON) -m venv $(BENCH_PEERS)
	$(BENCH_PEERS)/bin/pip install --quiet --disable-pip-version-check \
	  'kserve-storage==0.21.0' 'gcsfs==2025.12.0' 'pycurl==7.49.0' 'obstore==0.12.1'
	touch $@

bench-peers: $(BENCH_PEERS)/.installed

bench-tools:
	command -v rclone >/dev/null && command -v curl >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rclone curl)

bench: $(STAMP) emulators bench-tools bench-peers
	$(BIN)/python -m bench.download --peers-python $(BENCH_PEERS)/bin/python
	$(BIN)/python -m bench.fleet_sim

# 10,000 sidecars following a release channel, in virtual time (docs/fleet.md).
bench-fleet: $(STAMP)
	$(BIN)/python -m bench.fleet_sim

# The daemon's RSS idle and during a 1 GB download, and its idle CPU.
bench-daemon: $(STAMP)
	$(BIN)/python -m bench.daemon_resources

demo: $(STAMP)
	$(BIN)/python examples/demo.py

clean:
	rm -rf $(VENV) $(SERVERS) $(ENVS) $(EMULATORS) $(DIST) build .pytest_cache .mypy_cache .ruff_cache demo-run
