# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Export a fine-tuned LLaVA-NeXT-AR checkpoint as a plain LLaVA-NeXT-Video checkpoint that stock transformers and
serving stacks load without remote code.

    python scripts/export_base.py out/llava-next-ar-7b out/llava-next-video-7b-ar
    python scripts/export_base.py my-org/llava-next-ar-7b out/served --dtype bfloat16
    python scripts/export_base.py outputs/run/final out/served --base-model my-org/llava-next-ar-7b   # a LoRA adapter

SRC is a LLaVA-NeXT-AR checkpoint (folder or Hub repo id), or a PEFT adapter trained on one (a folder or repo with
`adapter_config.json`, e.g. `scripts/train.py --use_lora`): the adapter is first merged into the LLaVA-NeXT-AR model
its `base_model_name_or_path` (or `--adapter-base`) names, with peft's `merge_and_unload`. OUT then holds:

- `config.json`, `generation_config.json` and `model.safetensors` exactly as `LlavaNextVideoForConditionalGeneration.
  save_pretrained` writes them (`model_type` `llava_next_video`, the llava-hf key layout), from
  `model.export_base_model()`: vision tower, projector, LLM and head, without the objective's teacher and predictor;
- the processor as the stock `LlavaNextVideoProcessor` (tokenizer, image and video processors, chat template), so
  `AutoProcessor` loads it;
- `README.md`: a model card whose `base_model` is the LLaVA-NeXT-AR checkpoint, with the objective's settings (for
  provenance) and how to serve it.

No `.py` file and no `auto_map` is written (checked before the folder is put in place). OUT must not exist or be
empty: everything is written to a temporary folder next to it and renamed at the end, so a failure leaves nothing.
Exit codes: 0 done, 2 bad arguments or source (nothing written), 1 anything else.
"""

import argparse
import json
import os
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
from convert_llava_next_video import (  # noqa: E402  (a sibling script: the same source resolution)
    DTYPES,
    ConversionError,
    resolve_source,
    source_card_metadata,
    staged_folder,
)


MODEL_CARD_NAME = "README.md"
TAGS = ("llava_next_video", "video", "llava_next_ar", "next-frame-prediction")
PROCESSOR_MARKERS = ("processor_config.json", "tokenizer_config.json", "tokenizer.json")


class ExportError(Exception):
    """A problem with the arguments or the source checkpoint (exit code 2)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="export_base.py",
        description=__doc__.split("\n\n")[1].strip(),
        epilog="Then: python scripts/push_to_hub.py OUT --repo-id my-org/name --dry-run",
    )
    parser.add_argument("source", help="LLaVA-NeXT-AR checkpoint or PEFT adapter on one: a folder or a Hub repo id")
    parser.add_argument("output_dir", help="folder to create for the LLaVA-NeXT-Video checkpoint (absent or empty)")
    parser.add_argument(
        "--base-model",
        default=None,
        metavar="REPO_ID",
        help="Hub id of the LLaVA-NeXT-AR checkpoint, for the card's base_model (default: the source's repo id, or "
        "for an adapter in a local folder, its base's repo id; none for a local folder)",
    )
    parser.add_argument(
        "--adapter-base",
        default=None,
        metavar="PATH_OR_REPO_ID",
        help="for an adapter source: the LLaVA-NeXT-AR checkpoint to merge it into (default: the adapter's "
        "base_model_name_or_path)",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="auto", help="dtype of the saved weights; 'auto' keeps the source's"
    )
    parser.add_argument(
        "--chat-template",
        default=None,
        metavar="FILE",
        help="Jinja chat template for the processor (default: the source processor's or tokenizer's)",
    )
    parser.add_argument(
        "--license", default=None, help="license metadata of the card (default: the source card's, else apache-2.0)"
    )
    parser.add_argument("--revision", default=None, help="revision of a Hub source (branch, tag or commit)")
    parser.add_argument(
        "--local-files-only",
        action="store_true",
        help="never download: Hub sources must be in the local cache (also implied by HF_HUB_OFFLINE=1)",
    )
    return parser.parse_args(argv)


def checkpoint_kind(folder: Path, argument: str) -> str:
    """`"adapter"` or `"llava_next_ar"`; anything else is an `ExportError` naming `argument`."""
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise ExportError(f"{argument}: {folder} has neither config.json nor adapter_config.json: not a checkpoint")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except json.JSONDecodeError as error:
        raise ExportError(f"{argument}: {config_file} is not valid JSON: {error}")
    if model_type == "llava_next_video":
        raise ExportError(f"{argument}: {folder} is already a plain LLaVA-NeXT-Video checkpoint; serve it as it is")
    if model_type != "llava_next_ar":
        raise ExportError(f"{argument}: {config_file} has model_type {model_type!r}; expected 'llava_next_ar'")
    return "llava_next_ar"


def load_llava_next_ar(folder: Path, dtype: str, argument: str):
    import torch

    from llava_next_ar import LlavaNextARForConditionalGeneration

    try:
        model, info = LlavaNextARForConditionalGeneration.from_pretrained(
            folder, dtype=dtype if dtype == "auto" else getattr(torch, dtype), output_loading_info=True
        )
    except OSError as error:
        raise ExportError(f"{argument}: cannot load the weights from {folder}: {error}")
    missing = sorted(key for key in info.get("missing_keys", []) if not key.startswith("autoregressive_module."))
    if missing:
        raise ExportError(
            f"{argument}: {folder} lacks {len(missing)} weight(s) of the base model, which would be exported random: "
            f"{missing[:8]}{' ...' if len(missing) > 8 else ''}"
        )
    return model.eval()


def load_source(args: argparse.Namespace, local_files_only: bool) -> dict:
    """The LLaVA-NeXT-AR model to export (adapters merged) and where each part came from."""
    source_dir, source_repo = resolve_source(args.source, args.revision, local_files_only)
    kind = checkpoint_kind(source_dir, "source")
    loaded = {"source_dir": source_dir, "source_repo": source_repo, "adapter": None}
    if kind == "llava_next_ar":
        if args.adapter_base:
            raise ExportError(f"--adapter-base is only for adapter sources; {args.source!r} is a full checkpoint")
        model = load_llava_next_ar(source_dir, args.dtype, "source")
        loaded.update(model=model, ar_dir=source_dir, ar_repo=source_repo)
        return loaded

    adapter_config = json.loads((source_dir / "adapter_config.json").read_text())
    reference = args.adapter_base or adapter_config.get("base_model_name_or_path")
    argument = "--adapter-base" if args.adapter_base else "the adapter's base_model_name_or_path"
    if not reference:
        raise ExportError(f"source {args.source!r} is an adapter that names no base model: pass --adapter-base")
    try:
        ar_dir, ar_repo = resolve_source(reference, None, local_files_only)
    except ConversionError as error:
        raise ExportError(f"{argument} {reference!r}: {error}")
    if checkpoint_kind(ar_dir, argument) != "llava_next_ar":
        raise ExportError(f"{argument} {reference!r} is itself an adapter; name the LLaVA-NeXT-AR checkpoint")
    model = load_llava_next_ar(ar_dir, args.dtype, argument)
    try:
        from peft import PeftModel
    except ModuleNotFoundError:
        raise ExportError("source is a PEFT adapter: install peft (pip install peft) to merge it")
    try:
        model = PeftModel.from_pretrained(model, source_dir).merge_and_unload()
    except Exception as error:  # wrong base shapes, unknown adapter type, adapter that cannot merge
        raise ExportError(f"cannot merge adapter {args.source!r} into {reference!r}: {type(error).__name__}: {error}")
    loaded.update(model=model.eval(), ar_dir=ar_dir, ar_repo=ar_repo)
    loaded["adapter"] = {"type": adapter_config.get("peft_type", "PEFT"), "base": reference}
    return loaded


def stock_processor(folder: Path, config, chat_template_file: str | None):
    """The LLaVA-NeXT-AR processor in `folder`, and it as the stock `LlavaNextVideoProcessor` (no remote-code refs)."""
    from transformers import LlavaNextVideoProcessor

    from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor

    if not any((folder / name).is_file() for name in PROCESSOR_MARKERS):
        raise ExportError(f"source: no processor or tokenizer in {folder}; a served checkpoint needs one")
    try:
        processor = LlavaNextARProcessor.from_pretrained(folder, trust_remote_code=False)
        processor.check_compatible(config, check_sampler=False)
    except Exception as error:
        raise ExportError(f"source: the processor in {folder} cannot be exported: {type(error).__name__}: {error}")
    # The stock processor counts `(side // patch_size) ** 2 // 4` `<video>` tokens per frame (`spatial_pool_stride=2`).
    side = config.vision_config.image_size // config.vision_config.patch_size
    if side * side // 4 != config.video_tokens_per_frame:
        raise ExportError(
            f"source: the model reads {config.video_tokens_per_frame} video tokens per frame (spatial_pool_stride="
            f"{config.spatial_pool_stride}, image_size={config.vision_config.image_size}) but the stock "
            f"LlavaNextVideoProcessor would give {side * side // 4}: stock stacks could not feed it"
        )
    chat_template = processor.chat_template or getattr(processor.tokenizer, "chat_template", None)
    if chat_template_file is not None:
        try:
            chat_template = Path(chat_template_file).read_text(encoding="utf-8")
        except OSError as error:
            raise ExportError(f"--chat-template {chat_template_file!r}: {error}")
    if not chat_template:
        raise ExportError(f"source: the processor in {folder} has no chat template; pass --chat-template FILE")
    tokenizer = processor.tokenizer
    tokenizer.init_kwargs.pop("auto_map", None)  # loaded parts remember the remote-code processor class
    for part in (processor.image_processor, processor.video_processor):
        vars(part).pop("auto_map", None)
    return processor, LlavaNextVideoProcessor(
        video_processor=processor.video_processor.to_llava_next_video(),
        image_processor=processor.image_processor,
        tokenizer=tokenizer,
        chat_template=chat_template,
        patch_size=processor.patch_size,
        vision_feature_select_strategy=processor.vision_feature_select_strategy,
        video_token=processor.video_token,
        image_token=processor.image_token,
        num_additional_image_tokens=processor.num_additional_image_tokens,
    )


def state_bytes(module) -> int:
    """Bytes the module adds to a checkpoint (its state dict; shared tensors once)."""
    if module is None:
        return 0
    tensors = {tensor.data_ptr(): tensor for tensor in module.state_dict().values()}
    return sum(tensor.numel() * tensor.element_size() for tensor in tensors.values())


def weights_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.glob("*.safetensors"))


def remote_code_left(folder: Path) -> list[str]:
    """What in `folder` would need `trust_remote_code`: `.py` files and `auto_map` entries (at any depth of a JSON)."""

    def has_auto_map(value) -> bool:
        if isinstance(value, dict):
            return "auto_map" in value or any(has_auto_map(item) for item in value.values())
        return isinstance(value, list) and any(has_auto_map(item) for item in value)

    problems = [f"{path.name} (remote code)" for path in folder.rglob("*.py")]
    for path in sorted(folder.glob("*.json")):
        if has_auto_map(json.loads(path.read_text())):
            problems.append(f"{path.name} (auto_map)")
    config = json.loads((folder / "config.json").read_text())
    if config.get("model_type") != "llava_next_video" or "autoregressive_config" in config:
        problems.append("config.json (not a plain llava_next_video config)")
    return problems


def export_card(
    config, *, base_model, converted_from, license, extra_metadata, adapter, dropped_bytes, weights
) -> str:
    """
    The model card of the export: metadata (`base_model` = the LLaVA-NeXT-AR checkpoint), how to serve it, and the
    provenance (`converted_from`: the LLaVA-NeXT-Video checkpoint the LLaVA-NeXT-AR one came from, if its card says).
    """
    import transformers
    from huggingface_hub import ModelCardData

    from llava_next_ar.model_card_llava_next_ar import PIPELINE_TAG, REPO_ID_PLACEHOLDER

    repo = REPO_ID_PLACEHOLDER
    metadata = ModelCardData(
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        license=license,
        base_model=base_model,
        tags=list(TAGS),
        **extra_metadata,
    ).to_yaml()
    origin = (
        f"the LLaVA-NeXT-AR checkpoint [`{base_model}`](https://huggingface.co/{base_model})"
        if base_model
        else "a local LLaVA-NeXT-AR checkpoint"
    )
    if converted_from:
        origin += f" (itself converted from [`{converted_from}`](https://huggingface.co/{converted_from}))"
    if adapter:
        origin += f", with a {adapter['type']} adapter merged into it (peft `merge_and_unload`)"
    ar = config.autoregressive_config
    sampling = (
        f"fast/slow frame sampling ({ar['num_slow']} slow frames {ar['slow_stride']} apart, then {ar['num_fast']} "
        f"fast frames {ar['fast_stride']} apart, merged `{ar['merge_strategy']}`). The stock processor shows the "
        "model the frames it is given, in that order: to match fine-tuning, pass frames sampled that way"
        if ar.get("use_fast_slow_frames")
        else "all frames of each clip in time order, as the stock processor does"
    )
    size = config.vision_config.image_size
    lines = [
        "---",
        metadata.rstrip("\n"),
        "---",
        "",
        "# LLaVA-NeXT-Video, fine-tuned with LLaVA-NeXT-AR",
        "",
        "A plain LLaVA-NeXT-Video checkpoint (`LlavaNextVideoForConditionalGeneration`, `model_type: "
        "llava_next_video`, the llava-hf file and key layout): stock `transformers` and serving stacks load it "
        f"without `trust_remote_code`. It was exported from {origin}, fine-tuned with an "
        "auxiliary next-frame feature prediction objective. The objective is a training loss only: its teacher and "
        f"predictor are left out ({dropped_bytes} bytes), and this model computes exactly what the LLaVA-NeXT-AR "
        "model computes at inference (`forward` without `labels`, and `generate`).",
        "",
        "## Serve",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'pipe = pipeline("image-text-to-text", model="{repo}")',
        'messages = [{"role": "user", "content": [{"type": "video", "video": frames}, '
        '{"type": "text", "text": "What happens?"}]}]',
        'answer = pipe(text=messages, max_new_tokens=64, return_full_text=False)[0]["generated_text"]',
        "```",
        "",
        "`frames` is a decoded clip: a `[T, H, W, 3]` uint8 array (PyAV decodes files: "
        "`[f.to_ndarray(format=\"rgb24\") for f in av.open(path).decode(video=0)]`); given a path or URL instead, "
        "transformers decodes it with torchcodec. With the model and processor directly:",
        "",
        "```python",
        "from transformers import AutoModelForImageTextToText, AutoProcessor",
        "",
        f'model = AutoModelForImageTextToText.from_pretrained("{repo}", dtype="auto")',
        f'processor = AutoProcessor.from_pretrained("{repo}")',
        "inputs = processor.apply_chat_template(",
        '    messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"',
        ").to(model.device, dtype=model.dtype)",
        "tokens = model.generate(**inputs, max_new_tokens=64)",
        'answer = processor.decode(tokens[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)',
        "```",
        "",
        "The checkpoint has the architecture and layout of `llava-hf/LLaVA-NeXT-Video-7B-hf`, so serving stacks that "
        "support `LlavaNextVideoForConditionalGeneration` read it the same way (vLLM lists it among its supported "
        f"models). Exported with `transformers` {transformers.__version__}; LLaVA-NeXT-AR's tests run the code above "
        "on the export of a tiny model with stock `transformers` (no remote code); no serving stack was run.",
        "",
        f"The processor is the stock `LlavaNextVideoProcessor`: frames resized and cropped to {size} px, "
        f"{config.video_tokens_per_frame} `<video>` tokens per frame. The LLaVA-NeXT-AR processor of fine-tuning "
        f"showed the model {sampling}.",
        "",
        "## Provenance",
        "",
        f"Exported with LLaVA-NeXT-AR's `scripts/export_base.py` from {origin}. Weights: {weights} bytes "
        "(`model.safetensors`), without the teacher and predictor. The objective's settings during fine-tuning "
        "(`autoregressive_config`):",
        "",
        "```json",
        json.dumps(ar, indent=2),
        "```",
        "",
        "## License",
        "",
        f"Weights: `{license}`.",
        "",
    ]
    return "\n".join(lines)


def export(args: argparse.Namespace) -> Path:
    output_dir = Path(args.output_dir).expanduser().resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise ExportError(f"output_dir {output_dir} exists and is not a folder")
    if output_dir.exists() and any(output_dir.iterdir()):
        raise ExportError(f"output_dir {output_dir} exists and is not empty; choose a new folder")
    if args.chat_template is not None and not Path(args.chat_template).is_file():
        raise ExportError(f"--chat-template {args.chat_template!r} is not a file")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")
    try:
        loaded = load_source(args, args.local_files_only or offline)
    except ConversionError as error:  # from resolving `source`
        raise ExportError(str(error))
    model, ar_dir = loaded["model"], loaded["ar_dir"]
    base_model = args.base_model or loaded["source_repo"] or loaded["ar_repo"]
    ar_metadata = source_card_metadata(ar_dir)
    metadata = {**ar_metadata, **source_card_metadata(loaded["source_dir"])}  # an adapter's card, then its base's
    license = args.license or metadata.get("license") or "apache-2.0"
    extra = {key: metadata[key] for key in ("license_name", "license_link") if not args.license and key in metadata}
    processor_dir = loaded["source_dir"]
    if loaded["adapter"] and not any((processor_dir / name).is_file() for name in PROCESSOR_MARKERS):
        processor_dir = ar_dir
    ar_processor, processor = stock_processor(processor_dir, model.config, args.chat_template)
    dropped = state_bytes(getattr(model, "autoregressive_module", None))
    base = model.export_base_model()

    with staged_folder(output_dir, "exporting") as staging:  # an empty output_dir is replaced
        base.save_pretrained(staging)
        processor.save_pretrained(staging)
        weights = weights_bytes(staging)
        card = export_card(
            model.config,
            base_model=base_model,
            converted_from=ar_metadata.get("base_model") if isinstance(ar_metadata.get("base_model"), str) else None,
            license=license,
            extra_metadata=extra,
            adapter=loaded["adapter"],
            dropped_bytes=dropped,
            weights=weights,
        )
        (staging / MODEL_CARD_NAME).write_text(card, encoding="utf-8")
        problems = remote_code_left(staging)
        if problems:
            raise RuntimeError(f"the export would still need remote code: {problems}")

    source = loaded["source_repo"] or str(loaded["source_dir"])
    adapter = loaded["adapter"]
    print(f"source: {source} ({adapter['type'] + ' adapter on ' if adapter else ''}LLaVA-NeXT-AR)")
    if adapter:
        base_name = adapter["base"]
        print(f"merged the {adapter['type']} adapter into {base_name} with peft's merge_and_unload, then exported")
    print(f"processor: {type(ar_processor).__name__} -> LlavaNextVideoProcessor (chat template kept)")
    source_weights = weights_bytes(ar_dir)
    print(
        f"weights: {weights} bytes; the LLaVA-NeXT-AR checkpoint's: {source_weights} bytes "
        f"({source_weights - weights} fewer; teacher + predictor: {dropped} bytes)"
    )
    print(f"base_model: {base_model or 'none (local source: pass --base-model REPO_ID)'}; license: {license}")
    print(f"saved {output_dir}: {', '.join(sorted(path.name for path in output_dir.iterdir()))}")
    return output_dir


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        export(args)
    except ExportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
