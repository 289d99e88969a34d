"""The second half of `benchmarks/gpu_check.sh`: the causality check on the GPU, then one table of everything the
check measured (bench_step's bf16 step ratios, which ran first, and this script's results), written as JSON.

Causality (what tests/test_causality.py checks on the CPU, here on the device and at the checked shape): the model's
own output (`output_autoregressive=True` -> `autoregressive_output.predictions`, `[B, T-1, P, D]`, prediction `i`
predicts frame `i + 1`) for a clip, then for the same clip with frame `k` changed (in `video_frames` and the LLM's
`pixel_values_videos` alike), for every `k`: the predictions of frames `<= k` must be bit-identical, the prediction of
frame `k + 1` must move. Two ways the teacher is computed: the frozen copy runs on `video_frames`, and the frozen
vision tower's forward in the LLM is reused as the teacher's.

    bash benchmarks/gpu_check.sh              # on a GPU (runs this after bench_step.py)
    python benchmarks/gpu_check.py --quick --device cpu --step_json results/gpu_check_step_quick.json
"""

from __future__ import annotations

import os

# Before torch loads OpenMP (see measurement.py, 'Timing on a shared machine').
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import measurement  # noqa: E402
import model_specs  # noqa: E402
import report  # noqa: E402
from bench_step import ar_inputs, quick_spec  # noqa: E402


CAUSALITY_MODES = {
    "teacher copy": False,  # the frozen copy encodes `video_frames`
    "frozen tower, teacher reused": True,  # the LLM's vision forward doubles as the teacher's
}


def predictions(model, inputs: dict) -> torch.Tensor:
    """The model's predictions `[B, T-1, P, D]` from its output (the objective runs when asked for its output)."""
    with torch.no_grad():
        return model(**inputs, output_autoregressive=True).autoregressive_output.predictions.float()


def causality(model, batch: dict, freeze_tower: bool, seed: int = 1) -> dict:
    """Perturb each frame `k` in turn; report the largest change of any prediction of a frame `<= k` (must be 0) and
    the smallest change of the prediction of frame `k + 1` (must be > 0)."""
    model.model.vision_tower.requires_grad_(not freeze_tower)
    calls = []
    hook = model.autoregressive_module.teacher.register_forward_hook(lambda *args: calls.append(1))
    reference = predictions(model, ar_inputs(batch))
    teacher_forwards = len(calls)
    frames = batch["pixel_values_videos"]
    generator = torch.Generator().manual_seed(seed)
    earlier, next_frame, per_frame = 0.0, float("inf"), []
    for k in range(frames.shape[1]):
        changed = frames.clone()
        noise = torch.randn(changed[:, k].shape, generator=generator).to(device=frames.device, dtype=frames.dtype)
        changed[:, k] += noise
        moved = (predictions(model, ar_inputs(dict(batch, pixel_values_videos=changed))) - reference).abs()
        leak = moved[:, :k].max().item() if k > 0 else 0.0  # predictions of frames 1..k
        step = moved[:, k].max().item() if k < moved.shape[1] else None  # prediction of frame k + 1
        per_frame.append({"perturbed_frame": k, "earlier_max_abs_change": leak, "next_max_abs_change": step})
        earlier = max(earlier, leak)
        if step is not None:
            next_frame = min(next_frame, step)
    hook.remove()
    model.model.vision_tower.requires_grad_(True)
    return {
        "teacher_forwards_per_forward": teacher_forwards,
        "earlier_predictions_max_abs_change": earlier,
        "next_prediction_min_abs_change": next_frame,
        "causal": earlier == 0.0 and next_frame > 0.0,
        "per_frame": per_frame,
    }


def step_rows(step: dict) -> list[dict]:
    """bench_step's rows as (case, variant, T, P, base s, AR s, ratio, peak MiB) table rows."""
    rows = []
    for row in step["rows"]:
        variants = [("AR, teacher recomputes" if "ar_reuse_seconds" in row else "AR", "")]
        if "ar_reuse_seconds" in row:
            variants.append(("AR, teacher reused", "reuse_"))
        for variant, key in variants:
            rows.append({
                "case": row["case"], "variant": variant, "T": row["T"], "P": row["P"],
                "base_seconds": row["base_seconds"], "ar_seconds": row[f"ar_{key}seconds"],
                "ratio_seconds": row[f"ratio_{key}seconds"], "base_peak_mib": row["base_peak_mib"],
                "ar_peak_mib": row[f"ar_{key}peak_mib"], "params_ar_mib": row["params_ar_mib"],
            })
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--step_json", type=Path, required=True, help="the JSON bench_step.py wrote just before")
    parser.add_argument("--frames", type=int, default=16, help="T of the causality clip (default 16)")
    parser.add_argument("--grid", type=int, default=27, help="patch-grid side of the causality clip (default 27)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="bench_step's tiny --quick spec (a CPU smoke run)")
    _common.add_common_arguments(parser, out="gpu_check")
    args = parser.parse_args(argv)
    if not args.step_json.is_file():
        parser.error(f"--step_json: no such file {args.step_json} (run benchmarks/bench_step.py first)")
    if args.frames < 2:
        parser.error(f"--frames must be >= 2 (a prediction needs a context frame), got {args.frames}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: torch sees no CUDA device (torch {torch.__version__})")
    spec = _common.start(args)
    if args.quick:
        quick_spec(spec)
    started = time.perf_counter()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # the base shares its modules
    _, model = model_specs.build_pair(spec, args.grid, device=args.device, share_weights=True)
    model.eval()
    batch = model_specs.make_batch(model.config, spec, args.frames, device=args.device)
    results = {}
    for mode, freeze in CAUSALITY_MODES.items():
        results[mode] = causality(model, batch, freeze)
        print(f"  causality, {mode}: done ({time.perf_counter() - started:.0f} s)", flush=True)
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None

    step = json.loads(args.step_json.read_text())
    print()
    print(f"# gpu_check ({step['machine'].get('cuda') or step['machine']['cpu']}, torch {step['machine']['torch']}, "
          f"transformers {step['machine']['transformers']}, {spec['dtype']})")
    print("\n## One training step, LLaVA-NeXT-AR / LLaVA-NeXT-Video (bench_step.py: same weights, same batch)\n")
    print(report.table(step_rows(step), [
        ("case", "case", ""), ("variant", "variant", ""), ("T", "T", "d"), ("P", "P", "d"),
        ("base_seconds", "base s", ".3f"), ("ar_seconds", "AR s", ".3f"), ("ratio_seconds", "time AR/base", ".2f"),
        ("base_peak_mib", "base step peak MiB", ".0f"), ("ar_peak_mib", "AR step peak MiB", ".0f"),
        ("params_ar_mib", "AR params MiB", ".0f"),
    ]))
    print(f"\n## Causality on {args.device} (T={args.frames}, P={args.grid ** 2}; perturb frame k, predictions of "
          "frames <= k must not change)\n")
    print(report.table([{"mode": mode, **result} for mode, result in results.items()], [
        ("mode", "teacher", ""), ("teacher_forwards_per_forward", "teacher copy runs", "d"),
        ("earlier_predictions_max_abs_change", "max change, frames <= k", ".3g"),
        ("next_prediction_min_abs_change", "min change, frame k+1", ".3g"), ("causal", "causal", ""),
    ]).replace("| True |", "| yes |").replace("| False |", "| **NO** |"))
    if peak is not None:
        print(f"\npeak memory of the causality check (weights included): {peak:.0f} MiB")
    payload = {
        "benchmark": "gpu_check",
        "machine": measurement.machine(),
        "args": vars(args),
        "spec": spec,
        "step": {"json": str(args.step_json), "rows": step_rows(step), "wall_seconds": step["wall_seconds"]},
        "causality": {"T": args.frames, "P": args.grid ** 2, "modes": results, "peak_mib": peak},
        "causality_wall_seconds": time.perf_counter() - started,
    }
    path = report.write_json(args.out + ".json", payload)
    causal = all(result["causal"] for result in results.values())
    print(f"\nwrote {path}; causality {'holds' if causal else 'BROKEN'} ({payload['causality_wall_seconds']:.0f} s)")
    return 0 if causal else 1


if __name__ == "__main__":
    sys.exit(main())
