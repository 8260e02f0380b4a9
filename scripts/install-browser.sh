#!/usr/bin/env bash
# Install the browser the dashboard's end-to-end test drives: Debian's
# chromium package (/usr/bin/chromium). Playwright's Python package drives it
# through executable_path; never run 'playwright install' (it downloads
# browsers from the internet, which these machines do not reach).
# Idempotent: does nothing when /usr/bin/chromium is there. Needs root (or sudo).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  SUDO=()
elif command -v sudo >/dev/null 2>&1; then
  SUDO=(sudo -n)
else
  echo "install-browser.sh: installing chromium needs root: run 'apt-get install -y chromium' as root" >&2
  exit 2
fi
export DEBIAN_FRONTEND=noninteractive
if ! "${SUDO[@]}" apt-get install -y chromium; then
  "${SUDO[@]}" apt-get update
  "${SUDO[@]}" apt-get install -y chromium
fi
test -x /usr/bin/chromium
