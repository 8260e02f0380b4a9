#!/usr/bin/env bash
# Create .venv (if missing) and install the kernel, every plugin under plugins/,
# and the workspace root with its dev tools, all in editable mode.
# Needs only python3 (3.11+) and access to the package registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
members=(-e ./kernel)
for dir in plugins/*/; do
  [ -f "$dir/pyproject.toml" ] && members+=(-e "./${dir%/}")
done
.venv/bin/python -m pip install --quiet --disable-pip-version-check "${members[@]}" -e ".[dev]" 2>&1 \
  | grep -v "^WARNING: Location" || true
.venv/bin/python -c "import swarmgate" >/dev/null
# The dashboard test drives a real headless Chromium (Debian package).
scripts/install-browser.sh
