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
"""Processor for LLaVA-NeXT-AR: the LLaVA-NeXT-Video processor with the video processor of the next-frame objective.

This file is remote code: it imports only the Python standard library, `torch`, `transformers` and its sibling files.
"""

from typing import Any

import torch
from transformers import LlavaNextImageProcessor, LlavaNextVideoProcessor

from .configuration_llava_next_ar import validate_autoregressive_config
from .video_processing_llava_next_ar import (  # noqa: F401 - re-exported: the processor's public names before the split
    CLIP_SAMPLING_KEYS,
    PRESET_KEYS,
    SAMPLER_KEYS,
    SETTING_KEYS,
    VIDEO_OUTPUTS,
    ClipTooShortError,
    LlavaNextARVideoProcessor,
    SampledVideo,
    refuse_per_call_settings,
)


class _VideoProcessorSetting:
    """A processor attribute that reads and writes the video processor's setting of the same name: the video
    processor owns sampling (its settings are saved with it), the processor keeps its attributes as they were."""

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, processor, owner=None):
        return self if processor is None else getattr(processor.video_processor, self.name)

    def __set__(self, processor, value) -> None:
        setattr(processor.video_processor, self.name, value)


class LlavaNextARProcessor(LlavaNextVideoProcessor):
    r"""
    The [`LlavaNextVideoProcessor`] of LLaVA-NeXT-AR: a tokenizer, a [`LlavaNextImageProcessor`] and a
    [`LlavaNextARVideoProcessor`], which samples each clip's frames and returns, beside `pixel_values_videos` (the
    frames the LLM sees), the objective's `video_frames`, `video_frame_indices` and `llm_frame_indices` (see its
    docstring for shapes and accepted `videos`). Text, images and chat templates work exactly as in the base.

    Each `<video>` expands to `T_llm * ((H // patch_size) // spatial_pool_stride) * ((W // patch_size) //
    spatial_pool_stride)` tokens (the base hard-codes `// 4`, right only for `spatial_pool_stride=2`).

    Build it with `from_model_config(config, tokenizer, **settings)` so it agrees with the model, or load it with
    `from_pretrained`; `check_compatible(config)` says what disagrees. The sampling settings (`fast_slow_preset`,
    `use_fast_slow_frames`, `fast_stride`, `slow_stride`, `num_fast`, `num_slow`, `merge_strategy`, `short_clip`,
    `frame_sampling`, `sampling_num_frames`, `sampling_fps`, `sampling_max_frames`, `decode_timeout`) are the video
    processor's: given here they configure a copy of `video_processor`, and `processor.<setting>` reads and writes
    them. The README ("Processor"; "Which frames" under Train) and docs/design.md (section 5) say what each does.

    Example:

    ```python
    >>> processor = LlavaNextARProcessor.from_model_config(config, tokenizer, use_fast_slow_frames=True)
    >>> batch = processor(text="user : <video> what happens ?", videos=clip, return_tensors="pt")
    >>> model(**batch, labels=batch["input_ids"]).autoregressive_loss
    ```
    """

    FAST_SLOW_PRESETS = LlavaNextARVideoProcessor.FAST_SLOW_PRESETS
    FAST_SLOW_PRESET_MIN_FRAMES = LlavaNextARVideoProcessor.FAST_SLOW_PRESET_MIN_FRAMES

    fast_slow_preset = _VideoProcessorSetting()
    use_fast_slow_frames = _VideoProcessorSetting()
    fast_stride = _VideoProcessorSetting()
    slow_stride = _VideoProcessorSetting()
    num_fast = _VideoProcessorSetting()
    num_slow = _VideoProcessorSetting()
    merge_strategy = _VideoProcessorSetting()
    short_clip = _VideoProcessorSetting()
    frame_sampling = _VideoProcessorSetting()
    sampling_num_frames = _VideoProcessorSetting()
    sampling_fps = _VideoProcessorSetting()
    sampling_max_frames = _VideoProcessorSetting()
    decode_timeout = _VideoProcessorSetting()

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
        fast_slow_preset=None,
        use_fast_slow_frames=None,
        fast_stride=None,
        slow_stride=None,
        num_fast=None,
        num_slow=None,
        merge_strategy=None,
        short_clip=None,
        frame_sampling=None,
        sampling_num_frames=None,
        sampling_fps=None,
        sampling_max_frames=None,
        decode_timeout=None,
        **kwargs,
    ):
        local = locals()
        settings = {key: local[key] for key in SETTING_KEYS if local[key] is not None}
        if video_processor is not None and (settings or not isinstance(video_processor, LlavaNextARVideoProcessor)):
            # A copy with these settings (the caller's video processor is not changed); a plain
            # `LlavaNextVideoVideoProcessor` (checkpoints saved before the split) keeps its image settings.
            saved = {key: value for key, value in video_processor.to_dict().items() if key != "video_processor_type"}
            if "fast_slow_preset" in settings:  # the preset decides these, unless also given
                saved = {key: value for key, value in saved.items() if key not in PRESET_KEYS}
            video_processor = LlavaNextARVideoProcessor(**{**saved, **settings})
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
        self.validate_settings()

    # ------------------------------------------------------------------------------------------------------------
    # Settings (the sampling ones are the video processor's)

    def validate_settings(self) -> None:
        """
        Check `patch_size`, `spatial_pool_stride` and the video processor's sampling settings (also run before each
        call, so edited attributes are checked too).

        Raises:
            ValueError: naming the setting, what is allowed and the value given.
        """
        for key in ("patch_size", "spatial_pool_stride"):
            value = getattr(self, key)
            if value is None and key == "patch_size":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{key}` must be an int >= 1, got {value!r}")
        if self.video_processor is not None:
            self.video_processor.validate_settings()

    @property
    def clip_sampling_settings(self) -> dict[str, Any]:
        """`LlavaNextARVideoProcessor.clip_sampling_settings`."""
        return self.video_processor.clip_sampling_settings

    @property
    def sampler_settings(self) -> dict[str, Any]:
        """`LlavaNextARVideoProcessor.sampler_settings`."""
        return self.video_processor.sampler_settings

    @classmethod
    def preset_for_num_frames(cls, num_frames: int) -> str:
        """`LlavaNextARVideoProcessor.preset_for_num_frames`."""
        return LlavaNextARVideoProcessor.preset_for_num_frames(num_frames)

    def sampler_settings_for_clip(self, num_frames: int) -> dict[str, Any]:
        """`LlavaNextARVideoProcessor.sampler_settings_for_clip`."""
        return self.video_processor.sampler_settings_for_clip(num_frames)

    def sample_frame_indices(self, num_frames: int) -> tuple[torch.LongTensor, torch.LongTensor]:
        """`LlavaNextARVideoProcessor.sample_frame_indices`: `(video_frame_indices [T], llm_frame_indices [T_llm])` of
        a clip of `num_frames` frames."""
        return self.video_processor.sample_frame_indices(num_frames)

    def clip_frame_indices(self, num_frames: int, timestamps: list[float] | None = None,
                           start_frame: int | None = None, window_frames: int | None = None) -> torch.LongTensor:
        """`LlavaNextARVideoProcessor.clip_frame_indices`: the frames of a file `frame_sampling` chooses."""
        return self.video_processor.clip_frame_indices(num_frames, timestamps, start_frame, window_frames)

    def read_video(self, path, start_frame: int | None = None, num_frames: int | None = None,
                   sample_indices_fn=None) -> SampledVideo:
        """`LlavaNextARVideoProcessor.read_video`: sample, then decode only those frames of a video file."""
        return self.video_processor.read_video(path, start_frame, num_frames, sample_indices_fn)

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
        [`LlavaNextARVideoProcessor`] / [`LlavaNextImageProcessor`] that resize and center-crop to the vision
        tower's `image_size`. `settings` override the config's values (e.g. `fast_slow_preset="auto"` needs the
        preset-decided sampler settings dropped, which this does).
        """
        size = config.vision_config.image_size
        if video_processor is None:
            video_processor = LlavaNextARVideoProcessor(
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

    # ------------------------------------------------------------------------------------------------------------
    # Calls

    @classmethod
    def from_args_and_dict(cls, args, processor_dict: dict[str, Any], **kwargs):
        """As the base; a `fast_slow_preset` given to `from_pretrained` replaces the settings it decides that a
        checkpoint saved before the video processor split keeps beside the processor (those not also given)."""
        if kwargs.get("fast_slow_preset") is not None:
            processor_dict = {
                key: value for key, value in processor_dict.items() if key not in PRESET_KEYS or key in kwargs
            }
        return super().from_args_and_dict(args, processor_dict, **kwargs)

    def prepare_inputs_layout(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """As the base, plus `videos` as the video processor's flat list of checked clips (`make_clips`). Sampling
        settings given to a call raise (they would be ignored): they belong to the processor."""
        refuse_per_call_settings(kwargs)
        images, text, _, audio = super().prepare_inputs_layout(images=images, text=text, videos=None, audio=audio)
        if videos is not None:
            videos = self.video_processor.make_clips(videos)
        return images, text, videos, audio

    def validate_inputs(self, images=None, text=None, videos=None, audio=None, **kwargs):
        """As the base; clips it does not know (a `SampledVideo`, a path with a window) count as one video each."""
        if videos is not None:
            videos = ["sampled video" if isinstance(clip, (dict, SampledVideo)) else clip for clip in videos]
        return super().validate_inputs(images=images, text=text, videos=videos, audio=audio, **kwargs)

    def _process_videos(self, videos: list, **kwargs) -> tuple[dict[str, Any], list[str]]:
        """As the base, but one `<video>` replacement per row of the output: the base counts the clips with
        `make_batched_videos`, which drops the clip forms it does not know (window mappings, `SampledVideo`)."""
        self.validate_settings()
        outputs = self.video_processor(videos, **kwargs)
        replacements = []
        if self.video_token is not None:
            replacements = [self.replace_video_token(outputs, video_idx=i) for i in range(len(videos))]
        return outputs, replacements

    def replace_video_token(self, video_inputs: dict | None = None, video_idx: int = 0, **kwargs) -> str:
        """`<video>` repeated `T_llm * tokens_per_frame` times for clip `video_idx` of `pixel_values_videos`."""
        num_frames, _, height, width = video_inputs["pixel_values_videos"][video_idx].shape
        return self.video_token * (num_frames * self.num_video_tokens_per_frame(height, width))


LlavaNextARProcessor.register_for_auto_class("AutoProcessor")

__all__ = ["LlavaNextARProcessor"]
