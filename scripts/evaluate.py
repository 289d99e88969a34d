# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Held-out next-frame feature error of a trained LLaVA-NeXT-AR predictor, next to two baselines.

    python scripts/evaluate.py outputs/tiny_builtin_clips/final --clips carphone_pristine
    python scripts/evaluate.py user/repo --manifest heldout.jsonl --num_frames 16 --output_dir eval/

For every held-out window the model runs its real forward pass (vision tower -> projector -> LLM, then the
auxiliary module fused with the LLM hidden states), with the batch the checkpoint's own processor builds: the
processor's stored sampling (`frame_sampling`, the fast/slow sampler) picks the window's frames, and only those are
decoded, at its working size (`read_video`, the data path of training). Forward
hooks on `model.autoregressive_module` and its `predictor` capture the teacher features (`[B, T, P, D]`, the
objective's frames in source-time order) and the predictions of frames `1..T-1`. On the same teacher features two
baselines predict frame `t`:

- copy-last-frame: the features of frame `t-1`;
- mean-of-history: the mean of the features of frames `max(0, t-num_hist) .. t-1` (`num_hist` from the checkpoint's
  `autoregressive_config`, `None` = all earlier frames; `--num_hist` overrides).

Per prediction step (target index `t = 1..T-1` of the objective's frames; with fast/slow sampling the source-time
gap to the previous frame is reported too) it reports MSE (mean over windows, patches and feature dims, the same
quantity as the model's `autoregressive_frame_losses`) and cosine similarity / distance (per patch vector, averaged).
It prints a table, writes `<output_dir>/evaluation.json` and `<output_dir>/evaluation.png` (error vs. step;
`--output_dir` defaults to `outputs/evaluation`).

A checkpoint trained with `enabled: false` has no predictor: its baselines are computed on the vision tower's
features (layer and CLS handling as the teacher would use) and only the language-modelling loss is reported for it.
"""

import argparse
import json
import logging
import math
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_data import DEFAULT_PROMPT, SkipLog, VideoChatDataset, builtin_clips_manifest, read_manifest  # noqa: E402


logger = logging.getLogger("evaluate")

METHODS = ("model", "copy_last", "mean_history")
METRICS = ("mse", "cosine_similarity", "cosine_distance")
RETIRED = (
    "frames are decoded straight to the processor's working size (aspect ratio kept), only the frames its sampling "
    "picks (`decode_size` used to squash every frame of the window to a square first)"
)


# ----------------------------------------------------------------------------------------------------------------
# Baselines and metrics (pure tensor functions)


def baseline_predictions(features: torch.Tensor, num_hist: int | None) -> dict[str, torch.Tensor]:
    """
    Baseline predictions of frames `1..T-1` from teacher features `[B, T, P, D]`.

    Returns `{"copy_last": [B, T-1, P, D], "mean_history": [B, T-1, P, D]}`: for target frame `t`, copy-last is
    `features[:, t-1]`; mean-of-history is the mean of `features[:, max(0, t-num_hist):t]` (`None` = all earlier).
    """
    if features.dim() != 4 or features.shape[1] < 2:
        raise ValueError(f"`features` must be [B, T>=2, P, D], got {tuple(features.shape)}")
    if num_hist is not None and (isinstance(num_hist, bool) or not isinstance(num_hist, int) or num_hist < 1):
        raise ValueError(f"`num_hist` must be an int >= 1 or None, got {num_hist!r}")
    frames = features.shape[1]
    copy_last = features[:, :-1]
    cumulative = features.cumsum(dim=1)  # cumulative[:, k] = sum of frames 0..k
    means = []
    for target in range(1, frames):
        start = 0 if num_hist is None else max(0, target - num_hist)
        total = cumulative[:, target - 1] - (cumulative[:, start - 1] if start > 0 else 0)
        means.append(total / (target - start))
    return {"copy_last": copy_last, "mean_history": torch.stack(means, dim=1)}


def error_metrics(predictions: torch.Tensor, targets: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per window and step `[B, T-1]`: `mse` (mean over patches and dims) and `cosine_similarity` (per patch vector,
    mean over patches), plus `cosine_distance = 1 - cosine_similarity`."""
    predictions, targets = predictions.double(), targets.double()
    mse = (predictions - targets).pow(2).mean(dim=(-2, -1))
    cosine = torch.nn.functional.cosine_similarity(predictions, targets, dim=-1, eps=1e-12).mean(dim=-1)
    return {"mse": mse, "cosine_similarity": cosine, "cosine_distance": 1.0 - cosine}


def summarise(
    features: torch.Tensor,
    num_hist: int | None,
    predictions: torch.Tensor | None = None,
    target_gaps: torch.Tensor | None = None,
) -> dict:
    """
    Per-step and overall errors of the model (if `predictions` is given) and both baselines on `features`.

    Args:
        features: teacher features `[N, T, P, D]` of all windows.
        num_hist: history length of the mean-of-history baseline.
        predictions: the model's predictions of frames `1..T-1`, `[N, T-1, P, D]`.
        target_gaps: source-time gap between each target and the previous frame, `[N, T-1]` (default 1).
    """
    targets = features[:, 1:]
    candidates = baseline_predictions(features, num_hist)
    if predictions is not None:
        if predictions.shape != targets.shape:
            raise ValueError(f"`predictions` must be {tuple(targets.shape)}, got {tuple(predictions.shape)}")
        candidates = {"model": predictions, **candidates}
    steps = list(range(1, features.shape[1]))
    gaps = torch.ones(targets.shape[:2]) if target_gaps is None else target_gaps.double()
    result = {
        "num_windows": features.shape[0],
        "num_frames": features.shape[1],
        "num_patches": features.shape[2],
        "embedding_dim": features.shape[3],
        "num_hist": num_hist,
        "per_step": {"step": steps, "mean_gap": gaps.double().mean(dim=0).tolist()},
        "overall": {},
    }
    for name, predicted in candidates.items():
        metrics = error_metrics(predicted, targets)
        result["per_step"][name] = {key: value.mean(dim=0).tolist() for key, value in metrics.items()}
        result["overall"][name] = {key: value.mean().item() for key, value in metrics.items()}
    overall = result["overall"]
    if "model" in overall:
        result["ratios"] = {
            f"{metric}_model_over_{baseline}": overall["model"][metric] / overall[baseline][metric]
            for metric in ("mse", "cosine_distance")
            for baseline in ("copy_last", "mean_history")
        }
    # How different consecutive teacher features are, for reading the baselines: feature variance across the
    # frames of a window vs. across the patches of a frame.
    result["feature_statistics"] = {
        "variance_across_frames": features.double().var(dim=1).mean().item(),
        "variance_across_patches": features.double().var(dim=2).mean().item(),
        "mean_squared_norm": features.double().pow(2).mean().item(),
    }
    return result


# ----------------------------------------------------------------------------------------------------------------
# Running a checkpoint


def load_checkpoint(checkpoint: str, remote_code: bool = True):
    """`(model, processor)` from a local folder or repo id: with `trust_remote_code=True` through the auto classes
    (the code shipped in the checkpoint), else with this package's classes."""
    if remote_code:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        model = AutoModelForImageTextToText.from_pretrained(checkpoint, trust_remote_code=True)
        processor = AutoProcessor.from_pretrained(checkpoint, trust_remote_code=True)
    else:
        from llava_next_ar import LlavaNextARForConditionalGeneration, LlavaNextARProcessor

        model = LlavaNextARForConditionalGeneration.from_pretrained(checkpoint)
        processor = LlavaNextARProcessor.from_pretrained(checkpoint)
    return model.eval(), processor


def heldout_rows(
    clips: list[str] | None = None,
    manifest: str | None = None,
    num_frames: int = 16,
    window_stride: int = 8,
    prompt: str = DEFAULT_PROMPT,
    max_windows: int | None = None,
) -> list[dict]:
    """Windows of the held-out data: built-in clip names or a manifest (rows as `scripts/video_data.py` reads)."""
    if (clips is None) == (manifest is None):
        raise ValueError("give exactly one of `clips` (built-in clip names) or `manifest`")
    if manifest is not None:
        rows = read_manifest(manifest, prompt=prompt)
    else:
        rows = builtin_clips_manifest(clips, num_frames, window_stride, prompt)
    if max_windows is not None:  # spread over the list (and so over the clips), not the first windows only
        step = max(1, math.ceil(len(rows) / max_windows))
        rows = rows[::step][:max_windows]
    if not rows:
        raise ValueError("no held-out windows: the clips are shorter than `num_frames`")
    return rows


def teacher_for(model):
    """What encodes frames into teacher features: the model's own autoregressive module, or, for a model without one
    (objective disabled), a module whose teacher is a copy of its vision tower, selecting features the same way."""
    module = getattr(model, "autoregressive_module", None)
    if module is not None:
        return module
    from llava_next_ar import create_autoregressive_reconstruction_module

    config = model.config
    module = create_autoregressive_reconstruction_module(
        model.model.vision_tower,
        config.text_config.hidden_size,
        {
            "vision_feature_layer": config.vision_feature_layer,
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            "num_heads": 1,
        },
    )
    return module.to(model.device).eval()


@torch.no_grad()
def collect(model, batches) -> dict:
    """
    Run the model's forward on each batch (with `labels`, `output_autoregressive=True`) and take the teacher features
    and the predictions from its `autoregressive_output`. Returns `features [N, T, P, D]`, `predictions
    [N, T-1, P, D]` (or `None` without an autoregressive module), `target_gaps [N, T-1]`, and the batch-mean
    `main_loss` / `autoregressive_loss`.
    """
    has_module = getattr(model, "autoregressive_module", None) is not None
    teacher = None if has_module else teacher_for(model)
    device = next(model.parameters()).device
    features, predictions, gaps, main_losses, auxiliary_losses = [], [], [], [], []
    for batch in batches:
        batch = {key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}
        output = model(**batch, output_autoregressive=True) if has_module else model(**batch)
        if output.main_loss is not None:
            main_losses.append(output.main_loss.item())
        if not has_module:
            features.append(teacher.encode_frames(batch["video_frames"]).float().cpu())
            continue
        result = output.autoregressive_output
        auxiliary_losses.append(output.autoregressive_loss.item())
        features.append(result.teacher_features.float().cpu())
        predictions.append(result.predictions.float().cpu())
        gaps.append((result.target_frame_indices - result.context_frame_indices).cpu())
    return {
        "main_loss": sum(main_losses) / len(main_losses) if main_losses else None,
        "autoregressive_loss": sum(auxiliary_losses) / len(auxiliary_losses) if auxiliary_losses else None,
        "features": torch.cat(features),
        "predictions": torch.cat(predictions) if has_module else None,
        "target_gaps": torch.cat(gaps) if has_module else None,
    }


def batches_from_rows(processor, rows: list[dict], decode_size: int | None = None, batch_size: int = 4):
    """
    Model batches (with `labels`, prompt masked) of the rows, through the checkpoint's processor: each row's window
    is sampled with the processor's settings and only the sampled frames are decoded, at the processor's working
    size (`video_data.VideoChatDataset`, as in training). A row that cannot be used (missing or undecodable file,
    too short) raises, naming it. `decode_size` is ignored (kept so that older callers run; see `RETIRED`).
    """
    from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator

    dataset = VideoChatDataset(rows, processor, SkipLog(raise_errors=True), source="held-out data")
    collator = LlavaNextARDataCollator(processor)
    for start in range(0, len(dataset), batch_size):
        yield collator([dataset[index] for index in range(start, min(start + batch_size, len(dataset)))])


def evaluate_model(
    model,
    processor,
    rows: list[dict],
    decode_size: int | None = None,
    batch_size: int = 4,
    num_hist: int | None | str = "config",
) -> dict:
    """Everything `evaluate.json` holds, for an in-memory model and processor (see `summarise`). `decode_size` is
    ignored (see `RETIRED`)."""
    model.eval()
    if num_hist == "config":
        num_hist = model.config.autoregressive_config.get("num_hist")
    collected = collect(model, batches_from_rows(processor, rows, decode_size, batch_size))
    result = summarise(collected["features"], num_hist, collected["predictions"], collected["target_gaps"])
    result["main_loss"] = collected["main_loss"]
    result["autoregressive_loss"] = collected["autoregressive_loss"]
    result["has_predictor"] = collected["predictions"] is not None
    return result


def evaluate_checkpoint(
    checkpoint: str,
    clips: list[str] | None = None,
    manifest: str | None = None,
    num_frames: int = 16,
    window_stride: int = 8,
    decode_size: int | None = None,
    batch_size: int = 4,
    num_hist: int | None | str = "config",
    max_windows: int | None = None,
    remote_code: bool = True,
) -> dict:
    """Load `checkpoint` and evaluate it on held-out windows (built-in `clips` or a `manifest`). `decode_size` is
    ignored (see `RETIRED`)."""
    model, processor = load_checkpoint(checkpoint, remote_code=remote_code)
    rows = heldout_rows(clips, manifest, num_frames, window_stride, max_windows=max_windows)
    result = evaluate_model(model, processor, rows, decode_size, batch_size, num_hist)
    result.update(
        checkpoint=str(checkpoint),
        data={"clips": clips, "manifest": manifest, "num_frames": num_frames, "window_stride": window_stride,
              "windows": len(rows), "sampling": dict(processor.clip_sampling_settings)},
        autoregressive_config=dict(model.config.autoregressive_config),
    )
    return result


# ----------------------------------------------------------------------------------------------------------------
# Reporting


def format_table(result: dict) -> str:
    """Per-step MSE and cosine distance of the model and both baselines, then the overall means."""
    methods = [name for name in METHODS if name in result["overall"]]
    header = f"{'step':>5} {'gap':>5}" + "".join(f" {name + ' mse':>18}" for name in methods)
    header += "".join(f" {name + ' cos-dist':>23}" for name in methods)
    lines = [header]
    per_step = result["per_step"]
    for index, step in enumerate(per_step["step"]):
        line = f"{step:>5} {per_step['mean_gap'][index]:>5.2f}"
        line += "".join(f" {per_step[name]['mse'][index]:>18.5f}" for name in methods)
        line += "".join(f" {per_step[name]['cosine_distance'][index]:>23.5f}" for name in methods)
        lines.append(line)
    overall = result["overall"]
    line = f"{'all':>5} {'':>5}" + "".join(f" {overall[name]['mse']:>18.5f}" for name in methods)
    line += "".join(f" {overall[name]['cosine_distance']:>23.5f}" for name in methods)
    lines.append(line)
    if "ratios" in result:
        ratios = result["ratios"]
        lines.append(
            f"model MSE / copy-last MSE = {ratios['mse_model_over_copy_last']:.3f}; "
            f"model MSE / mean-of-history MSE = {ratios['mse_model_over_mean_history']:.3f} "
            f"(num_hist={result['num_hist']}, {result['num_windows']} windows)"
        )
    else:
        lines.append(f"(no predictor in this checkpoint: baselines only, {result['num_windows']} windows)")
    if result.get("main_loss") is not None:
        lines.append(f"held-out language-modelling loss (main_loss) = {result['main_loss']:.4f}")
    return "\n".join(lines)


def plot_errors(result: dict, path: str | Path, title: str | None = None) -> Path:
    """PNG of MSE and cosine distance vs. prediction step for the model and both baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per_step = result["per_step"]
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    styles = {"model": ("C0", "o", "model (predictor)"), "copy_last": ("C3", "s", "copy last frame"),
              "mean_history": ("C2", "^", f"mean of history (num_hist={result['num_hist']})")}
    for axis, metric, label in ((axes[0], "mse", "MSE"), (axes[1], "cosine_distance", "cosine distance")):
        for name, (color, marker, legend) in styles.items():
            if name in per_step:
                axis.plot(per_step["step"], per_step[name][metric], color=color, marker=marker, label=legend)
        values = [v for name in styles if name in per_step for v in per_step[name][metric] if v > 0]
        if values and max(values) > 20 * min(values):  # a predictor far off its baselines: show both on a log scale
            axis.set_yscale("log")
        axis.set_xlabel("prediction step (target frame index)")
        axis.set_ylabel(f"held-out {label}")
        axis.set_xticks(per_step["step"])
        axis.grid(alpha=0.3)
    axes[0].legend()
    figure.suptitle(title or f"next-frame feature error, {result['num_windows']} held-out windows")
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("checkpoint", help="LLaVA-NeXT-AR checkpoint: local folder or Hub repo id")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--clips", default=None, help="built-in held-out clips, comma-separated (default carphone_pristine)"
    )
    data.add_argument("--manifest", default=None, help="held-out manifest (JSON/JSONL/CSV or clip folder)")
    parser.add_argument("--num_frames", type=int, default=16, help="built-in clips: frames per window")
    parser.add_argument("--window_stride", type=int, default=8, help="built-in clips: frames between window starts")
    parser.add_argument("--decode_size", type=int, default=None, help=f"ignored: {RETIRED}")
    parser.add_argument("--batch_size", type=int, default=4)
    parser.add_argument("--max_windows", type=int, default=None, help="evaluate at most this many windows")
    parser.add_argument("--num_hist", default="config", help="mean-of-history length: int, 'all', or 'config'")
    parser.add_argument("--output_dir", default="outputs/evaluation", help="where to write evaluation.json/.png")
    parser.add_argument("--no_remote_code", action="store_true", help="load with this package's classes instead")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.WARNING)
    if args.decode_size is not None:
        logger.warning("--decode_size %s is ignored: %s; remove it", args.decode_size, RETIRED)
    num_hist = {"config": "config", "all": None}.get(args.num_hist, None)
    if args.num_hist not in ("config", "all"):
        num_hist = int(args.num_hist)
    clips = None if args.manifest else (args.clips or "carphone_pristine").split(",")
    result = evaluate_checkpoint(
        args.checkpoint, clips=clips, manifest=args.manifest, num_frames=args.num_frames,
        window_stride=args.window_stride, decode_size=args.decode_size, batch_size=args.batch_size,
        num_hist=num_hist, max_windows=args.max_windows, remote_code=not args.no_remote_code,
    )
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    print(format_table(result))
    (output_dir / "evaluation.json").write_text(json.dumps(result, indent=1))
    plot_errors(result, output_dir / "evaluation.png", title=f"{args.checkpoint}: held-out next-frame feature error")
    print(f"wrote {output_dir / 'evaluation.json'} and {output_dir / 'evaluation.png'}")
    return result


if __name__ == "__main__":
    main()
