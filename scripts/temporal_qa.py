# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Does the next-frame objective make the video LLM understand motion? Procedural temporal QA, objective on vs off.

    python scripts/temporal_qa.py                                   # default experiment, writes docs/temporal_qa.*
    python scripts/temporal_qa.py --parts options,seed_variants,long   # the other variants, a longer run
    python scripts/temporal_qa.py --quick --output_dir /tmp/tq      # smoke run (< 2 min; tests)

1. `scripts/procedural_video.py` writes clips (mp4, PyAV) with four one-word temporal questions each: training
   clips, held-out clips (unseen seeds) and held-out clips of unseen (colour, direction) combinations. Every clip is
   decoded once (`llava_next_ar.video_decoding_llava_next_ar`) for evaluation.
2. Every variant trains with `scripts/train.py`'s `main()` on the training manifest (same initial weights, data
   order, steps and hyper-parameters per seed; only `autoregressive_config` differs, and every variant states the
   settings it compares). The objective-off run starts from `export_base_model()` of the same initial model.
3. Each trained model is evaluated on each held-out split twice: frames in order and frames shuffled (same questions,
   a fixed permutation per clip), all from one forward pass per question: answer accuracy (the greedy next token
   after the prompt, exact match of the one-word answer), LM loss on the answer token, next-frame feature error vs.
   copy-last and mean-of-history (`scripts/evaluate.py`'s `summarise`), and a linear probe of the main object's
   direction (4-way logistic) and mean speed (ridge) from the LLM's last-layer hidden state at the last video token,
   fitted on training clips and scored on held-out clips (split by seed).
4. Does the objective reach the LLM? The gradient norms of the LM loss and of the weighted objective on the LLM,
   projector and vision tower at the initial weights (first training batch), and the distance between each enabled
   run's trained weights and the objective-off run's (same seed), next to the distance between two identical
   objective-off runs (the floor: 0 when training is deterministic).

Results go to `<docs_dir>/temporal_qa_results.json` and `temporal_qa.png`; the tables of
`<docs_dir>/temporal_qa.md` are (re)generated between its `<!-- generated -->` markers, the rest of the file
(the written conclusions) is kept.
"""

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import evaluate  # noqa: E402
import experiment_utils as utils  # noqa: E402
import procedural_video  # noqa: E402
import train  # noqa: E402
from video_data import DEFAULT_PROMPT  # noqa: E402

from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator  # noqa: E402
from llava_next_ar.video_decoding_llava_next_ar import index_video, read_frames  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
GENERATED_START = "<!-- generated: scripts/temporal_qa.py writes from here -->"
GENERATED_END = "<!-- generated: end -->"

_SHIPPED = {"use_frame_causal_mask": True, "use_fast_slow_frames": False, "predict_residual": True,
            "normalize_targets": False}
_SEED = {**_SHIPPED, "predict_residual": False}  # the seed's form: the predictor outputs the features themselves
VARIANTS = {
    "disabled": ("objective off (`enabled: false`)", {"enabled": False}),
    "shipped": ("objective on, as shipped (frame mask, residual output)", _SHIPPED),
    "seed_form": ("objective on, seed's form (frame mask, absolute output)", _SEED),
    "shipped_normalized": ("as shipped + normalize_targets", {**_SHIPPED, "normalize_targets": True}),
    "seed_form_normalized": ("seed's form + normalize_targets", {**_SEED, "normalize_targets": True}),
    "seed_baseline": ("seed Baseline (token mask, absolute output)", {**_SEED, "use_frame_causal_mask": False}),
    "seed_fast_slow": ("seed +Fast-Slow (token mask, absolute output)",
                       {**_SEED, "use_frame_causal_mask": False, "use_fast_slow_frames": True}),
    "seed_full": ("seed Full (frame mask + fast/slow, absolute output)", {**_SEED, "use_fast_slow_frames": True}),
}
EVAL_SPLITS = ("heldout", "heldout_combination")
ORDERS = ("ordered", "shuffled")

_DEFAULT = {
    "seeds": [0, 1, 2],
    "train_clips": 256,
    "heldout_clips": 64,
    "in_sample_clips": 32,
    "num_frames": 8,
    "size": 48,
    "max_steps": 300,
    "batch_size": 8,
    "learning_rate": 1e-3,
    "warmup_steps": 20,
    "logging_steps": 20,
    "tiny_image_size": 48,
    "tiny_patch_size": 8,
    "tiny_hidden_size": 64,
    "fast_slow": {"num_fast": 4, "num_slow": 4, "fast_stride": 1, "slow_stride": 2},
    "autoregressive": {"loss_weight": 0.1, "num_hist": 3, "num_heads": 4, "num_layers": 2},
    "eval_batch_size": 32,
    "probe_l2": 1e-2,
    "repeat_control_seeds": [0],
    "part_variants": {
        "main": ["disabled", "shipped", "seed_form"],
        "options": ["shipped_normalized", "seed_form_normalized"],
        "seed_variants": ["seed_baseline", "seed_fast_slow", "seed_full"],
        "long": ["disabled", "shipped"],
    },
    "long_seeds": [0],
    "long_steps": 1500,
}
SETTINGS = {
    "default": _DEFAULT,
    # the smoke run (tests): the default with a tiny model, data and step counts
    "quick": {
        **_DEFAULT, "seeds": [0], "train_clips": 8, "heldout_clips": 4, "in_sample_clips": 4, "num_frames": 6,
        "size": 32, "max_steps": 3, "batch_size": 4, "learning_rate": 2e-3, "warmup_steps": 0, "logging_steps": 1,
        "tiny_image_size": 32, "tiny_patch_size": 16, "tiny_hidden_size": 32,
        "fast_slow": {**_DEFAULT["fast_slow"], "num_fast": 3, "num_slow": 3},
        "autoregressive": {**_DEFAULT["autoregressive"], "num_layers": 1}, "eval_batch_size": 8,
        "part_variants": {**_DEFAULT["part_variants"], "seed_variants": ["seed_full"], "long": ["disabled"]},
        "long_steps": 4,
    },
}
PARTS = {
    "main": "objective off, on as shipped, and the seed's form (`part_variants.main`), `seeds` x `max_steps`",
    "options": "`normalize_targets` on the shipped and the seed's form, same seeds and steps as `main`",
    "seed_variants": "the seed's other ablation variants (token mask, fast/slow), same seeds and steps as `main`",
    "long": "`part_variants.long` x `long_seeds` trained `long_steps` steps: does more training change the answer?",
}


# ----------------------------------------------------------------------------------------------------------------
# Data


def make_data(settings: dict, data_dir: Path) -> dict:
    """Write the splits' clips and manifests; returns `{split: rows}` (rows as `procedural_video.write_split`, with
    absolute `video` paths)."""
    counts = {"train": settings["train_clips"], "heldout": settings["heldout_clips"],
              "heldout_combination": settings["heldout_clips"]}
    data = {}
    for split, count in counts.items():
        scenes = procedural_video.split_scenes(split, count, settings["num_frames"], settings["size"])
        rows = procedural_video.write_split(scenes, data_dir / split)
        for row in rows:
            row["video"] = str((data_dir / split / row["video"]).resolve())
        data[split] = rows
    seeds = {split: {row["seed"] for row in rows} for split, rows in data.items()}
    if seeds["train"] & (seeds["heldout"] | seeds["heldout_combination"]):
        raise RuntimeError("a clip seed is in both the training and a held-out split")
    return data


def decode_clips(rows: list[dict]) -> dict[str, np.ndarray]:
    """Every frame of each distinct clip of `rows`, `{path: [T, H, W, 3] uint8}`, decoded once with PyAV through the
    package's decoder (the frames the training data path reads)."""
    frames = {}
    for row in rows:
        if row["video"] not in frames:
            index = index_video(row["video"])
            frames[row["video"]] = read_frames(index, list(range(row["num_frames"]))).numpy()
    return frames


def shuffle_permutation(seed: int, num_frames: int) -> np.ndarray:
    """The fixed frame permutation of the shuffled control for clip `seed` (never the identity)."""
    rng = np.random.default_rng(seed + 7_000_000)
    while True:
        permutation = rng.permutation(num_frames)
        if (permutation != np.arange(num_frames)).any():
            return permutation


def examples(rows: list[dict], frames: dict[str, np.ndarray], shuffled: bool) -> list[dict]:
    """Collator examples `{"video", "prompt", "answer", ...}` of `rows`, frames in order or shuffled."""
    out = []
    for row in rows:
        video = frames[row["video"]]
        if shuffled:
            video = video[shuffle_permutation(row["seed"], len(video))]
        out.append({"video": video, "prompt": row["prompt"], "answer": row["answer"], "kind": row["kind"],
                    "seed": row["seed"], "labels": row["labels"]})
    return out


def one_per_clip(rows: list[dict]) -> list[dict]:
    """The first row of each clip, in order."""
    seen, out = set(), []
    for row in rows:
        if row["seed"] not in seen:
            seen.add(row["seed"])
            out.append(row)
    return out


def vocabulary(rows: list[dict]) -> list[str]:
    """The words of the tiny word-level tokenizer: `scripts/train.py`'s default prompt, the prompts and the answers.
    (Every run loads the checkpoint `initial_checkpoints` builds from them, so `train.py`'s own rule cannot differ.)"""
    text = " ".join([DEFAULT_PROMPT, *(f"{row['prompt']} {row['answer']}" for row in rows)])
    return re.findall(r"\w+|[^\w\s]", text)


def text_prior(data: dict) -> dict:
    """Accuracy of two blind answerers that never see the video: the most frequent training answer to the same
    prompt (whose question names the object's colour and shape; the kind's answer when the prompt is new), and to the
    same question kind. `{split: {"text"|"kind": {kind: accuracy, "all": accuracy}}}`."""
    by_text, by_kind = {}, {}
    for row in data["train"]:
        by_text.setdefault(row["prompt"], Counter())[row["answer"]] += 1
        by_kind.setdefault(row["kind"], Counter())[row["answer"]] += 1
    result = {}
    for split in EVAL_SPLITS:
        result[split] = {}
        for name in ("text", "kind"):
            hits = {}
            for row in data[split]:
                counts = by_kind[row["kind"]]
                if name == "text":
                    counts = by_text.get(row["prompt"]) or counts
                hits.setdefault(row["kind"], []).append(counts.most_common(1)[0][0] == row["answer"])
            accuracy = {kind: sum(values) / len(values) for kind, values in hits.items()}
            accuracy["all"] = sum(sum(v) for v in hits.values()) / sum(len(v) for v in hits.values())
            result[split][name] = accuracy
    return result


# ----------------------------------------------------------------------------------------------------------------
# Training


def variant_config(variant: str, settings: dict) -> dict:
    """The `autoregressive_config` of `variant` (every compared setting stated by the variant itself)."""
    return utils.variant_config(VARIANTS[variant][1], settings["autoregressive"], settings["fast_slow"])


def model_args(settings: dict):
    return train.ModelArguments(tiny_image_size=settings["tiny_image_size"],
                                tiny_patch_size=settings["tiny_patch_size"],
                                tiny_hidden_size=settings["tiny_hidden_size"])


def initial_checkpoints(seed: int, settings: dict, words: list[str], variants: list[str], work_dir: Path,
                        gradient_batch=None) -> dict:
    """`experiment_utils.initial_checkpoints` for this experiment's variants and tiny model."""
    return utils.initial_checkpoints(seed, model_args(settings), words, variants,
                                     lambda variant: variant_config(variant, settings), work_dir, "shipped",
                                     gradient_batch)


def train_argv(variant: str, seed: int, settings: dict, manifest: Path, output_dir: Path) -> list[str]:
    """`scripts/train.py` flags of one run (the same for every variant except `autoregressive_config`)."""
    return utils.train_argv(settings, seed, settings["max_steps"], manifest, output_dir,
                            variant_config(variant, settings)) + ["--overwrite_output_dir", "True",
                                                                  "--save_strategy", "no"]


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


def batched(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.no_grad()
def score(model, processor, items: list[dict], batch_size: int) -> dict:
    """
    One forward pass per item (the training collator: prompt + answer, only the answer labelled):
    - `predicted [N]`: the greedy next token after the prompt;
    - `correct [N]`: the greedy next token after the prompt (argmax of the logits before the answer token, what
      `generate(max_new_tokens=1, do_sample=False)` returns) is the answer token (every answer is one word);
    - `answer_loss [N]`: cross-entropy of the answer token;
    - `states [N, D]`: the last-layer LLM hidden state at the last video token (it has seen every frame and no
      question text, so it is the same for every question of a clip);
    - `features`, `predictions`, `target_gaps`: the objective's teacher features and predictions (or None).
    """
    collator = LlavaNextARDataCollator(processor)
    video_token = model.config.video_token_index
    has_objective = getattr(model, "autoregressive_module", None) is not None
    out = {key: [] for key in ("predicted", "correct", "answer_loss", "states", "features", "predictions",
                               "target_gaps")}
    for batch_items in batched(items, batch_size):
        batch = collator(batch_items)
        labels = batch["labels"]
        output = model(**batch, output_hidden_states=True,
                       **({"output_autoregressive": True} if has_objective else {}))
        rows, positions = (labels != -100).nonzero(as_tuple=True)
        if not torch.equal(rows, torch.arange(len(batch_items))):
            raise ValueError("every answer must be exactly one token of the tokenizer (one labelled position per row)")
        logits = output.logits[rows, positions - 1].float()
        out["predicted"].append(logits.argmax(-1))
        out["correct"].append(out["predicted"][-1] == labels[rows, positions])
        out["answer_loss"].append(torch.nn.functional.cross_entropy(logits, labels[rows, positions],
                                                                    reduction="none"))
        hidden = output.hidden_states[-1]
        last_video = (batch["input_ids"] == video_token).long().cumsum(dim=1).argmax(dim=1)
        out["states"].append(hidden[torch.arange(hidden.shape[0]), last_video].double())
        if has_objective:
            result = output.autoregressive_output
            out["features"].append(result.teacher_features.float())
            out["predictions"].append(result.predictions.float())
            out["target_gaps"].append(result.target_frame_indices - result.context_frame_indices)
    return {key: torch.cat(values) if values else None for key, values in out.items()}


def fit_probes(train_x: torch.Tensor, train_labels: list[dict], test_x: torch.Tensor, test_labels: list[dict],
               l2: float) -> dict:
    """Linear probes on standardised features: 4-way direction (multinomial logistic, L-BFGS, L2 `l2`) and mean speed
    (ridge, closed form, same `l2` x N). Returns held-out direction accuracy and speed R^2 (and the training fit)."""
    mean, std = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    train_x, test_x = (train_x - mean) / std, (test_x - mean) / std
    ones = lambda x: torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)  # noqa: E731
    train_x, test_x = ones(train_x), ones(test_x)
    directions = torch.tensor([label["direction"] for label in train_labels])
    weights = torch.zeros(train_x.shape[1], len(procedural_video.DIRECTIONS), dtype=train_x.dtype,
                          requires_grad=True)
    optimizer = torch.optim.LBFGS([weights], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(train_x @ weights, directions) + l2 * weights[:-1].pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    weights = weights.detach()
    test_directions = torch.tensor([label["direction"] for label in test_labels])
    speed = torch.tensor([label["speed"] for label in train_labels], dtype=train_x.dtype)
    test_speed = torch.tensor([label["speed"] for label in test_labels], dtype=train_x.dtype)
    regulariser = l2 * len(train_x) * torch.eye(train_x.shape[1], dtype=train_x.dtype)
    regulariser[-1, -1] = 0
    coefficients = torch.linalg.solve(train_x.T @ train_x + regulariser, train_x.T @ (speed - speed.mean()))

    def r2(x, y):
        predicted = x @ coefficients + speed.mean()
        return (1 - (y - predicted).pow(2).sum() / (y - y.mean()).pow(2).sum()).item()

    return {
        "direction_accuracy": ((test_x @ weights).argmax(1) == test_directions).double().mean().item(),
        "direction_accuracy_train": ((train_x @ weights).argmax(1) == directions).double().mean().item(),
        "speed_r2": r2(test_x, test_speed),
        "speed_r2_train": r2(train_x, speed),
        "train_clips": len(train_x),
        "test_clips": len(test_x),
    }


def evaluate_run(model, processor, data: dict, frames: dict, settings: dict) -> dict:
    """Every number of one trained model, on each held-out split (and the in-sample clips), in order and shuffled."""
    model.eval()
    batch_size = settings["eval_batch_size"]
    num_hist = model.config.autoregressive_config.get("num_hist")
    probe_train = one_per_clip(data["train"])
    train_labels = [row["labels"] for row in probe_train]
    result = {}
    for order in ORDERS:
        shuffled = order == "shuffled"
        train_states = score(model, processor, examples(probe_train, frames, shuffled), batch_size)["states"]
        for split in (*EVAL_SPLITS, "in_sample"):
            rows = data[split]
            scored = score(model, processor, examples(rows, frames, shuffled), batch_size)
            correct = {}
            for row, hit in zip(rows, scored["correct"].tolist()):
                correct.setdefault(row["kind"], []).append(hit)
            accuracy = {kind: sum(values) / len(values) for kind, values in correct.items()}
            accuracy["all"] = scored["correct"].double().mean().item()
            entry = {"accuracy": accuracy}
            if split != "in_sample":
                entry["answer_lm_loss"] = scored["answer_loss"].double().mean().item()
                first = [index for index, row in enumerate(rows)
                         if index == 0 or row["seed"] != rows[index - 1]["seed"]]
                if scored["predictions"] is not None:
                    summary = evaluate.summarise(scored["features"][first], num_hist, scored["predictions"][first],
                                                 scored["target_gaps"][first])
                    entry["feature_error"] = {"overall": summary["overall"], "ratios": summary["ratios"]}
                entry["probe"] = fit_probes(train_states, train_labels, scored["states"][first],
                                            [rows[index]["labels"] for index in first], settings["probe_l2"])
            result[f"{split}/{order}"] = entry
    return result


def run_one(variant: str, seed: int, settings: dict, data: dict, frames: dict, manifest: Path, work_dir: Path,
            initial_checkpoint: Path, name: str | None = None) -> tuple[dict, dict]:
    """Train and evaluate one run; returns its result and its trained base weights (for the weight distances)."""
    output_dir = work_dir / (name or f"{variant}_seed{seed}")
    argv = train_argv(variant, seed, settings, manifest, output_dir) + ["--model_name_or_path",
                                                                         str(initial_checkpoint)]
    started = time.perf_counter()
    trainer = utils.run_training(argv, output_dir / "train.log")
    trained = time.perf_counter()
    history = trainer.state.log_history
    weights = utils.base_weights(trainer.model)
    evaluation = evaluate_run(trainer.model, trainer.processing_class, data, frames, settings)
    return {
        "variant": variant,
        "seed": seed,
        "autoregressive_config": variant_config(variant, settings),
        "train_seconds": trained - started,
        "eval_seconds": time.perf_counter() - trained,
        "seconds_per_step": next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
        / settings["max_steps"],
        "train_main_loss": utils.tail_mean(history, "main_loss"),
        "train_autoregressive_loss": utils.tail_mean(history, "autoregressive_loss"),
        "curves": {key: utils.loss_curve(history, key) for key in ("main_loss", "autoregressive_loss")},
        "eval": evaluation,
    }, weights


# ----------------------------------------------------------------------------------------------------------------
# Aggregation and report


def metric_paths(run: dict) -> dict:
    """Flat `{name: value}` of the numbers reported per run."""
    flat = {"train_main_loss": run["train_main_loss"], "train_autoregressive_loss": run["train_autoregressive_loss"],
            "seconds_per_step": run["seconds_per_step"]}
    for key, entry in run["eval"].items():
        for kind, value in entry["accuracy"].items():
            flat[f"{key}/accuracy/{kind}"] = value
        if "answer_lm_loss" in entry:
            flat[f"{key}/answer_lm_loss"] = entry["answer_lm_loss"]
        if "feature_error" in entry:
            ratios = entry["feature_error"]["ratios"]
            flat[f"{key}/mse_over_copy_last"] = ratios["mse_model_over_copy_last"]
            flat[f"{key}/mse_over_mean_history"] = ratios["mse_model_over_mean_history"]
        if "probe" in entry:
            flat[f"{key}/probe_direction"] = entry["probe"]["direction_accuracy"]
            flat[f"{key}/probe_speed_r2"] = entry["probe"]["speed_r2"]
    return flat


def aggregate(runs: list[dict]) -> dict:
    table = {}
    for variant in VARIANTS:
        flats = [metric_paths(run) for run in runs if run["variant"] == variant]
        if not flats:
            continue
        keys = sorted({key for flat in flats for key in flat})
        table[variant] = {key: utils.mean_std([flat.get(key) for flat in flats]) for key in keys}
        table[variant]["seeds"] = [run["seed"] for run in runs if run["variant"] == variant]
    return table


def paired_differences(runs: list[dict], reference: str = "disabled") -> dict:
    """Per variant and key: the paired (same seed) difference from `reference`, mean and std over seeds."""
    base = {run["seed"]: metric_paths(run) for run in runs if run["variant"] == reference}
    out = {}
    for variant in VARIANTS:
        if variant == reference:
            continue
        flats = [(run["seed"], metric_paths(run)) for run in runs if run["variant"] == variant and run["seed"] in base]
        if not flats:
            continue
        keys = sorted({key for _, flat in flats for key in flat if key in base[flats[0][0]]})
        out[variant] = {key: utils.mean_std([flat[key] - base[seed][key] for seed, flat in flats
                                                if flat.get(key) is not None and base[seed].get(key) is not None])
                        for key in keys}
    return out


def fmt(stat: dict | None, digits: int = 3, percent: bool = False) -> str:
    if stat is None:
        return "–"
    scale = 100 if percent else 1
    if stat["n"] == 1:
        return f"{stat['mean'] * scale:.{digits}f}"
    return f"{stat['mean'] * scale:.{digits}f} ± {stat['std'] * scale:.{digits}f}"


def reach_tables(results: dict) -> list[str]:
    """Markdown lines: the gradient check and the weight distances of each part that has them."""
    lines = []
    for name, part in results.get("parts", {}).items():
        gradients = part.get("gradients") or {}
        if gradients:
            lines += [
                "",
                f"### Does the objective's gradient reach the LLM? (`{name}`, seed {part['gradient_seed']}, "
                "initial weights, first training batch)",
                "",
                "Norm of the gradient of the LM loss and of the weighted objective (`autoregressive_loss`) with "
                "respect to each part's weights; ratio = objective / LM; cosine between the two gradients.",
                "",
                "| variant | weights | LM loss gradient | objective gradient | ratio | cosine |",
                "|---|---|---|---|---|---|",
            ]
            for variant, groups in gradients.items():
                for group, values in groups.items():
                    lines.append(f"| {VARIANTS[variant][0]} | {group} | {values['main_loss']:.3e} | "
                                 f"{values['autoregressive_loss']:.3e} | {values['ratio']:.3e} | "
                                 f"{values['cosine']:+.3f} |")
        distances = [run for run in part["runs"] if run.get("weight_distance_to_disabled")]
        controls = part.get("repeat_control") or []
        if distances or controls:
            lines += [
                "",
                f"### Trained weights: each run vs. the objective-off run of the same seed (`{name}`)",
                "",
                "Max and mean |difference| of the weights after training; relative = ||difference|| / ||distance the "
                "objective-off run's weights moved in training||. The repeated objective-off run (same seed, same "
                "initial weights and data order) is the floor: any difference above it comes from the objective.",
                "",
                "| run | seed | weights | max abs difference | mean abs difference | relative | mean abs moved in "
                "training |",
                "|---|---|---|---|---|---|---|",
            ]
            rows = [(VARIANTS[run["variant"]][0], run["seed"], run["weight_distance_to_disabled"])
                    for run in distances]
            rows += [("objective off, repeated", control["seed"], control["weight_distance_to_disabled"])
                     for control in controls]
            for label, seed, groups in rows:
                for group, values in groups.items():
                    lines.append(f"| {label} | {seed} | {group} | {values['max_abs']:.3e} | "
                                 f"{values['mean_abs']:.3e} | {values['relative']:.3e} | "
                                 f"{values['moved_mean_abs']:.3e} |")
    return lines


def fmt_e(stat: dict | None) -> str:
    """`mean ± std` in scientific notation (differences far below the table's 3 decimals)."""
    if stat is None:
        return "–"
    return f"{stat['mean']:+.1e}" + ("" if stat["n"] == 1 else f" ± {stat['std']:.1e}")


def render_tables(results: dict) -> str:
    settings, table = results["settings"], results["table"]
    chance = {kind: 1 / len(answers) for kind, answers in procedural_video.ANSWERS.items()}
    lines = [
        GENERATED_START,
        "",
        "Variants (every enabled variant states these four settings; the rest of `autoregressive_config` is the "
        "base below):",
        "",
        "| variant | key | `autoregressive_config` settings compared |",
        "|---|---|---|",
        *(f"| {VARIANTS[name][0]} | `{name}` | {utils.describe(VARIANTS[name][1])} |"
          for name in VARIANTS if name in table or name in results.get("long_table", {})),
        "",
        f"Settings: {len(settings['seeds'])} seed(s) {settings['seeds']}, {settings['max_steps']} steps, batch "
        f"{settings['batch_size']}, lr {settings['learning_rate']}; {settings['train_clips']} training clips "
        f"({4 * settings['train_clips']} questions), {settings['heldout_clips']} clips per held-out split, "
        f"{settings['num_frames']} frames of {settings['size']}x{settings['size']}; tiny model: vision "
        f"{settings['tiny_image_size']}px / patch {settings['tiny_patch_size']}, "
        f"LLM width {settings['tiny_hidden_size']}; "
        f"`autoregressive_config` base {json.dumps(settings['autoregressive'])}. Mean ± std over seeds. Wall time "
        "per part (1 torch thread, on a 2-core machine shared with other jobs; data generation and decoding "
        f"included): " + ", ".join(
            f"`{name}` {part['wall_minutes']:.1f} min "
            f"({len(part['runs'])} runs of {part['settings']['max_steps']} steps"
            + (f" + {len(part.get('repeat_control', []))} repeated objective-off run"
               if part.get("repeat_control") else "") + ")"
            for name, part in results["parts"].items()) + ".",
        "",
        "### Held-out answer accuracy (%), unseen seeds: in order / frames shuffled",
        "",
        "| variant | all | " + " | ".join(procedural_video.QUESTION_KINDS) + " | all, shuffled | "
        + " | ".join(f"{kind}, shuffled" for kind in procedural_video.QUESTION_KINDS) + " |",
        "|---|" + "---|" * (2 + 2 * len(procedural_video.QUESTION_KINDS)),
    ]
    kinds = ("all", *procedural_video.QUESTION_KINDS)
    blank = [""] * len(kinds)
    reference_rows = [("chance (uniform over the kind's answers)",
                       [100 * sum(chance.values()) / len(chance)] + [100 * chance[kind] for kind in kinds[1:]])]
    prior = results.get("text_prior", {}).get("heldout")
    if prior:
        reference_rows.append(("blind: majority training answer to the same question text",
                               [100 * prior["text"][kind] for kind in kinds]))
        reference_rows.append(("blind: majority training answer to the same question kind",
                               [100 * prior["kind"][kind] for kind in kinds]))
    for label, values in reference_rows:
        lines.append(f"| {label} | " + " | ".join([f"{value:.1f}" for value in values] + blank) + " |")
    for variant, row in table.items():
        cells = [fmt(row.get(f"heldout/ordered/accuracy/{kind}"), 1, True) for kind in kinds]
        cells += [fmt(row.get(f"heldout/shuffled/accuracy/{kind}"), 1, True) for kind in kinds]
        lines.append(f"| {VARIANTS[variant][0]} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "### Every number, in order / shuffled",
        "",
        "Accuracy in %; answer LM loss = mean cross-entropy on the answer token; feature error = the predictor's "
        "next-frame MSE / the copy-last MSE (and / mean-of-history), on the objective's teacher features (< 1 beats "
        "the baseline; with `normalize_targets` in the normalised space); probe = linear probe of the main object's "
        "first direction (accuracy %, chance 25) and mean speed (R^2) from the last-layer LLM state at the last video "
        "token, fitted on training clips; in-sample = training clips.",
        "",
        "| variant | split | frames | accuracy | answer LM loss | MSE / copy-last | MSE / mean-of-history | "
        "probe direction | probe speed R^2 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for split, prior in results.get("text_prior", {}).items():
        for name in ("text", "kind"):
            lines.append(f"| blind: majority answer per question {name} | {split.replace('_', ' ')} | (no video) | "
                         f"{100 * prior[name]['all']:.1f} | | | | | |")
    for variant, row in table.items():
        for split in (*EVAL_SPLITS, "in_sample"):
            for order in ("ordered", "shuffled"):
                key = f"{split}/{order}"
                lines.append(
                    f"| {VARIANTS[variant][0]} | {split.replace('_', ' ')} | {order} | "
                    f"{fmt(row.get(key + '/accuracy/all'), 1, True)} | {fmt(row.get(key + '/answer_lm_loss'))} | "
                    f"{fmt(row.get(key + '/mse_over_copy_last'))} | {fmt(row.get(key + '/mse_over_mean_history'))} | "
                    f"{fmt(row.get(key + '/probe_direction'), 1, True)} | {fmt(row.get(key + '/probe_speed_r2'))} |"
                )
    differences = results.get("paired_differences", {})
    if differences:
        lines += [
            "",
            "### Objective on minus off, paired by seed (held-out, unseen seeds, frames in order)",
            "",
            "Mean ± std over seeds of (variant − objective off) with the same initial weights and data order; the "
            "last column compares |mean difference| with the larger of the two variants' seed std.",
            "",
            "| variant | accuracy (points) | answer LM loss | probe direction (points) | probe speed R^2 | "
            "accuracy beyond seed spread? |",
            "|---|---|---|---|---|---|",
        ]
        base = table.get("disabled", {})
        for variant, diff in differences.items():
            acc = diff.get("heldout/ordered/accuracy/all")
            spread = max((table[variant].get("heldout/ordered/accuracy/all") or {}).get("std", 0.0),
                         (base.get("heldout/ordered/accuracy/all") or {}).get("std", 0.0))
            beyond = "–" if acc is None or acc["n"] < 2 else ("yes" if abs(acc["mean"]) > spread else "no")
            lines.append(
                f"| {VARIANTS[variant][0]} | {fmt(acc, 1, True)} | "
                f"{fmt_e(diff.get('heldout/ordered/answer_lm_loss'))} | "
                f"{fmt(diff.get('heldout/ordered/probe_direction'), 1, True)} | "
                f"{fmt(diff.get('heldout/ordered/probe_speed_r2'))} | {beyond} |"
            )
    lines += reach_tables(results)
    lines += [
        "",
        "### Training",
        "",
        "| variant | train main loss (last 20% of steps) | train aux loss (weighted) | s / step | "
        "same initial weights |",
        "|---|---|---|---|---|",
    ]
    for variant, row in table.items():
        lines.append(f"| {VARIANTS[variant][0]} | {fmt(row.get('train_main_loss'), 4)} | "
                     f"{fmt(row.get('train_autoregressive_loss'), 4)} | {fmt(row.get('seconds_per_step'))} | "
                     f"{'yes' if results.get('same_init', True) else 'NO'} |")
    long_table = results.get("long_table") or {}
    if long_table:
        long_settings = results["parts"]["long"]["settings"]
        lines += [
            "",
            f"### Longer training: {long_settings['max_steps']} steps, seed(s) {long_settings['seeds']}",
            "",
            "| variant | held-out accuracy | held-out, shuffled | unseen combination | in-sample accuracy | "
            "answer LM loss | MSE / copy-last | probe direction | probe direction, shuffled | train main loss |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for variant, row in long_table.items():
            lines.append(
                f"| {VARIANTS[variant][0]} | {fmt(row.get('heldout/ordered/accuracy/all'), 1, True)} | "
                f"{fmt(row.get('heldout/shuffled/accuracy/all'), 1, True)} | "
                f"{fmt(row.get('heldout_combination/ordered/accuracy/all'), 1, True)} | "
                f"{fmt(row.get('in_sample/ordered/accuracy/all'), 1, True)} | "
                f"{fmt(row.get('heldout/ordered/answer_lm_loss'))} | "
                f"{fmt(row.get('heldout/ordered/mse_over_copy_last'))} | "
                f"{fmt(row.get('heldout/ordered/probe_direction'), 1, True)} | "
                f"{fmt(row.get('heldout/shuffled/probe_direction'), 1, True)} | {fmt(row.get('train_main_loss'), 4)} |"
            )
    lines += ["", "![temporal QA](temporal_qa.png)", "", GENERATED_END]
    return "\n".join(lines)


def plot(results: dict, path: Path) -> Path:
    """Three panels, variants by rows, frames in order vs. shuffled: held-out accuracy, probe, feature error."""
    plt = utils.pyplot()
    table = results["table"]
    variants = list(table)
    labels = [VARIANTS[variant][0].replace(" (", "\n(") for variant in variants]
    figure, axes = plt.subplots(1, 3, figsize=(16, 0.55 * len(variants) + 3), sharey=True)
    y = np.arange(len(variants))
    blind = max((prior["all"] for prior in results.get("text_prior", {}).get("heldout", {}).values()), default=np.nan)
    panels = (
        ("held-out answer accuracy (%)", "heldout/{}/accuracy/all", 100, 100 * blind,
         "best blind answerer (no video)"),
        ("probe: direction accuracy (%)", "heldout/{}/probe_direction", 100, 25.0, "chance"),
        ("feature MSE / copy-last (held-out)", "heldout/{}/mse_over_copy_last", 1, 1.0, "copy-last"),
    )
    for axis, (title, key, scale, reference, reference_label) in zip(axes, panels):
        for offset, order, color in ((-0.18, "ordered", "C0"), (0.18, "shuffled", "C7")):
            means = [((table[v].get(key.format(order)) or {}).get("mean", np.nan)) * scale for v in variants]
            stds = [((table[v].get(key.format(order)) or {}).get("std", 0.0)) * scale for v in variants]
            axis.barh(y + offset, means, height=0.34, xerr=stds, color=color, capsize=3,
                      label=f"frames {order}")
        axis.axvline(reference, color="C3", linestyle="--", linewidth=1, label=reference_label)
        axis.set_title(title, fontsize=10)
        axis.grid(axis="x", alpha=0.3)
        axis.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.06), ncol=3, frameon=False)
    axes[0].set_yticks(y, labels, fontsize=8)
    axes[0].invert_yaxis()
    settings = results["settings"]
    figure.suptitle(f"Procedural temporal QA, tiny model, {settings['max_steps']} steps, loss_weight "
                    f"{settings['autoregressive']['loss_weight']}, {len(settings['seeds'])} seed(s): "
                    "mean ± std over seeds", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(results: dict, docs_dir: Path) -> Path:
    """(Re)write the generated part of `temporal_qa.md` (keeping everything outside the markers) and the plot."""
    header = ("# Temporal QA on procedural videos: does the objective help the LLM understand motion?\n\n"
              "Generated by `python scripts/temporal_qa.py` (numbers in `temporal_qa_results.json`).\n\n")
    path = utils.replace_generated(docs_dir / "temporal_qa.md", render_tables(results), GENERATED_START,
                                   GENERATED_END, header)
    plot(results, docs_dir / "temporal_qa.png")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 3 steps, 1 seed")
    parser.add_argument("--output_dir", default="outputs/temporal_qa", help="clips, runs and logs")
    parser.add_argument("--docs_dir", default=None,
                        help="where the report, JSON and PNG go (default docs/, or --output_dir with --quick)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (overrides the settings)")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated, replaces the variants of every part run; from {list(VARIANTS)}")
    parser.add_argument("--max_steps", type=int, default=None)
    parser.add_argument("--parts", default="main", help="comma-separated, from: " + "; ".join(
        f"`{name}`: {text}" for name, text in PARTS.items()))
    parser.add_argument("--fresh", action="store_true", help="ignore results already in the results JSON")
    parser.add_argument("--replace", action="store_true",
                        help="merge into the part's saved runs: replace those of the same variant and seed, keep "
                             "the rest (to rerun some variants)")
    parser.add_argument("--report_only", action="store_true",
                        help="re-render the report and plot from the results JSON in --docs_dir, train nothing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: the machine is shared)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=JSON",
                        help="override a setting, e.g. --set tiny_patch_size=8 --set learning_rate=0.003")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    return utils.with_threads(run, args, args.threads)


def part_plan(part: str, settings: dict) -> tuple[list[str], list[int], int]:
    """`(variants, seeds, steps)` of a part."""
    variants = settings["part_variants"][part]
    if part == "long":
        return variants, settings["long_seeds"], settings["long_steps"]
    return variants, settings["seeds"], settings["max_steps"]


def finalise(results: dict) -> dict:
    """Tables over the parts present: the parts of `max_steps` pooled (same seeds and steps), `long` apart."""
    parts = results.get("parts", {})
    pooled = [run for name, part in parts.items() if name != "long" for run in part["runs"]]
    results["table"] = aggregate(pooled)
    results["paired_differences"] = paired_differences(pooled)
    results["long_table"] = aggregate(parts["long"]["runs"]) if "long" in parts else {}
    results["long_paired_differences"] = paired_differences(parts["long"]["runs"]) if "long" in parts else {}
    results["same_init"] = all(part.get("same_init", True) for part in parts.values())
    first = next((parts[name] for name in PARTS if name in parts), None)
    results["settings"] = first["settings"] if first else {}
    return results


def gradient_batch_maker(data: dict, frames: dict, settings: dict):
    """`processor -> batch` of the first training batch (manifest order), for `experiment_utils.gradient_norms`."""
    items = examples(data["train"][:settings["batch_size"]], frames, shuffled=False)
    return lambda processor: LlavaNextARDataCollator(processor)(items)


def run_part(part: str, settings: dict, data: dict, frames: dict, words: list[str], manifest: Path,
             work_dir: Path, started: float) -> dict:
    """Train and evaluate every (variant, seed) of `part`, plus the gradient check (first seed) and the weight
    distances to the objective-off run of each seed (and of a repeated objective-off run, `repeat_control_seeds`)."""
    part_started = time.perf_counter()
    variants, seeds, steps = part_plan(part, settings)
    part_settings = {**settings, "max_steps": steps, "seeds": seeds, "variants": variants}
    runs, controls, same_init, gradients = [], [], True, {}
    for seed in seeds:
        maker = gradient_batch_maker(data, frames, settings) if seed == seeds[0] else None
        initial = initial_checkpoints(seed, part_settings, words, variants, work_dir, maker)
        same_init &= initial["same_init"]
        gradients = gradients or initial["gradients"]
        weights = {}
        for variant in variants:
            run, weights[variant] = run_one(variant, seed, part_settings, data, frames, manifest, work_dir / part,
                                            initial["paths"][variant])
            runs.append(run)
            heldout, shuffled = run["eval"]["heldout/ordered"], run["eval"]["heldout/shuffled"]
            ratio = heldout.get("feature_error", {}).get("ratios", {}).get("mse_model_over_copy_last")
            print(f"[{time.perf_counter() - started:6.1f}s] {part}: {variant:>20} seed {seed}: held-out "
                  f"accuracy {heldout['accuracy']['all']:.3f} (shuffled {shuffled['accuracy']['all']:.3f}), "
                  f"in-sample {run['eval']['in_sample/ordered']['accuracy']['all']:.3f}, answer loss "
                  f"{heldout['answer_lm_loss']:.5f}, MSE/copy-last {'-' if ratio is None else f'{ratio:.3f}'}, "
                  f"probe direction {heldout['probe']['direction_accuracy']:.3f}; "
                  f"train {run['train_seconds']:.0f}s eval {run['eval_seconds']:.0f}s", flush=True)
        if "disabled" in weights:
            for run in runs:
                if run["seed"] == seed and run["variant"] != "disabled":
                    run["weight_distance_to_disabled"] = utils.weight_distance(
                        weights[run["variant"]], weights["disabled"], initial["initial_weights"])
            if seed in settings["repeat_control_seeds"] and part != "long":
                # The same objective-off run again: the floor of the weight distances (0 if training is
                # deterministic), so a difference above it is the objective's.
                output_dir = work_dir / part / f"disabled_seed{seed}_repeat"
                argv = train_argv("disabled", seed, part_settings, manifest, output_dir)
                trainer = utils.run_training(argv + ["--model_name_or_path", str(initial["paths"]["disabled"])],
                                             output_dir / "train.log")
                controls.append({"seed": seed, "weight_distance_to_disabled": utils.weight_distance(
                    utils.base_weights(trainer.model), weights["disabled"], initial["initial_weights"])})
                print(f"[{time.perf_counter() - started:6.1f}s] {part}: objective off repeated, seed {seed}: "
                      f"LLM max abs difference {controls[-1]['weight_distance_to_disabled']['language_model']}",
                      flush=True)
    return {"settings": part_settings, "runs": runs, "same_init": same_init, "gradients": gradients,
            "gradient_seed": seeds[0], "repeat_control": controls,
            "wall_minutes": (time.perf_counter() - part_started) / 60}


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    settings = json.loads(json.dumps(SETTINGS["quick" if args.quick else "default"]))
    if args.seeds:
        settings["seeds"] = [int(seed) for seed in args.seeds.split(",")]
    if args.max_steps is not None:
        settings["max_steps"] = args.max_steps
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in settings:
            raise SystemExit(f"--set {key}: unknown setting; choose from {sorted(settings)}")
        settings[key] = json.loads(value)
    parts = [part for part in args.parts.split(",") if part]
    if set(parts) - set(PARTS):
        raise SystemExit(f"unknown --parts {sorted(set(parts) - set(PARTS))}; choose from {list(PARTS)}")
    if args.variants:
        for part in parts:
            settings["part_variants"][part] = [variant for variant in args.variants.split(",") if variant]
    unknown = {variant for part in parts for variant in part_plan(part, settings)[0]} - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    work_dir = Path(args.output_dir)
    docs_dir = Path(args.docs_dir) if args.docs_dir else (work_dir if args.quick else ROOT / "docs")
    work_dir.mkdir(parents=True, exist_ok=True)
    docs_dir.mkdir(parents=True, exist_ok=True)
    results_path = docs_dir / "temporal_qa_results.json"
    if args.report_only:
        results = finalise(json.loads(results_path.read_text()))
        results_path.write_text(json.dumps(results, indent=1))
        write_report(results, docs_dir)
        return results

    data = make_data(settings, work_dir / "data")
    kept = {row["seed"] for row in one_per_clip(data["train"])[:settings["in_sample_clips"]]}
    data["in_sample"] = [row for row in data["train"] if row["seed"] in kept]
    frames = decode_clips([row for split in ("train", *EVAL_SPLITS) for row in data[split]])
    manifest = work_dir / "data" / "train" / "manifest.jsonl"
    words = vocabulary(data["train"])
    data_minutes = (time.perf_counter() - started) / 60
    print(f"[{time.perf_counter() - started:6.1f}s] data: " + ", ".join(
        f"{split} {len(rows)} questions" for split, rows in data.items()), flush=True)

    fresh = args.fresh
    for part in parts:
        entry = run_part(part, settings, data, frames, words, manifest, work_dir, started)
        if part == parts[0]:
            entry["wall_minutes"] += data_minutes
        # merge into the results file as it is now (another process may be running another part)
        results = {} if fresh or not results_path.exists() else json.loads(results_path.read_text())
        fresh = False
        previous = results.get("parts", {}).get(part) if args.replace else None
        if previous:  # keep the part's other runs; these replace the runs of the same variant and seed
            done = {(run["variant"], run["seed"]) for run in entry["runs"]}
            kept_runs = [run for run in previous["runs"] if (run["variant"], run["seed"]) not in done]
            entry["runs"] = kept_runs + entry["runs"]
            entry["settings"] = {**previous["settings"], "variants": sorted({run["variant"] for run in entry["runs"]},
                                                                             key=list(VARIANTS).index)}
            entry["same_init"] &= previous["same_init"]
            entry["wall_minutes"] += previous["wall_minutes"]
        entry["threads"] = args.threads
        results.setdefault("parts", {})[part] = entry
        results["text_prior"] = text_prior(data)
        finalise(results)
        results_path.write_text(json.dumps(results, indent=1))
    report = write_report(results, docs_dir)
    print(f"total {(time.perf_counter() - started) / 60:.1f} min; wrote {report}, {results_path}")
    return results


if __name__ == "__main__":
    main()
