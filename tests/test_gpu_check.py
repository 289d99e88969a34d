"""benchmarks/gpu_check.sh (issue 17): the one-GPU check runs end to end in its CPU `--quick` form, and its causality
check catches a prediction that reads a later frame. No timing is asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import ROOT, load_script


def run_gpu_check(results: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(results), "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_quick_form_prints_the_table_and_writes_step_ratios_causality_and_memory(tmp_path):
    frames = 4
    result = run_gpu_check(tmp_path, "--quick", "--frames", str(frames))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "time AR/base" in result.stdout and "causality holds" in result.stdout
    payload = json.loads((tmp_path / "gpu_check_quick.json").read_text())

    rows = payload["step"]["rows"]
    assert [(row["case"], row["variant"]) for row in rows] == [
        ("default", "AR"), ("frozen", "AR, teacher recomputes"), ("frozen", "AR, teacher reused"), ("shared", "AR"),
    ]
    for row in rows:
        assert row["T"] == frames and row["P"] == 49
        assert row["ratio_seconds"] == pytest.approx(row["ar_seconds"] / row["base_seconds"])
        assert row["ar_peak_mib"] > 0 and row["base_peak_mib"] > 0

    modes = payload["causality"]["modes"]
    assert modes["teacher copy"]["teacher_forwards_per_forward"] == 1
    assert modes["frozen tower, teacher reused"]["teacher_forwards_per_forward"] == 0
    for mode in modes.values():
        assert mode["causal"] and mode["earlier_predictions_max_abs_change"] == 0.0
        assert [entry["perturbed_frame"] for entry in mode["per_frame"]] == list(range(frames))
        assert all(entry["next_max_abs_change"] > 0 for entry in mode["per_frame"][:-1])
        assert mode["per_frame"][-1]["next_max_abs_change"] is None  # the last frame predicts nothing


def test_causality_check_catches_a_prediction_that_reads_a_later_frame():
    """Mixing each prediction with the predictions' mean over frames (a leak from every later frame into the
    earlier ones) is reported as not causal, with the change it caused."""
    gpu_check = load_script("gpu_check", folder="benchmarks")
    model_specs = load_script("model_specs", folder="benchmarks")
    bench_step = load_script("bench_step", folder="benchmarks")

    spec = bench_step.quick_spec(model_specs.load_spec(None))
    _, model = model_specs.build_pair(spec, 7, share_weights=True)
    model.eval()
    batch = model_specs.make_batch(model.config, spec, 4)
    assert gpu_check.causality(model, batch, freeze_tower=False)["causal"]

    leak = model.autoregressive_module.predictor.register_forward_hook(
        lambda module, args, output: output + output.mean(dim=1, keepdim=True)
    )
    try:
        result = gpu_check.causality(model, batch, freeze_tower=False)
    finally:
        leak.remove()
    assert not result["causal"] and result["earlier_predictions_max_abs_change"] > 0


def test_refuses_bad_arguments_by_name(tmp_path):
    result = run_gpu_check(tmp_path, "--quick", "--frames", "1")
    assert result.returncode == 2 and "--frames must be >= 2, got 1" in result.stderr
    result = run_gpu_check(tmp_path, "--speed")
    assert result.returncode == 2 and "unknown argument '--speed'" in result.stderr
    if not torch.cuda.is_available():
        result = run_gpu_check(tmp_path)
        assert result.returncode == 2 and "torch sees no CUDA device" in result.stderr
