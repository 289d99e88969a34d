"""Analytic per-GPU training memory at the 7B shape for DDP, ZeRO-2, ZeRO-3 and FSDP2 (the README's "Scale out").

Shapes: `flops.Shape` (LLaVA-NeXT-Video-7B: Vicuna-7B + SigLIP-so400m, 729 patches -> 169 tokens per frame, 128 text
tokens; predictor at the teacher width, 3 layers), micro-batch 1 per GPU, bf16 compute, AdamW. Counted per GPU:

- weights: bf16 (2 bytes) for every parameter, trainable or frozen; the teacher (a frozen copy of the tower) counts
  with `teacher="copy"`, nothing with `teacher="shared"` (the tower itself, run under no_grad);
- gradients: 2 bytes per trainable parameter (bf16, reduced in bf16);
- optimizer states: 12 bytes per trainable parameter (fp32 master weights, Adam m and v: the ZeRO paper's K=12);
  FSDP2 with bf16 mixed precision keeps fp32 sharded parameters instead of bf16 weights + fp32 master copy (accelerate
  upcasts trainable parameters): 4 + 4 (fp32 gradients) + 8 (m, v) = 16 bytes per trainable parameter, sharded;
- sharding over N GPUs: DDP none; ZeRO-2 gradients + optimizer states / N; ZeRO-3 and FSDP everything / N, plus the
  gathered working set (the two largest layers' bf16 weights: the current one and the prefetched one);
- activations (same for every engine: data parallel, one example per GPU), with activation checkpointing (each layer
  keeps its bf16 input; one layer's internals live during its recompute: 34 bytes x tokens x width, Korthikanti et
  al. 2022, with a fused attention kernel that stores no score matrix) and without (every layer's internals); plus
  the logits (fp32 for the loss: 4 bytes x 2 x tokens x vocab) and the teacher's forward (no grad: one layer's
  activations at a time). The predictor is not checkpointed (its layers are small).

Not counted: CUDA context and allocator fragmentation (~1-3 GB per GPU in practice), communication buffers
(ZeRO's bucket sizes, ~0.5-1 GB), the frozen tower's own activations when it is frozen (then it runs without
grad). Treat the result as a lower bound and keep ~15 % headroom.

    python benchmarks/memory.py                     # 16 GPUs (2 nodes x 8), T = 16 and 32
    python benchmarks/memory.py --gpus 8 --frames 16
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import report  # noqa: E402
from flops import Shape, llm_params, predictor_params  # noqa: E402


GiB = 1024**3
ENGINES = ("DDP", "ZeRO-2", "ZeRO-3", "FSDP2")


def vision_params(s: Shape) -> int:
    per_layer = 4 * s.vision_width * s.vision_width + 2 * s.vision_width * s.vision_mlp
    embeddings = 3 * s.patch * s.patch * s.vision_width + (s.patches + s.cls_token) * s.vision_width
    return s.vision_layers * per_layer + embeddings


def projector_params(s: Shape) -> int:
    return s.vision_width * s.width + s.width * s.width


def parameters(s: Shape, teacher: str) -> dict:
    tower = vision_params(s)
    trainable = llm_params(s) + tower + projector_params(s) + predictor_params(s)
    frozen = tower if teacher == "copy" else 0
    largest_layer = max(
        2 * s.width * s.width + 2 * s.width * s.width * s.kv_heads // s.heads + 3 * s.width * s.mlp,
        s.vocab * s.width,  # embedding / LM head
    )
    return {"trainable": trainable, "frozen": frozen, "largest_layer": largest_layer}


def activations(s: Shape, checkpointing: bool) -> float:
    """Bytes of activations kept for the backward pass, one example."""
    tokens = s.seq_len
    vision_tokens = s.frames * (s.patches + s.cls_token)
    layer = 34  # bytes per token per unit of width for one transformer layer's saved internals (bf16, fused attn)
    if checkpointing:
        llm = 2 * tokens * s.width * s.layers + layer * tokens * s.width
        tower = 2 * vision_tokens * s.vision_width * s.vision_layers + layer * vision_tokens * s.vision_width
    else:
        llm = layer * tokens * s.width * s.layers
        tower = layer * vision_tokens * s.vision_width * s.vision_layers
    logits = 4 * 2 * tokens * s.vocab
    teacher = layer * vision_tokens * s.vision_width  # no grad: one layer at a time
    width = s.predictor_width or s.embedding_dim or s.vision_width
    predictor_tokens = (s.frames - 1) * s.patches
    predictor = layer * predictor_tokens * width * s.predictor_layers * (2 if s.fuse_llm else 1)  # + cross-attn
    return llm + tower + logits + teacher + predictor


def per_gpu(s: Shape, engine: str, gpus: int, teacher: str, checkpointing: bool) -> dict:
    p = parameters(s, teacher)
    trainable, frozen = p["trainable"], p["frozen"]
    if engine == "FSDP2":
        weights = (4 * trainable + 2 * frozen) / gpus + 2 * 2 * p["largest_layer"]
        grads, optimizer = 4 * trainable / gpus, 8 * trainable / gpus
    else:
        shard_weights = gpus if engine == "ZeRO-3" else 1
        shard_states = 1 if engine == "DDP" else gpus
        weights = 2 * (trainable + frozen) / shard_weights + (2 * 2 * p["largest_layer"] if engine == "ZeRO-3" else 0)
        grads, optimizer = 2 * trainable / shard_states, 12 * trainable / shard_states
    acts = activations(s, checkpointing)
    row = {"weights": weights, "grads": grads, "optimizer": optimizer, "activations": acts}
    row = {key: value / GiB for key, value in row.items()}
    row["total"] = sum(row.values())
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=16, help="data-parallel GPUs the states are sharded over")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--out", default="memory")
    args = parser.parse_args(argv)

    rows = []
    for frames in args.frames:
        s = replace(Shape(), frames=frames)
        for teacher in ("copy", "shared"):
            for checkpointing in (True, False):
                for engine in ENGINES:
                    row = per_gpu(s, engine, args.gpus, teacher, checkpointing)
                    rows.append({"T": frames, "teacher": teacher, "activation_checkpointing": checkpointing,
                                 "engine": engine, **row})
    p = parameters(Shape(), "copy")
    print(f"7B shape: {p['trainable'] / 1e9:.2f} B trainable parameters, teacher copy {p['frozen'] / 1e9:.2f} B "
          f"(frozen); {args.gpus} GPUs; GiB per GPU, micro-batch 1, bf16, AdamW")
    columns = [("T", "T", "d"), ("teacher", "teacher", ""), ("ckpt", "act. ckpt", ""), ("engine", "engine", ""),
               ("weights", "weights", ".1f"), ("grads", "grads", ".1f"), ("optimizer", "optimizer", ".1f"),
               ("activations", "activations", ".1f"), ("total", "total", ".1f")]
    shown = [{**row, "ckpt": "on" if row["activation_checkpointing"] else "off"} for row in rows]
    print(report.table(shown, columns))
    path = report.write_json(args.out + ".json", {
        "gpus": args.gpus, "shape": Shape().__dict__, "parameters": p, "unit": "GiB per GPU", "rows": rows,
        "assumptions": __doc__.split("\n\n")[1],
    })
    print(f"wrote {path}")
    return rows


if __name__ == "__main__":
    main()
