#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/main_job.sh: creates .venv (override with LLAVA_NEXT_AR_VENV) and installs a
# pinned torch first (torch 2.14.1 + torchvision 0.29.1, from the local wheel cache on these machines; an unpinned
# torch would pull a multi-GB CUDA build), then this package with its training and test extras. Sets $PY.
set -euo pipefail
VENV="${LLAVA_NEXT_AR_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1"
"$PY" -m pip install --quiet --disable-pip-version-check -e ".[train,test]"
