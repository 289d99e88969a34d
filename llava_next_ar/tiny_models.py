# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Small LLaVA-NeXT-AR models built locally, with no download: the one place that builds them for the main job
(`scripts/train.py` without `--model_name_or_path`), the tests and the benchmarks.

- `tiny_config`: a CLIP vision tower + Llama LLM config from a few sizes (2 layers each);
- `word_level_tokenizer`: an offline word-level tokenizer over a given vocabulary, `<image>`/`<video>` as special
  tokens (so a run of placeholders splits into one id each);
- `build_tiny_model_and_processor`: the main job's model and processor, vocabulary from the words of its data and
  `CHAT_TEMPLATE`;
- `video_batch`: random text around the right number of `<video>` placeholders, and random frames, for any config.

Not remote code: this file is never copied into a checkpoint.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping

import torch
from transformers import CLIPVisionConfig, LlamaConfig, PreTrainedTokenizerFast

from .configuration_llava_next_ar import LlavaNextARConfig
from .modeling_llava_next_ar import LlavaNextARForConditionalGeneration
from .processing_llava_next_ar import LlavaNextARProcessor


SPECIAL_TOKENS = ("<pad>", "<unk>", "<s>", "</s>")
"""Padding, unknown, begin and end of sequence, in that order at ids 0-3 of every tiny vocabulary."""
MEDIA_TOKENS = ("<image>", "<video>")

CHAT_TEMPLATE = (
    "{% macro render(content) %}{% if content is string %}{{ content }}{% else %}{% for item in content %}"
    "{% if item['type'] == 'video' %}<video>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{% endmacro %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}USER: {{ render(message['content']) }} "
    "{% elif message['role'] == 'system' %}{{ render(message['content']) }} "
    "{% else %}ASSISTANT: {% generation %}{{ render(message['content']) }}</s>{% endgeneration %} {% endif %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)
"""The main job's chat template: the `USER: <video>\n... ASSISTANT:` format, any number of turns; `{% generation %}`
marks what the model learns (each assistant text and its `</s>`), so the collator's labels come from the template
itself. The model card's `apply_chat_template` example works on its checkpoints."""


def tiny_config(
    vocab_size: int,
    video_token_index: int,
    image_token_index: int,
    *,
    image_size: int = 32,
    patch_size: int = 8,
    vision_hidden_size: int = 24,
    hidden_size: int = 32,
    max_position_embeddings: int = 512,
    pad_token_id: int = 0,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    autoregressive_config: Mapping | None = None,
    attn_implementation: str | None = None,
) -> LlavaNextARConfig:
    """
    A CLIP vision tower (2 layers, 2 heads, MLP 2x) + Llama LLM (2 layers, 4 heads, 2 KV heads, MLP 2x) config, pool
    stride 2: `((image_size // patch_size) // 2) ** 2` video tokens per frame. The predictor gets 4 heads and 2 layers
    unless `autoregressive_config` says otherwise. `bos_token_id`/`eos_token_id` None keep Llama's defaults.

    Args:
        vocab_size (`int`): the LLM's vocabulary; `video_token_index` and `image_token_index` must be below it.
        video_token_index, image_token_index (`int`): the `<video>` and `<image>` placeholder ids.
        image_size, patch_size (`int`): the vision tower's input side and patch side, in pixels.
        vision_hidden_size, hidden_size (`int`): the widths of the vision tower and of the LLM.
        max_position_embeddings, pad_token_id, bos_token_id, eos_token_id: the LLM's, as in `LlamaConfig`.
        autoregressive_config (`Mapping`, *optional*): keys of `LlavaNextARConfig.autoregressive_config`.
        attn_implementation (`str`, *optional*): set on the config and its sub-configs.
    """
    for name, index in (("video_token_index", video_token_index), ("image_token_index", image_token_index)):
        if not 0 <= index < vocab_size:
            raise ValueError(f"`{name}` must be an id below vocab_size={vocab_size}, got {index}")
    token_ids = {"bos_token_id": bos_token_id, "eos_token_id": eos_token_id}
    config = LlavaNextARConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=vision_hidden_size, intermediate_size=2 * vision_hidden_size, num_hidden_layers=2,
            num_attention_heads=2, image_size=image_size, patch_size=patch_size, projection_dim=vision_hidden_size,
        ),
        text_config=LlamaConfig(
            hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=vocab_size, max_position_embeddings=max_position_embeddings,
            pad_token_id=pad_token_id, **{key: value for key, value in token_ids.items() if value is not None},
        ),
        video_token_index=video_token_index,
        image_token_index=image_token_index,
        spatial_pool_stride=2,
        autoregressive_config={"num_heads": 4, "num_layers": 2, **(autoregressive_config or {})},
    )
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    return config


def word_level_tokenizer(vocab: Mapping[str, int], chat_template: str | None = None) -> PreTrainedTokenizerFast:
    """
    A `PreTrainedTokenizerFast` over `vocab` (token -> id; must hold `SPECIAL_TOKENS` and `MEDIA_TOKENS`) that splits
    on whitespace and punctuation, pads on the left (for batched `generate`; the collator pads right for training),
    and treats `<image>`/`<video>` as special tokens.
    """
    missing = [token for token in SPECIAL_TOKENS + MEDIA_TOKENS if token not in vocab]
    if missing:
        raise ValueError(f"`vocab` must hold {SPECIAL_TOKENS + MEDIA_TOKENS}, missing {missing}")
    # `tokenizers` is a dependency of transformers; imported by name so the package's import check (stdlib, torch
    # and transformers only) reads this file like the others.
    tokenizers = importlib.import_module("tokenizers")
    backend = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab=dict(vocab), unk_token="<unk>"))
    backend.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens=list(MEDIA_TOKENS), padding_side="left",
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def vocab_from_words(words: Iterable[str]) -> dict[str, int]:
    """`SPECIAL_TOKENS` and `MEDIA_TOKENS` at ids 0-5, then the other distinct `words` in sorted order."""
    specials = list(SPECIAL_TOKENS + MEDIA_TOKENS)
    return {token: index for index, token in enumerate(specials + sorted(set(words) - set(specials)))}


def build_tiny_model_and_processor(
    words: Iterable[str],
    *,
    image_size: int = 64,
    patch_size: int = 16,
    hidden_size: int = 64,
    autoregressive_config: Mapping | None = None,
) -> tuple[LlavaNextARForConditionalGeneration, LlavaNextARProcessor]:
    """
    The main job's model and processor: a word-level tokenizer over `words` (`vocab_from_words`, `CHAT_TEMPLATE`),
    a `tiny_config` of LLM width `hidden_size` and vision width `hidden_size // 2`, randomly initialised from the
    current torch seed, and a processor that agrees with the config.

    The model is built with `_from_config`: under ZeRO-3 (an accelerate DeepSpeed config) it builds the whole model
    inside `deepspeed.zero.Init` and initialises the partitioned weights gathered; a direct call partitions only the
    sub-models it builds with `from_config`, then fails initialising their empty parts.
    """
    vocab = vocab_from_words(words)
    tokenizer = word_level_tokenizer(vocab)
    config = tiny_config(
        len(vocab), vocab["<video>"], vocab["<image>"], image_size=image_size, patch_size=patch_size,
        vision_hidden_size=hidden_size // 2, hidden_size=hidden_size, max_position_embeddings=1024,
        pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
        autoregressive_config=autoregressive_config,
    )
    model = LlavaNextARForConditionalGeneration._from_config(config)
    return model, LlavaNextARProcessor.from_model_config(config, tokenizer, chat_template=CHAT_TEMPLATE)


def video_batch(
    config: LlavaNextARConfig,
    *,
    batch_size: int = 2,
    num_frames: int = 4,
    text_before: int = 3,
    text_after: int = 2,
    llm_num_frames: int | None = None,
    text_ids_below: int | None = None,
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> dict:
    """
    Random inputs for `config`: `input_ids` = `text_before` text ids, then `llm_num_frames *
    config.video_tokens_per_frame` `<video>` placeholders, then `text_after` text ids (drawn from `1 ..
    text_ids_below - 1`; default below the smaller placeholder id); `video_frames` `[B, T, 3, S, S]` standard normal at
    the vision tower's `image_size` S; `pixel_values_videos` a copy of them when the LLM sees the same frames
    (`llm_num_frames` None or `num_frames`), else None; `attention_mask` all ones, `labels` = `input_ids`. Drawn in
    that order from one generator seeded with `seed`.
    """
    if num_frames < 1 or (llm_num_frames is not None and llm_num_frames < 1):
        raise ValueError(f"`num_frames` and `llm_num_frames` must be >= 1, got {num_frames} and {llm_num_frames}")
    generator = torch.Generator().manual_seed(seed)
    llm_num_frames = num_frames if llm_num_frames is None else llm_num_frames
    high = min(config.video_token_index, config.image_token_index) if text_ids_below is None else text_ids_below
    video = torch.full((batch_size, llm_num_frames * config.video_tokens_per_frame), config.video_token_index)
    before = torch.randint(1, high, (batch_size, text_before), generator=generator)
    after = torch.randint(1, high, (batch_size, text_after), generator=generator)
    input_ids = torch.cat([before, video, after], dim=1)
    side = config.vision_config.image_size
    frames = torch.randn(batch_size, num_frames, 3, side, side, generator=generator, dtype=dtype)
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "pixel_values_videos": frames.clone() if llm_num_frames == num_frames else None,
        "video_frames": frames,
        "labels": input_ids.clone(),
    }


__all__ = [
    "CHAT_TEMPLATE",
    "MEDIA_TOKENS",
    "SPECIAL_TOKENS",
    "build_tiny_model_and_processor",
    "tiny_config",
    "video_batch",
    "vocab_from_words",
    "word_level_tokenizer",
]
