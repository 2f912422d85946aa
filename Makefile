# Everything a newcomer needs: `make demo` runs the main job against the local AWS stack,
# `make test` runs every test (lint, unit, handler, end-to-end). Both install what they need.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
SCAN_VENV   := .venv-scan
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
BIN         := $(TARGET_DIR)/debug
RUST_TARGETS := aarch64-unknown-linux-gnu wasm32-unknown-unknown
STATE_MACHINES := $(wildcard statemachines/*.asl.json) $(wildcard tests/fixtures/statemachines/*.asl.json)

export PATH := $(CURDIR)/$(VENV)/bin:$(CURDIR)/node_modules/.bin:$(PATH)
export AWS_DEFAULT_REGION ?= us-east-1
export SAM_CLI_TELEMETRY := 0
export CARGO_TERM_COLOR ?= never

.PHONY: help setup rust-toolchain lint test test-long test-build iam-check athena-check demo postgres stack bench bench-trigger bench-edge bench-shipper bench-catchup bench-fleet edge edge-test clean

help: ## this list: every target with the comment on its line
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## /\1\t/' | awk -F'\t' '{printf "make %-14s %s\n", $$1, $$2}'

## Installation -------------------------------------------------------------------------------

setup: $(VENV)/.installed $(SCAN_VENV)/.installed node_modules/.installed rust-toolchain ## install everything the other targets need (.venv, .venv-scan, node_modules, rustup components and targets)

# moto (local AWS), cargo-lambda, SAM CLI, cfn-lint and its serverless rules, pinned, in a
# repo-local venv.
$(VENV)/.installed: requirements-dev.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# checkov, pinned, in a venv of its own: it pins an older boto3/botocore than .venv's moto and SAM CLI.
$(SCAN_VENV)/.installed: requirements-scan.txt
	python3 -m venv $(SCAN_VENV)
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check --upgrade pip
	$(SCAN_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-scan.txt
	touch $@

# asl-validator, pinned by package-lock.json.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

rust-toolchain: ## the rustup components (clippy, rustfmt) and targets (aarch64 Linux, wasm32)
	@rustup component add clippy rustfmt >/dev/null 2>&1 || rustup component add clippy rustfmt
	@rustup target add $(RUST_TARGETS) >/dev/null 2>&1 || rustup target add $(RUST_TARGETS)

## Checks --------------------------------------------------------------------------------------

lint: setup ## rustfmt, clippy, sam validate --lint, cfn-lint (with the serverless rules), checkov, asl-validator
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings
	sam validate --lint --template template.yaml
	sam validate --lint --template $(EDGE_DIR)/template.yaml
	cfn-lint template.yaml $(EDGE_DIR)/template.yaml
	@# The Serverless Rules; a rule disabled on a resource says why in the template.
	cfn-lint template.yaml $(EDGE_DIR)/template.yaml --append-rules cfn_lint_serverless.rules
	@# Every check passes or is skipped on its resource with the reason (Metadata: checkov: skip).
	@# --skip-download: no Prisma Cloud account, no network.
	$(SCAN_VENV)/bin/checkov -f template.yaml -f $(EDGE_DIR)/template.yaml \
	  --framework cloudformation --compact --quiet --skip-download
	@for f in $(STATE_MACHINES); do asl-validator --json-path "$$f" || exit 1; done
	python3 .ci/check-layout
	python3 .ci/check-sizes
	@# `make help` lists every target: each .PHONY target carries a `## ` description.
	@missing=$$(for t in $$(sed -n 's/^\.PHONY: //p' Makefile); do grep -qE "^$$t:.*## " Makefile || echo $$t; done); \
	  test -z "$$missing" || { echo "targets without a description for make help: $$missing"; exit 1; }

# One build serves the tests, the demo and the local stack: the end-to-end tests run the
# workspace's function binaries, which `cargo test` builds next to the test executables.
test-build: setup ## build the workspace and its tests once (the end-to-end tests run these binaries)
	cargo test --workspace --locked --no-run

test: lint test-build edge ## lint + unit, handler and end-to-end tests, the edge handler's Node tests, the IAM check, the Athena table check
	rm -rf $(TARGET_DIR)/local-stack
	cargo test --workspace --locked
	@# The local stack's Distributed Map extensions of moto (tests/moto/extensions.py).
	cd tests/moto && $(CURDIR)/$(VENV)/bin/python -m unittest --quiet
	EDGE_PACKAGE_DIR=$(EDGE_PKG) node --test $(EDGE_DIR)/test/
	$(MAKE) --no-print-directory iam-check
	$(MAKE) --no-print-directory athena-check

# Least privilege, proven: the requests the end-to-end tests recorded (target/local-stack/*/),
# each checked against its function's role in template.yaml (tests/iam/check.py).
iam-check: setup ## the IAM check over the last end-to-end run's recorded requests (make test runs it)
	cd tests/iam && $(CURDIR)/$(VENV)/bin/python -m unittest --quiet
	$(VENV)/bin/python tests/iam/check.py --calls $(TARGET_DIR)/local-stack --mutations

# The Glue table (template.yaml, CreateAthenaTable) against the chunk keys the shipper wrote in the
# last end-to-end run (recorded in target/local-stack/*/calls.jsonl), and DuckDB reading the
# objects that run saved (target/local-stack/*/archive/) as Athena would (tests/athena).
athena-check: setup ## the Athena table's partition projection over the last end-to-end run's keys, and a DuckDB query of them (make test runs it)
	cd tests/athena && CARGO_TARGET_DIR=$(TARGET_DIR) $(CURDIR)/$(VENV)/bin/python -m unittest --quiet

# The RDS shipper's randomized exactly-once scenario with many seeds (make test runs one).
test-long: test-build ## the RDS shipper's randomized exactly-once scenario with 40 seeds
	RDS_SHIPPER_SEEDS=$$(seq -s, 1 40) cargo test --workspace --locked --test rds_shipper -- --nocapture

## Local AWS stack -----------------------------------------------------------------------------

demo: test-build edge postgres ## the main job on the local AWS stack: pipeline jobs, deploy paths, edge rules, RDS logs
	$(BIN)/demo
	node $(EDGE_DIR)/demo.js $(EDGE_PKG)
	$(BIN)/demo-rds

# A real PostgreSQL server for the RDS shipper's demo (Debian's package).
postgres: ## Debian's PostgreSQL server, for the RDS shipper demo (needs root)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; }

stack: test-build ## run the local AWS stack until Ctrl-C, printing the environment to point the AWS CLI at it
	$(BIN)/local-stack

## Benchmarks ----------------------------------------------------------------------------------

BENCH_DIR := $(TARGET_DIR)/bench

bench: bench-trigger bench-edge bench-shipper bench-catchup bench-fleet ## every benchmark below -> BENCHMARKS.md

# Release bootstraps for both Lambda architectures (cargo lambda cross-links with zig), then
# cold start, warm latency and peak RSS of the x86_64 bootstrap through the Runtime API host.
bench-trigger: test-build ## release bootstraps (arm64, x86_64): size, cold start, warm latency, peak RSS
	mkdir -p $(BENCH_DIR)
	cargo lambda build --release --arm64 --output-format zip -p pipeline-trigger
	cp $(TARGET_DIR)/lambda/pipeline-trigger/bootstrap.zip $(BENCH_DIR)/pipeline-trigger-arm64.zip
	cargo lambda build --release --x86-64 --output-format zip -p pipeline-trigger
	cp $(TARGET_DIR)/lambda/pipeline-trigger/bootstrap.zip $(BENCH_DIR)/pipeline-trigger-x86_64.zip
	rm -rf $(BENCH_DIR)/pipeline-trigger-x86_64 && mkdir -p $(BENCH_DIR)/pipeline-trigger-x86_64
	cd $(BENCH_DIR)/pipeline-trigger-x86_64 && python3 -m zipfile -e ../pipeline-trigger-x86_64.zip .
	chmod +x $(BENCH_DIR)/pipeline-trigger-x86_64/bootstrap
	$(BIN)/bench-runtime --bootstrap $(BENCH_DIR)/pipeline-trigger-x86_64/bootstrap \
	  --zip-arm64 $(BENCH_DIR)/pipeline-trigger-arm64.zip \
	  --zip-x86-64 $(BENCH_DIR)/pipeline-trigger-x86_64.zip \
	  --out BENCHMARKS.md

clean: ## remove target/, .venv, .venv-scan, node_modules and .aws-sam
	cargo clean
	rm -rf $(VENV) $(SCAN_VENV) node_modules .aws-sam

## Lambda@Edge package ------------------------------------------------------------------------

EDGE_DIR := functions/edge-rewriter
EDGE_OUT := $(TARGET_DIR)/edge
EDGE_PKG := $(EDGE_OUT)/package
EDGE_ZIP := $(EDGE_OUT)/edge-rewriter.zip

# The Rust rules as WebAssembly, with the Node.js handler and config.json, zipped; fails when the
# zip exceeds the 1 MB viewer-request limit.
edge: rust-toolchain ## the Lambda@Edge package (Rust rules as wasm + Node.js handler), checked against the 1 MB limit
	cargo build -p edge-rewriter --profile wasm --target wasm32-unknown-unknown --locked
	rm -rf $(EDGE_PKG) && mkdir -p $(EDGE_PKG)
	cp $(TARGET_DIR)/wasm32-unknown-unknown/wasm/edge_rewriter.wasm $(EDGE_PKG)/rewriter.wasm
	cp $(EDGE_DIR)/handler/index.js $(EDGE_DIR)/handler/config.json $(EDGE_PKG)/
	python3 -c 'import sys, zipfile, os; z = zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED, compresslevel=9); [z.write(os.path.join(sys.argv[2], f), f) for f in ("index.js", "config.json", "rewriter.wasm")]; z.close()' $(EDGE_ZIP) $(EDGE_PKG)
	@size=$$(stat -c %s $(EDGE_ZIP)); echo "edge package $(EDGE_ZIP): $$size bytes (viewer-request limit 1048576)"; test $$size -le 1048576

edge-test: edge ## the edge handler's Node tests against the built package
	EDGE_PACKAGE_DIR=$(EDGE_PKG) node --test $(EDGE_DIR)/test/

# Throughput against the RDS emulator (with and without its throttle), API calls per MB and
# peak RSS shipping 10 MB, 100 MB and 1 GB files, with the release binary.
bench-shipper: test-build ## RDS shipper throughput, API calls per MB and peak RSS, 10 MB to 2 GB files; requests and MB for lines over 1 MB
	cargo build --release --locked -p rds-log-shipper --bin rds-log-shipper
	$(BIN)/bench-shipper --shipper $(TARGET_DIR)/release/rds-log-shipper --sizes 10,100,1000,2000 --out BENCHMARKS.md
	$(BIN)/bench-shipper --shipper $(TARGET_DIR)/release/rds-log-shipper --long-lines 4 --out BENCHMARKS.md

# A multi-day backlog of one instance (72 hourly PostgreSQL files of 40 MB) shipped by portions
# only, then with whole downloads (DownloadCompleteLogFile), under the emulator's throttles.
bench-catchup: test-build ## RDS shipper backlog catch-up: 72 hourly files (2.9 GB) by portions vs whole downloads, requests and wall time
	cargo build --release --locked -p rds-log-shipper --bin rds-log-shipper
	$(BIN)/bench-shipper --shipper $(TARGET_DIR)/release/rds-log-shipper --catch-up 72,40 --out BENCHMARKS.md

# The real shipping state machine in moto over fleets of 1,000 instances (2 schedule periods)
# and 10,000 (10 periods: every instance visited once), Aurora members among them, with the
# template's budget: wall time, RDS requests against the budget, lag, starvation, state
# payload, memory. About an hour.
bench-fleet: test-build ## RDS shipper at fleet scale: 1,000 and 10,000 instances through the real state machine (about an hour)
	cargo build --release --locked -p rds-log-shipper --bin rds-log-shipper
	$(BIN)/bench-shipper --shipper $(TARGET_DIR)/release/rds-log-shipper --fleet 1000:2,10000:10 --out BENCHMARKS.md

# Per-event time next to a JavaScript regex handler, cold init, package size.
bench-edge: edge ## edge: per-event time next to a JavaScript regex handler, cold init, package size
	node $(EDGE_DIR)/bench.js $(EDGE_PKG) $(EDGE_ZIP) BENCHMARKS.md
