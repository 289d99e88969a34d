"""Cost of the predictor's self-attention at a fixed width for different head counts (same FLOPs), on this machine.

Why the CPU spec of the benchmarks gives the predictor 2 heads: at the CPU width 64, the model's default 8 heads
leave a head dimension of 8, and PyTorch's CPU attention kernel is several times slower per FLOP there than at 32
(the LLM's head dimension in the same spec; at 7B the predictor's is 1152 / 8 = 144). Shapes are those of one
predictor layer at T=16, P=729, num_hist=3: 15 query frames of 729 patches, each reading 3 x 729 keys, with the
frame-window mask.

    python benchmarks/attention_head_dim.py
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measurement  # noqa: E402
import report  # noqa: E402


def step_seconds(heads: int, head_dim: int, frames: int, patches: int, hist: int, repeats: int) -> float:
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(frames, heads, patches, head_dim, generator=generator, requires_grad=True)
    k = torch.randn(frames, heads, hist * patches, head_dim, generator=generator, requires_grad=True)
    v = torch.randn(frames, heads, hist * patches, head_dim, generator=generator, requires_grad=True)
    mask = torch.ones(frames, 1, 1, hist * patches, dtype=torch.bool)
    mask[0, ..., : (hist - 1) * patches] = False
    times = []
    for _ in range(repeats + 1):
        started = time.perf_counter()
        F.scaled_dot_product_attention(q, k, v, attn_mask=mask).sum().backward()
        times.append(time.perf_counter() - started)
    return min(times[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--frames", type=int, default=15)
    parser.add_argument("--patches", type=int, default=729)
    parser.add_argument("--hist", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for heads in (8, 4, 2, 1):
        seconds = step_seconds(heads, args.width // heads, args.frames, args.patches, args.hist, args.repeats)
        rows.append({"heads": heads, "head_dim": args.width // heads, "seconds": seconds})
    for row in rows:
        row["relative"] = row["seconds"] / rows[-1]["seconds"]
    print(f"# SDPA forward + backward, width {args.width}, {args.frames} query frames x {args.patches} patches, "
          f"{args.hist} x {args.patches} keys (best of {args.repeats})\n")
    print(report.table(rows, [("heads", "heads", "d"), ("head_dim", "head dim", "d"), ("seconds", "s", ".3f"),
                              ("relative", "vs 1 head", ".2f")]))
    payload = {"benchmark": "attention_head_dim", "machine": measurement.machine(), "args": vars(args), "rows": rows}
    report.write_json("attention_head_dim.json", payload)


if __name__ == "__main__":
    main()
