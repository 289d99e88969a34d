"""What every benchmark script shares on its command line: `--config`, `--threads`, `--package`, `--out`.

The helpers live in three modules, by job:

- `measurement.py`: peak memory, timing on a shared machine, the machine a result was measured on;
- `model_specs.py`: the spec (sizes as JSON) -> config, (base, AR) pair with the same weights, batch;
- `report.py`: markdown tables, JSON and PNGs under `RESULTS`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from model_specs import load_spec


ROOT = Path(__file__).resolve().parent.parent


def use_package(path: str | None) -> None:
    """Import `llava_next_ar` from `path` (a directory holding the package; e.g. a patched copy), else the repo."""
    sys.path.insert(0, str(Path(path).resolve() if path else ROOT))


def add_common_arguments(parser: argparse.ArgumentParser, out: str | None = None) -> None:
    """The options every measuring script takes: --config, --threads, --package, --out."""
    parser.add_argument("--config", help="JSON overriding the CPU default spec (see model_specs.CPU_DEFAULT)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--package", help="import llava_next_ar from this directory (e.g. a patched copy)")
    parser.add_argument("--out", default=out, help="JSON/PNG name stem under benchmarks/results/")


def start(args: argparse.Namespace) -> dict:
    """Apply --package and --threads; return the spec (CPU default + --config)."""
    use_package(args.package)
    torch.set_num_threads(args.threads)
    return load_spec(args.config)
