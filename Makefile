# Posture developer entry points. `make help` lists them.
#
#   make setup  - make sure PostgreSQL, Redis, the database and roles exist
#   make run    - setup, build, migrate, load demo data, serve
#   make test   - setup, drop stale test databases, run the whole test suite
#   make lint   - rustfmt check and clippy with warnings as errors

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

# One build directory outside the checkout, so every clone (and CI's fresh
# clone) reuses the same compiled dependencies instead of starting cold.
CARGO_TARGET_DIR ?= $(HOME)/.cache/posture-target
export CARGO_TARGET_DIR

# Where scripts/setup.sh puts things; the URLs below follow them.
POSTURE_PG_HOST ?= 127.0.0.1
POSTURE_PG_PORT ?= 5432
POSTURE_PG_DB ?= posture
export POSTURE_PG_HOST POSTURE_PG_PORT POSTURE_PG_DB

# The binary has these same defaults; exported anyway so a changed host, port
# or database above reaches it, and so the values are visible here.
#   owner role: migrate, demo, admin commands; app role: the server.
POSTURE_ADMIN_DATABASE_URL ?= postgres://posture_owner:posture_owner@$(POSTURE_PG_HOST):$(POSTURE_PG_PORT)/$(POSTURE_PG_DB)
DATABASE_URL ?= postgres://posture_app:posture_app@$(POSTURE_PG_HOST):$(POSTURE_PG_PORT)/$(POSTURE_PG_DB)
export POSTURE_ADMIN_DATABASE_URL DATABASE_URL

POSTURE_BIN := $(CARGO_TARGET_DIR)/release/posture

.PHONY: help setup run test lint

help:
	@echo "make setup   ensure PostgreSQL, Redis, database '$(POSTURE_PG_DB)' and roles exist"
	@echo "make run     setup, build (release), migrate, load demo data, serve"
	@echo "make test    setup, drop stale test databases, run all tests"
	@echo "make lint    cargo fmt --check and clippy -D warnings"

setup:
	bash scripts/setup.sh

run: setup
	cargo build --release --bin posture
	$(POSTURE_BIN) migrate
	$(POSTURE_BIN) demo
	exec $(POSTURE_BIN) serve

# Doc tests run first (nextest cannot run them) so that the suite's closing
# summary is the main runner's. Both runs always happen (no fail-fast); the
# target fails if either did.
test: setup
	bash scripts/drop-test-databases.sh
	@status=0; \
	if cargo nextest --version >/dev/null 2>&1; then \
		echo "+ cargo test --workspace --doc"; \
		cargo test --workspace --doc || status=$$?; \
		echo "+ cargo nextest run --workspace --no-fail-fast"; \
		cargo nextest run --workspace --no-fail-fast || status=$$?; \
	else \
		echo "+ cargo test --workspace --no-fail-fast"; \
		cargo test --workspace --no-fail-fast || status=$$?; \
	fi; \
	exit $$status

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
