#!/usr/bin/env bash
# README command 2: install what the tests need (see setup_env.sh), then run the test suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec "$PY" -m pytest -q "$@"
