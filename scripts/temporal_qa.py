# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Does the next-frame objective make the video LLM understand motion? Procedural temporal QA, objective on vs off.

    python scripts/temporal_qa.py                                   # default experiment, writes docs/temporal_qa.*
    python scripts/temporal_qa.py --quick --output_dir /tmp/tq      # smoke run (< 2 min; tests)

1. `scripts/procedural_video.py` writes clips (mp4, PyAV) with four one-word temporal questions each: training
   clips, held-out clips (unseen seeds) and held-out clips of unseen (colour, direction) combinations.
2. Every variant trains with `scripts/train.py`'s `main()` on the training manifest (same initial weights, data
   order, steps and hyper-parameters per seed; only `autoregressive_config` differs).
3. Each trained model is evaluated on each held-out split twice: frames in order and frames shuffled (same questions,
   a fixed permutation per clip): answer accuracy (greedy `generate`, exact match of the one-word answer), LM loss
   on the answer tokens, next-frame feature error vs. copy-last and mean-of-history (`scripts/evaluate.py`), and a
   linear probe of the main object's direction (4-way logistic) and mean speed (ridge) from the LLM's last-layer
   hidden state at the last video token, fitted on training clips and scored on held-out clips (split by seed).

Results go to `<docs_dir>/temporal_qa_results.json` and `temporal_qa.png`; the tables of
`<docs_dir>/temporal_qa.md` are (re)generated between its `<!-- generated -->` markers, the rest of the file
(the written conclusions) is kept.
"""

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import ablation  # noqa: E402
import evaluate  # noqa: E402
import procedural_video  # noqa: E402
import train  # noqa: E402
from video_data import DEFAULT_PROMPT, decode_window  # noqa: E402

from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator  # noqa: E402


ROOT = Path(__file__).resolve().parents[1]
GENERATED_START = "<!-- generated: scripts/temporal_qa.py writes from here -->"
GENERATED_END = "<!-- generated: end -->"

VARIANTS = {
    "disabled": ("objective off (`enabled: false`)", {"enabled": False}),
    "frame_mask": ("objective on, as shipped (frame mask, all frames)", {}),
    "baseline": ("seed Baseline (token mask)", {"use_frame_causal_mask": False}),
    "fast_slow": ("seed +Fast-Slow (token mask)", {"use_frame_causal_mask": False, "use_fast_slow_frames": True}),
    "full": ("seed Full (frame mask + fast/slow)", {"use_fast_slow_frames": True}),
    "residual": ("+ predict_residual", {"predict_residual": True}),
    "normalized": ("+ normalize_targets", {"normalize_targets": True}),
    "residual_normalized": ("+ predict_residual + normalize_targets",
                            {"predict_residual": True, "normalize_targets": True}),
}
EVAL_SPLITS = ("heldout", "heldout_combination")

SETTINGS = {
    "default": {
        "seeds": [0, 1, 2],
        "variants": ["disabled", "frame_mask", "residual", "normalized", "residual_normalized"],
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
        "seed_variants": ["baseline", "fast_slow", "full"],
        "long_variants": ["disabled", "residual"],
        "long_seeds": [0],
        "long_steps": 1500,
    },
    "quick": {
        "seeds": [0],
        "variants": ["disabled", "frame_mask", "residual_normalized"],
        "train_clips": 8,
        "heldout_clips": 4,
        "in_sample_clips": 4,
        "num_frames": 6,
        "size": 32,
        "max_steps": 3,
        "batch_size": 4,
        "learning_rate": 2e-3,
        "warmup_steps": 0,
        "logging_steps": 1,
        "tiny_image_size": 32,
        "tiny_patch_size": 16,
        "tiny_hidden_size": 32,
        "fast_slow": {"num_fast": 3, "num_slow": 3, "fast_stride": 1, "slow_stride": 2},
        "autoregressive": {"loss_weight": 0.1, "num_hist": 3, "num_heads": 4, "num_layers": 1},
        "eval_batch_size": 8,
        "probe_l2": 1e-2,
        "seed_variants": ["full"],
        "long_variants": ["disabled"],
        "long_seeds": [0],
        "long_steps": 4,
    },
}
PARTS = {
    "main": "objective off vs on and the predictor options, `seeds` x `variants`, `max_steps` (the default)",
    "seed_variants": "the seed's other ablation variants (`seed_variants`), same seeds and steps as `main`",
    "long": "`long_variants` x `long_seeds` trained `long_steps` steps: does more training change the answer?",
}


# ----------------------------------------------------------------------------------------------------------------
# Data


def make_data(settings: dict, data_dir: Path) -> dict:
    """Write the splits' clips and manifests; returns `{split: rows}` (rows as `procedural_video.write_split`)."""
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


def shuffle_permutation(seed: int, num_frames: int) -> np.ndarray:
    """The fixed frame permutation of the shuffled control for clip `seed` (never the identity)."""
    rng = np.random.default_rng(seed + 7_000_000)
    while True:
        permutation = rng.permutation(num_frames)
        if (permutation != np.arange(num_frames)).any():
            return permutation


def examples(rows: list[dict], shuffled: bool) -> list[dict]:
    """Collator examples `{"video", "prompt", "answer"}`: frames decoded from the mp4 with PyAV (the training data
    path), in order or shuffled."""
    out = []
    for row in rows:
        frames = decode_window(row["video"], 0, row["num_frames"])
        if shuffled:
            frames = frames[shuffle_permutation(row["seed"], len(frames))]
        out.append({"video": frames, "prompt": row["prompt"], "answer": row["answer"], "kind": row["kind"],
                    "seed": row["seed"], "labels": row["labels"]})
    return out


def one_per_clip(rows: list[dict]) -> list[dict]:
    seen, out = set(), []
    for row in rows:
        if row["seed"] not in seen:
            seen.add(row["seed"])
            out.append(row)
    return out


def vocabulary(rows: list[dict]) -> list[str]:
    """The words of the tiny word-level tokenizer: `scripts/train.py`'s default prompt, the prompts and the answers.
    (Every run loads the checkpoint `initial_weights` builds from them, so `train.py`'s own rule cannot differ.)"""
    text = " ".join([DEFAULT_PROMPT, *(f"{row['prompt']} {row['answer']}" for row in rows)])
    return re.findall(r"\w+|[^\w\s]", text)


def text_prior(settings: dict) -> dict:
    """Accuracy of two blind answerers that never see the video: the most frequent training answer to the same
    question text (which names the object's colour and shape; the kind's when the text is new), and to the same
    question kind. The scenes are regenerated from their seeds. `{split: {"text"|"kind": {kind: acc, "all": acc}}}`."""
    from collections import Counter

    def questions(split, count):
        scenes = procedural_video.split_scenes(split, count, settings["num_frames"], settings["size"])
        return [question for scene in scenes for question in scene.questions()]

    by_text, by_kind = {}, {}
    for question in questions("train", settings["train_clips"]):
        by_text.setdefault(question["question"], Counter())[question["answer"]] += 1
        by_kind.setdefault(question["kind"], Counter())[question["answer"]] += 1
    result = {}
    for split in EVAL_SPLITS:
        result[split] = {}
        for name in ("text", "kind"):
            hits = {}
            for question in questions(split, settings["heldout_clips"]):
                counts = by_kind[question["kind"]]
                if name == "text":
                    counts = by_text.get(question["question"]) or counts
                hits.setdefault(question["kind"], []).append(counts.most_common(1)[0][0] == question["answer"])
            accuracy = {kind: sum(values) / len(values) for kind, values in hits.items()}
            accuracy["all"] = sum(sum(v) for v in hits.values()) / sum(len(v) for v in hits.values())
            result[split][name] = accuracy
    return result


# ----------------------------------------------------------------------------------------------------------------
# Training


def variant_config(variant: str, settings: dict) -> dict:
    overrides = VARIANTS[variant][1]
    if overrides.get("enabled") is False:
        return {"enabled": False}
    config = {"enabled": True, **settings["autoregressive"], **overrides}
    if config.get("use_fast_slow_frames"):
        config.update(settings["fast_slow"])
    return config


def model_args(settings: dict):
    return train.ModelArguments(tiny_image_size=settings["tiny_image_size"],
                                tiny_patch_size=settings["tiny_patch_size"],
                                tiny_hidden_size=settings["tiny_hidden_size"])


def initial_weights(seed: int, settings: dict, words: list[str], variants: list[str], work_dir: Path) -> tuple:
    """
    The initial checkpoint of every variant of `seed`, built as `scripts/train.py` builds the tiny model (right after
    `set_seed(seed)`), saved with its processor (whose sampler settings match the variant), and loaded by every run
    (`--model_name_or_path`). Checks that the LLM, projector, vision tower, teacher and predictor start from the same
    numbers in every variant (where shapes agree); the objective-off checkpoint is the same weights without the
    predictor and teacher (built directly, its random numbers would be drawn in another order).
    Returns `({variant: checkpoint}, same_init)`.
    """
    from transformers import set_seed

    reference, same, paths = None, True, {}
    for variant in ["frame_mask", *(name for name in variants if name not in ("disabled", "frame_mask"))]:
        set_seed(seed)
        model, processor = train.build_tiny_model_and_processor(model_args(settings), words,
                                                                variant_config(variant, settings))
        state = model.state_dict()
        if reference is None:
            reference, reference_model, reference_processor = state, model, processor
        for key, value in reference.items():
            if key in state and state[key].shape == value.shape and not torch.equal(state[key], value):
                same = False
        if variant in variants:
            paths[variant] = work_dir / f"init_seed{seed}_{variant}"
            model.save_pretrained(paths[variant])
            processor.save_pretrained(paths[variant])
    if "disabled" in variants:
        model = reference_model
        del model.autoregressive_module
        model.config.autoregressive_config = {**model.config.autoregressive_config, "enabled": False}
        paths["disabled"] = work_dir / f"init_seed{seed}_disabled"
        model.save_pretrained(paths["disabled"])
        reference_processor.save_pretrained(paths["disabled"])
    return paths, same


def train_argv(variant: str, seed: int, settings: dict, manifest: Path, output_dir: Path) -> list[str]:
    return [
        "--output_dir", str(output_dir), "--overwrite_output_dir", "True",
        "--seed", str(seed),
        "--max_steps", str(settings["max_steps"]),
        "--per_device_train_batch_size", str(settings["batch_size"]),
        "--learning_rate", str(settings["learning_rate"]),
        "--warmup_steps", str(settings["warmup_steps"]),
        "--logging_steps", str(settings["logging_steps"]),
        "--report_to", "none", "--use_cpu", "True", "--dataloader_num_workers", "0", "--disable_tqdm", "True",
        "--save_strategy", "no", "--plots", "False",
        "--train_manifest", str(manifest),
        "--num_frames", str(settings["num_frames"]),
        "--on_decode_error", "raise",
        "--tiny_image_size", str(settings["tiny_image_size"]),
        "--tiny_patch_size", str(settings["tiny_patch_size"]),
        "--tiny_hidden_size", str(settings["tiny_hidden_size"]),
        "--autoregressive_config", json.dumps(variant_config(variant, settings)),
    ]


# ----------------------------------------------------------------------------------------------------------------
# Evaluation


def batched(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


@torch.no_grad()
def answer_accuracy(model, processor, items: list[dict], batch_size: int) -> dict:
    """Greedy `generate` of one token after the prompt (every answer is one word of the tokenizer), exact match."""
    tokenizer = processor.tokenizer
    correct = {}
    for batch_items in batched(items, batch_size):
        inputs = processor(text=[item["prompt"] for item in batch_items],
                           videos=[item["video"] for item in batch_items],
                           return_tensors="pt", padding=True, padding_side="left")
        inputs = {key: value for key, value in inputs.items()
                  if key not in ("video_frames", "video_frame_indices", "llm_frame_indices")}
        generated = model.generate(**inputs, max_new_tokens=1, do_sample=False,
                                   pad_token_id=tokenizer.pad_token_id)
        answers = tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        for item, answer in zip(batch_items, answers):
            correct.setdefault(item["kind"], []).append(answer.strip() == item["answer"])
    result = {kind: sum(values) / len(values) for kind, values in correct.items()}
    result["all"] = sum(sum(values) for values in correct.values()) / sum(len(values) for values in correct.values())
    return result


@torch.no_grad()
def video_end_states(model, processor, items: list[dict], batch_size: int) -> torch.Tensor:
    """`[N, D]` last-layer LLM hidden state at the last video token of each item (it has seen every frame and no
    question text)."""
    collator = LlavaNextARDataCollator(processor)
    video_token = model.config.video_token_index
    states = []
    for batch_items in batched(items, batch_size):
        batch = collator(batch_items)
        batch.pop("labels")
        for key in ("video_frames", "video_frame_indices", "llm_frame_indices"):
            batch.pop(key, None)
        output = model(**batch, output_hidden_states=True)
        hidden = output.hidden_states[-1]
        positions = (batch["input_ids"] == video_token).long().cumsum(dim=1).argmax(dim=1)  # last video token
        states.append(hidden[torch.arange(hidden.shape[0]), positions].double())
    return torch.cat(states)


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


def evaluate_run(model, processor, data: dict, settings: dict) -> dict:
    """Every number of one trained model, on each held-out split, frames in order and shuffled."""
    model.eval()
    batch_size = settings["eval_batch_size"]
    collator = LlavaNextARDataCollator(processor)
    num_hist = model.config.autoregressive_config.get("num_hist")
    result = {}
    probe_train = one_per_clip(data["train"])
    for order in ("ordered", "shuffled"):
        shuffled = order == "shuffled"
        train_states = video_end_states(model, processor, examples(probe_train, shuffled), batch_size)
        train_labels = [row["labels"] for row in probe_train]
        for split in (*EVAL_SPLITS, "in_sample"):
            rows = data[split]
            items = examples(rows, shuffled)
            entry = {"accuracy": answer_accuracy(model, processor, items, batch_size)}
            if split != "in_sample":
                collected = evaluate.collect(model, (collator(chunk) for chunk in batched(items, batch_size)))
                entry["answer_lm_loss"] = collected["main_loss"]
                if collected["predictions"] is not None:
                    summary = evaluate.summarise(collected["features"], num_hist, collected["predictions"],
                                                 collected["target_gaps"])
                    entry["feature_error"] = {"overall": summary["overall"], "ratios": summary["ratios"]}
                clips = one_per_clip(rows)
                states = video_end_states(model, processor, examples(clips, shuffled), batch_size)
                entry["probe"] = fit_probes(train_states, train_labels, states, [row["labels"] for row in clips],
                                            settings["probe_l2"])
            result[f"{split}/{order}"] = entry
    return result


def run_one(variant: str, seed: int, settings: dict, data: dict, manifest: Path, work_dir: Path,
            initial_checkpoint: Path) -> dict:
    output_dir = work_dir / f"{variant}_seed{seed}"
    argv = train_argv(variant, seed, settings, manifest, output_dir) + ["--model_name_or_path",
                                                                         str(initial_checkpoint)]
    started = time.perf_counter()
    trainer = ablation.run_training(argv, output_dir / "train.log")
    trained = time.perf_counter()
    history = trainer.state.log_history
    evaluation = evaluate_run(trainer.model, trainer.processing_class, data, settings)
    return {
        "variant": variant,
        "seed": seed,
        "autoregressive_config": variant_config(variant, settings),
        "train_seconds": trained - started,
        "eval_seconds": time.perf_counter() - trained,
        "seconds_per_step": next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
        / settings["max_steps"],
        "train_main_loss": ablation.tail_mean(history, "main_loss"),
        "train_autoregressive_loss": ablation.tail_mean(history, "autoregressive_loss"),
        "curves": {key: ablation.loss_curve(history, key) for key in ("main_loss", "autoregressive_loss")},
        "eval": evaluation,
    }


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
        table[variant] = {key: ablation.mean_std([flat.get(key) for flat in flats]) for key in keys}
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
        out[variant] = {key: ablation.mean_std([flat[key] - base[seed][key] for seed, flat in flats
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


def render_tables(results: dict) -> str:
    settings, table = results["settings"], results["table"]
    chance = {kind: 1 / len(answers) for kind, answers in procedural_video.ANSWERS.items()}
    lines = [
        GENERATED_START,
        "",
        f"Settings: {len(settings['seeds'])} seed(s) {settings['seeds']}, {settings['max_steps']} steps, batch "
        f"{settings['batch_size']}, lr {settings['learning_rate']}; {settings['train_clips']} training clips "
        f"({4 * settings['train_clips']} questions), {settings['heldout_clips']} clips per held-out split, "
        f"{settings['num_frames']} frames of {settings['size']}x{settings['size']}; tiny model: vision "
        f"{settings['tiny_image_size']}px / patch {settings['tiny_patch_size']}, "
        f"LLM width {settings['tiny_hidden_size']}; "
        f"`autoregressive_config` base {json.dumps(settings['autoregressive'])}. Mean ± std over seeds. Wall time "
        "per part (1 torch thread each, on a 2-core machine shared with other jobs): " + ", ".join(
            f"`{name}` {part['wall_minutes']:.1f} min "
            f"({len(part['runs'])} runs of {part['settings']['max_steps']} steps)"
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
                f"{fmt(diff.get('heldout/ordered/answer_lm_loss'))} | "
                f"{fmt(diff.get('heldout/ordered/probe_direction'), 1, True)} | "
                f"{fmt(diff.get('heldout/ordered/probe_speed_r2'))} | {beyond} |"
            )
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
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = results["table"]
    variants = list(table)
    labels = [VARIANTS[variant][0].replace(" (", "\n(") for variant in variants]
    figure, axes = plt.subplots(1, 3, figsize=(16, 0.55 * len(variants) + 3), sharey=True)
    y = np.arange(len(variants))
    panels = (
        ("held-out answer accuracy (%)", "heldout/{}/accuracy/all", 100,
         100 * max((prior["all"] for prior in results.get("text_prior", {}).get("heldout", {}).values()),
                   default=np.nan), "best blind answerer (no video)"),
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
    figure.suptitle(f"Procedural temporal QA, tiny model, {len(results['settings']['seeds'])} seed(s): "
                    "mean ± std over seeds", fontsize=11)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(results: dict, docs_dir: Path) -> Path:
    """(Re)write the generated part of `temporal_qa.md`; keep everything outside the markers."""
    path = docs_dir / "temporal_qa.md"
    generated = render_tables(results)
    if path.exists() and GENERATED_START in path.read_text():
        text = path.read_text()
        before, rest = text.split(GENERATED_START, 1)
        after = rest.split(GENERATED_END, 1)[1] if GENERATED_END in rest else ""
        text = before + generated + after
    else:
        text = ("# Temporal QA on procedural videos: does the objective help the LLM understand motion?\n\n"
                "Generated by `python scripts/temporal_qa.py` (numbers in `temporal_qa_results.json`).\n\n"
                + generated + "\n")
    path.write_text(text)
    plot(results, docs_dir / "temporal_qa.png")
    return path


# ----------------------------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny data, 3 steps, 3 variants, 1 seed")
    parser.add_argument("--output_dir", default="outputs/temporal_qa", help="clips, runs and logs")
    parser.add_argument("--docs_dir", default=None,
                        help="where the report, JSON and PNG go (default docs/, or --output_dir with --quick)")
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (overrides the settings)")
    parser.add_argument("--variants", default=None, help=f"comma-separated, from {list(VARIANTS)}")
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
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return run(args)
    finally:
        torch.set_num_threads(threads)


def part_plan(part: str, settings: dict) -> tuple[list[str], list[int], int]:
    """`(variants, seeds, steps)` of a part."""
    if part == "main":
        return settings["variants"], settings["seeds"], settings["max_steps"]
    if part == "seed_variants":
        return settings["seed_variants"], settings["seeds"], settings["max_steps"]
    return settings["long_variants"], settings["long_seeds"], settings["long_steps"]


def finalise(results: dict) -> dict:
    """Tables over the parts present: `main` and `seed_variants` pooled (same seeds and steps), `long` apart."""
    parts = results.get("parts", {})
    pooled = [run for part in ("main", "seed_variants") for run in parts.get(part, {}).get("runs", [])]
    results["table"] = aggregate(pooled)
    results["paired_differences"] = paired_differences(pooled)
    results["long_table"] = aggregate(parts["long"]["runs"]) if "long" in parts else {}
    results["long_paired_differences"] = paired_differences(parts["long"]["runs"]) if "long" in parts else {}
    results["same_init"] = all(part.get("same_init", True) for part in parts.values())
    first = parts.get("main") or parts.get("seed_variants") or parts.get("long")
    results["settings"] = first["settings"] if first else {}
    if results["settings"]:
        results["text_prior"] = text_prior(results["settings"])
    return results


def run(args: argparse.Namespace) -> dict:
    started = time.perf_counter()
    settings = json.loads(json.dumps(SETTINGS["quick" if args.quick else "default"]))
    if args.seeds:
        settings["seeds"] = [int(seed) for seed in args.seeds.split(",")]
    if args.variants:
        settings["variants"] = [variant for variant in args.variants.split(",") if variant]
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
    unknown = {variant for part in parts for variant in part_plan(part, settings)[0]} - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    work_dir = Path(args.output_dir)
    docs_dir = Path(args.docs_dir) if args.docs_dir else (work_dir if args.quick else ROOT / "docs")
    work_dir.mkdir(parents=True, exist_ok=True)
    docs_dir.mkdir(parents=True, exist_ok=True)
    results_path = docs_dir / "temporal_qa_results.json"
    fresh = args.fresh
    if args.report_only:
        results = finalise(json.loads(results_path.read_text()))
        results_path.write_text(json.dumps(results, indent=1))
        write_report(results, docs_dir)
        return results

    data = make_data(settings, work_dir / "data")
    kept = {row["seed"] for row in one_per_clip(data["train"])[:settings["in_sample_clips"]]}
    data["in_sample"] = [row for row in data["train"] if row["seed"] in kept]
    manifest = work_dir / "data" / "train" / "manifest.jsonl"
    words = vocabulary(data["train"])
    print(f"[{time.perf_counter() - started:6.1f}s] data: " + ", ".join(
        f"{split} {len(rows)} questions" for split, rows in data.items()), flush=True)

    results = {}
    for part in parts:
        part_started = time.perf_counter()
        variants, seeds, steps = part_plan(part, settings)
        part_settings = {**settings, "max_steps": steps, "seeds": seeds, "variants": variants}
        runs, same_init = [], True
        for seed in seeds:
            initial, same = initial_weights(seed, part_settings, words, variants, work_dir)
            same_init &= same
            for variant in variants:
                run = run_one(variant, seed, part_settings, data, manifest, work_dir / part, initial[variant])
                runs.append(run)
                heldout, shuffled = run["eval"]["heldout/ordered"], run["eval"]["heldout/shuffled"]
                ratio = heldout.get("feature_error", {}).get("ratios", {}).get("mse_model_over_copy_last")
                print(f"[{time.perf_counter() - started:6.1f}s] {part}: {variant:>20} seed {seed}: held-out "
                      f"accuracy {heldout['accuracy']['all']:.3f} (shuffled {shuffled['accuracy']['all']:.3f}), "
                      f"in-sample {run['eval']['in_sample/ordered']['accuracy']['all']:.3f}, answer loss "
                      f"{heldout['answer_lm_loss']:.3f}, MSE/copy-last {'-' if ratio is None else f'{ratio:.3f}'}, "
                      f"probe direction {heldout['probe']['direction_accuracy']:.3f}; "
                      f"train {run['train_seconds']:.0f}s "
                      f"eval {run['eval_seconds']:.0f}s", flush=True)
        # merge into the results file as it is now (another process may be running another part)
        results = {} if fresh or not results_path.exists() else json.loads(results_path.read_text())
        fresh = False
        minutes = (time.perf_counter() - part_started) / 60
        previous = results.get("parts", {}).get(part) if args.replace else None
        if previous:  # keep the part's other runs; these replace the runs of the same variant and seed
            done = {(run["variant"], run["seed"]) for run in runs}
            runs = [run for run in previous["runs"] if (run["variant"], run["seed"]) not in done] + runs
            part_settings = {**previous["settings"], "variants": sorted({run["variant"] for run in runs},
                                                                        key=list(VARIANTS).index)}
            same_init &= previous["same_init"]
            minutes += previous["wall_minutes"]
        results.setdefault("parts", {})[part] = {
            "settings": part_settings, "runs": runs, "same_init": same_init, "threads": args.threads,
            "wall_minutes": minutes,
        }
        finalise(results)
        results_path.write_text(json.dumps(results, indent=1))
    report = write_report(results, docs_dir)
    print(f"total {(time.perf_counter() - started) / 60:.1f} min; wrote {report}, {results_path}")
    return results


if __name__ == "__main__":
    main()
