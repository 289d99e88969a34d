"""Tiny random LLaVA-NeXT-AR models and inputs, built locally (no downloads)."""

import torch
from transformers import CLIPVisionConfig, LlamaConfig

from llava_next_ar import LlavaNextARConfig, LlavaNextARForConditionalGeneration


VOCAB = 64
VIDEO_TOKEN = 63
IMAGE_TOKEN = 62
IMAGE_SIZE = 32


def tiny_config(attn_implementation: str = "sdpa", **autoregressive_config) -> LlavaNextARConfig:
    """CLIP 32x32 / patch 8 (16 patches + CLS), pool stride 2 (4 LLM tokens per frame), Llama width 32."""
    config = LlavaNextARConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=24, intermediate_size=48, num_hidden_layers=2, num_attention_heads=2,
            image_size=IMAGE_SIZE, patch_size=8, projection_dim=16,
        ),
        text_config=LlamaConfig(
            hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=VOCAB, max_position_embeddings=512, pad_token_id=0,
        ),
        video_token_index=VIDEO_TOKEN,
        image_token_index=IMAGE_TOKEN,
        spatial_pool_stride=2,
        autoregressive_config={"num_heads": 4, "num_layers": 2, **autoregressive_config},
    )
    config._attn_implementation = attn_implementation
    return config


def tiny_model(dtype=torch.float64, seed: int = 0, **autoregressive_config) -> LlavaNextARForConditionalGeneration:
    torch.manual_seed(seed)
    model = LlavaNextARForConditionalGeneration(tiny_config(**autoregressive_config))
    return model.to(dtype).eval()


def video_batch(
    batch_size: int = 2,
    num_frames: int = 4,
    text_before: int = 3,
    text_after: int = 2,
    dtype=torch.float64,
    seed: int = 0,
    llm_num_frames: int | None = None,
) -> dict:
    """`input_ids` = text, then 4 video tokens per LLM frame, then text; `pixel_values_videos` == `video_frames`."""
    generator = torch.Generator().manual_seed(seed)
    llm_num_frames = num_frames if llm_num_frames is None else llm_num_frames
    video = torch.full((batch_size, llm_num_frames * 4), VIDEO_TOKEN)
    before = torch.randint(1, 60, (batch_size, text_before), generator=generator)
    after = torch.randint(1, 60, (batch_size, text_after), generator=generator)
    input_ids = torch.cat([before, video, after], dim=1)
    frames = torch.randn(batch_size, num_frames, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator, dtype=dtype)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": frames.clone() if llm_num_frames == num_frames else None,
        "video_frames": frames,
        "labels": input_ids.clone(),
    }
