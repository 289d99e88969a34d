#!/usr/bin/env bash
# Installs everything the tests need into .venv (pinned torch first, so nothing pulls a multi-GB CUDA build),
# then runs the test suite. Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LLAVA_NEXT_AR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[train,test]"
exec "$PY" -m pytest -q "$@"
