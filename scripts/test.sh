#!/usr/bin/env bash
# The test command of the README: installs what is missing, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
# The widget's tests drive Debian's Chromium (Playwright's own download is not needed).
if ! command -v chromium >/dev/null 2>&1 && [ -z "${CHROMIUM_PATH:-}" ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "installing chromium for the browser tests..."
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null
  else
    echo "chromium is missing: sudo apt-get install -y chromium (or set CHROMIUM_PATH)" >&2
    exit 1
  fi
fi
command -v redis-server >/dev/null || { echo "redis-server is missing: apt-get install -y redis-server" >&2; exit 1; }
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
