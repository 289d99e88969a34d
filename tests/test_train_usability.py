"""`scripts/train.py` as a new user meets it (issue 12): own clips of different lengths, manifests checked before
training, config files parsed exactly, LoRA runs that save what they promise, output folders, the frame-mask plot."""

import dataclasses
import json
import logging
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from helpers import ROOT, load_script
from llava_next_ar.video_decoding_llava_next_ar import VideoDecodeError, index_video, read_frames


train = load_script("train")
video_data = load_script("video_data")


def make_clip(path: Path, num_frames: int, size: int = 32, faststart: bool = False, noise: bool = False) -> Path:
    """A small H.264 clip of a moving bar (or of noise, which compresses badly: truncating it keeps some frames)."""
    container = av.open(str(path), "w", options={"movflags": "faststart"} if faststart else {})
    stream = container.add_stream("libx264", rate=25)
    stream.width = stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {"preset": "ultrafast", "g": "8"}
    for index in range(num_frames):
        image = np.zeros((size, size, 3), np.uint8)
        image[:, (2 * index) % size: (2 * index) % size + 4] = 255
        if noise:
            image = np.random.default_rng(index).integers(0, 256, (size, size, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path


def quick_run(output_dir: Path, *extra: str) -> list[str]:
    """Flags for a 1-step run of the tiny model, without plots, reports or saving checkpoints."""
    return [
        "--output_dir", str(output_dir), "--max_steps", "1", "--logging_steps", "1", "--use_cpu", "True",
        "--report_to", "none", "--save_strategy", "no", "--plots", "False", "--reload_check", "False",
        "--disable_tqdm", "True", "--decode_size", "32", "--tiny_image_size", "32", "--tiny_patch_size", "8",
        "--tiny_hidden_size", "32", *extra,
    ]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


# ----------------------------------------------------------------------------------------------------------------
# Item 1: own clips of different lengths, a fixed frame count per example by default


def test_manifest_clips_of_different_lengths_batch_together_by_default(tmp_path):
    make_clip(tmp_path / "short.mp4", 12)
    make_clip(tmp_path / "long.mp4", 20)
    manifest = write_jsonl(tmp_path / "data.jsonl", [  # paths relative to the manifest's folder
        {"video": "short.mp4", "caption": "a bar moves"}, {"video": "long.mp4", "caption": "a bar moves on"},
    ])
    rows = video_data.read_manifest(manifest, num_frames=6)
    assert [row["num_frames"] for row in rows] == [6, 6]
    trainer = train.main(quick_run(tmp_path / "run", "--train_manifest", str(manifest),
                                   "--per_device_train_batch_size", "2", "--num_frames", "6"))
    log = next(entry for entry in trainer.state.log_history if "main_loss" in entry)
    assert np.isfinite(log["loss"]) and log["autoregressive_loss"] > 0


def test_the_retired_decode_size_flag_says_it_is_ignored(tmp_path, caplog):
    """A flag kept only so older configs parse must not do nothing silently."""
    make_clip(tmp_path / "clip.mp4", 8)
    manifest = write_jsonl(tmp_path / "data.jsonl", [{"video": "clip.mp4", "caption": "a bar moves"}])
    with caplog.at_level(logging.WARNING, logger="train"):
        train.main(quick_run(tmp_path / "run", "--train_manifest", str(manifest), "--num_frames", "4",
                             "--decode_size", "48"))
    assert "--decode_size 48 is ignored" in caplog.text


# ----------------------------------------------------------------------------------------------------------------
# Items 1 and 9: no file is opened before training (issue 13: indexing 178K clips up front took hours); each bad row
# is named with its reason when it loads, counted at the end, or stops the run when asked


def bad_manifest(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    make_clip(tmp_path / "good.mp4", 16)
    make_clip(tmp_path / "other.mp4", 16)
    make_clip(tmp_path / "whole.mp4", 32, faststart=True)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "truncated.mp4").write_bytes(data[: len(data) // 2])
    rows = [
        {"video": "good.mp4", "caption": "fine"},
        {"video": "other.mp4", "caption": "fine too"},
        {"video": "missing.mp4", "caption": "no such file"},
        {"video": "truncated.mp4", "caption": "half a file"},
        {"video": "good.mp4", "caption": "window past the end", "start_frame": 14},
        {"video": "good.mp4", "caption": "a window of one frame", "num_frames": 1},
    ]
    reasons = {"missing.mp4": "missing file", "truncated.mp4": "undecodable", "row 4": "too short",
               "row 5": "too short"}
    return write_jsonl(tmp_path / "data.jsonl", rows), reasons


def test_a_window_that_cannot_fit_stops_the_run_before_training_without_opening_a_file(tmp_path):
    manifest, _ = bad_manifest(tmp_path)
    with pytest.raises(ValueError, match="1 problem") as error:
        train.main(quick_run(tmp_path / "run", "--train_manifest", str(manifest), "--num_frames", "4",
                             "--on_decode_error", "raise"))
    assert "row 5 (" in str(error.value) and "a window of 1 frame(s)" in str(error.value)


def test_raise_stops_at_the_first_bad_file_naming_it(tmp_path):
    manifest, _ = bad_manifest(tmp_path)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()][:5]  # without the one-frame window
    manifest = write_jsonl(tmp_path / "files.jsonl", [rows[2], *rows[:2]])
    with pytest.raises(train.BadRowError, match=r"row 0 \(.*missing.mp4\): missing file"):
        train.main(quick_run(tmp_path / "run", "--train_manifest", str(manifest), "--num_frames", "4",
                             "--on_decode_error", "raise", "--per_device_train_batch_size", "3"))


def test_skip_drops_each_bad_row_as_it_loads_and_counts_them_at_the_end(tmp_path, caplog, capsys):
    manifest, reasons = bad_manifest(tmp_path)
    with caplog.at_level(logging.WARNING):
        trainer = train.main(quick_run(tmp_path / "run", "--train_manifest", str(manifest), "--num_frames", "4",
                                       "--per_device_train_batch_size", "5", "--max_steps", "1"))
    assert len(trainer.train_dataset) == 5  # only the one-frame window is dropped before training
    out = capsys.readouterr().out
    counts = "(1 missing file, 2 too short, 1 undecodable)"
    assert f"4 training example(s) could not be used and were skipped {counts}" in out
    warnings = "\n".join(record.getMessage() for record in caplog.records)
    for name, reason in reasons.items():
        assert any(name in line and reason in line for line in warnings.splitlines()), (name, reason)


def test_a_truncated_clip_is_found_without_decoding(tmp_path):
    make_clip(tmp_path / "whole.mp4", 32, faststart=True)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    assert index_video(str(tmp_path / "whole.mp4")).num_frames == 32
    with pytest.raises(VideoDecodeError, match="half.mp4: truncated or damaged, its header lists 32 frames"):
        index_video(str(tmp_path / "half.mp4"))


def test_a_truncated_clip_that_still_decodes_some_frames_is_an_error_not_a_shorter_clip(tmp_path):
    """PyAV's threaded decoding stops quietly at the cut (14 of 32 frames came out, with no error): reading past it
    by seeking is an error naming the file."""
    make_clip(tmp_path / "whole.mp4", 32, faststart=True, noise=True)
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "half.mp4").write_bytes(data[: len(data) // 2])
    index = index_video(str(tmp_path / "whole.mp4"))
    assert read_frames(index, list(range(32))).shape[0] == 32
    with pytest.raises(VideoDecodeError, match="half.mp4: truncated or damaged"):
        read_frames(dataclasses.replace(index, path=str(tmp_path / "half.mp4")), list(range(32)))


# ----------------------------------------------------------------------------------------------------------------
# Items 2 and 6: config files parsed exactly, flags merged over them


def test_flag_autoregressive_config_merges_into_the_files_mapping():
    model_args, *_ = train.parse_arguments([
        str(ROOT / "configs" / "tiny_builtin_clips.yaml"), str(ROOT / "configs" / "presets" / "medium_clips.yaml"),
        "--autoregressive_config", '{"loss_weight": 0.5}',
    ])
    merged = json.loads(model_args.autoregressive_config)
    assert merged["loss_weight"] == 0.5  # the flag
    assert merged["use_fast_slow_frames"] is True and merged["slow_stride"] == 4  # the preset
    assert merged["num_hist"] == 3  # the main job's file


def test_config_files_are_read_exactly(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(
        "output_dir: out\nmodel_name_or_path: null\ndecode_size: null\nreport_to: []\nlearning_rate: 1e-3\n"
    )
    model_args, data_args, _, training_args = train.parse_arguments([str(config)])
    assert model_args.model_name_or_path is None and data_args.decode_size is None
    assert training_args.report_to == [] and training_args.learning_rate == 1e-3

    config.write_text("output_dir: out\nlearning_rat: 0.5\n")
    with pytest.raises(train.ConfigError, match=r"run\.yaml.*learning_rat.*did you mean learning_rate"):
        train.parse_arguments([str(config)])
    config.write_text("output_dir: out\nnum_frame: 4\n")
    with pytest.raises(train.ConfigError, match="num_frame.*did you mean num_frames"):
        train.parse_arguments([str(config)])
    config.write_text("output_dir: out\nreport_to: [none\n")
    with pytest.raises(train.ConfigError, match="run.yaml"):
        train.parse_arguments([str(config)])
    with pytest.raises(train.ConfigError, match="learning_rat.*did you mean learning_rate"):
        train.parse_arguments(["--output_dir", "out", "--learning_rat", "0.5"])  # flags are never abbreviated


# ----------------------------------------------------------------------------------------------------------------
# Item 5: a LoRA run saves a base, an adapter pointing at it, and a merged checkpoint


def test_lora_run_saves_base_adapter_and_merged_checkpoint(tmp_path):
    from peft import PeftModel

    from llava_next_ar import LlavaNextARForConditionalGeneration

    output_dir = tmp_path / "run"
    train.main(quick_run(output_dir, "--use_lora", "True", "--builtin_clips", "carphone_pristine",
                         "--num_frames", "4", "--per_device_train_batch_size", "2", "--learning_rate", "0.01"))
    adapter_config = json.loads((output_dir / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str((output_dir / "base").resolve())
    assert "from_pretrained" in (output_dir / "adapter" / "README.md").read_text()
    for folder in ("base", "final"):
        assert (output_dir / folder / "model.safetensors").exists() and (output_dir / folder / "README.md").exists()
    base = LlavaNextARForConditionalGeneration.from_pretrained(adapter_config["base_model_name_or_path"])
    teacher_before = {k: v.clone() for k, v in base.state_dict().items() if "teacher" in k}
    merged = PeftModel.from_pretrained(base, output_dir / "adapter").merge_and_unload()
    final = LlavaNextARForConditionalGeneration.from_pretrained(output_dir / "final")
    expected = final.state_dict()
    for name, value in merged.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
    assert all(torch.equal(value, expected[name]) for name, value in teacher_before.items())


# ----------------------------------------------------------------------------------------------------------------
# Item 12: an output_dir that holds a run is not silently mixed with a new one


def test_output_dir_with_a_run_is_refused_unless_resumed_or_overwritten(tmp_path):
    output_dir = tmp_path / "run"
    (output_dir / "checkpoint-30").mkdir(parents=True)
    flags = quick_run(output_dir, "--builtin_clips", "carphone_pristine", "--num_frames", "4")
    with pytest.raises(train.ConfigError, match="checkpoint-30"):
        train.main(flags)
    train.main([*flags, "--overwrite_output_dir", "True"])


# ----------------------------------------------------------------------------------------------------------------
# Item 10: the frame-mask plot is drawn for the frames the objective really gets


def test_frame_mask_uses_the_objectives_frame_count(tmp_path):
    model_args, *_ = train.parse_arguments(["--output_dir", str(tmp_path)])
    model, processor = train.build_tiny_model_and_processor(
        model_args, ["a"], {"use_fast_slow_frames": True, "num_fast": 4, "num_slow": 4, "fast_stride": 1,
                            "slow_stride": 4},
    )
    rows = [{"video": "unused.mp4", "start_frame": 0, "num_frames": 24}]
    clip = torch.randint(0, 255, (24, 64, 64, 3), dtype=torch.uint8)
    expected = processor(text="<video>", videos=clip, return_tensors="pt")["video_frames"].shape[1]
    assert train.example_frame_count(rows, processor) == expected != 24
    path = Path(train.frame_mask_png(model.config, expected, tmp_path, model))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for num_hist, frame_causal in ((None, True), (2, True), (2, False)):  # the model's mask and the utilities agree
        model.autoregressive_module.predictor.num_hist = num_hist
        model.autoregressive_module.predictor.token_causal = not frame_causal
        model.config.autoregressive_config.update(num_hist=num_hist, use_frame_causal_mask=frame_causal)
        drawn = Path(train.frame_mask_png(model.config, expected, tmp_path, model)).read_bytes()
        assert drawn == Path(train.frame_mask_png(model.config, expected, tmp_path)).read_bytes()
