"""One training step (forward + backward, loss = main + aux) of the base model and of LLaVA-NeXT-AR.

`transformers.LlavaNextVideoForConditionalGeneration` (base) and `llava_next_ar.LlavaNextARForConditionalGeneration`
(AR) get the same weights (the AR model is built from a `LlavaNextARConfig`; the base model is a copy of its
`export_base_model()`, teacher and predictor dropped) and the same batch, and are measured in the same process,
interleaved (A B A B ...), the median of `--repeats` after `--warmup` discarded rounds. Cases:

- `default`  every T in --frames x patch grid in --grids, everything trainable, teacher = frozen copy;
- `frozen`   at the default shape: vision tower frozen in both models, `video_frames` = `pixel_values_videos`;
             three variants: base, AR with the teacher's forward reused (the model's behaviour for these inputs:
             the frozen tower's forward doubles as the teacher's), and AR with the teacher recomputing (forced by
             passing `llm_frame_indices`);
- `shared`   at the default shape: `teacher="shared"` (the live tower under no_grad, no copy).

    python benchmarks/bench_step.py            # CPU default, ~15 min on 2 cores
    python benchmarks/bench_step.py --quick    # tiny smoke run, seconds
    python benchmarks/bench_step.py --config my_gpu_config.json --device cuda
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle workers sleep instead of spinning (see measurement.py, 'Timing on a shared machine').
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import functools
import gc
import itertools
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import measurement  # noqa: E402
import model_specs  # noqa: E402
import report  # noqa: E402


QUICK_SPEC = {
    "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2},
    "text_config": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                    "num_key_value_heads": 4},
    "text_before": 8,
    "text_after": 8,
}


def quick_spec(spec: dict) -> dict:
    """`spec` shrunk to `QUICK_SPEC`'s sizes (in place, returned): the `--quick` form of a benchmark."""
    for key, value in QUICK_SPEC.items():
        if isinstance(value, dict):
            spec[key].update(value)
        else:
            spec[key] = value
    return spec


def ar_inputs(batch: dict, recompute_teacher: bool = False) -> dict:
    """`video_frames` = `pixel_values_videos`. `recompute_teacher`: also pass `llm_frame_indices` (the same frames,
    said explicitly), which makes the AR model run its teacher instead of reusing the frozen tower's forward."""
    frames = batch["pixel_values_videos"]
    inputs = dict(batch, video_frames=frames)
    if recompute_teacher:
        inputs["llm_frame_indices"] = torch.arange(frames.shape[1], device=frames.device).expand(frames.shape[0], -1)
    return inputs


def train_step(model, batch: dict, with_frames: bool, recompute_teacher: bool = False):
    """zero_grad, forward, backward (the AR model with `ar_inputs`, the base model with the batch as it is)."""
    model.zero_grad(set_to_none=True)
    out = model(**(ar_inputs(batch, recompute_teacher) if with_frames else batch))
    out.loss.backward()
    return out


def check_reuse(ar_model, batch) -> dict:
    """Teacher runs with / without reuse and the difference of the auxiliary losses (0: reuse is exact)."""
    calls = []
    handle = ar_model.autoregressive_module.teacher.register_forward_hook(lambda *args: calls.append(1))
    losses = {}
    with torch.no_grad():
        for name, recompute in (("reuse", False), ("recompute", True)):
            calls.clear()
            losses[name] = (ar_model(**ar_inputs(batch, recompute)).autoregressive_loss.item(), len(calls))
    handle.remove()
    return {
        "teacher_runs_reuse": losses["reuse"][1],
        "teacher_runs_recompute": losses["recompute"][1],
        "aux_loss_abs_difference": abs(losses["reuse"][0] - losses["recompute"][0]),
    }


def measure(variants: list[tuple[str, callable]], warmup: int, repeats: int, device: str) -> dict:
    """Interleaved rounds (A B C, A B C, ...); per variant median wall s, median process-CPU s, median peak MiB."""
    samples = {name: [] for name, _ in variants}
    for round_index in range(warmup + repeats):
        for name, fn in variants:
            seconds, peak, cpu = measurement.timed(fn, device, with_cpu=True)
            if round_index >= warmup:
                samples[name].append((seconds, cpu, peak))
    return {
        name: {
            "seconds": measurement.median([s for s, _, _ in xs]),
            "min_seconds": min(s for s, _, _ in xs),
            "cpu_seconds": measurement.median([c for _, c, _ in xs]),
            "peak_mib": measurement.median([m for _, _, m in xs]),
            "samples": xs,
        }
        for name, xs in samples.items()
    }


def run_case(spec, name, frames, grid, args, overrides=None, freeze=False, reuse=False) -> dict:
    base, ar = model_specs.build_pair(spec, grid, overrides, device=args.device, share_weights=args.share_weights)
    if freeze:
        model_specs.freeze_vision_tower(base)
        model_specs.freeze_vision_tower(ar)
    batch = model_specs.make_batch(ar.config, spec, frames, device=args.device)
    # In the frozen case "ar" is the teacher recomputing (llm_frame_indices given) and "ar_reuse" the model's
    # default for these inputs (the frozen tower's forward doubles as the teacher's).
    variants = [
        ("base", functools.partial(train_step, base, batch, False)),
        ("ar", functools.partial(train_step, ar, batch, True, recompute_teacher=reuse)),
    ]
    reuse_check = None
    if reuse:
        reuse_check = check_reuse(ar, batch)
        variants.append(("ar_reuse", functools.partial(train_step, ar, batch, True)))
    result = measure(variants, args.warmup, args.repeats, args.device)
    row = {
        "case": name,
        "T": frames,
        "P": grid * grid,
        "seq_len": batch["input_ids"].shape[1],
        "video_tokens": frames * ar.config.video_tokens_per_frame,
        "params_base_mib": model_specs.param_mib(base),
        "params_ar_mib": model_specs.param_mib(ar),
        "trainable_base_mib": model_specs.param_mib(base, trainable_only=True),
        "trainable_ar_mib": model_specs.param_mib(ar, trainable_only=True),
        "raw": result,
    }
    for key in ("seconds", "min_seconds", "cpu_seconds", "peak_mib"):
        row[f"base_{key}"] = result["base"][key]
        row[f"ar_{key}"] = result["ar"][key]
        row[f"ratio_{key}"] = result["ar"][key] / result["base"][key]
        if reuse:
            row[f"ar_reuse_{key}"] = result["ar_reuse"][key]
            row[f"ratio_reuse_{key}"] = result["ar_reuse"][key] / result["base"][key]
    if reuse:
        row.update(reuse_check)
    del base, ar, batch, variants
    gc.collect()
    return row


def print_rows(rows):
    flat = []
    for row in rows:
        flat.append({**row, "variant": "AR, teacher recomputes" if "ar_reuse_seconds" in row else "AR"})
        if "ar_reuse_seconds" in row:
            flat.append({
                **row, "variant": "AR, teacher reused", "ar_seconds": row["ar_reuse_seconds"],
                "ar_cpu_seconds": row["ar_reuse_cpu_seconds"], "ar_peak_mib": row["ar_reuse_peak_mib"],
                "ratio_seconds": row["ratio_reuse_seconds"], "ratio_cpu_seconds": row["ratio_reuse_cpu_seconds"],
                "ratio_min_seconds": row["ratio_reuse_min_seconds"],
                "ratio_peak_mib": row["ratio_reuse_peak_mib"],
            })
    print(report.table(flat, [
        ("case", "case", ""), ("variant", "variant", ""), ("T", "T", "d"), ("P", "P", "d"),
        ("seq_len", "LLM len", "d"),
        ("base_seconds", "base s", ".2f"), ("ar_seconds", "AR s", ".2f"), ("ratio_seconds", "time AR/base", ".2f"),
        ("ratio_min_seconds", "min-time AR/base", ".2f"), ("ratio_cpu_seconds", "CPU-time AR/base", ".2f"),
        ("base_peak_mib", "base peak MiB", ".0f"), ("ar_peak_mib", "AR peak MiB", ".0f"),
        ("ratio_peak_mib", "peak AR/base", ".2f"),
        ("params_base_mib", "base params MiB", ".1f"), ("params_ar_mib", "AR params MiB", ".1f"),
    ]))


def plot(rows, path):
    plt = report.pyplot()
    labels, time_ratio, mem_ratio = [], [], []
    for row in rows:
        labels.append(f"{row['case']}\nT={row['T']} P={row['P']}")
        time_ratio.append(row["ratio_seconds"])
        mem_ratio.append(row["ratio_peak_mib"])
        if "ratio_reuse_seconds" in row:
            labels.append(f"frozen+reuse\nT={row['T']} P={row['P']}")
            time_ratio.append(row["ratio_reuse_seconds"])
            mem_ratio.append(row["ratio_reuse_peak_mib"])
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(labels)), 4.5))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], time_ratio, width=0.4, label="time AR/base")
    ax.bar([i + 0.2 for i in x], mem_ratio, width=0.4, label="peak memory AR/base")
    ax.axhline(1.3, color="red", linestyle="--", linewidth=1, label="target 1.3 (general)")
    ax.axhline(1.15, color="orange", linestyle=":", linewidth=1, label="target 1.15 (frozen + reuse)")
    ax.axhline(1.0, color="black", linewidth=0.5)
    ax.set_xticks(list(x), labels, fontsize=8)
    ax.set_ylabel("AR / base")
    ax.set_title("One training step: LLaVA-NeXT-AR vs LLaVA-NeXT-Video (same weights, same batch)")
    ax.legend(fontsize=8)
    report.save_figure(fig, path)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--frames", type=int, nargs="+", help="T values (default 8 16)")
    parser.add_argument("--grids", type=int, nargs="+", help="patch-grid sides (default 14 27 -> P=196, 729)")
    parser.add_argument("--default-shape", type=int, nargs=2, metavar=("T", "GRID"),
                        help="shape of the frozen/shared cases (default: largest T and grid)")
    parser.add_argument("--cases", nargs="+", default=["default", "frozen", "shared"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--share-weights", action="store_true",
                        help="base model reuses the AR model's modules instead of a copy (big models on one GPU)")
    _common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    spec = _common.start(args)
    if args.quick:
        quick_spec(spec)
        args.frames = args.frames or [4]
        args.grids = args.grids or [7]
        args.repeats = min(args.repeats, 2)
    args.frames = args.frames or [8, 16]
    args.grids = args.grids or [14, 27]
    default_shape = tuple(args.default_shape or (max(args.frames), max(args.grids)))
    stem = args.out or ("bench_step_quick" if args.quick else "bench_step")

    import llava_next_ar

    info = measurement.machine()
    info["load_average_start"] = os.getloadavg()
    calibration = measurement.calibrate_peak_memory(256) if torch.device(args.device).type == "cpu" else None
    print(f"# bench_step  ({info['cpu']}, {info['nproc']} cores, torch {info['torch']}, threads {args.threads}; "
          f"llava_next_ar from {Path(llava_next_ar.__file__).parent})")
    if calibration is not None:
        print(f"# peak-memory calibration: a 256 MiB tensor reads as {calibration:.1f} MiB")
    started = time.perf_counter()
    rows = []
    if "default" in args.cases:
        for frames, grid in itertools.product(args.frames, args.grids):
            rows.append(run_case(spec, "default", frames, grid, args))
            print(f"  done default T={frames} P={grid * grid} ({time.perf_counter() - started:.0f} s)", flush=True)
    frames, grid = default_shape
    if "frozen" in args.cases:
        rows.append(run_case(spec, "frozen", frames, grid, args, freeze=True, reuse=True))
        print(f"  done frozen ({time.perf_counter() - started:.0f} s)", flush=True)
    if "shared" in args.cases:
        rows.append(run_case(spec, "shared", frames, grid, args, overrides={"teacher": "shared"}))
        print(f"  done shared ({time.perf_counter() - started:.0f} s)", flush=True)
    info["load_average_end"] = os.getloadavg()
    print()
    print_rows(rows)
    for row in rows:
        if "aux_loss_abs_difference" in row:
            print(f"\nreuse check: teacher forwards per step {row['teacher_runs_reuse']} (reused) vs "
                  f"{row['teacher_runs_recompute']} (recomputed); |aux loss difference| = "
                  f"{row['aux_loss_abs_difference']:.3g}")
    payload = {
        "benchmark": "bench_step",
        "machine": info,
        "args": vars(args),
        "spec": spec,
        "default_shape": {"T": frames, "P": grid * grid},
        "memory_method": "RSS high-water mark (VmHWM reset via /proc/self/clear_refs after malloc_trim)"
        if torch.device(args.device).type == "cpu" else "torch.cuda.max_memory_allocated",
        "memory_calibration_256mib": calibration,
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    path = report.write_json(stem + ".json", payload)
    plot(rows, report.RESULTS / (stem + ".png"))
    print(f"\nwrote {path} and {stem}.png ({payload['wall_seconds']:.0f} s)")


if __name__ == "__main__":
    main()
