#!/usr/bin/env bash
# Start the product on a fresh machine: install, train the default models if
# missing (with progress), start Redis (unless SHOPBOT_REDIS_URL is set), the
# Celery worker and the gateway, and print the web chat's URL.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}
exec .venv/bin/python -m shopbot.start "$@"
