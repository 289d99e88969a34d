"""`scripts/train.py` under `accelerate launch --multi_gpu --num_processes 2` on CPU (DDP over gloo), issue 12:
activation checkpointing works without find_unused_parameters, and a launch that would not be distributed stops."""

import os
import subprocess
import sys
from pathlib import Path

from helpers import ROOT, free_port


def launch(tmp_path: Path, *flags: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", free_port(),
        str(ROOT / "scripts" / "train.py"), "--output_dir", str(tmp_path / "run"), "--max_steps", "2",
        "--builtin_clips", "carphone_pristine", "--num_frames", "4", "--per_device_train_batch_size", "2",
        "--report_to", "none", "--save_strategy", "no", "--plots", "False", "--reload_check", "False",
        "--disable_tqdm", "True", "--logging_steps", "1", "--decode_size", "32", *flags,
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)


def test_ddp_with_activation_checkpointing_trains_without_find_unused_parameters(tmp_path):
    """The README's combination: parameters that get no gradient (image_newline, the vision layer after
    vision_feature_layer, post_layernorm) are frozen before DDP wraps the model, so find_unused_parameters=False
    works (no "Expected to have finished reduction in the prior iteration")."""
    result = launch(tmp_path, "--use_cpu", "True", "--activation_checkpointing", "True")
    assert result.returncode == 0, result.stderr[-5000:]
    assert "step    2: loss" in result.stdout
    assert "without find_unused_parameters: model.image_newline" in result.stderr
    assert (tmp_path / "run" / "final" / "model.safetensors").exists()


def test_launch_that_would_train_two_independent_copies_stops(tmp_path):
    """Without use_cpu on a GPU-less machine, recent accelerate starts processes that would each train alone (and both
    write final/): the run stops. accelerate 1.10 (the oldest supported) gives DDP over gloo there instead, which is a
    real distributed run (the DDP set-up line says so) and must go on."""
    result = launch(tmp_path)
    if result.returncode == 0:
        assert "so DDP runs without find_unused_parameters" in result.stderr, result.stderr[-3000:]
        assert "each trains alone" not in result.stderr
        return
    assert "each trains alone" in result.stderr and "--use_cpu True" in result.stderr
    assert not (tmp_path / "run" / "final").exists()
