#!/usr/bin/env bash
# Install Debian's chromium when /usr/bin/chromium is missing; the report tests render the
# benchmark page with it in headless mode (tests/unit/test_report.py) and skip without it.
# Runs as root (CI, containers); otherwise it uses sudo when that is available.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "install_chromium: /usr/bin/chromium already present: $(/usr/bin/chromium --version 2>/dev/null || echo 'version unknown')"
  exit 0
fi
as_root=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    as_root=(sudo)
  else
    echo "install_chromium: not root and no sudo; cannot install chromium" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
echo "install_chromium: /usr/bin/chromium missing; running apt-get update && apt-get install chromium"
"${as_root[@]}" apt-get update -qq
"${as_root[@]}" apt-get install -y -qq chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
  echo "install_chromium: apt-get finished but /usr/bin/chromium is still missing" >&2
  exit 1
fi
echo "install_chromium: installed $(/usr/bin/chromium --version 2>/dev/null || echo chromium)"
