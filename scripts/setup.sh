#!/usr/bin/env bash
# Create .venv and install the project (idempotent). torch is pinned to the
# CPU wheel 2.13.0 and installed first, so nothing pulls a CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# pip's exit status survives the filter (pipefail); the filter only hides
# this machine's notes about unused local indexes.
pip_install() { .venv/bin/pip install -q --disable-pip-version-check "$@" 2>&1 | { grep -v "is ignored" || true; }; }
stamp=.venv/.installed-$(sha256sum pyproject.toml | cut -c1-16)
if [ ! -f "$stamp" ]; then
  pip_install torch==2.13.0
  pip_install -e ".[dev]"
  rm -f .venv/.installed-*
  touch "$stamp"
fi
