"""The procedural temporal-QA benchmark: the generator (`scripts/procedural_video.py`) is deterministic, its answers
are what the decoded frames show, its splits are disjoint, its mp4 round-trips through PyAV; the experiment
(`scripts/temporal_qa.py --quick`) runs end to end and reports every number in order and shuffled."""

import json

import numpy as np
import pytest
import torch
from helpers import load_script

from llava_next_ar.video_decoding_llava_next_ar import decode_all_frames, index_video


pv = load_script("procedural_video")
utils = load_script("experiment_utils")
temporal_qa = load_script("temporal_qa")


def test_scenes_and_frames_are_deterministic_by_seed():
    first, again, other = pv.generate_scene(11), pv.generate_scene(11), pv.generate_scene(12)
    assert first.to_dict() == again.to_dict()
    assert np.array_equal(pv.render(first), pv.render(again))
    assert first.to_dict() != other.to_dict()
    seeds = [scene.seed for scene in pv.split_scenes("train", 5)]
    assert seeds == [scene.seed for scene in pv.split_scenes("train", 5)]
    frames = pv.render(pv.generate_scene(3, num_frames=12, size=96, pan=True))
    assert frames.shape == (12, 96, 96, 3) and frames.dtype == np.uint8


def object_pixels(frame: np.ndarray, colour: str) -> np.ndarray:
    """Boolean mask of the pixels showing an object of `colour` (its two stripe shades)."""
    rgb = np.array(pv.COLOURS[colour], dtype=float)
    pixels = frame.astype(float)
    near = [np.abs(pixels - shade).max(axis=-1) < 30 for shade in (rgb, rgb * 0.72)]
    return near[0] | near[1]


def test_answers_are_what_the_decoded_frames_show(tmp_path):
    """For 40 clips: encode, decode with PyAV, find each object by its colour, and read every answer back from the
    pixels — first direction, bounce, faster at the start or the end, which object appears first."""
    kinds_seen = set()
    for scene in pv.split_scenes("train", 40):
        path = pv.write_mp4(pv.render(scene), tmp_path / f"{scene.seed}.mp4")
        frames = decode_all_frames(path).numpy()
        answers = {question["kind"]: question["answer"] for question in scene.questions()}
        kinds_seen |= {(kind, answer) for kind, answer in answers.items()}
        main = scene.objects[0]
        masks = [object_pixels(frame, main.colour) for frame in frames]
        visible = [int(mask.sum()) for mask in masks]
        assert all(count == 0 for count in visible[:main.appear]), scene.seed
        assert all(count > 0.35 * main.size ** 2 for count in visible[main.appear:]), scene.seed
        centres = np.array([np.argwhere(mask)[:, ::-1].mean(axis=0) for mask in masks[main.appear:]])  # (x, y)
        steps = np.diff(centres, axis=0)
        axis = 0 if answers["direction"] in ("left", "right") else 1
        assert np.abs(steps[:, 1 - axis]).max() < 0.6, scene.seed  # it moves along one axis only
        along = steps[:, axis] * (1 if answers["direction"] in ("right", "down") else -1)  # + = first direction
        assert along[0] > 0.4, (scene.seed, along)  # the first step shows the first direction
        reversals = int((np.diff(np.sign(along[np.abs(along) > 0.4])) != 0).sum())
        assert reversals == (1 if answers["bounce"] == "yes" else 0), (scene.seed, along)
        clean = [abs(step) for index, step in enumerate(along)
                 if main.bounce_frame is None or index + main.appear + 1 != main.bounce_frame]
        assert (clean[0] > clean[-1]) == (answers["speed"] == "start"), (scene.seed, along)
        first_seen = {obj.shape: next(t for t, frame in enumerate(frames) if object_pixels(frame, obj.colour).sum())
                      for obj in scene.objects}
        assert min(first_seen, key=first_seen.get) == answers["order"], (scene.seed, first_seen)
        assert sorted(first_seen.values()).count(min(first_seen.values())) == 1
    # every answer of every kind occurs
    assert kinds_seen == {(kind, answer) for kind, answers in pv.ANSWERS.items() for answer in answers}


def test_held_out_splits_are_disjoint_by_seed_and_by_unseen_combination():
    train = pv.split_scenes("train", 150)
    heldout = pv.split_scenes("heldout", 30)
    combination = pv.split_scenes("heldout_combination", 30)
    seeds = [{scene.seed for scene in split} for split in (train, heldout, combination)]
    assert not (seeds[0] & seeds[1]) and not (seeds[0] & seeds[2]) and not (seeds[1] & seeds[2])
    held = set(pv.HELDOUT_COMBINATIONS)
    assert all(not (scene.combinations() & held) for scene in train + heldout)
    assert all((scene.objects[0].colour, scene.objects[0].direction) in held for scene in combination)
    # the training split still shows every colour and every direction, just not those pairs
    assert {obj.colour for scene in train for obj in scene.objects} == set(pv.COLOURS)
    assert {scene.objects[0].direction for scene in train} == set(pv.DIRECTIONS)


def test_mp4_round_trips_through_pyav(tmp_path):
    frames = pv.render(pv.generate_scene(4, num_frames=10, size=48))
    path = pv.write_mp4(frames, tmp_path / "clip.mp4")
    assert index_video(str(path)).num_frames == 10
    decoded = decode_all_frames(path).numpy()
    assert decoded.shape == frames.shape
    error = np.abs(decoded.astype(int) - frames.astype(int))
    assert error.mean() < 2 and error.max() < 20
    assert len(index_video(str(path)).keyframe_pts) == 1  # one keyframe by default
    gop = pv.write_mp4(frames, tmp_path / "gop.mp4", gop=4)
    assert len(index_video(str(gop)).keyframe_pts) == 3  # frames 0, 4, 8
    assert np.abs(decode_all_frames(gop).numpy().astype(int) - frames.astype(int)).mean() < 2


def test_manifest_rows_and_shuffle_control(tmp_path):
    scenes = pv.split_scenes("heldout", 2)
    rows = pv.write_split(scenes, tmp_path)
    assert len(rows) == 2 * len(pv.QUESTION_KINDS)
    assert len((tmp_path / "manifest.jsonl").read_text().splitlines()) == len(rows)
    for row in rows:
        assert "<video>" in row["prompt"] and row["answer"] in pv.ANSWERS[row["kind"]]
        assert (tmp_path / row["video"]).exists()
    permutation = temporal_qa.shuffle_permutation(5, 8)
    assert sorted(permutation) == list(range(8)) and (permutation != np.arange(8)).any()
    assert np.array_equal(permutation, temporal_qa.shuffle_permutation(5, 8))


def test_linear_probe_recovers_a_linear_signal():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    labels = [{"direction": int(row[:4].argmax()), "speed": float(2 * row[4] + 1)} for row in x]
    result = temporal_qa.fit_probes(x[:150], labels[:150], x[150:], labels[150:], l2=1e-3)
    assert result["direction_accuracy"] > 0.8 and result["speed_r2"] > 0.95
    noise = torch.randn(200, 6, generator=generator, dtype=torch.float64)
    result = temporal_qa.fit_probes(noise[:150], labels[:150], noise[150:], labels[150:], l2=1e-3)
    assert result["speed_r2"] < 0.3


def test_variants_state_every_compared_setting():
    """No variant follows a default that may change: each enabled one sets the four compared keys itself; the
    shipped form predicts the residual, the seed's form the features."""
    settings = temporal_qa.SETTINGS["default"]
    for name, (_, overrides) in temporal_qa.VARIANTS.items():
        config = temporal_qa.variant_config(name, settings)
        if name == "disabled":
            assert config == {"enabled": False}
            continue
        assert set(utils.EXPLICIT_KEYS) <= set(overrides), name
    assert temporal_qa.variant_config("shipped", settings)["predict_residual"] is True
    assert temporal_qa.variant_config("seed_form", settings)["predict_residual"] is False
    assert temporal_qa.variant_config("seed_full", settings)["num_fast"] == settings["fast_slow"]["num_fast"]
    with pytest.raises(ValueError, match="predict_residual"):
        utils.variant_config({"use_frame_causal_mask": True, "use_fast_slow_frames": False,
                              "normalize_targets": False}, {}, {})


def test_weight_distance_is_zero_for_equal_runs_and_relative_to_the_training_move():
    initial = {"model.language_model.w": torch.zeros(4, dtype=torch.float64)}
    reference = {"model.language_model.w": torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)}
    other = {"model.language_model.w": torch.tensor([1.0, 1.0, 1.0, 1.5], dtype=torch.float64)}
    same = utils.weight_distance(reference, reference, initial)["language_model"]
    assert same["max_abs"] == 0 and same["relative"] == 0
    moved = utils.weight_distance(other, reference, initial)["language_model"]
    assert moved["max_abs"] == pytest.approx(0.5) and moved["mean_abs"] == pytest.approx(0.125)
    assert moved["relative"] == pytest.approx(0.5 / 2.0) and moved["moved_mean_abs"] == pytest.approx(1.0)


def test_quick_experiment_reports_every_number_in_order_and_shuffled(tmp_path):
    results = temporal_qa.main(["--quick", "--output_dir", str(tmp_path)])
    for name in ("temporal_qa.md", "temporal_qa_results.json", "temporal_qa.png"):
        assert (tmp_path / name).exists(), name
    assert (tmp_path / "temporal_qa.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    saved = json.loads((tmp_path / "temporal_qa_results.json").read_text())
    assert saved["same_init"] is True
    part = saved["parts"]["main"]
    runs = part["runs"]
    assert {run["variant"] for run in runs} == set(results["settings"]["variants"]) == {"disabled", "shipped",
                                                                                        "seed_form"}
    assert set(saved["table"]) == set(results["settings"]["variants"]) and "shipped" in saved["paired_differences"]
    for run in runs:
        for split in temporal_qa.EVAL_SPLITS:
            for order in temporal_qa.ORDERS:
                entry = run["eval"][f"{split}/{order}"]
                assert 0 <= entry["accuracy"]["all"] <= 1
                assert set(entry["accuracy"]) == {"all", *pv.QUESTION_KINDS}
                assert entry["answer_lm_loss"] > 0
                assert 0 <= entry["probe"]["direction_accuracy"] <= 1
                assert ("feature_error" in entry) == (run["variant"] != "disabled")
        # the objective reaches the LLM: trained weights differ from the objective-off run's
        assert ("weight_distance_to_disabled" in run) == (run["variant"] != "disabled")
        if run["variant"] != "disabled":
            assert run["weight_distance_to_disabled"]["language_model"]["max_abs"] > 0
    # training is deterministic: the repeated objective-off run ends on the same weights
    (control,) = part["repeat_control"]
    assert all(values["max_abs"] == 0 for values in control["weight_distance_to_disabled"].values())
    for variant, groups in part["gradients"].items():
        assert groups["language_model"]["autoregressive_loss"] > 0 and groups["language_model"]["main_loss"] > 0
    report = (tmp_path / "temporal_qa.md").read_text()
    assert temporal_qa.GENERATED_START in report and "shuffled" in report and "predict_residual=False" in report
    assert "repeated" in report and "objective gradient" in report
    # the written part of the report survives a rerun of the tables
    (tmp_path / "temporal_qa.md").write_text(report + "\n## Conclusions\nwritten by hand\n")
    temporal_qa.write_report(saved, tmp_path)
    assert "written by hand" in (tmp_path / "temporal_qa.md").read_text()


def test_answers_scored_from_the_forward_pass_equal_greedy_generate(tmp_path):
    """`score`'s accuracy (argmax of the logits before the answer token) is what greedy `generate` answers."""
    settings = {**temporal_qa.SETTINGS["quick"], "train_clips": 2, "heldout_clips": 2}
    data = temporal_qa.make_data(settings, tmp_path)
    rows = data["heldout"]
    frames = temporal_qa.decode_clips(rows)
    words = temporal_qa.vocabulary(data["train"] + rows)
    torch.manual_seed(0)
    model, processor = temporal_qa.train.build_tiny_model_and_processor(
        temporal_qa.model_args(settings), words, temporal_qa.variant_config("shipped", settings))
    model.eval()
    items = temporal_qa.examples(rows, frames, shuffled=False)
    scored = temporal_qa.score(model, processor, items, batch_size=3)
    inputs = processor(text=[item["prompt"] for item in items], videos=[item["video"] for item in items],
                       return_tensors="pt", padding=True, padding_side="left")
    inputs = {key: value for key, value in inputs.items()
              if key not in ("video_frames", "video_frame_indices", "llm_frame_indices")}
    generated = model.generate(**inputs, max_new_tokens=1, do_sample=False,
                               pad_token_id=processor.tokenizer.pad_token_id)
    assert scored["predicted"].tolist() == generated[:, inputs["input_ids"].shape[1]].tolist()
    answers = processor.tokenizer.batch_decode(generated[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert scored["correct"].tolist() == [answer.strip() == item["answer"] for answer, item in zip(answers, items)]
    assert scored["states"].shape[0] == len(items) and scored["predictions"] is not None
