# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Convert a plain LLaVA-NeXT-Video checkpoint into a LLaVA-NeXT-AR checkpoint with remote code.

    python scripts/convert_llava_next_video.py llava-hf/LLaVA-NeXT-Video-7B-hf out/llava-next-ar-7b \\
        --autoregressive-config '{"loss_weight": 0.05, "num_hist": 4}' --set teacher=copy --dtype bfloat16

The source is a local folder or a Hub repo id (read from the local cache when `HF_HUB_OFFLINE=1` or
`--local-files-only`). The output folder holds:

- `config.json`: the source config plus `autoregressive_config` (defaults, then `--autoregressive-config`, then each
  `--set key=value`), with `auto_map` for `AutoConfig`, `AutoModel` and `AutoModelForImageTextToText`;
- `model.safetensors`: the source weights, the teacher (an exact copy of the source vision tower, checked) and a
  newly initialised predictor;
- the remote-code `.py` files, so `from_pretrained(out, trust_remote_code=True)` needs only transformers and torch;
- the processor: converted to `LlavaNextARProcessor` (agreeing with the new config) when the source has a tokenizer,
  otherwise nothing; with `--copy-processor`, the source's processor/tokenizer files copied unchanged;
- `README.md`: the model card, with `base_model` (the source repo id, or `--base-model`) and the source's license.

Everything is written to a temporary folder next to the output and renamed into place at the end: a failure leaves
no output behind. Exit codes: 0 done, 2 bad arguments or source, 1 anything else.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DTYPES = ("auto", "float32", "float16", "bfloat16", "float64")
PROCESSOR_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "tokenizer.model",
    "preprocessor_config.json",
    "video_preprocessor_config.json",
    "processor_config.json",
    "chat_template.json",
    "chat_template.jinja",
)
"""Processor/tokenizer files `--copy-processor` copies unchanged (with any `.py` file their `auto_map` names)."""
SNAPSHOT_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py", "README.md"]
"""Files fetched from a Hub repo (weights as safetensors only)."""
CACHE_SNAPSHOT = re.compile(r"models--(?P<org>[^/\\]+?)--(?P<name>[^/\\]+)[/\\]snapshots[/\\][^/\\]+[/\\]?$")


class ConversionError(Exception):
    """A problem with the arguments or the source checkpoint (exit code 2)."""


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="convert_llava_next_video.py",
        description=__doc__.split("\n\n")[0].strip(),
        epilog="Keys of autoregressive_config: enabled, embedding_dim, num_hist, loss_weight, num_heads, num_layers, "
        "mlp_ratio, use_frame_causal_mask, fuse_llm_hidden_states, teacher, use_fast_slow_frames, fast_stride, "
        "slow_stride, num_fast, num_slow, merge_strategy, short_clip (see the README).",
    )
    parser.add_argument("source", help="LLaVA-NeXT-Video checkpoint: a local folder or a Hub repo id")
    parser.add_argument("output_dir", help="folder to create for the LLaVA-NeXT-AR checkpoint")
    parser.add_argument(
        "--autoregressive-config",
        default=None,
        metavar="JSON",
        help="autoregressive_config overrides as a JSON object, e.g. '{\"loss_weight\": 0.05}'",
    )
    parser.add_argument(
        "--set",
        dest="set_values",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="one autoregressive_config override (repeatable; applied after --autoregressive-config); VALUE is "
        "parsed as JSON when it can be (0.05, 4, true, null), else kept as a string (teacher=shared)",
    )
    parser.add_argument(
        "--dtype",
        choices=DTYPES,
        default="auto",
        help="dtype of the saved weights; 'auto' keeps the source's (default: auto)",
    )
    parser.add_argument(
        "--base-model",
        default=None,
        metavar="REPO_ID",
        help="Hub id for the card's base_model (default: the source repo id; for a local folder, the repo of a Hub "
        "cache snapshot, the base_model of a LLaVA-NeXT-AR source's card, else none)",
    )
    parser.add_argument(
        "--license",
        default=None,
        help="license metadata of the card (default: the source card's license, else apache-2.0)",
    )
    parser.add_argument("--revision", default=None, help="revision of a Hub source (branch, tag or commit)")
    parser.add_argument(
        "--local-files-only",
        action="store_true",
        help="never download: a Hub source must be in the local cache (also implied by HF_HUB_OFFLINE=1)",
    )
    parser.add_argument(
        "--copy-processor",
        action="store_true",
        help="copy the source's processor/tokenizer files unchanged (default: convert them to LlavaNextARProcessor)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace output_dir if it exists")
    return parser.parse_args(argv)


def parse_overrides(autoregressive_config: str | None, set_values: list[str]) -> dict:
    """`--autoregressive-config` (a JSON object) updated by each `--set key=value`."""
    overrides = {}
    if autoregressive_config is not None:
        try:
            overrides = json.loads(autoregressive_config)
        except json.JSONDecodeError as error:
            raise ConversionError(f"--autoregressive-config is not valid JSON ({error}): {autoregressive_config!r}")
        if not isinstance(overrides, dict):
            raise ConversionError(f"--autoregressive-config must be a JSON object, got {autoregressive_config!r}")
    for item in set_values:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConversionError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def resolve_source(source: str, revision: str | None, local_files_only: bool) -> tuple[Path, str | None]:
    """A local folder holding the source checkpoint, and its Hub repo id when known."""
    path = Path(source).expanduser()
    if path.is_dir():
        match = CACHE_SNAPSHOT.search(str(path.resolve()))
        return path, f"{match['org']}/{match['name']}" if match else None
    if path.exists():
        raise ConversionError(f"source {source!r} is a file; expected a checkpoint folder or a Hub repo id")

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        folder = snapshot_download(
            source, revision=revision, allow_patterns=SNAPSHOT_PATTERNS, local_files_only=local_files_only
        )
    except HFValidationError:
        raise ConversionError(f"source {source!r} is neither an existing folder nor a valid Hub repo id")
    except Exception as error:  # offline and not cached, not found, no access, no network
        raise ConversionError(f"cannot get {source!r} from the Hub or local cache: {type(error).__name__}: {error}")
    return Path(folder), source


def source_card_metadata(source_dir: Path) -> dict:
    """The YAML metadata of the source's `README.md` (empty if there is none)."""
    card = source_dir / "README.md"
    if not card.is_file():
        return {}
    from huggingface_hub import ModelCard

    try:
        return ModelCard.load(card).data.to_dict()
    except Exception:
        return {}


def build_config(source_dir: Path, overrides: dict):
    """`LlavaNextARConfig` = the source config + `autoregressive_config` (the source's, if any, then `overrides`)."""
    from transformers import LlavaNextVideoConfig

    from llava_next_ar import LlavaNextARConfig

    config_file = source_dir / "config.json"
    if not config_file.is_file():
        raise ConversionError(f"{source_dir} has no config.json: not a transformers checkpoint")
    try:
        model_type = json.loads(config_file.read_text()).get("model_type")
    except json.JSONDecodeError as error:
        raise ConversionError(f"{config_file} is not valid JSON: {error}")
    if model_type == "llava_next_video":
        base = LlavaNextVideoConfig.from_pretrained(source_dir).to_dict()
        autoregressive_config = dict(overrides)
    elif model_type == LlavaNextARConfig.model_type:
        base = LlavaNextARConfig.from_pretrained(source_dir).to_dict()
        autoregressive_config = {**base["autoregressive_config"], **overrides}
        if "embedding_dim" not in overrides:  # re-derived from the vision tower
            autoregressive_config.pop("embedding_dim")
    else:
        raise ConversionError(
            f"{config_file} has model_type {model_type!r}; expected 'llava_next_video' (LLaVA-NeXT-Video) "
            f"or {LlavaNextARConfig.model_type!r}"
        )
    dropped = {"model_type", "architectures", "auto_map", "transformers_version", "_name_or_path"}
    base = {key: value for key, value in base.items() if key not in dropped | {"autoregressive_config"}}
    try:
        return LlavaNextARConfig.from_dict({**base, "autoregressive_config": autoregressive_config}), model_type
    except ValueError as error:
        raise ConversionError(f"invalid autoregressive_config: {error}")


def load_model(source_dir: Path, config, dtype: str):
    """Load the source weights into `LlavaNextARForConditionalGeneration`; check what the checkpoint lacked."""
    import torch

    from llava_next_ar import LlavaNextARForConditionalGeneration

    from transformers.utils import logging as transformers_logging

    # transformers' load report would list every predictor tensor as MISSING; they are meant to be new, and the
    # checks below turn anything else that is missing, unexpected or mismatched into a plain message.
    verbosity = transformers_logging.get_verbosity()
    transformers_logging.set_verbosity_error()
    try:
        model, info = LlavaNextARForConditionalGeneration.from_pretrained(
            source_dir,
            config=config,
            dtype=dtype if dtype == "auto" else getattr(torch, dtype),
            output_loading_info=True,
        )
    except OSError as error:  # no weights, unreadable files
        raise ConversionError(f"cannot load the source weights from {source_dir}: {error}")
    finally:
        transformers_logging.set_verbosity(verbosity)
    missing = sorted(info.get("missing_keys", []))
    broken = [key for key in missing if not key.startswith("autoregressive_module.predictor.")]
    if broken:
        raise ConversionError(
            f"the source checkpoint lacks {len(broken)} weight(s) outside the predictor, which would be left random: "
            f"{broken[:8]}{' ...' if len(broken) > 8 else ''}"
        )
    mismatched = info.get("mismatched_keys") or []
    if mismatched:
        raise ConversionError(f"the source weights do not fit the config: {list(mismatched)[:8]}")
    return model.eval(), missing, sorted(info.get("unexpected_keys") or [])


def check_teacher_is_vision_tower(model) -> None:
    import torch

    teacher = getattr(getattr(model, "autoregressive_module", None), "teacher", None)
    if teacher is None:
        return
    tower = model.model.vision_tower.state_dict()
    different = [name for name, tensor in teacher.state_dict().items() if not torch.equal(tensor, tower[name])]
    if different:
        raise RuntimeError(f"the teacher differs from the loaded vision tower in {different[:8]}")


def convert_processor(source_dir: Path, output_dir: Path, config, copy: bool) -> str:
    """Save the source's processor as `LlavaNextARProcessor` (or copy its files); returns what was done."""
    present = [name for name in PROCESSOR_FILES if (source_dir / name).is_file()]
    if not present:
        return ("no processor or tokenizer in the source: none saved (the model card says so; add a processor "
                "before using AutoProcessor or pushing)")
    if copy:
        copy_processor_files(source_dir, output_dir, present)
        return f"copied unchanged: {', '.join(present)}"
    try:
        from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor
    except ModuleNotFoundError:
        copy_processor_files(source_dir, output_dir, present)
        return f"LlavaNextARProcessor not available; copied unchanged: {', '.join(present)}"

    from transformers import AutoProcessor, AutoTokenizer
    from transformers.processing_utils import ProcessorMixin

    try:
        processor_config = source_dir / "processor_config.json"
        auto_map = json.loads(processor_config.read_text()).get("auto_map", {}) if processor_config.is_file() else {}
        if str(auto_map.get("AutoProcessor", "")).endswith(LlavaNextARProcessor.__name__):  # a LLaVA-NeXT-AR source
            loaded = LlavaNextARProcessor.from_pretrained(source_dir, trust_remote_code=False)  # ours: no prompt
        else:
            try:
                loaded = AutoProcessor.from_pretrained(source_dir)
            except Exception:  # no processor config, or parts that do not load: the tokenizer alone
                loaded = AutoTokenizer.from_pretrained(source_dir)
    except Exception as error:
        raise ConversionError(
            f"cannot load the source's processor or tokenizer ({type(error).__name__}: {error}); "
            "pass --copy-processor to copy its files unchanged"
        )
    if isinstance(loaded, ProcessorMixin):
        if getattr(loaded, "tokenizer", None) is None:
            raise ConversionError(f"the source processor {type(loaded).__name__} has no tokenizer")
        parts = {
            "tokenizer": loaded.tokenizer,
            "video_processor": getattr(loaded, "video_processor", None),
            "image_processor": getattr(loaded, "image_processor", None),
            "chat_template": getattr(loaded, "chat_template", None),
        }
    else:
        parts = {"tokenizer": loaded}
    processor = LlavaNextARProcessor.from_model_config(config, **parts)
    try:
        processor.check_compatible(config)
    except ValueError as error:
        raise ConversionError(f"the source processor cannot feed the converted model: {error}")
    processor.save_pretrained(output_dir)
    kept = [name for name in ("video_processor", "image_processor") if parts.get(name) is not None]
    kept_note = f" (kept the source {', '.join(kept)})" if kept else " (default image/video processors)"
    return f"{type(loaded).__name__} -> LlavaNextARProcessor{kept_note}"


def processor_kind(folder: Path) -> str:
    """What the saved processor offers the model card's example: `"none"` (no processor saved), `"prompt"` (no
    chat template) or `"chat_template"`."""
    if not (folder / "processor_config.json").is_file() and not (folder / "tokenizer_config.json").is_file():
        return "none"
    if (folder / "chat_template.jinja").is_file() or (folder / "chat_template.json").is_file():
        return "chat_template"
    for name in ("processor_config.json", "tokenizer_config.json"):
        path = folder / name
        if path.is_file() and json.loads(path.read_text()).get("chat_template"):
            return "chat_template"
    return "prompt"


def copy_processor_files(source_dir: Path, output_dir: Path, names: list[str]) -> None:
    for name in names:
        shutil.copy2(source_dir / name, output_dir / name)
        try:
            auto_map = json.loads((source_dir / name).read_text()).get("auto_map") if name.endswith(".json") else None
        except (json.JSONDecodeError, AttributeError):
            auto_map = None
        for reference in _auto_map_references(auto_map):
            module_file = reference.rsplit(".", 1)[0] + ".py"
            if (source_dir / module_file).is_file() and not (output_dir / module_file).exists():
                shutil.copy2(source_dir / module_file, output_dir / module_file)


def _auto_map_references(auto_map) -> list[str]:
    values = list(auto_map.values()) if isinstance(auto_map, dict) else []
    flat = [item for value in values for item in (value if isinstance(value, (list, tuple)) else [value])]
    return [item for item in flat if isinstance(item, str) and "--" not in item]


@contextlib.contextmanager
def staged_folder(output_dir: Path, purpose: str):
    """
    Yield a new folder next to `output_dir` to write into; when the block succeeds it replaces `output_dir` (renamed
    into place), when anything fails it is deleted, so a failure leaves no output behind.
    """
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.{purpose}-", dir=output_dir.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; the output is an ordinary folder
    try:
        yield staging
        if output_dir.exists():
            previous = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.previous-", dir=output_dir.parent))
            output_dir.rename(previous / output_dir.name)
            staging.rename(output_dir)
            shutil.rmtree(previous)
        else:
            staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def convert(args: argparse.Namespace) -> Path:
    overrides = parse_overrides(args.autoregressive_config, args.set_values)
    output_dir = Path(args.output_dir).expanduser().resolve()
    if output_dir.exists() and not output_dir.is_dir():
        raise ConversionError(f"output_dir {output_dir} exists and is not a folder")
    if output_dir.exists() and any(output_dir.iterdir()) and not args.overwrite:
        raise ConversionError(f"output_dir {output_dir} exists and is not empty; pass --overwrite to replace it")
    offline = os.environ.get("HF_HUB_OFFLINE", "0").upper() in ("1", "ON", "YES", "TRUE")
    local_files_only = args.local_files_only or offline
    source_dir, source_repo_id = resolve_source(args.source, args.revision, local_files_only)
    config, source_type = build_config(source_dir, overrides)
    metadata = source_card_metadata(source_dir)
    base_model = args.base_model or source_repo_id
    if base_model is None and source_type != "llava_next_video":
        base_model = metadata.get("base_model") if isinstance(metadata.get("base_model"), str) else None
    license = args.license or metadata.get("license") or "apache-2.0"
    extra = {key: metadata[key] for key in ("license_name", "license_link") if not args.license and key in metadata}

    print(f"source: {source_dir} ({source_type}{', ' + source_repo_id if source_repo_id else ''})")
    print(f"autoregressive_config: {json.dumps(config.autoregressive_config)}")
    model, missing, unexpected = load_model(source_dir, config, args.dtype)
    if source_type == "llava_next_video":
        check_teacher_is_vision_tower(model)
    teacher = getattr(getattr(model, "autoregressive_module", None), "teacher", None)
    if missing:
        print(f"the predictor is new ({len(missing)} tensors, randomly initialised, as intended: the source has "
              "none); every other weight comes from the source")
    print("teacher: " + (
        "none" if teacher is None else "a copy of the vision tower" if source_type == "llava_next_video" else "kept"
    ))
    if unexpected:
        print(f"warning: {len(unexpected)} source weight(s) not used: {unexpected[:8]}")

    from llava_next_ar.model_card_llava_next_ar import MODEL_CARD_NAME, model_card

    with staged_folder(output_dir, "converting") as staging:
        model.save_pretrained(staging, save_original_format=False)
        processor_note = convert_processor(source_dir, staging, config, args.copy_processor)
        card = model_card(config, base_model=base_model, license=license, extra_metadata=extra,
                          processor=processor_kind(staging))
        (staging / MODEL_CARD_NAME).write_text(card, encoding="utf-8")
    print(f"processor: {processor_note}")
    print(f"base_model: {base_model}; license: {license}")
    print(f"saved {output_dir}: {', '.join(sorted(path.name for path in output_dir.iterdir()))}")
    return output_dir


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        convert(args)
    except ConversionError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
