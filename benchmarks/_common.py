"""Shared helpers of the benchmarks: model/batch builders, peak-memory measurement, machine description.

Peak memory on the CPU
----------------------
PyTorch has no CPU allocator statistics (no `torch.cpu.max_memory_allocated`), and `tracemalloc` sees only Python
objects. We measure the process's resident set size (RSS) from the kernel instead:

1. `gc.collect()` and glibc `malloc_trim(0)`: freed memory that malloc still holds goes back to the kernel, so the
   resident set is (close to) the live data before the step;
2. write `5` to `/proc/self/clear_refs` (Linux >= 4.0): the kernel resets the high-water mark `VmHWM` to the current
   RSS;
3. run the step; `peak = VmHWM - VmRSS(before)`.

This counts every byte the step touched and held at once (tensors, autograd buffers, oneDNN/MKL scratch, malloc
fragmentation): an upper bound on live tensor bytes, and what decides whether a job fits in RAM. A calibration
(`calibrate_peak_memory`) allocates a known tensor inside the window and checks the reading; the benchmarks print
it. On a GPU the benchmarks use `torch.cuda.max_memory_allocated` instead (reset per measurement).

Timing on a shared machine
--------------------------
Variants are interleaved (A B A B ...) so slow drifts hit both alike, and we report the median (and the best) of the
repeats plus the process CPU time. The scripts set `OMP_WAIT_POLICY=PASSIVE` (unless already set) before torch is
imported: with the default policy, an OpenMP worker waiting at a barrier spins, and when another process holds the
other core every one of the thousands of small ops of a training step waits a scheduler time slice. Measured here
with a 2-thread job running beside us (T=16, P=729): base step 11.5 s with spinning vs 3.6 s passive, and an AR/base
ratio of 1.9 vs 3.2 (1 thread: 3.0; analytic FLOP ratio 3.2) -- spinning distorts the ratio, passive does not.
On an idle machine the passive policy costs a few % of wall time.
"""

from __future__ import annotations

import copy
import ctypes
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch


ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or Path(__file__).resolve().parent / "results")

VIDEO_TOKEN = 1023
IMAGE_TOKEN = 1022


def use_package(path: str | None) -> None:
    """Import `llava_next_ar` from `path` (a directory holding the package; e.g. a patched copy), else the repo."""
    sys.path.insert(0, str(Path(path).resolve() if path else ROOT))


def add_common_arguments(parser, out: str | None = None) -> None:
    """The options every measuring script takes: --config, --threads, --package, --out."""
    parser.add_argument("--config", help="JSON overriding the CPU default spec (see _common.CPU_DEFAULT)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--package", help="import llava_next_ar from this directory (e.g. a patched copy)")
    parser.add_argument("--out", default=out, help="JSON/PNG name stem under benchmarks/results/")


def start(args) -> dict:
    """Apply --package and --threads; return the spec (CPU default + --config)."""
    use_package(args.package)
    torch.set_num_threads(args.threads)
    return load_spec(args.config)


# --------------------------------------------------------------------------------------------------------------------
# Memory


try:
    _LIBC = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: malloc_trim unavailable
    _LIBC = None


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class PeakMemory:
    """Context manager: `.peak_mib` = peak memory growth during the block (RSS high-water mark, or CUDA allocator)."""

    def __init__(self, device: str = "cpu"):
        self.device = torch.device(device)
        self.peak_mib = float("nan")

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated()
            return self
        if _LIBC is not None:
            _LIBC.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self._base = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak_mib = (torch.cuda.max_memory_allocated() - self._base) / 2**20
        else:
            self.peak_mib = (_status_kib("VmHWM") - self._base) / 1024
        return False


def calibrate_peak_memory(mib: int = 256) -> float:
    """Reading of `PeakMemory` for one `mib`-MiB tensor written and freed inside the window (expect ~`mib`)."""
    with PeakMemory() as m:
        x = torch.empty(mib * 2**20 // 4, dtype=torch.float32)
        x.fill_(1.0)
        del x
    return m.peak_mib


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device: str = "cpu", with_cpu: bool = False) -> tuple[float, float] | tuple[float, float, float]:
    """Run `fn()` once; return (wall seconds, peak MiB), plus process CPU seconds if `with_cpu`."""
    with PeakMemory(device) as m:
        sync(device)
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        sync(device)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    return (seconds, m.peak_mib, cpu) if with_cpu else (seconds, m.peak_mib)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


# --------------------------------------------------------------------------------------------------------------------
# Models and batches

# CPU default: a narrow LLaVA-NeXT-Video-7B + SigLIP-so400m. Widths ~1/16 (LLM 4096 -> 256, tower 1152 -> 64, MLPs
# in the same proportion), the real depths (LLM 32 layers, tower 27) and the real token counts (P patches,
# (side // 2)^2 LLM tokens per frame), so the base step and the objective keep the 7B model's proportions as far as
# a narrow model can (attention weighs more at small widths). A training step at T=16, P=729 takes ~20 s on 2 cores.
# `flops.py` computes the analytic ratio of this config and of the real 7B one.
CPU_DEFAULT = {
    "vision_config": {
        "model_type": "siglip_vision_model", "hidden_size": 64, "intermediate_size": 240, "num_hidden_layers": 27,
        "num_attention_heads": 4, "patch_size": 14, "vision_use_head": False,
    },
    "text_config": {
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 32,
        "num_attention_heads": 8, "num_key_value_heads": 8, "vocab_size": 1024, "max_position_embeddings": 16384,
        "pad_token_id": 0,
    },
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "full",
    "spatial_pool_stride": 2,
    "spatial_pool_mode": "average",
    # Head counts scale like the widths' head dims: LLM 32 -> 8 heads (head dim 32), tower 16 -> 4 (16), predictor
    # 8 -> 2 (32; at 7B: 8 heads of 144). With 8 heads of 8, CPU attention costs ~4x more per FLOP (README).
    "autoregressive_config": {"num_heads": 2},
    "batch_size": 1,
    "text_before": 32,
    "text_after": 32,
    "dtype": "float32",
    "attn_implementation": "sdpa",
    "gradient_checkpointing": False,
}


def grid_image_size(grid: int, patch_size: int) -> int:
    """Smallest square image whose patch grid is `grid x grid` (SigLIP: 384 px / 14 -> 27)."""
    return grid * patch_size


def load_spec(path: str | None) -> dict:
    spec = copy.deepcopy(CPU_DEFAULT)
    if path:
        with open(path) as f:
            user = json.load(f)
        for key, value in user.items():
            if isinstance(value, dict) and isinstance(spec.get(key), dict):
                spec[key].update(value)
            else:
                spec[key] = value
    return spec


def build_config(spec: dict, grid: int, autoregressive_overrides: dict | None = None, ar: bool = True):
    """`LlavaNextARConfig` (ar=True) or `LlavaNextVideoConfig` for a `grid x grid` patch grid."""
    from transformers import LlavaNextVideoConfig

    from llava_next_ar import LlavaNextARConfig

    vision = dict(spec["vision_config"])
    vision["image_size"] = vision.get("image_size_override") or grid_image_size(grid, vision["patch_size"])
    vision.pop("image_size_override", None)
    kwargs = dict(
        vision_config=vision,
        text_config=dict(spec["text_config"]),
        video_token_index=VIDEO_TOKEN,
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=spec["vision_feature_layer"],
        vision_feature_select_strategy=spec["vision_feature_select_strategy"],
        spatial_pool_stride=spec["spatial_pool_stride"],
        spatial_pool_mode=spec["spatial_pool_mode"],
    )
    if ar:
        config = LlavaNextARConfig(
            **kwargs, autoregressive_config={**spec["autoregressive_config"], **(autoregressive_overrides or {})}
        )
    else:
        config = LlavaNextVideoConfig(**kwargs)
    config._attn_implementation = spec["attn_implementation"]
    for sub in (config.text_config, config.vision_config):
        sub._attn_implementation = spec["attn_implementation"]
    return config


def tokens_per_frame(config) -> int:
    side = config.vision_config.image_size // config.vision_config.patch_size
    return (side // config.spatial_pool_stride) ** 2


def make_batch(config, spec: dict, num_frames: int, seed: int = 0, device: str = "cpu") -> dict:
    """Text, then `num_frames * tokens_per_frame` video tokens, then text; `video_frames` = `pixel_values_videos`."""
    generator = torch.Generator().manual_seed(seed)
    b = spec["batch_size"]
    vocab = config.text_config.vocab_size
    side = config.vision_config.image_size
    video = torch.full((b, num_frames * tokens_per_frame(config)), VIDEO_TOKEN)
    before = torch.randint(1, IMAGE_TOKEN, (b, spec["text_before"]), generator=generator)
    after = torch.randint(1, IMAGE_TOKEN, (b, spec["text_after"]), generator=generator)
    input_ids = torch.cat([before, video, after], dim=1)
    assert vocab > VIDEO_TOKEN, "vocab_size must exceed the video token id"
    frames = torch.randn(b, num_frames, 3, side, side, generator=generator)
    dtype = getattr(torch, spec["dtype"])
    batch = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": frames.to(dtype),
        "labels": input_ids.clone(),
    }
    return {k: v.to(device) for k, v in batch.items()}


def build_pair(
    spec: dict,
    grid: int,
    autoregressive_overrides: dict | None = None,
    device: str = "cpu",
    seed: int = 0,
    share_weights: bool = False,
):
    """(base, ar): `LlavaNextVideoForConditionalGeneration` and `LlavaNextARForConditionalGeneration`, same weights.

    The AR model is built from its `LlavaNextARConfig`; the base model loads its state dict minus
    `autoregressive_module.*` (strict: every base key must be there, nothing else may be left over).
    `share_weights=True`: the base model holds the AR model's own `model` and `lm_head` (no second copy; for models
    that do not fit twice on one GPU).
    """
    from transformers import LlavaNextVideoForConditionalGeneration

    from llava_next_ar import LlavaNextARForConditionalGeneration

    dtype = getattr(torch, spec["dtype"])
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the target dtype on the target device: a 7B model never sits on the host
    try:
        with torch.device(device):
            ar_model = LlavaNextARForConditionalGeneration(build_config(spec, grid, autoregressive_overrides)).train()
            if share_weights:
                with torch.device("meta"):
                    base = LlavaNextVideoForConditionalGeneration(build_config(spec, grid, ar=False))
                base.model, base.lm_head = ar_model.model, ar_model.lm_head
            else:
                base = LlavaNextVideoForConditionalGeneration(build_config(spec, grid, ar=False))
                state = {k: v for k, v in ar_model.state_dict().items() if not k.startswith("autoregressive_module.")}
                base.load_state_dict(state, strict=True)
    finally:
        torch.set_default_dtype(previous)
    base.train()
    if spec.get("gradient_checkpointing"):
        base.activation_checkpointing_enable()
        ar_model.activation_checkpointing_enable()
    return base, ar_model


def freeze_vision_tower(model) -> None:
    model.model.vision_tower.requires_grad_(False)


def param_mib(model, trainable_only: bool = False) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad or not trainable_only) / 2**20


# --------------------------------------------------------------------------------------------------------------------
# Machine and output


def machine() -> dict:
    import transformers

    model_name = "?"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model_name = next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except Exception:
        pass
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cpu": model_name,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average": os.getloadavg(),
    }


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table; columns = (key, header, format)."""
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [head, rule]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            value = row.get(key)
            if value is None or (isinstance(value, float) and value != value):
                cells.append("-")
            elif isinstance(value, str):
                cells.append(value)
            else:
                cells.append(format(value, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_json(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=str)
    return path
