# Posture developer entry points. `make help` lists them.
#
#   make setup  - make sure PostgreSQL, Redis, the database and roles exist
#   make run    - scripts/run.sh: setup, build, migrate, demo tenant, serve
#   make test   - scripts/test.sh: setup, drop stale test databases, all tests
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

.PHONY: help setup run test lint

help:
	@echo "make setup   ensure PostgreSQL, Redis, database '$(POSTURE_PG_DB)' and roles exist"
	@echo "make run     setup, build (release), migrate, load demo data, serve"
	@echo "make test    setup, drop stale test databases, run all tests"
	@echo "make lint    cargo fmt --check and clippy -D warnings"

setup:
	bash scripts/setup.sh

# The README's two commands are scripts/run.sh and scripts/test.sh (they need
# no make); these targets are shorthands for them.
run:
	bash scripts/run.sh

test:
	bash scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
