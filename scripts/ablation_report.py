# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
The report of `scripts/ablation.py`: `ablation_results.json` -> the tables and plots of `docs/ablation.md`.

    python scripts/ablation_report.py                  # re-render docs/ablation.md's generated section and PNGs
    python scripts/ablation_report.py --docs_dir DIR   # from DIR/ablation_results.json

Only the section between `GENERATED_START` and `GENERATED_END` is (re)written: numbers, tables, plots. What they mean
is written by hand in the rest of `ablation.md`.
"""

import argparse
import json
import sys
from pathlib import Path

import torch


sys.path.insert(0, str(Path(__file__).resolve().parent))

import experiment_utils as utils  # noqa: E402
from ablation import HELDOUT_CLIPS, ROOT, TRAIN_CLIPS, VARIANTS  # noqa: E402


GENERATED_START = "<!-- generated: scripts/ablation_report.py writes from here -->"
GENERATED_END = "<!-- generated: end -->"


def fmt(stats: dict | None, digits: int = 3, style: str = "f") -> str:
    """`mean ± std` (or the single value); `style="e"` for scientific notation."""
    if stats is None:
        return "–"
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}{style}}"
    return f"{stats['mean']:.{digits}{style}} ± {stats['std']:.{digits}{style}}"


def spread_verdict(entry: dict) -> str:
    """"yes"/"no" for `worse_beyond_seed_spread`, "– (1 seed)" when a side has one seed (no spread to compare)."""
    if min(entry["enabled"]["n"], entry["disabled"]["n"]) < 2:
        return "– (1 seed)"
    return "yes" if entry["worse_beyond_seed_spread"] else "no"


def plot_ablation(results: dict, path: Path) -> Path:
    plt = utils.pyplot()

    runs, table = results["runs"], results["table"]
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    # 1. held-out MSE per prediction step (mean over seeds), each variant with its own copy-last baseline
    for index, variant in enumerate(v for v in VARIANTS if v != "disabled" and v in table):
        rows = [run for run in runs if run["variant"] == variant]
        steps = rows[0]["heldout"]["per_step"]["step"]
        for method, style in (("model", "-o"), ("copy_last", ":s")):
            values = torch.tensor([run["heldout"]["per_step"][method]["mse"] for run in rows]).mean(0)
            label = f"{variant}: model" if method == "model" else f"{variant}: copy-last"
            axes[0].plot(steps, values, style, color=f"C{index}", markersize=3, label=label)
    axes[0].set_yscale("log")
    axes[0].set_xlabel("prediction step (target index in video_frames)")
    axes[0].set_ylabel("held-out MSE (mean over seeds)")
    axes[0].set_title("held-out error per step")
    axes[0].legend(fontsize=7, ncol=2)
    # 2. held-out ratios vs both baselines, with seed spread
    variants = [v for v in VARIANTS if v != "disabled" and v in table]
    x = torch.arange(len(variants)).float()
    bars = (("heldout_mse_model_over_copy_last", "held-out: model / copy-last", "C0"),
            ("heldout_mse_model_over_mean_history", "held-out: model / mean-of-history", "C1"),
            ("in_sample_mse_model_over_copy_last", "training clips (not held-out): model / copy-last", "0.6"))
    for offset, (key, label, color) in zip((-0.27, 0.0, 0.27), bars):
        means = [table[v][key]["mean"] for v in variants]
        stds = [table[v][key]["std"] for v in variants]
        axes[1].bar(x + offset, means, width=0.27, yerr=stds, capsize=3, label=label, color=color)
    axes[1].axhline(1.0, color="k", lw=0.8)
    axes[1].set_xticks(x, [table[v]["label"].split(" (")[0] for v in variants], fontsize=8)
    axes[1].set_yscale("log")
    top = max(table[v][key]["mean"] + table[v][key]["std"] for v in variants for key, _, _ in bars)
    axes[1].set_ylim(top=max(top, 1.0) * 8)  # room for the legend above the bars
    axes[1].set_ylabel("MSE ratio (mean ± std over seeds)")
    axes[1].set_title("predictor vs. baselines (held-out clip)")
    axes[1].legend(fontsize=7)
    # 3. training main loss curves (mean over seeds)
    for index, variant in enumerate(v for v in VARIANTS if v in table):
        rows = [run for run in runs if run["variant"] == variant]
        curves = [run["curves"]["main_loss"] for run in rows]
        steps = [point[0] for point in curves[0]]
        values = torch.tensor([[point[1] for point in curve] for curve in curves]).mean(0)
        axes[2].plot(steps, values, color=f"C{index}" if variant != "disabled" else "k", label=variant)
    axes[2].set_yscale("log")
    axes[2].set_xlabel("step")
    axes[2].set_ylabel("training main_loss (mean over seeds)")
    axes[2].set_title("training language-modelling loss")
    axes[2].legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def plot_long_run(long: dict, path: Path) -> Path:
    plt = utils.pyplot()

    points = long["checkpoints"]
    steps = [point["step"] for point in points]
    figure, axis = plt.subplots(figsize=(7, 4))
    for split, key, style, label in (
        ("heldout_ratios", "mse_model_over_copy_last", "-o", "held-out / copy-last"),
        ("heldout_ratios", "mse_model_over_mean_history", "-^", "held-out / mean-of-history"),
        ("in_sample_ratios", "mse_model_over_copy_last", "--o", "training clips / copy-last"),
    ):
        axis.plot(steps, [point[split][key] for point in points], style, markersize=3, label=label)
    axis.axhline(1.0, color="k", lw=0.8)
    axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("model MSE / baseline MSE")
    axis.set_title(f"Full variant, seed 0, {long['steps']} steps")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def ablation_tables(ablation: dict) -> list[str]:
    """Markdown lines of the main table (held-out) and the in-sample diagnostic table of the `ablation` part."""
    table = ablation["table"]
    lines = [
        "## Variants", "",
        "Every enabled variant states the settings it compares (the rest of `autoregressive_config` is the same for "
        "all).", "",
        "| variant | key | settings |",
        "|---|---|---|",
        *(f"| {VARIANTS[name][0]} | `{name}` | {utils.describe(VARIANTS[name][1])} |" for name in table),
        "",
        "## Table", "",
        "| variant | train main loss | train aux loss | held-out MSE | copy-last MSE | mean-of-history MSE "
        "| MSE / copy-last | MSE / mean-of-history | cos-dist / copy-last | s / step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for variant, row in table.items():
        if variant == "disabled":  # no teacher: its live tower's features are not the other rows' targets
            row = {**row, "heldout_copy_last_mse": None, "heldout_mean_history_mse": None}
        lines.append(
            f"| {row['label']} | {fmt(row['train_main_loss'])} | {fmt(row['train_autoregressive_loss'], 4)} "
            f"| {fmt(row['heldout_model_mse'], 4)} | {fmt(row['heldout_copy_last_mse'], 4)} "
            f"| {fmt(row['heldout_mean_history_mse'], 4)} | {fmt(row['heldout_mse_model_over_copy_last'], 2)} "
            f"| {fmt(row['heldout_mse_model_over_mean_history'], 2)} "
            f"| {fmt(row['heldout_cosine_distance_model_over_copy_last'], 2)} "
            f"| {fmt(row['seconds_per_step'], 3)} |"
        )
    lines += [
        "",
        "Train losses: mean of the logged values over the last 20% of steps (aux loss includes "
        "`loss_weight`). The disabled run has no predictor and no teacher (its feature columns are empty).",
        "",
        "Diagnostic, **not held-out** (windows of the training clips, same model):",
        "",
        "| variant | in-sample MSE / copy-last | in-sample MSE / mean-of-history |",
        "|---|---|---|",
    ]
    for variant, row in table.items():
        if row["in_sample_mse_model_over_copy_last"] is None:
            continue
        lines.append(f"| {row['label']} | {fmt(row['in_sample_mse_model_over_copy_last'], 2)} "
                     f"| {fmt(row['in_sample_mse_model_over_mean_history'], 2)} |")
    return lines


def render_generated(results: dict) -> str:
    """The generated section of `ablation.md`: setup numbers, tables and plots of every part in `results`, between
    `GENERATED_START` and `GENERATED_END`. Numbers only; the conclusions are written by hand around it."""
    lines = [
        GENERATED_START, "",
        f"Numbers from `ablation_results.json`. Held-out split **by clip**: training on `{'`, `'.join(TRAIN_CLIPS)}`, "
        f"evaluation on `{'`, `'.join(HELDOUT_CLIPS)}` (never seen in training; `carphone_distorted`, a degraded copy "
        "of it, is never used). Mean ± std over seeds.", "",
    ]
    ablation = results.get("ablation")
    if ablation:
        settings = ablation["settings"]
        seeds = sorted({run["seed"] for run in ablation["runs"]})
        fs, ar = settings["fast_slow"], settings["autoregressive"]
        span = fs["slow_stride"] * (fs["num_slow"] - 1)
        lines += [
            "## Setup", "",
            f"- Model: the tiny LLaVA-NeXT-AR `scripts/train.py` builds (CLIP vision tower "
            f"{settings['tiny_image_size']}px, patch {settings['tiny_patch_size']}, Llama width "
            f"{settings['tiny_hidden_size']}, random initialisation; predictor {ar['num_layers']} layers x "
            f"{ar['num_heads']} heads at width {ar['predictor_hidden_size']}, `num_hist={ar['num_hist']}`, "
            f"`loss_weight={ar['loss_weight']}`). "
            "The teacher is a frozen copy of the vision tower at initialisation, so its features are those of a "
            "random CLIP (no pretrained weights are available offline).",
            f"- Data: windows of {settings['num_frames']} consecutive frames (25-30 fps), a window every "
            f"{settings['window_stride']} frames, decoded at {settings['decode_size']}px. "
            f"Training steps: {settings['max_steps']}, batch {settings['batch_size']}, lr "
            f"{settings['learning_rate']}, seeds {seeds} (of {settings['seeds']} planned); the same for every "
            "variant.",
            f"- Fast/slow: `num_fast={fs['num_fast']}, num_slow={fs['num_slow']}, fast_stride={fs['fast_stride']}, "
            f"slow_stride={fs['slow_stride']}` (slow frames span {span + 1} of the {settings['num_frames']} frames, "
            f"no stride shrinking). The objective's frames are the sorted union of both sets, so a fast/slow variant "
            "predicts fewer frames, some of them several source frames ahead: its baselines are computed on the "
            "same frames it predicts, and its errors are not directly comparable with the all-frames variants' "
            "(compare ratios).",
            "- Held-out error: `scripts/evaluate.py` functions, real forward pass (LLM fused), per predicted frame; "
            "MSE is the mean over windows, steps, patches and feature dims. copy-last predicts frame t from frame "
            "t-1; mean-of-history averages the last `num_hist` frames. Ratio < 1 = the predictor beats the baseline.",
            f"- Time per step: `train_runtime / steps` (data loading included), {ablation.get('threads', 1)} torch "
            f"thread(s), on a 2-core CPU **shared with other jobs**, so timings are noisy. Whole "
            f"run ({len(ablation['runs'])} runs: {len(ablation['table'])} variants x {len(seeds)} seeds, + the other "
            "parts run with "
            "it, the first in the same process including its data decoding): "
            f"{ablation['wall_minutes']:.1f} min.",
            "",
        ]
        lines += ablation_tables(ablation)
        lines += ["", "![ablation](ablation.png)", ""]
        comparison = ablation.get("lm_comparison", {})
        if comparison:
            lines += [
                "## Language-modelling loss: objective enabled vs. disabled (equal steps)", "",
                "Paired by seed (same data order). \"Worse beyond seed spread\" = mean difference larger than the "
                "larger of the two seed standard deviations.", "",
                "| variant | metric | enabled | disabled | paired diff (enabled - disabled) | worse beyond spread? |",
                "|---|---|---|---|---|---|",
            ]
            names = {"train_main_loss": "train main loss, last 20% of steps",
                     "train_main_loss_all_steps": "train main loss, mean over all logged steps",
                     "heldout_main_loss": "held-out LM loss"}
            for variant, entry in comparison.items():
                for key, name in names.items():
                    if key not in entry:
                        continue
                    e = entry[key]
                    lines.append(
                        f"| {VARIANTS[variant][0]} | {name} | {fmt(e['enabled'], 4)} | {fmt(e['disabled'], 4)} "
                        f"| {fmt(e['paired_difference'], 1, 'e')} "
                        f"| {spread_verdict(e)} |"
                    )
            lines += [
                "",
                "Caveats: the caption is fixed per clip, so the training LM loss measures how fast two captions are "
                "memorised; the held-out clip's caption is mostly out of the training vocabulary (`<unk>`), so the "
                "held-out LM loss mostly measures that. The fast/slow variants' LLM sees 8 frames, the disabled "
                "run's 16.",
                "",
            ]
    diagnostics_part = results.get("diagnostics")
    if diagnostics_part:
        lines += [
            "## Diagnostics: how predictable are the teacher features?", "",
            f"Teacher: {diagnostics_part['teacher']}. Windows of {diagnostics_part['num_frames']} frames taken "
            "`frame stride` source frames apart. Variance across frames = variance of a patch's feature over the "
            "frames of a window (temporal change); across patches = over the patches of a frame (content).", "",
            "| clip | frame stride | windows | copy-last MSE | mean-of-history MSE | var across frames "
            "| var across patches | copy-last MSE / (2 x var across frames) |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for row in diagnostics_part["per_clip"]:
            lines.append(
                f"| {row['clip']} | {row['frame_stride']} | {row['windows']} | {row['copy_last_mse']:.4f} "
                f"| {row['mean_history_mse']:.4f} | {row['variance_across_frames']:.4f} "
                f"| {row['variance_across_patches']:.4f} "
                f"| {row['copy_last_mse'] / (2 * row['variance_across_frames']):.2f} |"
            )
        lines += [
            "",
            "The last column is 1 for frames that are independent draws around the window mean and near 0 for "
            "smooth motion; copy-last is a strong baseline when it is small.", "",
            "Linear predictors fitted by least squares on the training clips' teacher features (no LLM), evaluated "
            "on the held-out clip (ratio to copy-last; < 1 beats it):", "",
            "| frame stride | scalar AR(num_hist) coefficients (oldest..newest, bias) | AR held-out / copy-last "
            "| AR train / copy-last | ridge residual held-out / copy-last | ridge train / copy-last |",
            "|---|---|---|---|---|---|",
        ]
        for row in diagnostics_part["linear_probes"]:
            lines.append(
                f"| {row['frame_stride']} | {row['scalar_ar_coefficients']} "
                f"| {row['scalar_ar_heldout_over_copy_last']:.3f} "
                f"| {row['scalar_ar_train_over_copy_last']:.3f} | {row['ridge_residual_heldout_over_copy_last']:.3f} "
                f"| {row['ridge_residual_train_over_copy_last']:.3f} |"
            )
        lines.append("")
    probe = results.get("probe")
    if probe:
        lines += [
            "## Probe: the predictor alone (no LLM) on teacher features", "",
            f"`python scripts/ablation.py --parts probe`: a fresh `LlavaNextARPredictor` of the same size trained "
            f"{probe['steps']} steps (batch {probe['batch_size']}, windows of {probe['num_frames']} frames, "
            f"{probe['train_windows']} training / {probe['heldout_windows']} held-out windows), absolute "
            "(the seed's form: outputs the next frame's features) and residual (outputs the change, added to the last "
            "frame; the shipped default).", "",
            "| parameterisation | step | training clips / copy-last | held-out / copy-last |",
            "|---|---|---|---|",
        ]
        for mode in ("absolute", "residual"):
            for point in probe[mode]["curve"]:
                lines.append(f"| {mode} | {point['step']} | {point['train_over_copy_last']:.3f} "
                             f"| {point['heldout_over_copy_last']:.3f} |")
        lines.append("")
    long = results.get("long_run")
    if long:
        lines += [
            "## Long run: the Full variant trained longer", "",
            f"`python scripts/ablation.py --parts long_run`: seed 0, {long['steps']} steps "
            f"({long['train_runtime'] / 60:.1f} min, {long['seconds_per_step']:.3f} s/step on the shared CPU), "
            "each saved checkpoint loaded with `trust_remote_code=True` and evaluated.", "",
            "| step | held-out MSE / copy-last | held-out MSE / mean-of-history | training clips MSE / copy-last "
            "| held-out LM loss |",
            "|---|---|---|---|---|",
        ]
        for point in long["checkpoints"]:
            lines.append(
                f"| {point['step']} | {point['heldout_ratios']['mse_model_over_copy_last']:.3f} "
                f"| {point['heldout_ratios']['mse_model_over_mean_history']:.3f} "
                f"| {point['in_sample_ratios']['mse_model_over_copy_last']:.3f} | {point['heldout_main_loss']:.3f} |"
            )
        lines += ["", "![long run](ablation_long_run.png)", ""]
    folds_part = results.get("folds")
    if folds_part:
        lines += [
            "## Every clip held out in turn", "",
            f"`python scripts/ablation.py --parts folds`: Full variant, seed 0, {folds_part['steps']} steps, trained "
            "on the other two clips.", "",
            "| held-out clip | held-out MSE | copy-last MSE | MSE / copy-last | MSE / mean-of-history "
            "| training clips MSE / copy-last |",
            "|---|---|---|---|---|---|",
        ]
        for run in folds_part["runs"]:
            lines.append(
                f"| {run['heldout_clips'][0]} | {run['heldout_model_mse']:.4f} | {run['heldout_copy_last_mse']:.4f} "
                f"| {run['heldout_ratios']['mse_model_over_copy_last']:.2f} "
                f"| {run['heldout_ratios']['mse_model_over_mean_history']:.2f} "
                f"| {run['in_sample_ratios']['mse_model_over_copy_last']:.2f} |"
            )
        lines.append("")
    lines.append(GENERATED_END)
    return "\n".join(lines)


def write_report(results: dict, docs_dir: Path) -> Path:
    """Write the plots and (re)write the generated section of `<docs_dir>/ablation.md`, keeping the hand-written text
    around it."""
    docs_dir.mkdir(parents=True, exist_ok=True)
    if results.get("ablation"):
        plot_ablation(results["ablation"], docs_dir / "ablation.png")
    if results.get("long_run"):
        plot_long_run(results["long_run"], docs_dir / "ablation_long_run.png")
    header = ("# Ablation: next-frame feature prediction on real clips\n\n"
              "Generated by `python scripts/ablation.py` (runs) and `scripts/ablation_report.py` (tables).\n\n")
    return utils.replace_generated(docs_dir / "ablation.md", render_generated(results), GENERATED_START,
                                   GENERATED_END, header)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--docs_dir", default=str(ROOT / "docs"),
                        help="folder of ablation_results.json and ablation.md")
    args = parser.parse_args(argv)
    docs_dir = Path(args.docs_dir)
    path = write_report(json.loads((docs_dir / "ablation_results.json").read_text()), docs_dir)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
