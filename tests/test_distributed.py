"""Multi-process training on CPU: `accelerate launch` DDP (gloo) with the vanilla Trainer."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import free_port


HERE = Path(__file__).resolve().parent


def test_accelerate_launch_ddp_two_processes(tmp_path):
    """2 CPU processes: finite losses on every logging step, identical weights on both ranks, teacher frozen."""
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", free_port(),
        str(HERE / "distributed" / "ddp_worker.py"), str(tmp_path),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    reports = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)
               if (tmp_path / f"rank{rank}.json").exists()]
    assert len(reports) == 2, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"the work was done but a process did not exit cleanly:\n{result.stderr[-5000:]}"
    assert all(report["world_size"] == 2 for report in reports)
    assert all(report["wrapped"] == "DistributedDataParallel" for report in reports), reports[0]["distributed_type"]
    assert reports[0]["weights_sha256"] == reports[1]["weights_sha256"]
    assert all(report["teacher_unchanged"] and report["teacher_frozen"] for report in reports)
    logs = reports[0]["logs"]
    assert [entry["step"] for entry in logs] == [1, 2, 3]
    for entry in logs:
        assert all(math.isfinite(entry[key]) for key in ("loss", "main_loss", "autoregressive_loss"))
        assert entry["autoregressive_loss"] > 0
    assert reports[0]["logs"] == reports[1]["logs"]  # components are all-reduced: every rank logs the same


def test_fsdp2_sharding_matches_one_process(tmp_path):
    """Raw FSDP2 (`fully_shard` by `_no_split_modules`, torchrun, gloo): the sharded run takes the same steps as one
    unsharded process on both ranks' data; the teacher is sharded like any module and stays unchanged."""
    report_path = tmp_path / "fsdp.json"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
        str(HERE / "distributed" / "fsdp_worker.py"), str(report_path),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert report_path.exists(), f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"the work was done but a process did not exit cleanly:\n{result.stderr[-5000:]}"
    report = json.loads(report_path.read_text())
    assert report["sharded_units"] >= 6  # 2 CLIP + 2 Llama + 2 predictor layers (+ the teacher's CLIP layers)
    assert report["max_abs_error_vs_single_process"] < 1e-6
    assert report["teacher_unchanged"] and report["teacher_is_sharded"]


def test_zero3_teacher_is_the_tower_after_loading_a_plain_checkpoint_and_building_from_config(tmp_path):
    """DeepSpeed ZeRO-3 (2 processes, CPU accelerator, gloo): parameters are partitioned at construction, so the
    teacher must be copied from the gathered tower after the weights are loaded (`from_pretrained` of a plain
    LLaVA-NeXT-Video checkpoint) or initialised (`from_config`), never from empty partitions."""
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):  # CI installs the [deepspeed] extra
        pytest.importorskip("deepspeed", reason="DeepSpeed is the optional [deepspeed] extra")
    import torch
    from helpers import base_twin, tiny_model

    plain = tmp_path / "plain"
    base_twin(tiny_model(dtype=torch.float32)).to(torch.float32).save_pretrained(plain)
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
        str(HERE / "distributed" / "zero3_worker.py"), str(plain), str(tmp_path),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1", "DS_ACCELERATOR": "cpu"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    reports = [json.loads(path.read_text()) for path in sorted(tmp_path.glob("rank*.json"))]
    assert len(reports) == 2, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-5000:]}"
    assert result.returncode == 0, f"the work was done but a process did not exit cleanly:\n{result.stderr[-5000:]}"
    for report in reports:
        assert report["partitioned"]  # ZeRO-3 really partitioned the model
        assert report["loaded_teacher_vs_tower"] == 0.0 and report["built_teacher_vs_tower"] == 0.0
        assert not report["teacher_trainable"]


def test_a_launched_process_that_exits_without_finalizing_survives_native_threads_still_in_a_collective(tmp_path):
    """The exit-time abort of engine launches, made deterministic (tests/distributed/exit_worker.py): a native thread
    still inside gloo when rank 1's work is done needs the interpreter back during its teardown. A normal exit then
    aborts ("terminate called without an active exception", exit -6); `train.exit_without_finalizing`, which
    train.py and these workers call at the end of a launched process, exits 0."""
    outcomes = {}
    for mode in ("normal", "hard"):
        command = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", free_port(),
            str(HERE / "distributed" / "exit_worker.py"), mode,
        ]
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
        outcomes[mode] = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    hard = outcomes["hard"]
    assert hard.returncode == 0 and "terminate called" not in hard.stderr, hard.stderr[-5000:]
    if sys.version_info < (3, 14):  # 3.14 parks such a thread instead of unwinding it: no abort to show
        normal = outcomes["normal"]
        assert normal.returncode != 0 and "terminate called without an active exception" in normal.stderr, (
            f"the scenario no longer shows the hazard (exit {normal.returncode}):\n{normal.stderr[-3000:]}"
        )


EXIT_SCRIPT = r"""
import atexit, sys, threading, time
sys.path.insert(0, sys.argv[1])
from train import exit_without_finalizing

folder = sys.argv[2]
atexit.register(lambda: open(folder + "/atexit", "w").write("ran"))
def late_writer():
    time.sleep(0.5)
    open(folder + "/thread", "w").write("joined")
threading.Thread(target=late_writer).start()
print("buffered, no newline", end="")
exit_without_finalizing()
print("never printed")
"""


def test_exit_without_finalizing_still_does_what_a_normal_exit_does_first(tmp_path):
    """It waits for non-daemon threads, runs the atexit handlers and flushes output (what a normal exit does before
    the interpreter's teardown), and exits 0."""
    result = subprocess.run([sys.executable, "-c", EXIT_SCRIPT, str(HERE.parent / "scripts"), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout == "buffered, no newline"
    assert (tmp_path / "atexit").read_text() == "ran" and (tmp_path / "thread").read_text() == "joined"
