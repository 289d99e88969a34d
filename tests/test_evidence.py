"""Plumbing of the evidence scripts: `scripts/evaluate.py` (held-out feature error vs. baselines) and
`scripts/ablation.py` (the seed's ablation table). Tiny models, a few windows of a real clip, seconds each."""

import json
from pathlib import Path

import pytest
import torch
from helpers import load_script


ablation = load_script("ablation")
ablation_report = load_script("ablation_report")
evaluate = load_script("evaluate")
utils = load_script("experiment_utils")
train = load_script("train")


PNG = b"\x89PNG\r\n\x1a\n"


def hand_made_features() -> torch.Tensor:
    """`[1, 5, 2, 3]`: frame t holds the value t in every patch and dim, plus 10 in patch 1, dim 0."""
    features = torch.arange(5, dtype=torch.float64)[None, :, None, None].expand(1, 5, 2, 3).clone()
    features[:, :, 1, 0] += 10
    return features


def test_baselines_are_exact_on_a_hand_made_feature_tensor():
    features = hand_made_features()
    baselines = evaluate.baseline_predictions(features, num_hist=3)
    # copy-last: target t (1..4) is predicted by frame t-1
    assert torch.equal(baselines["copy_last"], features[:, :-1])
    # mean-of-history, num_hist=3: frames max(0, t-3)..t-1 -> means 0, 0.5, 1, 2 (patch 1, dim 0: +10)
    expected = torch.tensor([0.0, 0.5, 1.0, 2.0], dtype=torch.float64)[None, :, None, None].expand(1, 4, 2, 3).clone()
    expected[:, :, 1, 0] += 10
    assert torch.allclose(baselines["mean_history"], expected)
    # num_hist=None: all earlier frames -> 0, 0.5, 1, 1.5; num_hist=1 is copy-last
    all_history = evaluate.baseline_predictions(features, num_hist=None)["mean_history"]
    assert torch.allclose(all_history[0, :, 0, 1], torch.tensor([0.0, 0.5, 1.0, 1.5], dtype=torch.float64))
    assert torch.equal(evaluate.baseline_predictions(features, num_hist=1)["mean_history"], features[:, :-1])

    result = evaluate.summarise(features, num_hist=3, predictions=features[:, 1:] + 0.5)
    per_step = result["per_step"]
    assert per_step["step"] == [1, 2, 3, 4] and per_step["mean_gap"] == [1.0, 1.0, 1.0, 1.0]
    assert per_step["copy_last"]["mse"] == pytest.approx([1.0, 1.0, 1.0, 1.0])
    assert per_step["mean_history"]["mse"] == pytest.approx([1.0, 2.25, 4.0, 4.0])  # errors 1, 1.5, 2, 2
    assert per_step["model"]["mse"] == pytest.approx([0.25] * 4)
    assert result["overall"]["mean_history"]["mse"] == pytest.approx((1 + 2.25 + 4 + 4) / 4)
    assert result["ratios"]["mse_model_over_copy_last"] == pytest.approx(0.25)
    # cosine, patch 0 (all dims = v): parallel vectors -> similarity 1 except the all-zero frame 0 (similarity 0)
    cosine = evaluate.error_metrics(features[:, :-1], features[:, 1:])["cosine_similarity"]
    patch1 = torch.nn.functional.cosine_similarity(features[0, :-1, 1], features[0, 1:, 1], dim=-1)
    assert torch.allclose(cosine[0], (torch.tensor([0.0, 1, 1, 1], dtype=torch.float64) + patch1) / 2)
    assert per_step["copy_last"]["cosine_distance"] == pytest.approx((1 - cosine[0]).tolist())


def test_baselines_reject_bad_input():
    with pytest.raises(ValueError, match="features"):
        evaluate.baseline_predictions(torch.zeros(1, 1, 2, 3), num_hist=3)
    with pytest.raises(ValueError, match="num_hist"):
        evaluate.baseline_predictions(torch.zeros(1, 3, 2, 3), num_hist=0)


def tiny_checkpoint(path: Path, **autoregressive_config) -> Path:
    torch.manual_seed(0)
    model_args = train.ModelArguments(tiny_image_size=32, tiny_patch_size=16, tiny_hidden_size=32)
    words = "USER : < video > What happens in this video ? ASSISTANT a man talks on phone".split()
    config = {"num_layers": 1, **autoregressive_config}
    model, processor = train.build_tiny_model_and_processor(model_args, words, config)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def test_evaluate_checkpoint_writes_table_json_and_png(tmp_path, capsys):
    checkpoint = tiny_checkpoint(tmp_path / "ckpt")
    argv = [str(checkpoint), "--clips", "carphone_pristine", "--num_frames", "4", "--window_stride", "40",
            "--decode_size", "48", "--batch_size", "2", "--output_dir", str(tmp_path / "eval")]
    result = evaluate.main(argv)
    out = capsys.readouterr().out
    assert "copy_last mse" in out and "mean_history mse" in out and "model MSE / copy-last MSE" in out
    saved = json.loads((tmp_path / "eval" / "evaluation.json").read_text())
    assert (tmp_path / "eval" / "evaluation.png").read_bytes()[:8] == PNG
    assert saved["num_windows"] == 3 and saved["per_step"]["step"] == [1, 2, 3]  # frames 0..3, 40..43, 80..83
    assert saved["ratios"]["mse_model_over_copy_last"] == pytest.approx(result["ratios"]["mse_model_over_copy_last"])

    # The captured teacher features are the teacher's features of the processor's frames, and the baselines in the
    # JSON are computed on them; the model's error is its own autoregressive loss.
    model, processor = evaluate.load_checkpoint(str(checkpoint), remote_code=False)
    rows = evaluate.heldout_rows(["carphone_pristine"], num_frames=4, window_stride=40)
    batches = list(evaluate.batches_from_rows(processor, rows, 48, 2))
    with torch.no_grad():
        teacher = torch.cat([model.autoregressive_module.encode_frames(b["video_frames"]) for b in batches]).double()
        aux = [model(**b).autoregressive_frame_losses for b in batches]
    copy_mse = (teacher[:, 1:] - teacher[:, :-1]).pow(2).mean(dim=(0, 2, 3))
    assert saved["per_step"]["copy_last"]["mse"] == pytest.approx(copy_mse.tolist(), rel=1e-5)
    assert saved["per_step"]["model"]["mse"] == pytest.approx(torch.cat(aux).mean(0).tolist(), rel=1e-4)


def test_evaluate_fast_slow_and_disabled_checkpoints(tmp_path):
    fast_slow = tiny_checkpoint(tmp_path / "fs", use_fast_slow_frames=True, num_fast=2, num_slow=2, slow_stride=4)
    result = evaluate.evaluate_checkpoint(str(fast_slow), clips=["carphone_pristine"], num_frames=8,
                                          window_stride=100, decode_size=48, remote_code=False)
    # slow 0, 4 + fast 6, 7 -> video_frames 0, 4, 6, 7: gaps 4, 2, 1
    assert result["per_step"]["mean_gap"] == [4.0, 2.0, 1.0] and result["has_predictor"]
    disabled = tiny_checkpoint(tmp_path / "off", enabled=False)
    result = evaluate.evaluate_checkpoint(str(disabled), clips=["carphone_pristine"], num_frames=4,
                                          window_stride=100, decode_size=48, remote_code=False)
    assert not result["has_predictor"] and "model" not in result["overall"] and result["main_loss"] > 0
    assert "no predictor" in evaluate.format_table(result)


def test_held_out_split_is_by_clip(tmp_path):
    assert not set(ablation.TRAIN_CLIPS) & set(ablation.HELDOUT_CLIPS)
    assert "carphone_distorted" not in (*ablation.TRAIN_CLIPS, *ablation.HELDOUT_CLIPS)
    settings = ablation.SETTINGS["quick"]
    manifest = ablation.write_manifest(ablation.TRAIN_CLIPS, settings, tmp_path)
    videos = {json.loads(line)["video"] for line in manifest.read_text().splitlines()}
    assert {Path(video).name for video in videos} == {f"{clip}_{settings['decode_size']}px.mp4"
                                                      for clip in ablation.TRAIN_CLIPS}
    heldout = ablation.eval_rows(ablation.HELDOUT_CLIPS, settings, tmp_path, max_windows=None)
    assert not {row["video"] for row in heldout} & videos and len(heldout) > 1
    argv = ablation.train_argv("full", 0, ablation.SETTINGS["default"], Path("x"), 10, manifest)
    assert argv[argv.index("--train_manifest") + 1] == str(manifest)
    config = json.loads(argv[argv.index("--autoregressive_config") + 1])
    assert config["use_frame_causal_mask"] and config["use_fast_slow_frames"] and config["num_fast"] == 4
    baseline = ablation.variant_autoregressive_config("baseline", ablation.SETTINGS["default"])
    assert not baseline["use_frame_causal_mask"] and not baseline["use_fast_slow_frames"]
    assert ablation.variant_autoregressive_config("disabled", ablation.SETTINGS["default"]) == {"enabled": False}
    # the seed's four variants are in the seed's form (absolute output); "as shipped" predicts the residual
    for variant in ("baseline", "frame_mask", "fast_slow", "full"):
        config = ablation.variant_autoregressive_config(variant, ablation.SETTINGS["default"])
        assert config["predict_residual"] is False
    assert ablation.variant_autoregressive_config("shipped", ablation.SETTINGS["default"])["predict_residual"] is True
    for name, (_, overrides) in ablation.VARIANTS.items():
        assert name == "disabled" or set(utils.EXPLICIT_KEYS) <= set(overrides), name


def test_lm_comparison_and_aggregation_pieces():
    def run(variant, seed, loss):
        return {"variant": variant, "seed": seed, "train_main_loss": loss, "heldout": {"main_loss": loss}}

    runs = [run("full", 0, 1.0), run("full", 1, 1.2), run("disabled", 0, 1.0), run("disabled", 1, 1.1),
            run("baseline", 0, 2.0), run("baseline", 1, 2.0)]
    comparison = ablation.lm_comparison(runs)
    full = comparison["full"]["train_main_loss"]
    assert full["difference_of_means"] == pytest.approx(0.05)
    assert full["paired_difference"]["mean"] == pytest.approx(0.05)
    assert not full["worse_beyond_seed_spread"]  # 0.05 < std(1.0, 1.2) = 0.141
    assert comparison["baseline"]["train_main_loss"]["worse_beyond_seed_spread"]
    assert utils.mean_std([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(2**0.5), "min": 1.0, "max": 3.0, "n": 2}
    history = [{"step": s, "main_loss": float(s)} for s in range(1, 11)] + [{"train_runtime": 1.0, "step": 10}]
    assert utils.tail_mean(history, "main_loss") == pytest.approx(9.5)  # last 20% of 10 logs: 9, 10


def test_linear_probe_finds_a_predictable_process():
    """Features that follow x[t] = 0.5 x[t-1] exactly: the scalar AR fit recovers it and beats copy-last."""
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(6, 1, 4, 3, generator=generator, dtype=torch.float64)
    features = torch.cat([start * 0.5**t for t in range(6)], dim=1)
    probes = ablation.linear_probes(features[:4], features[4:], lags=1)
    assert probes["scalar_ar_coefficients"] == pytest.approx([0.5, 0.0], abs=1e-3)  # coefficient, bias
    assert probes["scalar_ar_heldout_over_copy_last"] < 1e-6
    assert ablation.linear_probes(features[:4], features[4:], lags=2)["scalar_ar_heldout_over_copy_last"] < 1e-6


def test_ablation_quick_runs_end_to_end(tmp_path, capsys):
    docs = tmp_path / "docs"
    results = ablation.main(["--quick", "--output_dir", str(tmp_path / "runs"), "--docs_dir", str(docs),
                             "--parts", "ablation,diagnostics"])
    markdown = (docs / "ablation.md").read_text()
    assert "| variant | train main loss | train aux loss | held-out MSE | copy-last MSE" in markdown
    for label, _ in ablation.VARIANTS.values():
        assert f"| {label} |" in markdown
    assert "## Language-modelling loss" in markdown and "## Diagnostics" in markdown
    assert (docs / "ablation.png").read_bytes()[:8] == PNG
    saved = json.loads((docs / "ablation_results.json").read_text())
    assert {run["variant"] for run in saved["ablation"]["runs"]} == set(ablation.VARIANTS)
    assert set(saved["ablation"]["lm_comparison"]) == {"baseline", "frame_mask", "fast_slow", "full", "shipped"}
    full = results["ablation"]["table"]["full"]
    assert full["heldout_mse_model_over_copy_last"]["mean"] > 0 and full["seconds_per_step"]["mean"] > 0
    assert "Baseline (token mask, all frames)" in capsys.readouterr().out
    # the report re-renders only its generated section: hand-written conclusions survive, prose is not generated
    assert "## Findings" not in markdown and ablation_report.GENERATED_END in markdown
    (docs / "ablation.md").write_text("# Ablation\n\nwritten by hand before\n\n" + markdown.split("\n", 2)[2]
                                      + "\n## Conclusions\nwritten by hand after\n")
    ablation_report.main(["--docs_dir", str(docs)])
    rerendered = (docs / "ablation.md").read_text()
    assert "written by hand before" in rerendered and "written by hand after" in rerendered
    assert rerendered.count(ablation_report.GENERATED_START) == 1 and "| variant | train main loss |" in rerendered


def test_ablation_subset_of_variants_at_another_predictor_width(tmp_path):
    docs = tmp_path / "docs"
    ablation.main(["--quick", "--output_dir", str(tmp_path / "runs"), "--docs_dir", str(docs), "--parts", "ablation",
                   "--variants", "full", "--predictor_hidden_size", "16"])
    saved = json.loads((docs / "ablation_results.json").read_text())
    assert {run["variant"] for run in saved["ablation"]["runs"]} == {"full"}
    assert saved["ablation"]["settings"]["autoregressive"]["predictor_hidden_size"] == 16
    configs = list((tmp_path / "runs").rglob("config.json"))
    assert configs and all(json.loads(c.read_text())["autoregressive_config"]["predictor_hidden_size"] == 16
                           for c in configs)
    assert "at width 16" in (docs / "ablation.md").read_text()
