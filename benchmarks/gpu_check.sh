#!/usr/bin/env bash
# One-GPU check of LLaVA-NeXT-AR at the LLaVA-NeXT-Video-7B shape (Vicuna-7B + SigLIP-so400m, random weights, nothing
# downloaded), in bf16 with activation checkpointing:
#   1. benchmarks/bench_step.py: one training step (forward + backward) of LLaVA-NeXT-AR vs the plain LLaVA-NeXT-Video
#      on the same weights and batch, at T=16 frames of 27x27 patches: default, frozen tower (teacher reused and
#      recomputed), teacher="shared"; time ratios and peak memory (torch.cuda.max_memory_allocated);
#   2. benchmarks/gpu_check.py: the causality check on the GPU (perturb frame k, the predictions of frames <= k stay
#      bit-identical, frame k+1's moves), then one table of both, written to <results>/gpu_check.json.
#
# Usage: bash benchmarks/gpu_check.sh [--frames T] [--quick]
#   --frames T   frames of the step and causality clips (default 16; 32 needs more memory)
#   --quick      a CPU smoke run on bench_step's tiny spec (tests/test_gpu_check.py runs it; seconds)
# Environment: PYTHON (default: python), BENCH_RESULTS_DIR (default: benchmarks/results).
# Needs a GPU with ~40 GB for T=16 (bf16 weights are ~14 GB, their gradients as much; the base model shares the AR
# model's modules, so the weights are held once). Exits non-zero if a step fails or causality does not hold.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
PYTHON="${PYTHON:-python}"
RESULTS="${BENCH_RESULTS_DIR:-$HERE/results}"
FRAMES=16
QUICK=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1; shift ;;
        --frames)
            [ $# -ge 2 ] || { echo "gpu_check.sh: --frames needs a value (frames per clip, e.g. 16)" >&2; exit 2; }
            FRAMES="$2"; shift 2 ;;
        *) echo "gpu_check.sh: unknown argument '$1' (expected --frames T or --quick)" >&2; exit 2 ;;
    esac
done
case "$FRAMES" in
    ''|*[!0-9]*) echo "gpu_check.sh: --frames must be a whole number >= 2, got '$FRAMES'" >&2; exit 2 ;;
esac
[ "$FRAMES" -ge 2 ] || { echo "gpu_check.sh: --frames must be >= 2, got $FRAMES" >&2; exit 2; }

if [ "$QUICK" = 1 ]; then
    STEP=(--quick --device cpu --threads 1 --frames "$FRAMES" --grids 7 --out gpu_check_step_quick)
    CHECK=(--quick --device cpu --threads 1 --frames "$FRAMES" --grid 7 --out gpu_check_quick
           --step_json "$RESULTS/gpu_check_step_quick.json")
else
    if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
        echo "gpu_check.sh: torch sees no CUDA device ($("$PYTHON" -c 'import torch; print(torch.__version__)')); use --quick for a CPU smoke run" >&2
        exit 2
    fi
    CONFIG="$HERE/configs/llava_next_video_7b_siglip.json"
    STEP=(--config "$CONFIG" --device cuda --grids 27 --frames "$FRAMES" --share-weights --out gpu_check_step)
    CHECK=(--config "$CONFIG" --device cuda --frames "$FRAMES" --grid 27 --out gpu_check
           --step_json "$RESULTS/gpu_check_step.json")
fi

START=$SECONDS
echo "=== gpu_check 1/2: bench_step.py ${STEP[*]} ==="
"$PYTHON" "$HERE/bench_step.py" "${STEP[@]}"
echo "=== gpu_check 2/2: gpu_check.py (causality, table) ($((SECONDS - START)) s) ==="
"$PYTHON" "$HERE/gpu_check.py" "${CHECK[@]}"
echo "=== gpu_check: done in $((SECONDS - START)) s ==="
