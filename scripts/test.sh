#!/usr/bin/env bash
# README command 2: install what the tests need (see setup_env.sh), lint (ruff, configured in pyproject.toml), then
# run the test suite. A lint failure is reported and the tests still run; the exit status is then non-zero.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
LINT=0
"$PY" -m ruff check --quiet . || LINT=$?
"$PY" -m pytest -q "$@" || exit $?
if [ "$LINT" != 0 ]; then
    echo "test.sh: the tests passed but ruff found problems (above): $PY -m ruff check ." >&2
    exit "$LINT"
fi
