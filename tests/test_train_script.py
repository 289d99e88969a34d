"""`scripts/train.py` (the main job) and its data: manifests, decoding only the sampled frames, bad rows."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, load_script


video_data = load_script("video_data")


CLIP = str(video_data.builtin_clips_dir() / "carphone_pristine.mp4")


def test_main_job_trains_saves_and_reloads_in_a_fresh_process(tmp_path):
    """README command 1, shortened: real clips, TensorBoard logs, mask + loss PNGs, a remote-code checkpoint that a
    fresh process loads with `AutoModelForImageTextToText.from_pretrained(..., trust_remote_code=True)`."""
    output_dir = tmp_path / "run"
    command = [
        sys.executable, str(ROOT / "scripts" / "train.py"), str(ROOT / "configs" / "tiny_builtin_clips.yaml"),
        "--output_dir", str(output_dir), "--max_steps", "4", "--logging_steps", "2", "--save_steps", "4",
        "--builtin_clips", "carphone_pristine", "--num_frames", "4", "--per_device_train_batch_size", "2",
        "--disable_tqdm", "True",
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    out = result.stdout
    assert "loaded LlavaNextARForConditionalGeneration from transformers_modules." in out
    assert "loaded LlavaNextARProcessor from transformers_modules." in out
    assert "autoregressive_loss=" in out and "step    4: loss" in out
    final = output_dir / "final"
    for name in ("config.json", "model.safetensors", "modeling_llava_next_ar.py", "processing_llava_next_ar.py",
                 "processor_config.json", "README.md"):
        assert (final / name).exists(), name
    assert (output_dir / "frame_mask.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (output_dir / "losses.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = list(output_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = set()
    for event in events:
        accumulator = EventAccumulator(str(event))
        accumulator.Reload()
        tags |= set(accumulator.Tags()["scalars"])
    assert {"train/loss", "train/main_loss", "train/autoregressive_loss"} <= tags

    # continue fine-tuning the saved checkpoint, with an autoregressive_config override
    command = [
        sys.executable, str(ROOT / "scripts" / "train.py"), "--model_name_or_path", str(final),
        "--output_dir", str(tmp_path / "again"), "--max_steps", "1", "--logging_steps", "1", "--use_cpu", "True",
        "--builtin_clips", "carphone_pristine", "--num_frames", "4", "--per_device_train_batch_size", "2",
        "--report_to", "none", "--save_strategy", "no", "--plots", "False", "--disable_tqdm", "True",
        "--autoregressive_config", '{"loss_weight": 0.5}',
    ]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-5000:]
    saved = json.loads((tmp_path / "again" / "final" / "config.json").read_text())
    assert saved["autoregressive_config"]["loss_weight"] == 0.5


def test_manifest_formats_agree(tmp_path):
    (tmp_path / "rows.jsonl").write_text(json.dumps({"video": CLIP, "caption": "a man talks"}) + "\n")
    (tmp_path / "rows.csv").write_text(f"video,answer,prompt\n{CLIP},a man talks,USER: <video> what? ASSISTANT:\n")
    (tmp_path / "rows.json").write_text(json.dumps([{"video": CLIP, "conversations": [
        {"from": "human", "value": "<video>\nwhat?"}, {"from": "gpt", "value": "a man talks"}]}]))
    folder = tmp_path / "clips"
    folder.mkdir()
    os.symlink(CLIP, folder / "carphone.mp4")
    (folder / "carphone.txt").write_text("a man talks\n")
    for source in ("rows.jsonl", "rows.csv", "rows.json", "clips"):  # every format becomes a chat
        (row,) = video_data.read_manifest(tmp_path / source)
        question, answer = row["conversations"]
        assert answer == {"from": "gpt", "value": "a man talks"} and "<video>" in question["value"]
        assert Path(row["video"]).exists()


def test_dataset_decodes_only_the_sampled_frames_and_names_bad_rows(tmp_path, caplog):
    train = load_script("train")

    model_args, *_ = train.parse_arguments(["--output_dir", str(tmp_path), "--tiny_image_size", "32",
                                            "--tiny_patch_size", "8", "--tiny_hidden_size", "32"])
    _, processor = train.build_tiny_model_and_processor(model_args, "what happens a man talks".split(), {})
    rows = [video_data.normalise_row(row, Path("/"), index=index)
            for index, row in enumerate(
                video_data.builtin_clips_manifest(["carphone_pristine"], num_frames=4, window_stride=50))]
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    rows.append({**rows[1], "video": str(broken)})
    log = video_data.SkipLog()
    dataset = video_data.VideoChatDataset(rows, processor, log)
    second = dataset[1]
    assert second["video"].video_frame_indices.tolist() == [50, 51, 52, 53]  # the row's window, only it decoded
    assert second["video"].frames.shape == (4, 32, 39, 3)  # working size: shortest edge 32, 176x144's aspect kept
    replaced = dataset[len(rows) - 1]  # the broken row is skipped: the next usable row (wrapping to row 0) instead
    assert replaced["video"].video_frame_indices.tolist() == [0, 1, 2, 3]
    assert log.summary() == {"undecodable": 1} and str(broken) in caplog.text
    strict = video_data.VideoChatDataset(rows, processor, video_data.SkipLog(raise_errors=True))
    with pytest.raises(video_data.BadRowError, match=r"broken.mp4\): undecodable"):
        strict[len(rows) - 1]


def test_collator_masks_the_prompt_and_padding_in_labels():
    import torch
    from tiny_tokenizer import tiny_processor as make_processor

    from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator

    processor = make_processor()
    clip = torch.randint(0, 255, (4, 40, 40, 3), dtype=torch.uint8)
    examples = [
        {"video": clip, "prompt": "user : <video> what happens ? assistant :", "answer": "a man is talking"},
        {"video": clip, "prompt": "user : <video> describe the video assistant :", "answer": "a car"},
        {"video": None, "prompt": "user : <video> what ? assistant :", "answer": "dropped: failed to decode"},
    ]
    batch = LlavaNextARDataCollator(processor)(examples)
    assert batch["input_ids"].shape[0] == 2 and batch["video_frames"].shape[:2] == (2, 4)
    tokenizer = processor.tokenizer
    for row, answer in enumerate(["a man is talking", "a car"]):
        learned = batch["labels"][row][batch["labels"][row] != -100]
        assert learned.tolist() == tokenizer(answer, add_special_tokens=False)["input_ids"]
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


def test_activation_checkpointing_and_bf16_flags_pass_through(tmp_path):
    import torch

    train = load_script("train")
    trainer = train.main([
        str(ROOT / "configs" / "tiny_builtin_clips.yaml"), "--output_dir", str(tmp_path), "--max_steps", "1",
        "--builtin_clips", "carphone_pristine", "--num_frames", "4", "--per_device_train_batch_size", "2",
        "--activation_checkpointing", "True", "--bf16", "True", "--report_to", "none", "--save_strategy", "no",
        "--logging_steps", "1",
        "--plots", "False", "--reload_check", "False", "--disable_tqdm", "True",
    ])
    model = trainer.model
    assert trainer.args.activation_checkpointing and trainer.args.bf16
    assert model.autoregressive_module.predictor.layers[0].gradient_checkpointing
    assert model.model.language_model.layers[0].gradient_checkpointing
    log = next(entry for entry in trainer.state.log_history if "autoregressive_loss" in entry)
    assert math.isfinite(log["loss"]) and log["autoregressive_loss"] > 0
    assert torch.is_autocast_enabled("cpu") is False  # autocast was scoped to the steps
