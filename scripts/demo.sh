#!/usr/bin/env bash
# Quick start, part 1: set up and run the embedded default (simulated providers,
# no API keys, no outside service) with a short burst of traffic.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/qwen-swarm-enhanced demo "$@"
