# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""
The model card (`README.md`) of a LLaVA-NeXT-AR checkpoint, generated from its config.

Plain string formatting, standard library only (so `scripts/push_to_hub.py` loads it without torch): this file ships
inside every checkpoint as remote code and `LlavaNextARForConditionalGeneration.save_pretrained` calls
`write_model_card`. The card starts with the Hub's YAML
metadata (`library_name`, `pipeline_tag`, `tags`, `license`, `base_model` when converted), then summarises the
architecture, lists the whole `autoregressive_config`, and shows how to load (`trust_remote_code=True`) and fine-tune.
"""

import json
import os
import re
from typing import Any



MODEL_CARD_NAME = "README.md"

REPO_ID_PLACEHOLDER = "path/or/repo-id"
"""Stands for the checkpoint's location in the card's code; `scripts/push_to_hub.py` replaces it with the repo id."""

PIPELINE_TAG = "video-text-to-text"
"""A Hub pipeline tag (`@huggingface/tasks`), the one LLaVA-NeXT-Video checkpoints use."""

TAGS = ("llava_next_ar", "llava_next_video", "video", "next-frame-prediction", "custom_code")

AUTOREGRESSIVE_CONFIG_DOCS: dict[str, str] = {
    "enabled": "`False`: the model is exactly `LlavaNextVideoForConditionalGeneration` (no extra weights, same "
    "numbers).",
    "embedding_dim": "teacher feature width `D`; `None` = the vision tower's (1152 for SigLIP-so400m).",
    "num_hist": "sampled frames of history a prediction reads: the context frame and the `num_hist - 1` before it, "
    "and `num_hist` frames' worth of LLM tokens; `None` = all earlier frames.",
    "loss_weight": "weight of the auxiliary loss in `loss` (the seed advises 0.01-0.2).",
    "num_heads": "predictor attention heads.",
    "num_layers": "predictor layers.",
    "predictor_hidden_size": "predictor width; `None` = the teacher width `embedding_dim` (the LLM hidden states are "
    "projected into it inside the cross-attention). The seed projects to the LLM width (`text_config.hidden_size`), "
    "several times the objective's cost at 7B (`benchmarks/README.md`).",
    "mlp_ratio": "predictor MLP width / predictor width.",
    "use_frame_causal_mask": "frame-level causal attention; `False` = token-level causal (the seed's ablation "
    "baseline).",
    "fuse_llm_hidden_states": "cross-attend to the LLM hidden states that saw no frame at or after the target.",
    "predict_residual": "predict the change from the context frame (prediction = context features + predictor "
    "output); `False` = the seed's form, predicting the features outright: worse on held-out generated clips "
    "(`docs/temporal_qa.md`), less bad in the two-clip real ablation where every variant overfits "
    "(`docs/ablation.md`).",
    "normalize_targets": "layer-normalise the teacher's features per patch (no affine, as V-JEPA's targets) before "
    "the predictor and the loss.",
    "teacher": '`"copy"`: a frozen copy of the vision tower, `autoregressive_module.teacher` (fixed targets, one more '
    'tower in memory); `"shared"`: the live tower under `no_grad` (no extra memory, targets drift as it trains).',
    "use_fast_slow_frames": "the processor samples `video_frames` with the fast/slow sampler.",
    "fast_stride": "stride of the fast (recent, dense) frames.",
    "slow_stride": "stride of the slow (whole-clip, sparse) frames.",
    "num_fast": "number of fast frames.",
    "num_slow": "number of slow frames.",
    "merge_strategy": 'order of the merged fast/slow frames the LLM sees: `"concat"` = `[slow] + [fast]`, or '
    '`"interleave"`.',
    "short_clip": 'clips too short for a stride: `"shrink"` the stride to the largest that fits, or `"error"`.',
}
"""What each `autoregressive_config` key means: the one source of the key tables in the config docstring, the model
card and the README (here, not in the configuration file, because this file needs only the standard library)."""


def autoregressive_config_table(values: dict[str, Any], header: str = "value", as_json: bool = False) -> str:
    """
    A markdown table `| key | <header> | meaning |` of `autoregressive_config` values (the config docstring and the
    README show the defaults, the model card a checkpoint's values), as Python literals or as JSON (`as_json`, as
    `config.json` shows them).
    """
    rows = [f"| key | {header} | meaning |", "|---|---|---|"]
    for key, value in values.items():
        literal = json.dumps(value) if as_json or isinstance(value, str) else repr(value)
        rows.append(f"| `{key}` | `{literal}` | {AUTOREGRESSIVE_CONFIG_DOCS.get(key, '')} |")
    return "\n".join(rows)


_PLAIN_YAML = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/+-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "none", "~"}


def _yaml_scalar(value: str) -> str:
    """A YAML scalar for a string: plain when unambiguous, else a JSON string (valid YAML double-quoted scalar)."""
    value = str(value)
    if _PLAIN_YAML.fullmatch(value) and value.lower() not in _YAML_WORDS and not _looks_numeric(value):
        return value
    return json.dumps(value)


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _get(config: Any, name: str, default: Any = None) -> Any:
    return getattr(config, name, default) if config is not None else default


def _tokens_per_frame(config: Any) -> int | None:
    vision = _get(config, "vision_config")
    image_size, patch_size = _get(vision, "image_size"), _get(vision, "patch_size")
    stride = _get(config, "spatial_pool_stride")
    if not (isinstance(image_size, int) and isinstance(patch_size, int) and isinstance(stride, int) and stride > 0):
        return None
    return (image_size // patch_size // stride) ** 2


def _metadata(base_model: str | None, license: str, extra_metadata: dict[str, str] | None) -> str:
    lines = [
        "---",
        "library_name: transformers",
        f"pipeline_tag: {PIPELINE_TAG}",
        f"license: {_yaml_scalar(license)}",
    ]
    for key, value in (extra_metadata or {}).items():
        lines.append(f"{key}: {_yaml_scalar(value)}")
    if base_model:
        lines.append(f"base_model: {_yaml_scalar(base_model)}")
    lines.append("tags:")
    lines.extend(f"- {_yaml_scalar(tag)}" for tag in TAGS)
    lines.append("---")
    return "\n".join(lines)


def _architecture(config: Any) -> str:
    vision, text = _get(config, "vision_config"), _get(config, "text_config")
    ar = _get(config, "autoregressive_config") or {}
    image_size, patch_size = _get(vision, "image_size"), _get(vision, "patch_size")
    patches = (image_size // patch_size) ** 2 if isinstance(image_size, int) and isinstance(patch_size, int) else "?"
    if not ar.get("enabled", True):
        teacher = "none (`enabled: false`)"
        predictor = "none"
    else:
        teacher = (
            "the live vision tower under `no_grad` (`teacher: \"shared\"`, no extra weights)"
            if ar.get("teacher") == "shared"
            else "a frozen copy of the vision tower (`autoregressive_module.teacher`, never trained)"
        )
        history = "all earlier frames" if ar.get("num_hist") is None else f"{ar.get('num_hist')} frames of history"
        predictor = (
            f"{ar.get('num_layers')} layers, {ar.get('num_heads')} heads at width "
            f"{ar.get('predictor_hidden_size')}, cross-attending to the LLM (width {_get(text, 'hidden_size')}); "
            f"reads {history}; "
            f"predicts `D = {ar.get('embedding_dim')}` features per patch"
        )
    rows = [
        (
            "vision tower",
            f"`{_get(vision, 'model_type')}`, width {_get(vision, 'hidden_size')}, "
            f"{_get(vision, 'num_hidden_layers')} layers, {image_size} px frames, patch {patch_size} "
            f"({patches} patches per frame); features from layer `{_get(config, 'vision_feature_layer')}`, "
            f"strategy `{_get(config, 'vision_feature_select_strategy')}`",
        ),
        (
            "projector",
            f"2-layer MLP (`{_get(config, 'projector_hidden_act')}`) to the LLM width, then "
            f"`{_get(config, 'spatial_pool_mode')}` pooling with stride {_get(config, 'spatial_pool_stride')}",
        ),
        (
            "language model",
            f"`{_get(text, 'model_type')}`, width {_get(text, 'hidden_size')}, {_get(text, 'num_hidden_layers')} "
            f"layers, vocabulary {_get(text, 'vocab_size')}",
        ),
        ("video tokens per frame", str(_tokens_per_frame(config))),
        ("teacher", teacher),
        ("predictor", predictor),
    ]
    table = ["| part | |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(table)


def _autoregressive_table(config: Any) -> str:
    return autoregressive_config_table(_get(config, "autoregressive_config") or {}, as_json=True)


PROCESSOR_KINDS = ("chat_template", "prompt", "none")


def _use_preamble(processor: str) -> list[str]:
    if processor not in PROCESSOR_KINDS:
        raise ValueError(f"`processor` must be one of {PROCESSOR_KINDS}, got {processor!r}")
    if processor != "none":
        return []
    return [
        "**This checkpoint has no processor** (it was converted from weights without a tokenizer), so "
        "`AutoProcessor` below fails until you add one: save a `LlavaNextARProcessor` built with "
        "`LlavaNextARProcessor.from_model_config(model.config, tokenizer)` (from this checkpoint's "
        "`processing_llava_next_ar.py`) next to the weights.",
        "",
    ]


def _prompt_lines(processor: str) -> list[str]:
    if processor == "chat_template":
        return [
            'conversation = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]',  # noqa: E501
            "prompt = processor.apply_chat_template(conversation, add_generation_prompt=True)",
        ]
    return [
        'prompt = f"USER: {processor.video_token}\\nWhat happens? ASSISTANT:"  # the prompt format of training',
    ]


def _tested_transformers() -> str:
    """The tested transformers range, read from the config file (not imported: this file needs no transformers)."""
    from .configuration_llava_next_ar import TESTED_TRANSFORMERS

    return ",".join(TESTED_TRANSFORMERS)


def card_example_problems(folder: str | os.PathLike) -> list[str]:
    """Why the `## Use` example of the card in `folder` cannot run from the folder's files (empty: it can): no
    processor/tokenizer saved, or an example that calls `apply_chat_template` on a processor without a chat
    template. For push checks, before a card that cannot work reaches the Hub."""
    problems = []
    card_path = os.path.join(folder, MODEL_CARD_NAME)
    card = open(card_path, encoding="utf-8").read() if os.path.isfile(card_path) else ""
    if "AutoProcessor.from_pretrained" in card:
        if not os.path.isfile(os.path.join(folder, "processor_config.json")):
            problems.append("the card loads `AutoProcessor` but the folder has no processor_config.json")
        tokenizer_files = ("tokenizer.json", "tokenizer_config.json")
        if not any(os.path.isfile(os.path.join(folder, name)) for name in tokenizer_files):
            problems.append("the card loads `AutoProcessor` but the folder has no tokenizer")
    if "apply_chat_template" in card:
        has_template = os.path.isfile(os.path.join(folder, "chat_template.jinja")) or os.path.isfile(
            os.path.join(folder, "chat_template.json")
        )
        for name in ("processor_config.json", "tokenizer_config.json"):
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as file:
                    has_template = has_template or bool(json.load(file).get("chat_template"))
        if not has_template:
            problems.append("the card calls `apply_chat_template` but the processor has no chat template")
    return problems


def model_card(
    config: Any,
    base_model: str | None = None,
    *,
    license: str = "apache-2.0",
    extra_metadata: dict[str, str] | None = None,
    repo_id: str | None = None,
    processor: str = "chat_template",
) -> str:
    """
    The model card (`README.md` text) of a LLaVA-NeXT-AR checkpoint.

    Args:
        config (`LlavaNextARConfig`): the checkpoint's config; read by attribute, never modified.
        base_model (`str`, *optional*): Hub id of the LLaVA-NeXT-Video checkpoint this one was converted from; becomes
            the `base_model` metadata and a sentence on what was initialised from it.
        license (`str`, *optional*, defaults to `"apache-2.0"`): the `license` metadata (a converted checkpoint should
            carry its base model's).
        extra_metadata (`dict[str, str]`, *optional*): more top-level metadata, e.g. `license_name`/`license_link`.
        repo_id (`str`, *optional*): used in the code examples; default `REPO_ID_PLACEHOLDER`, which
            `scripts/push_to_hub.py` replaces with the repo id it pushes to.
        processor (`str`, *optional*, defaults to `"chat_template"`): what the checkpoint's processor can do, so the
            card's example runs: `"chat_template"` (the example builds the prompt with `apply_chat_template`),
            `"prompt"` (a processor without a chat template: the example writes the prompt out) or `"none"` (no
            processor saved: the card says so and shows how to add one; `card_example_problems` flags it).

    Returns:
        `str`: YAML front matter and Markdown, ending with a newline.
    """
    repo = repo_id or REPO_ID_PLACEHOLDER
    ar = _get(config, "autoregressive_config") or {}
    loss_weight = ar.get("loss_weight")
    has_teacher_copy = ar.get("enabled", True) and ar.get("teacher", "copy") == "copy"
    if base_model:
        origin = (
            f"Converted from [`{base_model}`](https://huggingface.co/{base_model}): the vision tower, projector and "
            "language model are its weights"
            + (", the teacher is an exact copy of its vision tower" if has_teacher_copy else "")
            + ", and only the predictor is newly initialised, so `autoregressive_loss` means something only after "
            "fine-tuning."
        )
    elif not ar.get("enabled", True):
        origin = "The objective is disabled in this checkpoint (`enabled: false`): it holds no teacher or predictor."
    elif has_teacher_copy:
        origin = "The teacher and the predictor are saved in this checkpoint with the rest of the weights."
    else:
        origin = 'The predictor is saved in this checkpoint; the teacher is the vision tower (`teacher: "shared"`).'
    sections = [
        _metadata(base_model, license, extra_metadata),
        "",
        "# LLaVA-NeXT-AR",
        "",
        "A LLaVA-NeXT-Video video LLM with an auxiliary **next-frame feature prediction** objective, shipped as "
        "`transformers` remote code (`trust_remote_code=True`; nothing to install beyond `transformers` and `torch`). "
        "While the LLM trains on its language-modelling loss, a small predictor reads the features of past frames "
        "and the LLM's hidden states and predicts the features of the next frame as a frozen copy of the vision "
        f"tower (the *teacher*) sees them; the MSE, weighted by `loss_weight` (here {loss_weight}), is added to the "
        "loss. Predictions never read a frame at or after their target.",
        "",
        origin,
        "",
        f"Tested with `transformers{_tested_transformers()}` (and `torch`): the remote code raises a clear error "
        "at import under an older `transformers` and warns once under a newer one.",
        "",
        "## Architecture",
        "",
        _architecture(config),
        "",
        "## `autoregressive_config`",
        "",
        _autoregressive_table(config),
        "",
        "## Use",
        "",
        *_use_preamble(processor),
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{repo}", trust_remote_code=True, dtype="auto")',
        f'processor = AutoProcessor.from_pretrained("{repo}", trust_remote_code=True)',
        "",
        *_prompt_lines(processor),
        'batch = processor(text=prompt, videos=clip, return_tensors="pt")  # clip: [T, H, W, 3] frames or a file path',
        'out = model(**batch, labels=batch["input_ids"])                    # batch also holds `video_frames`',
        "out.loss, out.main_loss, out.autoregressive_loss",
        "```",
        "",
        "`AutoModel.from_pretrained(..., trust_remote_code=True)` loads the same class. Without `video_frames` (as in "
        "`generate`) the model computes exactly what LLaVA-NeXT-Video computes.",
        "",
        "## Fine-tune",
        "",
        "No custom trainer: `forward` returns `loss` (`main_loss + autoregressive_loss`, the auxiliary part already "
        "weighted), `main_loss` (language modelling) and `autoregressive_loss`. Pass `video_frames` (the processor "
        "returns them, with `video_frame_indices`) in every batch; without them only the language-modelling loss is "
        "computed. The teacher is frozen and stays so.",
        "",
        "```python",
        "from transformers import Trainer, TrainingArguments",
        "",
        "trainer = Trainer(",
        "    model=model,",
        '    args=TrainingArguments(output_dir="out", remove_unused_columns=False),',
        "    train_dataset=train_dataset,  # processor outputs: input_ids, pixel_values_videos, video_frames, ...",
        "    data_collator=collate,",
        ")",
        "trainer.train()",
        'model.save_pretrained("out/final")  # weights, config with auto_map, remote code, this card',
        "```",
        "",
        "It runs unchanged under `accelerate launch`: the teacher is an ordinary registered submodule, so it moves, "
        "saves and shards like the rest of the model.",
        "",
        "## License",
        "",
        f"Weights: `{license}`. Remote code (the `*.py` files): Apache-2.0.",
        "",
    ]
    return "\n".join(sections)


def write_model_card(save_directory: str | os.PathLike, config: Any, base_model: str | None = None) -> bool:
    """Write `model_card(config, base_model)` to `save_directory/README.md` unless a `README.md` is already there.

    Returns:
        `bool`: whether the card was written.
    """
    path = os.path.join(save_directory, MODEL_CARD_NAME)
    if os.path.exists(path):
        return False
    with open(path, "w", encoding="utf-8") as file:
        file.write(model_card(config, base_model))
    return True


__all__ = [
    "model_card",
    "write_model_card",
    "card_example_problems",
    "MODEL_CARD_NAME",
    "REPO_ID_PLACEHOLDER",
    "PIPELINE_TAG",
    "TAGS",
]
