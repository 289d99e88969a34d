"""The models and batches the benchmarks measure: a spec (sizes as JSON) -> config, (base, AR) pair, batch.

`llava_next_ar` is imported inside the functions, after `--package` has chosen which copy of it to import.
"""

from __future__ import annotations

import copy
import json

import torch


VIDEO_TOKEN = 1023
IMAGE_TOKEN = 1022

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
    """`CPU_DEFAULT` updated by the JSON file at `path` (sub-config mappings are merged key by key)."""
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


def build_config(spec: dict, grid: int, autoregressive_overrides: dict | None = None):
    """`LlavaNextARConfig` of `spec` for a `grid x grid` patch grid (the vision config's `image_size_override`
    wins)."""
    from llava_next_ar import LlavaNextARConfig

    vision = dict(spec["vision_config"])
    vision["image_size"] = vision.pop("image_size_override", None) or grid_image_size(grid, vision["patch_size"])
    config = LlavaNextARConfig(
        vision_config=vision,
        text_config=dict(spec["text_config"]),
        video_token_index=VIDEO_TOKEN,
        image_token_index=IMAGE_TOKEN,
        vision_feature_layer=spec["vision_feature_layer"],
        vision_feature_select_strategy=spec["vision_feature_select_strategy"],
        spatial_pool_stride=spec["spatial_pool_stride"],
        spatial_pool_mode=spec["spatial_pool_mode"],
        autoregressive_config={**spec["autoregressive_config"], **(autoregressive_overrides or {})},
    )
    config._attn_implementation = spec["attn_implementation"]  # the sub-configs follow
    return config


def make_batch(config, spec: dict, num_frames: int, seed: int = 0, device: str = "cpu") -> dict:
    """`llava_next_ar.tiny_models.video_batch` at the spec's batch size, text lengths and dtype, on `device`: text,
    `num_frames * video_tokens_per_frame` video tokens, text; `pixel_values_videos` (no `video_frames`: the AR
    steps pass `pixel_values_videos` as them)."""
    from llava_next_ar.tiny_models import video_batch

    batch = video_batch(
        config, batch_size=spec["batch_size"], num_frames=num_frames, text_before=spec["text_before"],
        text_after=spec["text_after"], dtype=getattr(torch, spec["dtype"]), seed=seed,
    )
    del batch["video_frames"]
    return {key: value.to(device) for key, value in batch.items()}


def build_pair(
    spec: dict,
    grid: int,
    autoregressive_overrides: dict | None = None,
    device: str = "cpu",
    seed: int = 0,
    share_weights: bool = False,
):
    """
    (base, ar): `LlavaNextVideoForConditionalGeneration` and `LlavaNextARForConditionalGeneration`, same weights, both
    in training mode. The AR model is built from `build_config(...)` in the spec's dtype on `device`; the base model
    is its `export_base_model()` (the stock class, without teacher and predictor), holding a copy of its weights, or
    with `share_weights=True` the AR model's own modules (no second copy; for models that do not fit twice on a GPU).
    """
    from llava_next_ar import LlavaNextARForConditionalGeneration

    dtype = getattr(torch, spec["dtype"])
    torch.manual_seed(seed)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # build in the target dtype on the target device: a 7B model never sits on the host
    try:
        with torch.device(device):
            ar_model = LlavaNextARForConditionalGeneration(build_config(spec, grid, autoregressive_overrides)).train()
    finally:
        torch.set_default_dtype(previous)
    base = ar_model.export_base_model()
    if not share_weights:
        base = copy.deepcopy(base)
    base.train()
    if spec.get("gradient_checkpointing"):
        base.activation_checkpointing_enable()
        ar_model.activation_checkpointing_enable()
    return base, ar_model


def freeze_vision_tower(model) -> None:
    """No gradient for the model's (live) vision tower."""
    model.model.vision_tower.requires_grad_(False)


def param_mib(model, trainable_only: bool = False) -> float:
    """MiB of the model's parameters (all, or those that require a gradient)."""
    parameters = [p for p in model.parameters() if p.requires_grad or not trainable_only]
    return sum(p.numel() * p.element_size() for p in parameters) / 2**20
