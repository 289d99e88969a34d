# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
What the evidence scripts (`scripts/ablation.py`, `scripts/ablation_report.py`, `scripts/temporal_qa.py`) share:
training one run through `scripts/train.py`'s `main()`, variant configs that name every setting they compare, the
objective-off starting checkpoint, weight distances between runs, seed statistics, and the generated-section /
plot plumbing of their reports. Nothing here decides what a result means.
"""

import contextlib
import json
import math
import statistics
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))

import train  # noqa: E402


# The autoregressive settings every enabled variant states itself, so that no variant silently follows a default
# that changed (`predict_residual` became `True` after docs/temporal_qa.md; the seed's form is `False`).
EXPLICIT_KEYS = ("use_frame_causal_mask", "use_fast_slow_frames", "predict_residual", "normalize_targets")


def variant_config(overrides: dict, base: dict, fast_slow: dict) -> dict:
    """
    The `autoregressive_config` of one variant: `{"enabled": False}` for the objective-off variant, else
    `{"enabled": True, **base, **overrides}` plus the `fast_slow` sampler settings when `use_fast_slow_frames`.
    Raises `ValueError` when an enabled variant does not state every key of `EXPLICIT_KEYS`.
    """
    if overrides.get("enabled") is False:
        return {"enabled": False}
    missing = [key for key in EXPLICIT_KEYS if key not in overrides]
    if missing:
        raise ValueError(f"variant overrides {overrides} must set {missing} explicitly (expected all of "
                         f"{list(EXPLICIT_KEYS)}), so that a changed default cannot change the variant")
    config = {"enabled": True, **base, **overrides}
    if config["use_fast_slow_frames"]:
        config.update(fast_slow)
    return config


def describe(overrides: dict) -> str:
    """`key=value` of a variant's explicit settings, for the reports' variant tables."""
    if overrides.get("enabled") is False:
        return "enabled=False"
    return ", ".join(f"{key}={overrides[key]}" for key in EXPLICIT_KEYS)


def train_argv(settings: dict, seed: int, max_steps: int, manifest: Path, output_dir: Path,
               autoregressive_config: dict) -> list[str]:
    """`scripts/train.py` flags shared by the evidence scripts' runs: the tiny model of `settings`, trained on the
    windows of `manifest` on the CPU, no plots, only `autoregressive_config` differing between variants."""
    return [
        "--output_dir", str(output_dir),
        "--seed", str(seed),
        "--max_steps", str(max_steps),
        "--per_device_train_batch_size", str(settings["batch_size"]),
        "--learning_rate", str(settings["learning_rate"]),
        "--warmup_steps", str(settings["warmup_steps"]),
        "--logging_steps", str(settings["logging_steps"]),
        "--report_to", "none", "--use_cpu", "True", "--dataloader_num_workers", "0", "--disable_tqdm", "True",
        "--plots", "False",
        "--train_manifest", str(manifest),
        "--num_frames", str(settings["num_frames"]),
        "--on_decode_error", "raise",
        "--tiny_image_size", str(settings["tiny_image_size"]),
        "--tiny_patch_size", str(settings["tiny_patch_size"]),
        "--tiny_hidden_size", str(settings["tiny_hidden_size"]),
        "--autoregressive_config", json.dumps(autoregressive_config),
    ]


def run_training(argv: list[str], log_path: Path):
    """`train.main(argv)` with its console output sent to `log_path`; returns the Trainer."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        return train.main(argv)


def save_base_checkpoint(model, processor, path: Path) -> Path:
    """
    The objective-off starting point of a run: `model.export_base_model()` (the same vision tower, projector, LLM and
    `lm_head`, no teacher or predictor) saved with `processor`. `scripts/train.py --model_name_or_path path
    --autoregressive_config '{"enabled": false}'` then trains exactly these weights without the objective.

    (Building the objective-off model directly after the same `set_seed` would draw its random numbers in another
    order, so its LLM would not start where the enabled runs' does.)
    """
    model.export_base_model().save_pretrained(path)
    processor.save_pretrained(path)
    return path


def initial_checkpoints(seed: int, model_args, words: list[str], variants: list[str], config_of, work_dir: Path,
                        reference_variant: str, gradient_batch=None) -> dict:
    """
    The initial checkpoint of every variant of `seed`, built as `scripts/train.py` builds the tiny model (right after
    `set_seed(seed)`, `train.build_tiny_model_and_processor(model_args, words, config_of(variant))`), saved with its
    processor (whose sampler settings match the variant), for every run to load (`--model_name_or_path`). Checks that
    the LLM, projector, vision tower, teacher and predictor start from the same numbers in every variant (where shapes
    agree); the objective-off (`"disabled"`) checkpoint is `save_base_checkpoint` of the first enabled build (of
    `reference_variant` when `variants` has no enabled one). With
    `gradient_batch` (`processor -> batch`), also measures each enabled variant's `gradient_norms` there.
    Returns `{"paths": {variant: path}, "same_init", "initial_weights" (base_weights), "gradients"}`.
    """
    from transformers import set_seed

    reference, same, paths, gradients, initial = None, True, {}, {}, None
    for variant in [name for name in variants if name != "disabled"] or [reference_variant]:
        set_seed(seed)
        model, processor = train.build_tiny_model_and_processor(model_args, words, config_of(variant))
        state = model.state_dict()
        if reference is None:
            reference = state
            initial = base_weights(model)
            if "disabled" in variants:
                paths["disabled"] = save_base_checkpoint(model, processor, work_dir / f"init_seed{seed}_disabled")
        for key, value in reference.items():
            if key in state and state[key].shape == value.shape and not torch.equal(state[key], value):
                same = False
        if variant in variants:
            paths[variant] = work_dir / f"init_seed{seed}_{variant}"
            model.save_pretrained(paths[variant])
            processor.save_pretrained(paths[variant])
            if gradient_batch is not None:
                gradients[variant] = gradient_norms(model, gradient_batch(processor))
    return {"paths": paths, "same_init": same, "initial_weights": initial, "gradients": gradients}


def tail_mean(log_history: list[dict], key: str, fraction: float = 0.2) -> float | None:
    """Mean of the logged `key` over the last `fraction` of the logged steps (at least one entry)."""
    values = [entry[key] for entry in log_history if key in entry and "train_runtime" not in entry]
    if not values:
        return None
    count = max(1, math.ceil(len(values) * fraction))
    return sum(values[-count:]) / count


def loss_curve(log_history: list[dict], key: str) -> list[list[float]]:
    """`[[step, value], ...]` of a logged training value."""
    return [[entry["step"], entry[key]] for entry in log_history if key in entry and "train_runtime" not in entry]


def mean_std(values: list[float | None]) -> dict | None:
    """`{"mean", "std", "min", "max", "n"}` of the values that are numbers (None and NaN dropped); None if none."""
    values = [value for value in values if value is not None and not (isinstance(value, float) and math.isnan(value))]
    if not values:
        return None
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


WEIGHT_GROUPS = {
    "language_model": "model.language_model.",
    "lm_head": "lm_head.",
    "multi_modal_projector": "model.multi_modal_projector.",
    "vision_tower": "model.vision_tower.",
}


def base_weights(model) -> dict[str, torch.Tensor]:
    """Copies of the weights the objective-off model also has (`WEIGHT_GROUPS`), by parameter name."""
    return {name: value.detach().to(torch.float64, copy=True) for name, value in model.named_parameters()
            if name.startswith(tuple(WEIGHT_GROUPS.values()))}


def weight_distance(weights: dict, reference: dict, initial: dict) -> dict:
    """
    Per group of `WEIGHT_GROUPS`: how far `weights` (one trained run) are from `reference` (another run from the same
    initial weights and data order): max and mean |difference|, and `relative` = ||weights - reference|| /
    ||reference - initial|| (the difference as a fraction of the distance training moved the reference).
    """
    result = {}
    for group, prefix in WEIGHT_GROUPS.items():
        names = [name for name in reference if name.startswith(prefix)]
        if not names:
            continue
        if set(names) - set(weights):
            raise ValueError(f"the runs do not share the {group} weights {sorted(set(names) - set(weights))[:3]}")
        difference = torch.cat([(weights[name] - reference[name]).flatten() for name in names])
        moved = torch.cat([(reference[name] - initial[name]).flatten() for name in names])
        result[group] = {
            "max_abs": difference.abs().max().item(),
            "mean_abs": difference.abs().mean().item(),
            "relative": (difference.norm() / moved.norm().clamp_min(1e-30)).item(),
            "moved_mean_abs": moved.abs().mean().item(),
        }
    return result


def gradient_norms(model, batch: dict) -> dict:
    """
    Per group of `WEIGHT_GROUPS`: the norm of the gradient of `main_loss` and of `autoregressive_loss` (as weighted in
    the total loss) at the model's current weights on `batch`, their ratio and cosine. Shows whether and how strongly
    the objective's gradient reaches the LLM. Leaves no gradient behind.
    """
    named = [(name, parameter) for name, parameter in model.named_parameters()
             if name.startswith(tuple(WEIGHT_GROUPS.values())) and parameter.requires_grad]
    was_training = model.training
    model.train()
    output = model(**batch)
    if output.autoregressive_loss is None:
        raise ValueError("the model computed no autoregressive_loss (objective disabled?)")
    grads = {}
    for key in ("main_loss", "autoregressive_loss"):
        values = torch.autograd.grad(getattr(output, key), [parameter for _, parameter in named], retain_graph=True,
                                     allow_unused=True)
        grads[key] = {name: (torch.zeros_like(p) if g is None else g).double() for (name, p), g in zip(named, values)}
    model.train(was_training)
    result = {}
    for group, prefix in WEIGHT_GROUPS.items():
        names = [name for name, _ in named if name.startswith(prefix)]
        if not names:
            continue
        main = torch.cat([grads["main_loss"][name].flatten() for name in names])
        auxiliary = torch.cat([grads["autoregressive_loss"][name].flatten() for name in names])
        result[group] = {
            "main_loss": main.norm().item(),
            "autoregressive_loss": auxiliary.norm().item(),
            "ratio": (auxiliary.norm() / main.norm().clamp_min(1e-30)).item(),
            "cosine": torch.nn.functional.cosine_similarity(main, auxiliary, dim=0).item(),
        }
    return result


def with_threads(function, args, threads: int):
    """`function(args)` with torch using `threads` threads, the caller's setting restored after (tests share the
    process)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(args)
    finally:
        torch.set_num_threads(before)


def replace_generated(path: Path, generated: str, start: str, end: str, header: str) -> Path:
    """Write `generated` (which begins with `start` and ends with `end`) into `path` between those markers, keeping
    the hand-written text around them; a missing file, or one without the markers, gets `header` + `generated`."""
    if path.exists() and start in path.read_text():
        before, rest = path.read_text().split(start, 1)
        after = rest.split(end, 1)[1] if end in rest else ""
        text = before + generated + after
    else:
        text = header + generated + "\n"
    path.write_text(text)
    return path


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
