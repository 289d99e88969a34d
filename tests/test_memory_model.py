"""benchmarks/memory.py, the analytic per-GPU memory of the README's "Scale out" table (issue 17): the script runs,
its numbers obey what each engine shards, and the README's table is its output."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT


def test_memory_model_writes_the_table_the_readme_shows(tmp_path):
    """benchmarks/memory.py: ZeRO-3 and FSDP2 shard everything, ZeRO-2 only gradients and optimizer states, DDP
    nothing; the README's Scale out table is this script's output at 16 GPUs."""
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory.py")], env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((tmp_path / "memory.json").read_text())["rows"]
    pick = {(r["T"], r["teacher"], r["activation_checkpointing"], r["engine"]): r for r in rows}
    for frames in (16, 32):
        ddp, zero2, zero3, fsdp = (pick[frames, "copy", True, name] for name in ("DDP", "ZeRO-2", "ZeRO-3", "FSDP2"))
        assert ddp["optimizer"] == pytest.approx(16 * zero2["optimizer"]) and zero2["weights"] == ddp["weights"]
        assert zero3["weights"] < zero2["weights"] / 8 and zero3["total"] == pytest.approx(fsdp["total"], rel=0.01)
        assert pick[frames, "copy", False, "DDP"]["activations"] > 4 * ddp["activations"]
        assert pick[frames, "shared", True, "DDP"]["weights"] < ddp["weights"]  # no teacher copy
    readme = (ROOT / "README.md").read_text()
    for engine in ("DDP", "ZeRO-2", "ZeRO-3", "FSDP2"):
        r16, r32 = pick[16, "copy", True, engine], pick[32, "copy", True, engine]
        line = (f"| {engine} | {r16['weights']:.1f} | {r16['grads']:.1f} | {r16['optimizer']:.1f} | "
                f"{r16['activations']:.1f} / {r32['activations']:.1f} | {r16['total']:.1f} | {r32['total']:.1f} | "
                f"{pick[32, 'copy', False, engine]['total']:.1f} |")
        assert line in readme, line
