#!/usr/bin/env bash
# Quick start, part 2: set up and run the whole test suite, plus ruff and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"
