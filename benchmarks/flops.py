"""Analytic FLOP count of the auxiliary objective vs the base training step.

Counted (matmul = 2*m*n*k; backward = 2 x forward for trainable layers, 1 x when only the input gradient is needed,
0 for a frozen tower fed by pixels; softmax/norm/elementwise ignored, a few % at these widths):

- base step: vision tower forward (+ backward when trainable), pooling + projector, LLM forward + backward over the
  whole sequence (causal attention counted as half the square), LM head;
- auxiliary objective: teacher forward over all T frames (all layers: the tower runs to the end even though only
  `vision_feature_layer` is read), predictor forward + backward over (T-1)*P tokens at the predictor width
  (`predictor_hidden_size`; default the teacher width, the seed's design the LLM width): self-attention
  of each query frame over `num_hist` frames of keys (h*P keys, masked slots included, as computed), cross-attention
  to `1 + num_hist * tokens_per_frame` LLM states, MLP, in/out projections, and the K/V projections of the LLM states.

Shapes: LLaVA-NeXT-Video-7B (Vicuna-7B: width 4096, 32 layers, MLP 11008, vocab 32064) + SigLIP-so400m
(width 1152, 27 layers, MLP 4304, 384 px / patch 14 -> 27 x 27 = 729 patches). Tokens per frame after the
LLaVA-NeXT-Video pooling: AvgPool2d(2, stride 2) on the 27 x 27 grid -> 13 x 13 = 169 (floor; the often-quoted ~182
is 729 / 4 rounded up, i.e. a padded pool -- the difference is < 1% of the step). Text: 128 tokens.

The same model is evaluated for the reduced-width CPU config of `bench_step.py` (read from the latest
`results/bench_step.json`), printed next to the measured time ratio, so the FLOP model can be checked where it can be
measured and trusted where it cannot.

    python benchmarks/flops.py
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402


@dataclass
class Shape:
    # vision tower
    vision_width: int = 1152
    vision_layers: int = 27
    vision_mlp: int = 4304
    patch: int = 14
    grid: int = 27  # patches per side
    cls_token: int = 0  # CLIP: 1, SigLIP: 0
    feature_layer: int = -2
    pool_stride: int = 2
    # LLM
    width: int = 4096
    layers: int = 32
    mlp: int = 11008
    heads: int = 32
    kv_heads: int = 32
    vocab: int = 32064
    text_tokens: int = 128
    # clip and predictor
    frames: int = 16
    batch: int = 1
    num_hist: int | None = 3
    predictor_layers: int = 3
    predictor_mlp_ratio: float = 4.0
    predictor_width: int | None = None  # `predictor_hidden_size`; None = the teacher width (the model's default)
    embedding_dim: int | None = None  # teacher feature width (None = vision width)
    fuse_llm: bool = True

    @property
    def patches(self) -> int:
        return self.grid * self.grid

    @property
    def tokens_per_frame(self) -> int:
        return video_tokens_per_frame(self.patch, self.grid, self.pool_stride)

    @property
    def seq_len(self) -> int:
        return self.text_tokens + self.frames * self.tokens_per_frame


@functools.lru_cache
def video_tokens_per_frame(patch: int, grid: int, pool_stride: int) -> int:
    """LLM tokens per frame of a `grid x grid` patch grid, by the model's own rule (its config's
    `video_tokens_per_frame`: the LLaVA-NeXT-Video pooler's output size)."""
    from llava_next_ar import LlavaNextARConfig

    vision_config = {"model_type": "siglip_vision_model", "image_size": grid * patch, "patch_size": patch}
    return LlavaNextARConfig(vision_config=vision_config, spatial_pool_stride=pool_stride).video_tokens_per_frame


def vision_forward(s: Shape, layers: int | None = None) -> float:
    """One tower forward over all frames."""
    layers = s.vision_layers if layers is None else layers
    n = s.patches + s.cls_token
    d = s.vision_width
    per_layer = 2 * n * (4 * d * d + 2 * d * s.vision_mlp) + 2 * 2 * n * n * d
    embed = 2 * s.patches * 3 * s.patch * s.patch * d
    return s.batch * s.frames * (layers * per_layer + embed)


def projector_forward(s: Shape) -> float:
    tokens = s.batch * s.frames * s.tokens_per_frame
    return 2 * tokens * (s.vision_width * s.width + s.width * s.width)


def llm_forward(s: Shape) -> float:
    n, c = s.seq_len, s.width
    kv = c * s.kv_heads // s.heads
    per_layer = 2 * n * (2 * c * c + 2 * c * kv + 3 * c * s.mlp) + 2 * 2 * n * n * c / 2  # causal: half the square
    return s.batch * (s.layers * per_layer + 2 * n * c * s.vocab)


def predictor_forward(s: Shape) -> dict:
    d = s.embedding_dim or s.vision_width
    c = s.predictor_width or d
    p = s.patches
    n = (s.frames - 1) * p
    h = s.frames - 1 if s.num_hist is None else min(s.num_hist, s.frames - 1)
    window = 1 + (s.seq_len if s.num_hist is None else min(s.num_hist * s.tokens_per_frame, s.seq_len))
    memory = s.seq_len + 1
    out = {
        "in_out_proj": 2 * n * d * c * 2,
        "self_attn_proj": s.predictor_layers * 2 * n * 4 * c * c,
        "self_attn_scores": s.predictor_layers * 2 * 2 * n * h * p * c,
        "mlp": s.predictor_layers * 2 * n * 2 * c * int(c * s.predictor_mlp_ratio),
    }
    if s.fuse_llm:
        out["cross_attn_proj"] = s.predictor_layers * (2 * n * 2 * c * c + 2 * memory * 2 * s.width * c)
        out["cross_attn_scores"] = s.predictor_layers * 2 * 2 * n * window * c
    return {k: s.batch * v for k, v in out.items()}


def predictor_params(s: Shape) -> int:
    """Trainable parameters of the predictor (weights + biases; norms ignored)."""
    d = s.embedding_dim or s.vision_width
    c = s.predictor_width or d
    inner = int(c * s.predictor_mlp_ratio)
    per_layer = 4 * c * c + 2 * c * inner
    if s.fuse_llm:
        per_layer += 2 * c * c + 2 * s.width * c
    return s.predictor_layers * per_layer + 2 * d * c + 2 * c * c + s.width


def llm_params(s: Shape) -> int:
    kv = s.width * s.kv_heads // s.heads
    return s.layers * (2 * s.width * s.width + 2 * s.width * kv + 3 * s.width * s.mlp) + 2 * s.vocab * s.width


def step(s: Shape, mode: str = "default", truncate_teacher: bool = False) -> dict:
    """
    FLOPs of one training step. mode: "default" (tower trainable, teacher copy), "frozen" (tower frozen, teacher
    recomputes), "frozen_reuse" (tower frozen, teacher features = the LLM path's tower output), "shared" (teacher =
    the live tower, whose forward in the LLM path is reused: tower trainable, no teacher forward).
    """
    tower = vision_forward(s)
    tower_factor = 1 if mode.startswith("frozen") else 3
    base = {
        "vision": tower_factor * tower,
        "projector": 3 * projector_forward(s),
        "llm": 3 * llm_forward(s),
    }
    teacher_layers = s.vision_layers + 1 + s.feature_layer if (truncate_teacher and s.feature_layer < 0) else None
    teacher = 0.0 if mode in ("frozen_reuse", "shared") else vision_forward(s, teacher_layers)
    predictor = {k: 3 * v for k, v in predictor_forward(s).items()}
    base_total = sum(base.values())
    aux_total = teacher + sum(predictor.values())
    return {
        "base": base,
        "base_total": base_total,
        "teacher": teacher,
        "predictor": predictor,
        "predictor_total": sum(predictor.values()),
        "aux_total": aux_total,
        "ratio": (base_total + aux_total) / base_total,
    }


def shape_from_spec(spec: dict, frames: int, patches: int) -> Shape:
    v, t = spec["vision_config"], spec["text_config"]
    ar = spec.get("autoregressive_config", {})
    grid = int(round(patches**0.5))
    return Shape(
        vision_width=v["hidden_size"], vision_layers=v["num_hidden_layers"], vision_mlp=v["intermediate_size"],
        patch=v["patch_size"], grid=grid, cls_token=0 if spec["vision_feature_select_strategy"] == "full" else 1,
        feature_layer=spec["vision_feature_layer"], pool_stride=spec["spatial_pool_stride"],
        width=t["hidden_size"], layers=t["num_hidden_layers"], mlp=t["intermediate_size"],
        heads=t["num_attention_heads"], kv_heads=t.get("num_key_value_heads", t["num_attention_heads"]),
        vocab=t["vocab_size"], text_tokens=spec["text_before"] + spec["text_after"], frames=frames,
        batch=spec["batch_size"], num_hist=ar.get("num_hist", 3), predictor_layers=ar.get("num_layers", 3),
        predictor_mlp_ratio=ar.get("mlp_ratio", 4.0), predictor_width=ar.get("predictor_hidden_size"),
    )


def tflop(x: float) -> float:
    return x / 1e12


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bench", default=str(report.RESULTS / "bench_step.json"),
                        help="bench_step JSON to compare with")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--out", default="flops")
    args = parser.parse_args(argv)

    real_rows = []
    for frames in args.frames:
        s = Shape(frames=frames)
        for mode in ("default", "frozen", "frozen_reuse", "shared"):
            r = step(s, mode)
            real_rows.append({
                "T": frames, "mode": mode, "P": s.patches, "LLM len": s.seq_len,
                "base": tflop(r["base_total"]), "vision": tflop(r["base"]["vision"]), "llm": tflop(r["base"]["llm"]),
                "teacher": tflop(r["teacher"]), "predictor": tflop(r["predictor_total"]),
                "pred_attn": tflop(r["predictor"]["self_attn_scores"] + r["predictor"].get("cross_attn_scores", 0)),
                "ratio": r["ratio"],
            })
    cols = [
        ("T", "T", "d"), ("mode", "mode", ""), ("LLM len", "LLM len", "d"), ("base", "base TFLOP", ".1f"),
        ("vision", "  of which vision", ".1f"), ("llm", "  of which LLM", ".1f"), ("teacher", "teacher fwd", ".1f"),
        ("predictor", "predictor fwd+bwd", ".1f"), ("pred_attn", "  of which attention", ".1f"),
        ("ratio", "AR/base", ".2f"),
    ]
    print("## LLaVA-NeXT-Video-7B + SigLIP-so400m (P=729 -> 169 LLM tokens/frame, 128 text tokens), batch 1\n")
    print(report.table(real_rows, cols))

    # Variants, real shapes
    proposals = []
    for frames in args.frames:
        s = Shape(frames=frames)
        seed = replace(s, predictor_width=s.width)
        variants = [
            ("default (predictor width 1152 = teacher)", s, "default", False),
            ("  + teacher truncated at vision_feature_layer", s, "default", True),
            ("frozen tower", s, "frozen", False),
            ("frozen tower + teacher reuse", s, "frozen_reuse", False),
            ("seed design: predictor at the LLM width 4096", seed, "default", False),
            ("seed design, frozen tower + teacher reuse", seed, "frozen_reuse", False),
        ]
        for name, shape, mode, trunc in variants:
            r = step(shape, mode, truncate_teacher=trunc)
            proposals.append({"T": frames, "variant": name, "aux": tflop(r["aux_total"]),
                              "base": tflop(r["base_total"]),
                              "ratio": r["ratio"], "predictor_params_m": predictor_params(shape) / 1e6,
                              "predictor_params_rel": predictor_params(shape) / llm_params(shape)})
    print("\n## Variants at the real shapes (analytic)\n")
    print(report.table(proposals, [("T", "T", "d"), ("variant", "variant", ""), ("base", "base TFLOP", ".1f"),
                              ("aux", "aux TFLOP", ".1f"), ("ratio", "AR/base", ".2f"),
                              ("predictor_params_m", "predictor params (M)", ".0f"),
                              ("predictor_params_rel", "predictor / LLM params", ".3f")]))

    # Reduced-width CPU config: analytic vs measured
    bench_rows = []
    bench_path = Path(args.bench)
    if bench_path.exists():
        bench = json.loads(bench_path.read_text())
        spec = bench["spec"]
        for row in bench["rows"]:
            s = shape_from_spec(spec, row["T"], row["P"])
            r = step(s, row["case"])
            out = {"case": row["case"], "T": row["T"], "P": row["P"], "analytic": r["ratio"],
                   "measured": row["ratio_seconds"], "measured_cpu": row.get("ratio_cpu_seconds")}
            bench_rows.append(out)
            if "ratio_reuse_seconds" in row:
                r = step(s, "frozen_reuse")
                bench_rows.append({"case": "frozen+reuse", "T": row["T"], "P": row["P"], "analytic": r["ratio"],
                                   "measured": row["ratio_reuse_seconds"],
                                   "measured_cpu": row.get("ratio_reuse_cpu_seconds")})
        print(f"\n## Reduced-width CPU config of {bench_path.name} (vision {spec['vision_config']['hidden_size']}x"
              f"{spec['vision_config']['num_hidden_layers']}, LLM {spec['text_config']['hidden_size']}x"
              f"{spec['text_config']['num_hidden_layers']}): analytic FLOP ratio vs measured time ratio\n")
        print(report.table(bench_rows, [("case", "case", ""), ("T", "T", "d"), ("P", "P", "d"),
                                   ("analytic", "AR/base FLOPs", ".2f"), ("measured", "AR/base wall time", ".2f"),
                                   ("measured_cpu", "AR/base CPU time", ".2f")]))
    else:
        print(f"\n(no {bench_path}: run benchmarks/bench_step.py to compare with measurements)")

    payload = {"benchmark": "flops", "assumptions": __doc__, "real_shape": asdict(Shape()), "real": real_rows,
               "proposals": proposals, "bench_config": bench_rows}
    path = report.write_json(args.out + ".json", payload)
    plot(args.frames, report.RESULTS / (args.out + ".png"))
    print(f"\nwrote {path} and {args.out}.png")


def plot(frames_list, path):
    plt = report.pyplot()
    fig, ax = plt.subplots(figsize=(9, 4.5))
    labels, parts = [], []
    for frames in frames_list:
        s = Shape(frames=frames)
        for name, shape, mode in (
            ("as is", s, "default"),
            ("frozen", s, "frozen"),
            ("frozen+reuse", s, "frozen_reuse"),
            ("seed: pred. width 4096", replace(s, predictor_width=s.width), "default"),
        ):
            r = step(shape, mode)
            labels.append(f"T={frames}\n{name}")
            parts.append([tflop(r["base"]["vision"]), tflop(r["base"]["llm"] + r["base"]["projector"]),
                          tflop(r["teacher"]), tflop(r["predictor_total"])])
    bottoms = [0.0] * len(labels)
    for i, (name, color) in enumerate((("vision tower (base)", "tab:blue"), ("LLM + projector (base)", "tab:cyan"),
                                       ("teacher fwd (aux)", "tab:orange"), ("predictor fwd+bwd (aux)", "tab:red"))):
        values = [p[i] for p in parts]
        ax.bar(range(len(labels)), values, bottom=bottoms, color=color, label=name)
        bottoms = [b + v for b, v in zip(bottoms, values)]
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_ylabel("TFLOP per training step (batch 1)")
    ax.set_title("LLaVA-NeXT-Video-7B + SigLIP-so400m: base step vs auxiliary objective (analytic)")
    ax.legend(fontsize=8)
    report.save_figure(fig, path)


if __name__ == "__main__":
    main()
