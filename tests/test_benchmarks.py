"""The benchmark scripts run (tiny `--quick` shapes) and write what their README reads. No timing is asserted."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT, load_script


def run(script: str, *args: str, results: Path) -> str:
    env = {**os.environ, "BENCH_RESULTS_DIR": str(results), "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("bench_results")


def test_bench_step_quick_compares_base_and_ar_on_the_same_weights(results):
    out = run("bench_step.py", "--quick", "--threads", "1", results=results)
    payload = json.loads((results / "bench_step_quick.json").read_text())
    cases = {row["case"] for row in payload["rows"]}
    assert cases == {"default", "frozen", "shared"}
    frozen = next(row for row in payload["rows"] if row["case"] == "frozen")
    # the frozen tower's forward doubles as the teacher's, and the result is the same as recomputing it
    assert (frozen["teacher_runs_reuse"], frozen["teacher_runs_recompute"]) == (0, 1)
    assert frozen["aux_loss_abs_difference"] == 0
    assert all(row["ratio_seconds"] > 0 and row["ratio_peak_mib"] == row["ratio_peak_mib"] for row in payload["rows"])
    assert "time AR/base" in out and (results / "bench_step_quick.png").stat().st_size > 0


def test_bench_scaling_quick_runs_module_and_naive(results):
    out = run("bench_scaling.py", "--quick", "--threads", "1", results=results)
    payload = json.loads((results / "bench_scaling_quick.json").read_text())
    assert all("module_seconds" in row and "naive_seconds" in row for row in payload["rows"])
    assert "target speed-up vs naive" in out


def test_bench_scaling_teacher_and_naive_width_options(results):
    options = ("--quick", "--threads", "1", "--frames", "4", "--grids", "7")
    run("bench_scaling.py", *options, "--out", "same", results=results)
    given = ("--teacher", "given", "--naive-width", "llm")
    run("bench_scaling.py", *options, *given, "--out", "given_llm", results=results)
    same, given_llm = (json.loads((results / f"{name}.json").read_text())["rows"][0] for name in ("same", "given_llm"))
    assert same["module_teacher_runs_per_step"] == same["naive_teacher_runs_per_step"] == 1
    assert given_llm["module_teacher_runs_per_step"] == given_llm["naive_teacher_runs_per_step"] == 0
    assert given_llm["module_trainable_params"] == same["module_trainable_params"]
    assert given_llm["naive_trainable_params"] > 2 * same["naive_trainable_params"]  # LLM width 256 vs 64


def test_flops_reads_the_bench_step_results(results):
    out = run("flops.py", "--bench", str(results / "bench_step_quick.json"), results=results)
    payload = json.loads((results / "flops.json").read_text())
    default = next(row for row in payload["real"] if row["T"] == 16 and row["mode"] == "default")
    assert 1.0 < default["ratio"] < 1.2  # 7B shapes, predictor at the teacher width
    assert {row["case"] for row in payload["bench_config"]} >= {"default", "frozen", "frozen+reuse", "shared"}
    assert "analytic FLOP ratio vs measured time ratio" in out


def test_the_7b_config_keeps_the_model_defaults_the_cpu_spec_changes():
    model_specs = load_script("model_specs", folder="benchmarks")

    spec = model_specs.load_spec(str(ROOT / "benchmarks" / "configs" / "llava_next_video_7b_siglip.json"))
    assert spec["autoregressive_config"] == {"num_heads": 8}  # 8 heads of 144 at the teacher width 1152
    assert spec["text_config"]["num_hidden_layers"] == 32 and spec["vision_config"]["num_hidden_layers"] == 27


def test_bench_data_measures_the_three_data_paths(tmp_path):
    """In process, on a short clip (the script's subprocess and DataLoader runs cost ~1 min on a loaded machine)."""
    bench_data = load_script("bench_data", folder="benchmarks")
    clip = bench_data.make_clip(tmp_path / "clip.mp4", 1, 144)
    results = {method: bench_data.one_clip(method, str(clip), 64, 4, 1) for method in ("old", "load_video", "ours")}
    assert all(result["seconds"] > 0 and result["peak_rss_mib"] >= result["baseline_rss_mib"]
               for result in results.values())
