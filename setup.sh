#!/usr/bin/env bash
# Sets up .venv on a fresh machine (idempotent): the CPU build of torch first, then the package.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -c "import freemask, torch, dvc, imgviz, matplotlib, polars" 2>/dev/null; then
  .venv/bin/pip install -q "torch==2.13.0"          # pinned: an unpinned torch pulls a multi-GB CUDA build
  .venv/bin/pip install -q -e ".[dev]"
fi
