"""Scaling of the auxiliary module alone (teacher + predictor + loss, forward + backward) in T and P.

`model.autoregressive_module` of a `LlavaNextARForConditionalGeneration` (CPU default widths, see `model_specs.py`)
is run on `video_frames [1, T, 3, H, W]` and random LLM hidden states `[1, L, C]` (requires grad, as in training) for
T in {4, 8, 16, 32} and P in {49, 196, 729} (patch grids 7, 14, 27). In the same run, interleaved, the *naive dense*
path: the same teacher, then a standard `nn.TransformerDecoder` (same width, heads, layers, MLP ratio; pre-norm)
over the full `T'*P` token sequence with the materialised `[T'*P, T'*P]` frame-causal mask of
`FrameLevelMaskGenerator.create_causal_frame_mask` as `tgt_mask` and a dense `[T'*P, L]` `memory_mask` (the
leak-free cross-attention the seed omitted). Prints time and peak memory, the fitted growth exponents in T*P, and
checks the targets: peak-memory exponent <= 1.15 from P=196 to 729 at T=16; at T=16, P=729 the module >= 3x faster
and >= 5x less peak memory than the naive path. A configuration predicted to need more than --max-gib or --max-seconds
(per run) is skipped and reported as such.

    python benchmarks/bench_scaling.py            # ~5 min on 2 cores
    python benchmarks/bench_scaling.py --quick    # smoke run
"""

from __future__ import annotations

import os

# Before torch loads OpenMP: idle workers sleep instead of spinning (see measurement.py, 'Timing on a shared machine').
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import functools
import gc
import math
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import measurement  # noqa: E402
import model_specs  # noqa: E402
import report  # noqa: E402


class NaiveDenseModule(nn.Module):
    """
    The obvious implementation: teacher -> Linear(D, C) + frame-time embedding -> `nn.TransformerDecoder` over all
    `T'*P` context tokens with a dense frame-causal `tgt_mask` and a dense `memory_mask` -> LayerNorm -> Linear(C, D);
    MSE against the next frame's teacher features. Same heads/layers/MLP ratio as the module's predictor; same width
    unless `width` is given (`--naive-width llm`: the LLM width, as the seed projects).
    """

    def __init__(self, config, module: nn.Module, width: int | None = None):
        super().__init__()
        ar = config.autoregressive_config
        llm_width = config.text_config.hidden_size
        width = width or ar["predictor_hidden_size"]  # default: the module's predictor width
        # The module's teacher and feature selection (`encode_frames`): same frozen weights, same targets, same cost.
        self.encode_frames = module.encode_frames
        self.loss_weight = ar["loss_weight"]
        self.embed = nn.Linear(ar["embedding_dim"], width)
        self.time_embed = nn.Embedding(4096, width)
        layer = nn.TransformerDecoderLayer(
            width, ar["num_heads"], int(width * ar["mlp_ratio"]), dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )
        self.decoder = nn.TransformerDecoder(layer, ar["num_layers"])
        self.memory_proj = nn.Linear(llm_width, width) if width != llm_width else nn.Identity()
        self.norm = nn.LayerNorm(width)
        self.proj_out = nn.Linear(width, ar["embedding_dim"])

    def forward(self, video_frames, hidden_states, hidden_states_frame_indices, teacher_features=None):
        from llava_next_ar import FrameLevelMaskGenerator

        features = self.encode_frames(video_frames) if teacher_features is None else teacher_features  # [B,T,P,D]
        batch, frames, patches, _ = features.shape
        context = features[:, :-1]
        times = torch.arange(frames - 1, device=features.device)
        x = self.embed(context) + self.time_embed(times)[None, :, None]
        x = x.flatten(1, 2)  # [B, N, C], N = (T-1)*P
        frame_mask = FrameLevelMaskGenerator.create_causal_frame_mask(frames - 1, patches, device=features.device)
        tgt_mask = ~frame_mask  # PyTorch: True = masked
        # Context frame t predicts frame t+1: it may read LLM positions whose receptive field ends before t+1.
        receptive_field = hidden_states_frame_indices.cummax(dim=1).values[0]  # [L] (batch of one)
        allowed = receptive_field[None, :] < (times + 1)[:, None]  # [T-1, L]
        memory_mask = ~allowed.repeat_interleave(patches, dim=0)  # [N, L]
        y = self.decoder(x, self.memory_proj(hidden_states), tgt_mask=tgt_mask, memory_mask=memory_mask)
        predictions = self.proj_out(self.norm(y)).view(batch, frames - 1, patches, -1)
        frame_losses = (predictions - features[:, 1:]).pow(2).mean(dim=(-2, -1))
        return self.loss_weight * frame_losses.mean()


def make_inputs(model, spec, frames: int, seed: int = 0):
    """video_frames [1, T, 3, H, W]; LLM hidden states [1, L, C] (requires grad) and their frame indices."""
    batch = model_specs.make_batch(model.config, spec, frames, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    length = batch["input_ids"].shape[1]
    hidden = torch.randn(1, length, model.config.text_config.hidden_size, generator=generator).requires_grad_(True)
    frame_indices = model.hidden_states_frame_indices(
        model.video_token_mask(batch["input_ids"], None), torch.arange(frames)[None]
    )
    return batch["pixel_values_videos"], hidden, frame_indices, batch["attention_mask"], None


def module_step(module, inputs):
    frames, hidden, frame_indices, attention_mask, features = inputs
    module.zero_grad(set_to_none=True)
    hidden.grad = None
    out = module(frames, hidden_states=hidden, hidden_states_frame_indices=frame_indices,
                 attention_mask=attention_mask, teacher_features=features)
    out.loss.backward()


def naive_step(naive, inputs):
    frames, hidden, frame_indices, _, features = inputs
    naive.zero_grad(set_to_none=True)
    hidden.grad = None
    naive(frames, hidden, frame_indices, teacher_features=features).backward()


def fit_exponent(xs, ys) -> float:
    """Slope of log y against log x (least squares)."""
    pairs = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if y and y > 0 and y == y]
    if len(pairs) < 2:
        return float("nan")
    mx = sum(p[0] for p in pairs) / len(pairs)
    my = sum(p[1] for p in pairs) / len(pairs)
    den = sum((p[0] - mx) ** 2 for p in pairs)
    return sum((p[0] - mx) * (p[1] - my) for p in pairs) / den


def naive_memory_estimate_gib(n_tokens: int, num_layers: int) -> float:
    """Dense masks: bool [N, N] + one float copy per layer kept for backward (+1 transient)."""
    return n_tokens**2 * (1 + 4 * (num_layers + 1)) / 2**30


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--frames", type=int, nargs="+", help="default 4 8 16 32")
    parser.add_argument("--grids", type=int, nargs="+", help="patch-grid sides, default 7 14 27 (P = 49, 196, 729)")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of quick configs (slow ones: 1); time = best")
    parser.add_argument("--slow-seconds", type=float, default=20.0,
                        help="configs whose predicted run exceeds this get 1 repeat")
    parser.add_argument("--max-seconds", type=float, default=300.0, help="skip a path predicted to run longer")
    parser.add_argument("--max-gib", type=float, default=12.0, help="skip a path predicted to need more memory")
    parser.add_argument("--no-naive", action="store_true")
    parser.add_argument("--teacher", choices=("run", "given"), default="run",
                        help="run: both paths run the teacher (the module as defined); given: both get the teacher "
                             "features precomputed (the frozen-tower case, where the model reuses its vision forward)")
    parser.add_argument("--naive-width", choices=("predictor", "llm"), default="predictor",
                        help="naive decoder width: the module's predictor width (isolates the attention structure; "
                             "the targets) or the LLM width (the seed's design, as a public implementation runs it)")
    _common.add_common_arguments(parser)
    args = parser.parse_args(argv)
    spec = _common.start(args)
    if args.quick:
        args.frames = args.frames or [4, 8]
        args.grids = args.grids or [7, 14]
        args.repeats = 1
    args.frames = sorted(args.frames or [4, 8, 16, 32])
    args.grids = sorted(args.grids or [7, 14, 27])
    stem = args.out or ("bench_scaling_quick" if args.quick else "bench_scaling")

    import llava_next_ar
    from llava_next_ar import LlavaNextARForConditionalGeneration

    info = measurement.machine()
    info["load_average_start"] = os.getloadavg()
    print(f"# bench_scaling ({info['cpu']}, {info['nproc']} cores, torch {info['torch']}, threads {args.threads}; "
          f"llava_next_ar from {Path(llava_next_ar.__file__).parent})")
    print(f"# peak-memory calibration: a 256 MiB tensor reads as {measurement.calibrate_peak_memory(256):.1f} MiB")
    started = time.perf_counter()
    rows = []
    for grid in args.grids:
        torch.manual_seed(0)
        model = LlavaNextARForConditionalGeneration(model_specs.build_config(spec, grid)).train()
        module = model.autoregressive_module
        ar = model.config.autoregressive_config
        torch.manual_seed(0)
        naive_width = model.config.text_config.hidden_size if args.naive_width == "llm" else None
        naive = NaiveDenseModule(model.config, module, width=naive_width).train()
        trainable = {name: sum(p.numel() for p in m.parameters() if p.requires_grad)
                     for name, m in (("module", module), ("naive", naive))}
        teacher_calls = []
        module.teacher.register_forward_hook(lambda *args: teacher_calls.append(1))
        # warm-up (allocator, oneDNN primitives) at the smallest T
        warm = make_inputs(model, spec, 2)
        module_step(module, warm)
        if not args.no_naive:
            naive_step(naive, warm)
        last = {}
        for frames in args.frames:
            n_tokens = (frames - 1) * grid * grid
            inputs = make_inputs(model, spec, frames)
            if args.teacher == "given":  # as with a frozen tower whose forward the model reuses
                with torch.no_grad():
                    inputs = (*inputs[:4], module.encode_frames(inputs[0]))
            paths = [("module", functools.partial(module_step, module, inputs))]
            skipped = {}
            if not args.no_naive:
                est_gib = naive_memory_estimate_gib(n_tokens, ar["num_layers"])
                if "naive" in last:
                    n0, s0, m0 = last["naive"]
                    est_s = s0 * (n_tokens / n0) ** 2
                    est_gib = max(est_gib, m0 / 1024 * (n_tokens / n0) ** 2)
                else:
                    est_s = 0.0
                if est_gib > args.max_gib or est_s > args.max_seconds:
                    skipped["naive"] = f"skipped: predicted {est_gib:.1f} GiB, {est_s:.0f} s per run"
                else:
                    paths.append(("naive", functools.partial(naive_step, naive, inputs)))
            predicted = sum(
                last[name][1] * (n_tokens / last[name][0]) ** (1 if name == "module" else 2)
                for name, _ in paths if name in last
            )
            repeats = args.repeats if predicted <= args.slow_seconds else 1
            samples = {name: [] for name, _ in paths}
            teacher_runs = {name: 0 for name, _ in paths}
            for _ in range(repeats):
                for name, fn in paths:
                    before = len(teacher_calls)
                    samples[name].append(measurement.timed(fn))
                    teacher_runs[name] += len(teacher_calls) - before
            row = {"T": frames, "P": grid * grid, "TP": frames * grid * grid, "N": n_tokens, "repeats": repeats}
            for name, runs in teacher_runs.items():
                row[f"{name}_teacher_runs_per_step"] = runs / repeats
                row[f"{name}_trainable_params"] = trainable[name]
            for name, xs in samples.items():
                # time: best of the repeats (interference from other processes only ever adds time);
                # memory: median
                seconds, peak = min(s for s, _ in xs), measurement.median([m for _, m in xs])
                row[f"{name}_seconds"], row[f"{name}_peak_mib"] = seconds, peak
                row[f"{name}_median_seconds"] = measurement.median([s for s, _ in xs])
                last[name] = (n_tokens, seconds, peak)
            for name, why in skipped.items():
                row[f"{name}_skipped"] = why
            if "naive_seconds" in row:
                row["speedup"] = row["naive_seconds"] / row["module_seconds"]
                row["memory_saving"] = row["naive_peak_mib"] / row["module_peak_mib"]
            rows.append(row)
            print(f"  T={frames:2d} P={grid * grid:3d}: module {row['module_seconds']:.2f} s "
                  f"{row['module_peak_mib']:.0f} MiB; naive "
                  + (f"{row['naive_seconds']:.2f} s {row['naive_peak_mib']:.0f} MiB" if "naive_seconds" in row
                     else row.get("naive_skipped", "off"))
                  + f"  ({time.perf_counter() - started:.0f} s)", flush=True)
            del inputs, paths
            gc.collect()
        del model, module, naive
        gc.collect()
    info["load_average_end"] = os.getloadavg()

    # Exponents
    def exponent(key):
        pts = [(r["TP"], r[key]) for r in rows if key in r]
        return fit_exponent([p[0] for p in pts], [p[1] for p in pts])

    def two_point(key, frames, p_lo, p_hi):
        lo = next((r for r in rows if r["T"] == frames and r["P"] == p_lo and key in r), None)
        hi = next((r for r in rows if r["T"] == frames and r["P"] == p_hi and key in r), None)
        if lo is None or hi is None or p_lo == p_hi:
            return float("nan")
        return math.log(hi[key] / lo[key]) / math.log(p_hi / p_lo)

    t_ref = 16 if 16 in args.frames else max(args.frames)
    ps = sorted({r["P"] for r in rows})
    p_lo, p_hi = (196, 729) if {196, 729} <= set(ps) else (ps[-2], ps[-1]) if len(ps) > 1 else (ps[0], ps[0])
    exponents = {
        f"{name}_{what}_loglog": exponent(f"{name}_{what}")
        for name in ("module", "naive") for what in ("seconds", "peak_mib")
    }
    exponents.update({
        f"{name}_{what}_T{t_ref}_P{p_lo}_to_{p_hi}": two_point(f"{name}_{what}", t_ref, p_lo, p_hi)
        for name in ("module", "naive") for what in ("seconds", "peak_mib")
    })
    ref = next((r for r in rows if r["T"] == t_ref and r["P"] == p_hi), {})
    targets = {
        f"peak-memory exponent <= 1.15 (P {p_lo}->{p_hi}, T={t_ref})": (
            exponents[f"module_peak_mib_T{t_ref}_P{p_lo}_to_{p_hi}"], 1.15, "<="),
        f"speed-up vs naive >= 3x (T={t_ref}, P={p_hi})": (ref.get("speedup", float("nan")), 3.0, ">="),
        f"peak-memory saving vs naive >= 5x (T={t_ref}, P={p_hi})": (
            ref.get("memory_saving", float("nan")), 5.0, ">="),
    }

    print()
    print(report.table(rows, [
        ("T", "T", "d"), ("P", "P", "d"), ("TP", "T*P", "d"), ("repeats", "n", "d"),
        ("module_seconds", "module s (best)", ".2f"), ("module_peak_mib", "module peak MiB", ".0f"),
        ("naive_seconds", "naive s (best)", ".2f"), ("naive_peak_mib", "naive peak MiB", ".0f"),
        ("speedup", "naive/module time", ".1f"), ("memory_saving", "naive/module memory", ".1f"),
        ("naive_skipped", "note", ""),
    ]))
    print()
    print("Growth exponents (y ~ (T*P)^k):")
    for key, value in exponents.items():
        print(f"  {key}: {value:.2f}")
    print()
    verdicts = {}
    for name, (value, bound, op) in targets.items():
        if value != value:  # nan: the grid lacks the points this target needs
            verdicts[name] = {"value": None, "bound": bound, "holds": None}
            print(f"  target {name}: not measured by this grid")
            continue
        ok = value <= bound if op == "<=" else value >= bound
        verdicts[name] = {"value": value, "bound": bound, "holds": bool(ok)}
        print(f"  target {name}: {value:.2f} -> {'HOLDS' if ok else 'FAILS'}")

    payload = {
        "benchmark": "bench_scaling",
        "machine": info,
        "args": vars(args),
        "spec": spec,
        "memory_method": "RSS high-water mark (VmHWM reset via /proc/self/clear_refs after malloc_trim)",
        "wall_seconds": time.perf_counter() - started,
        "rows": rows,
        "exponents": exponents,
        "targets": verdicts,
    }
    path = report.write_json(stem + ".json", payload)
    plot(rows, report.RESULTS / (stem + ".png"))
    print(f"\nwrote {path} and {stem}.png ({payload['wall_seconds']:.0f} s)")


def plot(rows, path):
    plt = report.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, what, label in ((axes[0], "seconds", "fwd+bwd time (s)"), (axes[1], "peak_mib", "peak memory (MiB)")):
        for name, style in (("module", "-o"), ("naive", "--s")):
            for p in sorted({r["P"] for r in rows}):
                pts = [(r["TP"], r[f"{name}_{what}"]) for r in rows if r["P"] == p and f"{name}_{what}" in r]
                if pts:
                    ax.plot(*zip(*pts), style, label=f"{name} P={p}")
        tp = sorted({r["TP"] for r in rows})
        if tp:
            ref = next((r[f"module_{what}"] for r in rows if r["TP"] == tp[0]), 1.0)
            ax.plot(tp, [ref * t / tp[0] for t in tp], ":", color="gray", label="slope 1")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("T * P (tokens)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("Auxiliary module alone (teacher + predictor + loss) vs naive dense-mask decoder")
    report.save_figure(fig, path)


if __name__ == "__main__":
    main()
