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
"""Processor for LLaVA-NeXT-AR: the LLaVA-NeXT-Video processor plus the frames of the next-frame objective.

This file is remote code: it imports only the Python standard library, `torch`, `transformers` and its sibling files.
Video files are read with PyAV (imported only when a file is read): the clip's frames are indexed without decoding,
sampled, and only the sampled frames are decoded (`video_decoding_llava_next_ar`).
"""

import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LlavaNextImageProcessor, LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor
from transformers.utils import is_numpy_array
from transformers.video_utils import VideoMetadata

from .configuration_llava_next_ar import AUTOREGRESSIVE_CONFIG_DEFAULTS, validate_autoregressive_config
from .video_decoding_llava_next_ar import VideoDecodeError, VideoIndex, index_video, read_frames
from .video_frame_utils import VideoFrameSampler


SAMPLER_KEYS = (
    "use_fast_slow_frames",
    "fast_stride",
    "slow_stride",
    "num_fast",
    "num_slow",
    "merge_strategy",
    "short_clip",
)
"""Processor settings that mirror the keys of the same name in `LlavaNextARConfig.autoregressive_config`."""

PRESET_KEYS = ("use_fast_slow_frames", "fast_stride", "slow_stride", "num_fast", "num_slow")
"""Settings a fast/slow preset decides (`merge_strategy` and `short_clip` always come from the processor)."""

VIDEO_OUTPUTS = ("video_frames", "video_frame_indices", "llm_frame_indices")

CLIP_SAMPLING_KEYS = ("frame_sampling", "sampling_num_frames", "sampling_fps", "sampling_max_frames", "decode_timeout")
"""Processor settings that choose which frames of a video file are decoded, before the fast/slow sampler."""

FRAME_SAMPLING_MODES = ("all", "uniform", "fps")

DEFAULT_DECODE_TIMEOUT = 120.0
"""Seconds one video file may take to index and decode before it is an error (`decode_timeout`)."""


class ClipTooShortError(ValueError):
    """A clip (or its window) has fewer frames than the frame sampler needs."""


@dataclass
class SampledVideo:
    """The frames of one video file the processor uses, decoded: what `LlavaNextARProcessor.read_video` returns and
    what the processor accepts in `videos` without sampling again (so a `Dataset` can decode in its workers).

    `frames` `[T, H, W, 3]` uint8 are the objective's frames (`video_frame_indices`, source frame numbers, strictly
    increasing); the LLM sees `llm_frame_indices` (each one of `video_frame_indices`), in that order."""

    frames: torch.Tensor
    video_frame_indices: torch.LongTensor
    llm_frame_indices: torch.LongTensor
    metadata: VideoMetadata


def _describe(value: Any) -> str:
    """Short description of a `videos` entry for error messages (type, and shape/dtype for arrays)."""
    if isinstance(value, torch.Tensor) or is_numpy_array(value):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)} item(s)"
    return f"{type(value).__name__} {value!r}"[:200]


def _is_pil_image(value: Any) -> bool:
    # PIL is optional for transformers; recognise images without importing it.
    return type(value).__module__.startswith("PIL.") and hasattr(value, "convert") and hasattr(value, "tobytes")


def _is_frame(value: Any) -> bool:
    """One frame: a PIL image or a 3-D array/tensor."""
    return _is_pil_image(value) or ((isinstance(value, torch.Tensor) or is_numpy_array(value)) and value.ndim == 3)


def _to_tensor(value: Any, where: str) -> torch.Tensor:
    """A PIL image, numpy array or tensor as a tensor (PIL images become RGB `[H, W, 3]` uint8)."""
    if _is_pil_image(value):
        image = value if value.mode == "RGB" else value.convert("RGB")
        width, height = image.size
        return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(height, width, 3)
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError):
        try:  # negative strides (e.g. `array[::-1]`) need a copy
            return torch.as_tensor(value.copy())
        except (TypeError, ValueError, RuntimeError) as error:
            raise ValueError(
                f"`{where}` must hold numeric pixel values (uint8 or float), got {_describe(value)}"
            ) from error


class LlavaNextARProcessor(LlavaNextVideoProcessor):
    r"""
    The [`LlavaNextVideoProcessor`] (tokenizer + [`LlavaNextImageProcessor`] + [`LlavaNextVideoVideoProcessor`]) of
    LLaVA-NeXT-AR. Text, images and chat templates work exactly as in the base processor. For videos it

    - counts `((H // patch_size) // spatial_pool_stride) * ((W // patch_size) // spatial_pool_stride)` `<video>` tokens
      per frame (the base hard-codes `// 4`, right only for `spatial_pool_stride=2`); for square frames of the model's
      `image_size` this is `LlavaNextARConfig.video_tokens_per_frame`;
    - optionally shows the LLM a fast/slow sampling of each clip (`VideoFrameSampler`);
    - also returns the frames of the next-frame objective and the source-time indices of both frame sets.

    `processor(text=..., videos=..., return_tensors="pt")` returns the base processor's keys plus, when videos are
    given (one row per clip, in the order the clips were given):

    - `pixel_values_videos` `[B, T_llm, 3, H, W]`: the frames the LLM sees, in the order it sees them (each
      `<video>` expands to `T_llm * tokens_per_frame` tokens);
    - `video_frames` `[B, T, 3, H, W]`: the objective's frames, i.e. every distinct frame of `pixel_values_videos`
      once, in source-time order, preprocessed identically (the same preprocessed tensors, gathered);
    - `video_frame_indices` `[B, T]`: source-time indices of `video_frames`, strictly increasing;
    - `llm_frame_indices` `[B, T_llm]`: source-time indices of `pixel_values_videos`, in LLM order (a frame may
      repeat); only returned when the LLM sees other frames or another order than `video_frames` (fast/slow
      sampling whose merge repeats or reorders frames; disjoint `[slow] + [fast]` is already sorted). Without it,
      `pixel_values_videos` equals `video_frames` and the model takes the teacher's features from the LLM's
      vision forward when the tower is frozen.

    Source time is the frame's index in the clip as given: its position in an array / list of frames, or its frame
    number in a video file (also when `do_sample_frames=True` decodes only some frames).

    Which frames the LLM sees:

    - `use_fast_slow_frames=False`: all frames of the clip (after the video processor's optional `do_sample_frames`);
      `T_llm = T` and both index rows are `0..T-1` (for arrays).
    - `use_fast_slow_frames=True`: `fast, slow = VideoFrameSampler.fast_slow_indices(T, fast_stride, slow_stride,
      num_fast, num_slow, short_clip)`; the LLM sees `merge_fast_slow_frames(fast, slow, merge_strategy)`
      (`"concat"` = `[slow] + [fast]`, `"interleave"` = slow0, fast0, ...), a frame in both sets appears twice there;
      `video_frames` holds the sorted union of both sets, once each. Only these frames are preprocessed.

    Batches: each clip is sampled on its own (by its own length; with `fast_slow_preset="auto"` also with its own
    preset). The outputs are stacked, so all clips must give the same number of frames (`T` and `T_llm`) of the same
    size; otherwise a `ValueError` naming `videos` lists the counts per clip. Pass clips of equal length (or equal
    decoded length via `do_sample_frames=True, num_frames=N`) or process them separately.

    Accepted `videos`: one clip or a (possibly nested, as from `apply_chat_template`) list of clips, where a clip is a
    `[T, H, W, 3]` or `[T, 3, H, W]` array/tensor (uint8, or float with `do_rescale=False` if already in `[0, 1]`), a
    list of PIL images or `[H, W, 3]` / `[3, H, W]` frames, or the path (`str` / `os.PathLike`) of a local video file
    decoded with PyAV through `transformers.video_utils.load_video`. A 5-D array/tensor is a batch of clips.
    `do_sample_frames=True` with `num_frames` or `fps` samples frames uniformly before the fast/slow sampling (for
    files, only those frames are kept while decoding).

    Args:
        video_processor ([`LlavaNextVideoVideoProcessor`]): resizes/crops/normalises frames; its output size must be
            the vision tower's `image_size` (see `from_model_config`).
        image_processor ([`LlavaNextImageProcessor`]): as in the base processor.
        tokenizer ([`PreTrainedTokenizerBase`]): must know `video_token` / `image_token`.
        chat_template (`str`, *optional*): Jinja template for `apply_chat_template`.
        patch_size (`int`, *optional*): the vision tower's patch size (required to process videos).
        vision_feature_select_strategy (`str`, *optional*): as in the base processor (images only).
        video_token (`str`, defaults to `"<video>"`), image_token (`str`, defaults to `"<image>"`),
        num_additional_image_tokens (`int`, defaults to 0): as in the base processor.
        spatial_pool_stride (`int`, defaults to 2): the model's `spatial_pool_stride` (video token pooling).
        use_fast_slow_frames (`bool`, *optional*), fast_stride (`int`, *optional*), slow_stride (`int`, *optional*),
        num_fast (`int`, *optional*), num_slow (`int`, *optional*), merge_strategy (`str`, *optional*),
        short_clip (`str`, *optional*): the sampler; `None` = the preset's value if `fast_slow_preset` names one, else
            the default of `autoregressive_config` (`False, 1, 4, 8, 8, "concat", "shrink"`). Same meaning and
            validation as the keys of the same name in `LlavaNextARConfig.autoregressive_config`.
        fast_slow_preset (`str`, *optional*): `None` (use the settings above), a key of `FAST_SLOW_PRESETS`
            (`"short"`, `"medium"`, `"long"`: fills the preset's settings; an explicit setting that disagrees with it
            raises), or `"auto"`: choose the preset per clip from its length (`< 30` frames short, `30-60` medium,
            `> 60` long; the preset-decided settings must then be left `None`).

    Raises:
        ValueError: an invalid setting (naming it), or bad `videos` (naming `videos`, what was expected and what was
            given).

    Example:

    ```python
    >>> processor = LlavaNextARProcessor.from_model_config(config, tokenizer, use_fast_slow_frames=True)
    >>> batch = processor(text="user : <video> what happens ?", videos=clip, return_tensors="pt")
    >>> model(**batch, labels=batch["input_ids"]).autoregressive_loss
    ```
    """

    FAST_SLOW_PRESETS: dict[str, dict[str, Any]] = {
        "short": {"use_fast_slow_frames": False},
        "medium": {"use_fast_slow_frames": True, "fast_stride": 1, "slow_stride": 4, "num_fast": 8, "num_slow": 8},
        "long": {"use_fast_slow_frames": True, "fast_stride": 2, "slow_stride": 8, "num_fast": 16, "num_slow": 8},
    }
    """Seed presets by clip length: short (< 30 frames) no fast/slow; medium (30-60) 8 fast / 8 slow, strides 1 / 4;
    long (> 60) 16 fast / 8 slow, strides 2 / 8. Each fits its shortest clip without shrinking a stride."""

    FAST_SLOW_PRESET_MIN_FRAMES: dict[str, int] = {"short": 1, "medium": 30, "long": 61}
    """Shortest clip (frames) for which `fast_slow_preset="auto"` picks each preset."""

    def __init__(
        self,
        video_processor=None,
        image_processor=None,
        tokenizer=None,
        chat_template=None,
        patch_size=None,
        vision_feature_select_strategy=None,
        video_token="<video>",
        image_token="<image>",
        num_additional_image_tokens=0,
        spatial_pool_stride=2,
        use_fast_slow_frames=None,
        fast_stride=None,
        slow_stride=None,
        num_fast=None,
        num_slow=None,
        merge_strategy=None,
        short_clip=None,
        fast_slow_preset=None,
        frame_sampling=None,
        sampling_num_frames=None,
        sampling_fps=None,
        sampling_max_frames=None,
        decode_timeout=None,
        **kwargs,
    ):
        super().__init__(
            video_processor=video_processor,
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=chat_template,
            patch_size=patch_size,
            vision_feature_select_strategy=vision_feature_select_strategy,
            video_token=video_token,
            image_token=image_token,
            num_additional_image_tokens=num_additional_image_tokens,
            **kwargs,
        )
        self.spatial_pool_stride = spatial_pool_stride
        self.fast_slow_preset = fast_slow_preset
        self.frame_sampling = "all" if frame_sampling is None else frame_sampling
        self.sampling_num_frames = sampling_num_frames
        self.sampling_fps = sampling_fps
        self.sampling_max_frames = sampling_max_frames
        self.decode_timeout = DEFAULT_DECODE_TIMEOUT if decode_timeout is None else decode_timeout
        given = {
            "use_fast_slow_frames": use_fast_slow_frames,
            "fast_stride": fast_stride,
            "slow_stride": slow_stride,
            "num_fast": num_fast,
            "num_slow": num_slow,
            "merge_strategy": merge_strategy,
            "short_clip": short_clip,
        }
        self._check_preset_name()
        if fast_slow_preset == "auto":
            fixed = {key: given[key] for key in PRESET_KEYS if given[key] is not None}
            if fixed:
                raise ValueError(
                    f"`fast_slow_preset`='auto' chooses {list(PRESET_KEYS)} per clip from `FAST_SLOW_PRESETS`; "
                    f"leave them unset (None), got {fixed}"
                )
        else:
            preset = self.FAST_SLOW_PRESETS.get(fast_slow_preset, {})
            for key, value in preset.items():
                if given[key] is not None and given[key] != value:
                    raise ValueError(
                        f"`{key}`={given[key]!r} disagrees with `fast_slow_preset`={fast_slow_preset!r}, which sets "
                        f"{key}={value!r}; drop one of them"
                    )
                given[key] = value
            given = {
                key: AUTOREGRESSIVE_CONFIG_DEFAULTS[key] if value is None else value for key, value in given.items()
            }
        if given["merge_strategy"] is None:
            given["merge_strategy"] = AUTOREGRESSIVE_CONFIG_DEFAULTS["merge_strategy"]
        if given["short_clip"] is None:
            given["short_clip"] = AUTOREGRESSIVE_CONFIG_DEFAULTS["short_clip"]
        for key, value in given.items():
            setattr(self, key, value)
        self.validate_settings()

    # ------------------------------------------------------------------------------------------------------------
    # Settings

    def _check_preset_name(self) -> None:
        preset = self.fast_slow_preset
        if preset is not None and preset != "auto" and preset not in self.FAST_SLOW_PRESETS:
            raise ValueError(
                f"`fast_slow_preset` must be None, 'auto' or one of {sorted(self.FAST_SLOW_PRESETS)}, got {preset!r}"
            )

    def validate_settings(self) -> None:
        """
        Check every processor setting (also run before each call, so edited attributes are checked too).

        Raises:
            ValueError: naming the setting, what is allowed and the value given.
        """
        self._check_preset_name()
        for key in ("patch_size", "spatial_pool_stride"):
            value = getattr(self, key)
            if value is None and key == "patch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{key}` must be an int >= 1, got {value!r}")
        auto = self.fast_slow_preset == "auto"
        for key in SAMPLER_KEYS:
            value = getattr(self, key)
            if auto and key in PRESET_KEYS:
                if value is not None:
                    raise ValueError(f"`{key}` must be None with `fast_slow_preset`='auto', got {value!r}")
                continue
            try:  # same rules as the model config, one key at a time so the error names the processor setting
                validate_autoregressive_config({key: value})
            except ValueError as error:
                raise ValueError(f"`{key}`={value!r} is not a valid processor setting: {error}") from error
        self._check_clip_sampling()
        preset = self.FAST_SLOW_PRESETS.get(self.fast_slow_preset, {})
        for key, value in preset.items():
            if getattr(self, key) != value:
                raise ValueError(
                    f"`{key}`={getattr(self, key)!r} disagrees with `fast_slow_preset`={self.fast_slow_preset!r} "
                    f"({key}={value!r})"
                )

    def _check_clip_sampling(self) -> None:
        mode = self.frame_sampling
        if mode not in FRAME_SAMPLING_MODES:
            raise ValueError(f"`frame_sampling` must be one of {list(FRAME_SAMPLING_MODES)}, got {mode!r}")

        def positive(key, kind, needed):
            value = getattr(self, key)
            if value is None:
                if needed:
                    raise ValueError(f"`frame_sampling`={mode!r} needs `{key}`")
                return
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (kind is int and not isinstance(value, int)) or not value > 0 or math.isinf(value):
                raise ValueError(f"`{key}` must be a positive {kind.__name__}, got {value!r}")

        positive("sampling_num_frames", int, mode == "uniform")
        positive("sampling_fps", float, mode == "fps")
        positive("sampling_max_frames", int, False)
        positive("decode_timeout", float, True)

    @property
    def clip_sampling_settings(self) -> dict[str, Any]:
        """How frames of a video file are chosen before the fast/slow sampler (`CLIP_SAMPLING_KEYS`)."""
        return {key: getattr(self, key) for key in CLIP_SAMPLING_KEYS}

    @property
    def sampler_settings(self) -> dict[str, Any]:
        """The sampler settings (`SAMPLER_KEYS`) as stored; preset-decided keys are `None` with `"auto"`."""
        return {key: getattr(self, key) for key in SAMPLER_KEYS}

    @classmethod
    def preset_for_num_frames(cls, num_frames: int) -> str:
        """Name of the `FAST_SLOW_PRESETS` entry that `fast_slow_preset="auto"` uses for a clip of `num_frames`."""
        if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
            raise ValueError(f"`num_frames` must be an int >= 1, got {num_frames!r}")
        fitting = [name for name, low in cls.FAST_SLOW_PRESET_MIN_FRAMES.items() if num_frames >= low]
        return max(fitting, key=cls.FAST_SLOW_PRESET_MIN_FRAMES.__getitem__)

    def sampler_settings_for_clip(self, num_frames: int) -> dict[str, Any]:
        """The sampler settings (`SAMPLER_KEYS`) applied to a clip of `num_frames` frames (resolves `"auto"`)."""
        settings = self.sampler_settings
        if self.fast_slow_preset == "auto":
            defaults = {key: AUTOREGRESSIVE_CONFIG_DEFAULTS[key] for key in PRESET_KEYS}
            settings.update({**defaults, **self.FAST_SLOW_PRESETS[self.preset_for_num_frames(num_frames)]})
        return settings

    def sample_frame_indices(self, num_frames: int) -> tuple[torch.LongTensor, torch.LongTensor]:
        """
        Which frames of a clip of `num_frames` frames the processor uses.

        Returns:
            `(video_frame_indices [T], llm_frame_indices [T_llm])`: the sorted distinct frames of the objective and the
            frames the LLM sees, in its order (both index the clip, `0..num_frames-1`).

        Raises:
            ValueError: the clip is too short for the sampler (with `short_clip="error"`, or fewer frames than
                `num_fast` / `num_slow`).
        """
        settings = self.sampler_settings_for_clip(num_frames)
        if not settings["use_fast_slow_frames"]:
            indices = torch.arange(num_frames)
            return indices, indices.clone()
        fast, slow = VideoFrameSampler.fast_slow_indices(
            num_frames,
            settings["fast_stride"],
            settings["slow_stride"],
            settings["num_fast"],
            settings["num_slow"],
            settings["short_clip"],
        )
        llm = VideoFrameSampler.merge_fast_slow_frames(fast, slow, settings["merge_strategy"], dim=0)
        return torch.unique(llm), llm

    def num_video_tokens_per_frame(self, height: int, width: int) -> int:
        """`<video>` tokens of one frame of `height x width` pixels: the LLaVA-NeXT-Video pooler's output size."""
        if self.patch_size is None:
            raise ValueError("`patch_size` must be set (the vision tower's patch size) to process videos, got None")
        stride = self.spatial_pool_stride
        return ((height // self.patch_size) // stride) * ((width // self.patch_size) // stride)

    def _video_frame_size(self) -> tuple[int, int] | None:
        """`(height, width)` of the video processor's output, if its settings fix it (center crop or exact size)."""
        processor = self.video_processor
        crop, size = getattr(processor, "crop_size", None), getattr(processor, "size", None)
        for candidate, used in ((crop, getattr(processor, "do_center_crop", False)), (size, True)):
            height, width = getattr(candidate, "height", None), getattr(candidate, "width", None)
            if isinstance(candidate, dict):
                height, width = candidate.get("height"), candidate.get("width")
            if used and height is not None and width is not None:
                return int(height), int(width)
        return None

    @staticmethod
    def sampler_settings_from_config(config) -> dict[str, Any]:
        """
        The processor settings mirrored from a model config: how frames become `<video>` tokens and which frames are
        sampled (`patch_size` / `vision_feature_select_strategy` come from the config too, see `from_model_config`).

        Args:
            config ([`LlavaNextARConfig`] or [`LlavaNextVideoConfig`]): a plain video config gets the default
                `autoregressive_config`.

        Returns:
            `dict` with `spatial_pool_stride` and the sampler settings (`use_fast_slow_frames`, `fast_stride`,
            `slow_stride`, `num_fast`, `num_slow`, `merge_strategy`, `short_clip`), for `LlavaNextARProcessor(...)`.
        """
        autoregressive_config = validate_autoregressive_config(getattr(config, "autoregressive_config", None))
        return {
            "spatial_pool_stride": config.spatial_pool_stride,
            **{key: autoregressive_config[key] for key in SAMPLER_KEYS},
        }

    @classmethod
    def from_model_config(
        cls,
        config,
        tokenizer,
        video_processor=None,
        image_processor=None,
        chat_template: str | None = None,
        **settings,
    ) -> "LlavaNextARProcessor":
        """
        Build a processor that agrees with `config`: its `patch_size`, `vision_feature_select_strategy` and
        `sampler_settings_from_config(config)`. Missing video/image processors are
        [`LlavaNextVideoVideoProcessor`] / [`LlavaNextImageProcessor`] that resize and center-crop to the vision
        tower's `image_size`. `settings` override the config's values (e.g. `fast_slow_preset="auto"` needs the
        preset-decided sampler settings dropped, which this does).
        """
        size = config.vision_config.image_size
        if video_processor is None:
            video_processor = LlavaNextVideoVideoProcessor(
                size={"shortest_edge": size}, crop_size={"height": size, "width": size}
            )
        if image_processor is None:
            image_processor = LlavaNextImageProcessor(
                size={"shortest_edge": size},
                crop_size={"height": size, "width": size},
                image_grid_pinpoints=config.image_grid_pinpoints,
            )
        merged = {
            "patch_size": config.vision_config.patch_size,
            "vision_feature_select_strategy": config.vision_feature_select_strategy,
            **cls.sampler_settings_from_config(config),
            **settings,
        }
        preset = merged.get("fast_slow_preset")
        if preset is not None:  # the preset decides these; keep only what the caller set explicitly
            for key in PRESET_KEYS:
                if key not in settings:
                    merged.pop(key)
        if chat_template is None:
            chat_template = getattr(tokenizer, "chat_template", None)
        return cls(
            video_processor=video_processor,
            image_processor=image_processor,
            tokenizer=tokenizer,
            chat_template=chat_template,
            **merged,
        )

    def check_compatible(self, config, check_sampler: bool = True) -> None:
        """
        Check that this processor produces inputs `config`'s model reads correctly.

        Checks `patch_size`, `spatial_pool_stride`, `vision_feature_select_strategy` (if set), the video/image token
        ids, the video processor's output size against the vision tower's `image_size` (so the `<video>` count per
        frame equals `config.video_tokens_per_frame`) and, if `check_sampler`, the sampler settings against
        `config.autoregressive_config` (`fast_slow_preset="auto"` cannot agree with fixed settings: pass
        `check_sampler=False` to use it).

        Raises:
            ValueError: listing every disagreement as `processor <setting>=... but config <key>=...`.
        """
        self.validate_settings()
        expected = {"patch_size": config.vision_config.patch_size, **self.sampler_settings_from_config(config)}
        problems = []
        for key in ("patch_size", "spatial_pool_stride"):
            if getattr(self, key) != expected[key]:
                problems.append(f"processor {key}={getattr(self, key)!r} but config {key}={expected[key]!r}")
        strategy = self.vision_feature_select_strategy
        if strategy is not None and strategy != config.vision_feature_select_strategy:
            problems.append(
                f"processor vision_feature_select_strategy={strategy!r} but config "
                f"vision_feature_select_strategy={config.vision_feature_select_strategy!r}"
            )
        for name, config_id in (("video_token_id", config.video_token_id), ("image_token_id", config.image_token_id)):
            if getattr(self, name) != config_id:
                problems.append(f"processor {name}={getattr(self, name)!r} but config {name}={config_id!r}")
        frame_size = self._video_frame_size()
        image_size = config.vision_config.image_size
        if frame_size is None or frame_size != (image_size, image_size):
            problems.append(
                f"processor video frames of size {frame_size} (video_processor crop_size/size) but config "
                f"vision_config.image_size={image_size} (square)"
            )
        elif self.patch_size is not None:
            tokens = self.num_video_tokens_per_frame(*frame_size)
            if tokens != config.video_tokens_per_frame:
                problems.append(
                    f"processor gives {tokens} video tokens per frame but config video_tokens_per_frame="
                    f"{config.video_tokens_per_frame}"
                )
        if check_sampler:
            if self.fast_slow_preset == "auto":
                fixed = {key: expected[key] for key in PRESET_KEYS}
                problems.append(
                    "processor fast_slow_preset='auto' chooses the sampler per clip but config autoregressive_config "
                    f"fixes it ({fixed}); use check_sampler=False to allow it"
                )
            for key in SAMPLER_KEYS:
                if self.fast_slow_preset == "auto" and key in PRESET_KEYS:
                    continue
                if getattr(self, key) != expected[key]:
                    problems.append(
                        f"processor {key}={getattr(self, key)!r} but config autoregressive_config[{key!r}]="
                        f"{expected[key]!r}"
                    )
        if problems:
            raise ValueError("LlavaNextARProcessor does not match the model config: " + "; ".join(problems))

    @property
    def model_input_names(self) -> list[str]:
        names = super().model_input_names
        return names + [name for name in VIDEO_OUTPUTS if name not in names]

    # ------------------------------------------------------------------------------------------------------------
    # Videos

    @classmethod
    def from_args_and_dict(cls, args, processor_dict: dict[str, Any], **kwargs):
        """As the base; a `fast_slow_preset` given to `from_pretrained` replaces the saved settings it decides
        (those not also given), instead of conflicting with them."""
        if kwargs.get("fast_slow_preset") is not None:
            processor_dict = {
                key: value for key, value in processor_dict.items() if key not in PRESET_KEYS or key in kwargs
            }
        return super().from_args_and_dict(args, processor_dict, **kwargs)

    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """As the base, plus `videos` flattened to a list of clips: `str` paths (checked to exist) and 4-D tensors.
        Sampler settings given to a call raise (they would be ignored): they belong to the processor."""
        per_call = [key for key in ("fast_slow_preset", *SAMPLER_KEYS, *CLIP_SAMPLING_KEYS) if key in kwargs]
        if per_call:
            raise ValueError(
                f"{per_call} are settings of the processor, not of a call: load it with them "
                "(`from_pretrained(path, fast_slow_preset=...)`) or build it with `from_model_config(config, "
                "tokenizer, ...)`"
            )
        images, text, _, audio = super().prepare_inputs_layout(images=images, text=text, videos=None, audio=audio)
        if videos is not None:
            videos = self._flatten_videos(videos)
        return images, text, videos, audio

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """As the base; clips it does not know (a `SampledVideo`, a path with a window) count as one video each."""
        if videos is not None:
            videos = [clip["path"] if isinstance(clip, dict) else "sampled video" if isinstance(clip, SampledVideo)
                      else clip for clip in videos]
        return super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def _flatten_videos(self, videos: Any) -> list:
        if isinstance(videos, (list, tuple)) and len(videos) == 0:
            raise ValueError("`videos` must hold at least one clip, got an empty list")
        clips: list = []
        self._collect_clips(videos, "videos", clips)
        if not clips:
            raise ValueError(f"`videos` must hold at least one clip, got {_describe(videos)} without any clip")
        return clips

    def _collect_clips(self, value: Any, where: str, clips: list) -> None:
        expected = (
            "a clip ([T, H, W, 3] or [T, 3, H, W] array/tensor, a list of PIL images or [H, W, 3] frames, or a path "
            "to a local video file) or a list of clips"
        )
        if isinstance(value, (str, os.PathLike)):
            path = os.fspath(value)
            if isinstance(path, bytes):
                path = os.fsdecode(path)
            if "://" in path:
                raise ValueError(
                    f"`{where}` must be a local video file: this processor does not download, got URL {path!r}"
                )
            if not os.path.isfile(path):
                raise ValueError(f"`{where}` must be an existing video file, got {path!r} (no such file)")
            clips.append(path)
        elif isinstance(value, SampledVideo):
            clips.append(value)
        elif isinstance(value, dict) and ("path" in value or "video" in value):
            spec = {key: value.get(key) for key in ("start_frame", "num_frames")}
            unknown = set(value) - {"path", "video", "start_frame", "num_frames"}
            if unknown:
                raise ValueError(
                    f"`{where}`: a clip given as a mapping takes `path` and optionally `start_frame` and `num_frames`, "
                    f"got {sorted(value)}"
                )
            paths: list = []
            self._collect_clips(value.get("path", value.get("video")), where, paths)
            if len(paths) != 1 or not isinstance(paths[0], str):
                raise ValueError(f"`{where}`: a clip given as a mapping needs `path`, a local video file")
            clips.append({"path": paths[0], **spec})
        elif isinstance(value, torch.Tensor) or is_numpy_array(value):
            if value.ndim == 5:
                for index in range(value.shape[0]):
                    clips.append(self._clip_tensor(value[index], f"{where}[{index}]"))
            elif value.ndim == 4:
                clips.append(self._clip_tensor(value, where))
            else:
                raise ValueError(
                    f"`{where}` must be a clip [T, H, W, 3] / [T, 3, H, W] (4-D) or a batch of clips (5-D), got "
                    f"{_describe(value)}"
                )
        elif _is_pil_image(value):
            clips.append(self._clip_tensor(_to_tensor(value, where)[None], where))
        elif isinstance(value, (list, tuple)):
            if value and all(_is_frame(frame) for frame in value):
                frames = [_to_tensor(frame, f"{where}[{index}]") for index, frame in enumerate(value)]
                shapes = {tuple(frame.shape) for frame in frames}
                if len(shapes) != 1:
                    raise ValueError(f"`{where}`: all frames of a clip must have the same shape, got {sorted(shapes)}")
                clips.append(self._clip_tensor(torch.stack(frames), where))
            else:
                for index, item in enumerate(value):
                    if isinstance(item, (list, tuple)) and len(item) == 0:
                        continue  # a sample without videos (e.g. from `apply_chat_template` on a batch)
                    self._collect_clips(item, f"{where}[{index}]", clips)
        else:
            raise ValueError(f"`{where}` must be {expected}, got {_describe(value)}")

    @staticmethod
    def _clip_tensor(clip: Any, where: str) -> torch.Tensor:
        clip = _to_tensor(clip, where)
        if clip.ndim != 4:
            raise ValueError(f"`{where}` must be a 4-D clip [T, H, W, 3] or [T, 3, H, W], got {_describe(clip)}")
        if clip.shape[0] == 0:
            raise ValueError(f"`{where}` must hold at least one frame, got {_describe(clip)}")
        if clip.dtype != torch.uint8 and not clip.is_floating_point():
            raise ValueError(f"`{where}` must hold uint8 or float pixel values, got {_describe(clip)}")
        if 3 not in (clip.shape[1], clip.shape[-1]):
            raise ValueError(
                f"`{where}` must have 3 (RGB) channels, [T, H, W, 3] or [T, 3, H, W], got {_describe(clip)}"
            )
        return clip

    @staticmethod
    def _channels_first(clip: torch.Tensor, input_data_format: Any, where: str) -> torch.Tensor:
        """`[T, 3, H, W]` from either layout; `input_data_format` ("channels_first"/"channels_last") decides if set."""
        layout = getattr(input_data_format, "value", input_data_format)
        if layout is None:
            layout = "channels_first" if clip.shape[1] == 3 else "channels_last"
        if layout not in ("channels_first", "channels_last"):
            raise ValueError(f"`input_data_format` must be 'channels_first' or 'channels_last', got {layout!r}")
        if layout == "channels_last":
            clip = clip.permute(0, 3, 1, 2)
        if clip.shape[1] != 3:
            raise ValueError(
                f"`{where}` must have 3 (RGB) channels in the {layout} layout, got shape {tuple(clip.shape)}"
            )
        if min(clip.shape[2:]) == 0:
            raise ValueError(f"`{where}` must have frames of at least 1x1 pixels, got shape {tuple(clip.shape)}")
        return clip

    # ------------------------------------------------------------------------------------------------------------
    # Video files: sample first, then decode only those frames

    def clip_frame_indices(
        self, num_frames: int, timestamps: list[float] | None = None, start_frame: int | None = None,
        window_frames: int | None = None,
    ) -> torch.LongTensor:
        """
        The frames of a clip of `num_frames` frames chosen by `frame_sampling`, before the fast/slow sampler.

        - `"all"`: every frame (of the window);
        - `"uniform"`: `sampling_num_frames` frames evenly spaced from the first to the last frame (of the window),
          `round(linspace(first, last, N))`;
        - `"fps"`: the frame shown at every `1 / sampling_fps` seconds from the first frame (by the frames'
          `timestamps`, so variable frame rates sample by time), at most `sampling_max_frames` (evenly spaced among
          them when more).

        `start_frame` / `window_frames` restrict the clip to a window first (an explicit window; `window_frames` `None`
        or `< 0`: to the end).

        Raises:
            ClipTooShortError: the window does not fit in the clip, or has fewer frames than `sampling_num_frames`.
        """
        start = int(start_frame or 0)
        stop = num_frames if window_frames is None or window_frames < 0 else start + int(window_frames)
        if start < 0 or stop > num_frames or stop <= start:
            raise ClipTooShortError(
                f"cannot take frames {start}..{stop - 1} of a clip of {num_frames} frames (an explicit window)"
            )
        if self.frame_sampling == "uniform":
            count = self.sampling_num_frames
            if stop - start < count:
                raise ClipTooShortError(
                    f"{stop - start} frames, fewer than frame_sampling='uniform' needs (sampling_num_frames={count})"
                )
            positions = torch.linspace(start, stop - 1, count, dtype=torch.float64)
            return (positions + 0.5).floor().long()
        if self.frame_sampling == "fps":
            if timestamps is None:
                timestamps = [index / 25.0 for index in range(num_frames)]
            first, last = timestamps[start], timestamps[stop - 1]
            steps = int(math.floor((last - first) * self.sampling_fps + 1e-9)) + 1
            chosen = []
            for step in range(steps):
                time_point = first + step / self.sampling_fps
                # the frame on screen at `time_point`: the last one that starts at or before it
                low, high = start, stop
                while low < high:
                    middle = (low + high) // 2
                    if timestamps[middle] <= time_point + 1e-9:
                        low = middle + 1
                    else:
                        high = middle
                frame = max(start, low - 1)
                if not chosen or frame != chosen[-1]:
                    chosen.append(frame)
            indices = torch.tensor(chosen, dtype=torch.long)
            cap = self.sampling_max_frames
            if cap is not None and len(indices) > cap:
                keep = (torch.linspace(0, len(indices) - 1, cap, dtype=torch.float64) + 0.5).floor().long()
                indices = indices[keep]
            return indices
        return torch.arange(start, stop)

    def _working_size(self, height: int, width: int) -> tuple[int, int]:
        """`(height, width)` to decode frames of `height x width` at: the video processor's resize target, aspect
        ratio kept (shortest edge = `size["shortest_edge"]`, or covering `size`'s height x width), never upscaled."""
        size = getattr(self.video_processor, "size", None)
        get = (lambda key: size.get(key)) if isinstance(size, dict) else (lambda key: getattr(size, key, None))
        shortest = get("shortest_edge") if size is not None else None
        if shortest:
            if min(height, width) <= shortest:
                return height, width
            if width <= height:
                return int(shortest * height / width), shortest
            return shortest, int(shortest * width / height)
        target_height, target_width = (get("height"), get("width")) if size is not None else (None, None)
        if target_height and target_width:
            scale = max(target_height / height, target_width / width)
            if scale < 1:
                return max(target_height, math.ceil(height * scale)), max(target_width, math.ceil(width * scale))
        return height, width

    def read_video(
        self,
        path: str | os.PathLike,
        start_frame: int | None = None,
        num_frames: int | None = None,
        sample_indices_fn=None,
    ) -> SampledVideo:
        """
        Sample, then decode only the sampled frames of a local video file, as the processor does for a path in
        `videos`: index the frames (no decoding), choose them with `clip_frame_indices` (the processor's
        `frame_sampling`, within the window `start_frame` / `num_frames` if given) and the fast/slow sampler, then
        seek to and decode each chosen frame at the video processor's working size (aspect ratio kept).
        `sample_indices_fn(metadata)` replaces `frame_sampling` (the video processor's `do_sample_frames`).

        Returns:
            `SampledVideo`, accepted in `videos` as is (nothing is sampled or decoded again): a `Dataset` can call
            this in its DataLoader workers.

        Raises:
            VideoDecodeError: missing, unreadable, damaged or truncated file, or more than `decode_timeout` seconds.
            ClipTooShortError: fewer frames than the sampling needs.
        """
        self.validate_settings()
        path = os.fspath(path)
        index: VideoIndex = index_video(path, timeout=self.decode_timeout)
        metadata = VideoMetadata(
            total_num_frames=index.num_frames, fps=index.average_fps, width=index.width, height=index.height,
            duration=index.duration, video_backend="pyav",
        )
        if sample_indices_fn is not None:
            source = torch.as_tensor(list(sample_indices_fn(metadata)), dtype=torch.long)
        else:
            source = self.clip_frame_indices(index.num_frames, index.timestamps, start_frame, num_frames)
        if source.numel() == 0 or (source.diff() <= 0).any():
            raise ValueError(f"frame sampling must give strictly increasing frame indices, got {source.tolist()}")
        try:
            union, llm = self.sample_frame_indices(source.numel())
        except ValueError as error:
            raise ClipTooShortError(f"{source.numel()} sampled frames, too few for the frame sampler: {error}") from error
        video_frame_indices, llm_frame_indices = source[union], source[llm]
        frames = read_frames(
            index, video_frame_indices.tolist(), self._working_size(index.height, index.width), self.decode_timeout
        )
        metadata.frames_indices = llm_frame_indices.tolist()
        return SampledVideo(frames, video_frame_indices, llm_frame_indices, metadata)

    def _read_video_for_call(self, clip, where: str, sample_indices_fn) -> SampledVideo:
        path, window = (clip["path"], clip) if isinstance(clip, dict) else (clip, {})
        try:
            return self.read_video(path, window.get("start_frame"), window.get("num_frames"), sample_indices_fn)
        except VideoDecodeError as error:
            raise ValueError(f"`{where}` could not be decoded as a video with PyAV: {path!r}: {error}") from error
        except ClipTooShortError as error:
            raise ValueError(f"`{where}` ({path!r}) is too short for the frame sampler: {error}") from error

    def _process_videos(self, videos: list, **kwargs) -> tuple[dict[str, Any], list[str]]:
        """
        Decode, sample and preprocess the clips (each selected frame once), then gather the LLM's frames.

        Returns:
            `(outputs, replacements)`: `outputs` holds `pixel_values_videos [B, T_llm, 3, H, W]`, `video_frames
            [B, T, 3, H, W]`, `video_frame_indices [B, T]`, `llm_frame_indices [B, T_llm]` and `video_metadata` (a
            list, dropped unless `return_metadata=True`); `replacements` the expanded `<video>` text per clip.
        """
        self.validate_settings()
        kwargs = dict(kwargs)
        do_sample_frames = kwargs.pop("do_sample_frames", None)
        if do_sample_frames is None:
            do_sample_frames = getattr(self.video_processor, "do_sample_frames", False)
        num_frames, fps = kwargs.pop("num_frames", None), kwargs.pop("fps", None)
        video_metadata = kwargs.pop("video_metadata", None)
        input_data_format = kwargs.pop("input_data_format", None)
        for unused in ("return_tensors", "return_metadata"):
            kwargs.pop(unused, None)

        if isinstance(video_metadata, (dict, VideoMetadata)):
            video_metadata = [video_metadata]
        if video_metadata is not None and len(video_metadata) != len(videos):
            raise ValueError(
                f"`video_metadata` must hold one entry per clip of `videos` ({len(videos)}), got {len(video_metadata)}"
            )

        def sample_indices(metadata: VideoMetadata):
            return self.video_processor.sample_frames(metadata=metadata, num_frames=num_frames, fps=fps)

        selected, samplings, metadatas = [], [], []
        for clip_index, clip in enumerate(videos):
            where = "videos" if len(videos) == 1 else f"videos[{clip_index}]"
            given = video_metadata[clip_index] if video_metadata is not None else None
            if given is not None:  # a copy: the caller's metadata is not modified
                given = VideoMetadata(**given)
            if isinstance(clip, (str, dict)):
                clip = self._read_video_for_call(clip, where, sample_indices if do_sample_frames else None)
            if isinstance(clip, SampledVideo):
                selected.append(clip.frames.permute(0, 3, 1, 2))
                union_indices, llm_indices = clip.video_frame_indices, clip.llm_frame_indices
                samplings.append((union_indices, llm_indices, torch.searchsorted(union_indices, llm_indices)))
                metadatas.append(clip.metadata)
                continue
            frames = self._channels_first(clip, input_data_format, where)
            metadata = given if given is not None else VideoMetadata(total_num_frames=frames.shape[0])
            metadata.total_num_frames = frames.shape[0]
            metadata.height, metadata.width = frames.shape[2], frames.shape[3]
            source = torch.arange(frames.shape[0])
            if do_sample_frames:
                source = torch.as_tensor(list(sample_indices(metadata)), dtype=torch.long)
                frames = frames[source]
            if source.numel() == 0 or (source.diff() <= 0).any():
                raise ValueError(
                    f"`{where}`: frame sampling must give strictly increasing frame indices, got {source.tolist()}"
                )
            try:
                union, llm = self.sample_frame_indices(frames.shape[0])
            except ValueError as error:
                raise ValueError(
                    f"`{where}` has {frames.shape[0]} frames, too few for the frame sampler: {error}"
                ) from error
            selected.append(frames if len(union) == frames.shape[0] else frames[union])  # union is sorted, unique
            samplings.append((source[union], source[llm], torch.searchsorted(union, llm)))
            metadata.frames_indices = source[llm].tolist()
            metadatas.append(metadata)

        processed = self.video_processor(
            selected,
            input_data_format="channels_first",
            do_sample_frames=False,
            return_tensors=None,
            **kwargs,
        )["pixel_values_videos"]

        counts = [(len(video_indices), len(llm_indices)) for video_indices, llm_indices, _ in samplings]
        shapes = {tuple(frames.shape[1:]) for frames in processed}
        if len(set(counts)) != 1 or len(shapes) != 1:
            per_clip = ", ".join(
                f"videos[{i}]: {t} video_frames / {t_llm} LLM frames of {tuple(frames.shape[1:])}"
                for i, ((t, t_llm), frames) in enumerate(zip(counts, processed))
            )
            raise ValueError(
                "`videos`: every clip of a batch must give the same number and size of frames so the outputs stack "
                f"(each clip is sampled on its own), got {per_clip}. Pass clips of the same length (or "
                "`do_sample_frames=True, num_frames=N`) or process them separately."
            )
        outputs = {
            "pixel_values_videos": torch.stack(
                [
                    frames.index_select(0, gather.to(frames.device))
                    for frames, (_, _, gather) in zip(processed, samplings)
                ]
            ),
            "video_frames": torch.stack(list(processed)),
            "video_frame_indices": torch.stack([video_indices for video_indices, _, _ in samplings]),
            "llm_frame_indices": torch.stack([llm_indices for _, llm_indices, _ in samplings]),
            "video_metadata": metadatas,
        }
        if torch.equal(outputs["llm_frame_indices"], outputs["video_frame_indices"]):
            # The LLM sees exactly `video_frames`: say so by omission, so the model can reuse its vision forward
            # as the teacher's without comparing pixels on the device.
            del outputs["llm_frame_indices"]
        replacements = []
        if getattr(self, "video_token", None) is not None:
            replacements = [self.replace_video_token(outputs, video_idx=i) for i in range(len(videos))]
        return outputs, replacements

    def replace_video_token(self, video_inputs: dict | None = None, video_idx: int = 0, **kwargs) -> str:
        """`<video>` repeated `T_llm * tokens_per_frame` times for clip `video_idx` of `pixel_values_videos`."""
        num_frames, _, height, width = video_inputs["pixel_values_videos"][video_idx].shape
        return self.video_token * (num_frames * self.num_video_tokens_per_frame(height, width))


LlavaNextARProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["LlavaNextARProcessor"]
