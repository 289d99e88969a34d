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
"""Video processor for LLaVA-NeXT-AR: LLaVA-NeXT-Video's, plus the frame sampling of the next-frame objective.

This file is remote code: it imports only the Python standard library, `torch`, `transformers` and its sibling files.
Video files are read with PyAV (imported only when a file is read): the clip's frames are indexed without decoding,
sampled, and only the sampled frames are decoded (`video_decoding_llava_next_ar`).
"""

import bisect
import math
import os
from dataclasses import dataclass
from typing import Any

import torch
from transformers import LlavaNextVideoVideoProcessor
from transformers.image_processing_utils import BatchFeature
from transformers.image_utils import ChannelDimension, infer_channel_dimension_format, is_pil_image
from transformers.processing_utils import Unpack, VideosKwargs
from transformers.utils import is_numpy_array
from transformers.video_utils import VideoMetadata, is_valid_video

from .configuration_llava_next_ar import AUTOREGRESSIVE_CONFIG_DEFAULTS, validate_autoregressive_config
from .video_decoding_llava_next_ar import VideoDecodeError, VideoIndex, index_video, read_frames
from .video_frame_utils import VideoFrameSampler


SAMPLER_KEYS = ("use_fast_slow_frames", "fast_stride", "slow_stride", "num_fast", "num_slow", "merge_strategy",
                "short_clip")
"""Settings that mirror the keys of the same name in `LlavaNextARConfig.autoregressive_config`."""

PRESET_KEYS = ("use_fast_slow_frames", "fast_stride", "slow_stride", "num_fast", "num_slow")
"""Settings a fast/slow preset decides (`merge_strategy` and `short_clip` are never decided by a preset)."""

CLIP_SAMPLING_KEYS = ("frame_sampling", "sampling_num_frames", "sampling_fps", "sampling_max_frames", "decode_timeout")
"""Settings that choose which frames of a video file are decoded, before the fast/slow sampler."""

SETTING_KEYS = ("fast_slow_preset", *SAMPLER_KEYS, *CLIP_SAMPLING_KEYS)
"""Every sampling setting: saved with the video processor, fixed per processor (a call that passes one raises)."""

VIDEO_OUTPUTS = ("video_frames", "video_frame_indices", "llm_frame_indices")
FRAME_SAMPLING_MODES = ("all", "uniform", "fps")
DEFAULT_DECODE_TIMEOUT = 120.0
"""Seconds one video file may take to index and decode before it is an error (`decode_timeout`)."""


class ClipTooShortError(ValueError):
    """A clip (or its window) has fewer frames than the frame sampler needs."""


@dataclass
class SampledVideo:
    """The frames of one video file the processor uses, decoded: what `read_video` returns and what `videos` accepts
    without sampling again (so a `Dataset` can decode in its workers).

    `frames` `[T, H, W, 3]` uint8 are the objective's frames (`video_frame_indices`, source frame numbers, strictly
    increasing); the LLM sees `llm_frame_indices` (each one of `video_frame_indices`), in that order."""

    frames: torch.Tensor
    video_frame_indices: torch.LongTensor
    llm_frame_indices: torch.LongTensor
    metadata: VideoMetadata


def refuse_per_call_settings(kwargs: dict) -> None:
    """Sampling settings given to a call would be ignored: they belong to the processor. Raise, naming them."""
    per_call = [key for key in SETTING_KEYS if key in kwargs]
    if per_call:
        raise ValueError(
            f"{per_call} are settings of the processor, not of a call: load it with them "
            "(`from_pretrained(path, fast_slow_preset=...)`) or build it with `from_model_config(config, "
            "tokenizer, ...)`"
        )


def _describe(value: Any) -> str:
    """Short description of a `videos` entry for error messages (type, and shape/dtype for arrays)."""
    if isinstance(value, torch.Tensor) or is_numpy_array(value):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)} item(s)"
    return f"{type(value).__name__} {value!r}"[:200]


def _to_tensor(value: Any, where: str) -> torch.Tensor:
    """A PIL image (as RGB `[H, W, 3]` uint8), numpy array or tensor as a tensor, without copying arrays."""
    if is_pil_image(value):
        image = value if value.mode == "RGB" else value.convert("RGB")
        width, height = image.size
        return torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(height, width, 3)
    if isinstance(value, torch.Tensor):
        return value
    try:
        return torch.as_tensor(value if all(stride >= 0 for stride in value.strides) else value.copy())
    except (TypeError, ValueError, RuntimeError) as error:
        message = f"`{where}` must hold numeric pixel values (uint8 or float), got {_describe(value)}"
        raise ValueError(message) from error


class LlavaNextARVideoProcessorKwargs(VideosKwargs, total=False):
    r"""
    fast_slow_preset (`str`, *optional*):
        `None` (use the settings below), a key of `FAST_SLOW_PRESETS` (`"short"`, `"medium"`, `"long"`: fills the
        preset's settings; an explicit setting that disagrees raises), or `"auto"`: the preset per clip by its length.
    use_fast_slow_frames, fast_stride, slow_stride, num_fast, num_slow, merge_strategy, short_clip:
        The fast/slow sampler, as the keys of the same name in `LlavaNextARConfig.autoregressive_config`.
    frame_sampling (`str`, defaults to `"all"`), sampling_num_frames (`int`), sampling_fps (`float`),
    sampling_max_frames (`int`), decode_timeout (`float`, defaults to 120):
        Which frames of a video file are decoded before the fast/slow sampler (see `clip_frame_indices`), and the
        seconds one file may take.
    """

    fast_slow_preset: str | None
    use_fast_slow_frames: bool | None
    fast_stride: int | None
    slow_stride: int | None
    num_fast: int | None
    num_slow: int | None
    merge_strategy: str | None
    short_clip: str | None
    frame_sampling: str | None
    sampling_num_frames: int | None
    sampling_fps: float | None
    sampling_max_frames: int | None
    decode_timeout: float | None


class LlavaNextARVideoProcessor(LlavaNextVideoVideoProcessor):
    r"""
    [`LlavaNextVideoVideoProcessor`] that also chooses the frames of each clip: optionally `frame_sampling` of a video
    file (only the chosen frames are decoded), `do_sample_frames` as in the base, then the fast/slow sampler. Each
    distinct frame is resized/cropped/normalised once by the base pipeline; the outputs are

    - `pixel_values_videos` `[B, T_llm, 3, H, W]`: the frames the LLM sees, in its order (a frame may repeat);
    - `video_frames` `[B, T, 3, H, W]`: the objective's frames, each distinct frame once, in source-time order;
    - `video_frame_indices` `[B, T]`: their source-time indices, strictly increasing;
    - `llm_frame_indices` `[B, T_llm]`: source-time indices of `pixel_values_videos`; omitted when the LLM sees exactly
      `video_frames` (the model then reuses its vision forward as the teacher's).

    Source time is a frame's position in the clip as given (its frame number in a video file). `videos` takes a clip
    or a (nested) list of clips: a `[T, H, W, 3]` / `[T, 3, H, W]` array or tensor, a list of PIL images or frames, a
    local video file path, `{"path": ..., "start_frame": ..., "num_frames": ...}` (a window of a file), or a
    `SampledVideo`; a 5-D array is a batch. Each clip is sampled on its own; all must give the same frame counts and
    size. The settings (`LlavaNextARVideoProcessorKwargs`) are fixed per processor and saved with it.
    """

    valid_kwargs = LlavaNextARVideoProcessorKwargs
    model_input_names = ["pixel_values_videos", *VIDEO_OUTPUTS]

    FAST_SLOW_PRESETS: dict[str, dict[str, Any]] = {
        "short": {"use_fast_slow_frames": False},
        "medium": {"use_fast_slow_frames": True, "fast_stride": 1, "slow_stride": 4, "num_fast": 8, "num_slow": 8},
        "long": {"use_fast_slow_frames": True, "fast_stride": 2, "slow_stride": 8, "num_fast": 16, "num_slow": 8},
    }
    """Seed presets by clip length: short (< 30 frames) no fast/slow; medium (30-60) 8 fast / 8 slow, strides 1 / 4;
    long (> 60) 16 fast / 8 slow, strides 2 / 8. Each fits its shortest clip without shrinking a stride."""

    FAST_SLOW_PRESET_MIN_FRAMES: dict[str, int] = {"short": 1, "medium": 30, "long": 61}
    """Shortest clip (frames) for which `fast_slow_preset="auto"` picks each preset."""

    def __init__(self, **kwargs: Unpack[LlavaNextARVideoProcessorKwargs]):
        given = {key: kwargs.pop(key, None) for key in SETTING_KEYS}
        super().__init__(**kwargs)
        self.fast_slow_preset = preset_name = given.pop("fast_slow_preset")
        self._check_preset_name()
        if preset_name == "auto":
            fixed = {key: given[key] for key in PRESET_KEYS if given[key] is not None}
            if fixed:
                raise ValueError(
                    f"`fast_slow_preset`='auto' chooses {list(PRESET_KEYS)} per clip from `FAST_SLOW_PRESETS`; "
                    f"leave them unset (None), got {fixed}"
                )
        else:
            for key, value in self.FAST_SLOW_PRESETS.get(preset_name, {}).items():
                if given[key] is not None and given[key] != value:
                    raise ValueError(
                        f"`{key}`={given[key]!r} disagrees with `fast_slow_preset`={preset_name!r}, which sets "
                        f"{key}={value!r}; drop one of them"
                    )
                given[key] = value
            given.update({key: AUTOREGRESSIVE_CONFIG_DEFAULTS[key] for key in PRESET_KEYS if given[key] is None})
        for key in ("merge_strategy", "short_clip"):
            given[key] = AUTOREGRESSIVE_CONFIG_DEFAULTS[key] if given[key] is None else given[key]
        for key, default in (("frame_sampling", "all"), ("decode_timeout", DEFAULT_DECODE_TIMEOUT)):
            given[key] = default if given[key] is None else given[key]
        for key, value in given.items():
            setattr(self, key, value)
        self.validate_settings()

    @classmethod
    def from_dict(cls, video_processor_dict: dict[str, Any], **kwargs):
        """As the base; a `fast_slow_preset` given to `from_pretrained` replaces the saved settings it decides (those
        not also given), instead of conflicting with them."""
        if kwargs.get("fast_slow_preset") is not None:
            video_processor_dict = {
                key: value for key, value in video_processor_dict.items() if key not in PRESET_KEYS or key in kwargs
            }
        return super().from_dict(video_processor_dict, **kwargs)

    def to_llava_next_video(self) -> LlavaNextVideoVideoProcessor:
        """The stock [`LlavaNextVideoVideoProcessor`] with the same resize/crop/normalise settings and no sampling
        (what an export served by stock transformers saves)."""
        settings = {key: value for key, value in self.to_dict().items() if key not in SETTING_KEYS}
        return LlavaNextVideoVideoProcessor(
            **{key: value for key, value in settings.items() if key not in ("video_processor_type", "auto_map")}
        )

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
        Check every sampling setting (also run before each call, so edited attributes are checked too).

        Raises:
            ValueError: naming the setting, what is allowed and the value given.
        """
        self._check_preset_name()
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
        mode = self.frame_sampling
        if mode not in FRAME_SAMPLING_MODES:
            raise ValueError(f"`frame_sampling` must be one of {list(FRAME_SAMPLING_MODES)}, got {mode!r}")
        for key, kind, needed in (
            ("sampling_num_frames", int, mode == "uniform"),
            ("sampling_fps", float, mode == "fps"),
            ("sampling_max_frames", int, False),
            ("decode_timeout", float, True),
        ):
            value = getattr(self, key)
            if value is None:
                if needed:
                    raise ValueError(f"`frame_sampling`={mode!r} needs `{key}`")
                continue
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not number or (kind is int and not isinstance(value, int)) or not value > 0 or math.isinf(value):
                raise ValueError(f"`{key}` must be a positive {kind.__name__}, got {value!r}")
        for key, value in self.FAST_SLOW_PRESETS.get(self.fast_slow_preset, {}).items():
            if getattr(self, key) != value:
                raise ValueError(
                    f"`{key}`={getattr(self, key)!r} disagrees with `fast_slow_preset`={self.fast_slow_preset!r} "
                    f"({key}={value!r})"
                )

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

    # ------------------------------------------------------------------------------------------------------------
    # Which frames

    def sample_frame_indices(self, num_frames: int) -> tuple[torch.LongTensor, torch.LongTensor]:
        """
        Which frames of a clip of `num_frames` frames the fast/slow sampler uses.

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
                frame = max(start, bisect.bisect_right(timestamps, time_point + 1e-9, start, stop) - 1)
                if not chosen or frame != chosen[-1]:
                    chosen.append(frame)
            indices = torch.tensor(chosen, dtype=torch.long)
            cap = self.sampling_max_frames
            if cap is not None and len(indices) > cap:
                keep = (torch.linspace(0, len(indices) - 1, cap, dtype=torch.float64) + 0.5).floor().long()
                indices = indices[keep]
            return indices
        return torch.arange(start, stop)

    # ------------------------------------------------------------------------------------------------------------
    # Video files: sample first, then decode only those frames

    def working_size(self, height: int, width: int) -> tuple[int, int]:
        """`(height, width)` to decode frames of `height x width` at: the resize target, aspect ratio kept (shortest
        edge = `size["shortest_edge"]`, or covering `size`'s height x width), never upscaled."""
        size = self.size
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
        Sample, then decode only the sampled frames of a local video file, as `videos` does for a path: index the
        frames (no decoding), choose them with `clip_frame_indices` (within the window `start_frame` / `num_frames` if
        given) and the fast/slow sampler, then seek to and decode each chosen frame at `working_size` (aspect ratio
        kept). `sample_indices_fn(metadata)` replaces `frame_sampling` (what `do_sample_frames` passes).

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
            message = f"{source.numel()} sampled frames, too few for the frame sampler: {error}"
            raise ClipTooShortError(message) from error
        video_frame_indices, llm_frame_indices = source[union], source[llm]
        size = self.working_size(index.height, index.width)
        frames = read_frames(index, video_frame_indices.tolist(), size, self.decode_timeout)
        metadata.frames_indices = llm_frame_indices.tolist()
        return SampledVideo(frames, video_frame_indices, llm_frame_indices, metadata)

    # ------------------------------------------------------------------------------------------------------------
    # Inputs

    def make_clips(self, videos: Any) -> list:
        """
        `videos` as a flat list of clips, each checked: a path (`str`, an existing local file), a window mapping
        (`{"path", "start_frame", "num_frames"}`), a `SampledVideo`, or a 4-D tensor (`[T, H, W, 3]` or `[T, 3, H, W]`,
        uint8 or float). Idempotent.

        Raises:
            ValueError: naming the entry (`videos[i]...`), what was expected and what was given.
        """
        if isinstance(videos, (list, tuple)) and len(videos) == 0:
            raise ValueError("`videos` must hold at least one clip, got an empty list")
        clips: list = []
        self._collect_clips(videos, "videos", clips)
        if not clips:
            raise ValueError(f"`videos` must hold at least one clip, got {_describe(videos)} without any clip")
        return clips

    def _collect_clips(self, value: Any, where: str, clips: list) -> None:
        if isinstance(value, (str, os.PathLike)):
            path = os.fsdecode(os.fspath(value))
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
            unknown = set(value) - {"path", "video", "start_frame", "num_frames"}
            if unknown:
                raise ValueError(
                    f"`{where}`: a clip given as a mapping takes `path` and optionally `start_frame` and "
                    f"`num_frames`, got {sorted(value)}"
                )
            paths: list = []
            self._collect_clips(value.get("path", value.get("video")), where, paths)
            if len(paths) != 1 or not isinstance(paths[0], str):
                raise ValueError(f"`{where}`: a clip given as a mapping needs `path`, a local video file")
            clips.append({"path": paths[0], **{key: value.get(key) for key in ("start_frame", "num_frames")}})
        elif isinstance(value, torch.Tensor) or is_numpy_array(value):
            if value.ndim == 5:
                clips.extend(self._clip_tensor(value[index], f"{where}[{index}]") for index in range(value.shape[0]))
            elif value.ndim == 4:
                clips.append(self._clip_tensor(value, where))
            else:
                raise ValueError(
                    f"`{where}` must be a clip [T, H, W, 3] / [T, 3, H, W] (4-D) or a batch of clips (5-D), got "
                    f"{_describe(value)}"
                )
        elif is_pil_image(value):  # a clip of one frame
            clips.append(self._clip_tensor(_to_tensor(value, where)[None], where))
        elif isinstance(value, (list, tuple)) and is_valid_video(value):  # a list of frames
            frames = [_to_tensor(frame, f"{where}[{index}]") for index, frame in enumerate(value)]
            shapes = {tuple(frame.shape) for frame in frames}
            if len(shapes) != 1:
                raise ValueError(f"`{where}`: all frames of a clip must have the same shape, got {sorted(shapes)}")
            clips.append(self._clip_tensor(torch.stack(frames), where))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                if not (isinstance(item, (list, tuple)) and len(item) == 0):  # a sample without videos (chat batches)
                    self._collect_clips(item, f"{where}[{index}]", clips)
        else:
            raise ValueError(
                f"`{where}` must be a clip ([T, H, W, 3] or [T, 3, H, W] array/tensor, a list of PIL images or "
                f"[H, W, 3] frames, or a path to a local video file) or a list of clips, got {_describe(value)}"
            )

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

    # ------------------------------------------------------------------------------------------------------------
    # Preprocessing

    def _sample_clip(
        self, clip, where: str, metadata: VideoMetadata | None, layout, sample_indices_fn
    ) -> SampledVideo:
        """One clip of `make_clips` as the frames the processor uses (channels first) and their source indices."""
        if isinstance(clip, (str, dict)):
            path, window = (clip["path"], clip) if isinstance(clip, dict) else (clip, {})
            try:
                clip = self.read_video(path, window.get("start_frame"), window.get("num_frames"), sample_indices_fn)
            except VideoDecodeError as error:
                raise ValueError(f"`{where}` could not be decoded as a video with PyAV: {path!r}: {error}") from error
            except ClipTooShortError as error:
                raise ValueError(f"`{where}` ({path!r}) is too short for the frame sampler: {error}") from error
        if isinstance(clip, SampledVideo):
            return SampledVideo(clip.frames.permute(0, 3, 1, 2), clip.video_frame_indices, clip.llm_frame_indices,
                                clip.metadata)
        if layout is None:  # per clip: a batch may mix layouts
            layout = infer_channel_dimension_format(clip, num_channels=3)
        frames = clip.permute(0, 3, 1, 2) if layout == ChannelDimension.LAST else clip
        if frames.shape[1] != 3:
            raise ValueError(
                f"`{where}` must have 3 (RGB) channels in the {layout.value} layout, got shape {tuple(clip.shape)}"
            )
        if min(frames.shape[2:]) == 0:
            raise ValueError(f"`{where}` must have frames of at least 1x1 pixels, got shape {tuple(clip.shape)}")
        metadata = metadata if metadata is not None else VideoMetadata(total_num_frames=frames.shape[0])
        metadata.total_num_frames, metadata.height, metadata.width = frames.shape[0], frames.shape[2], frames.shape[3]
        source = torch.arange(frames.shape[0])
        if sample_indices_fn is not None:
            source = torch.as_tensor(list(sample_indices_fn(metadata)), dtype=torch.long)
            frames = frames[source]
        if source.numel() == 0 or (source.diff() <= 0).any():
            raise ValueError(
                f"`{where}`: frame sampling must give strictly increasing frame indices, got {source.tolist()}"
            )
        try:
            union, llm = self.sample_frame_indices(frames.shape[0])
        except ValueError as error:
            message = f"`{where}` has {frames.shape[0]} frames, too few for the frame sampler: {error}"
            raise ValueError(message) from error
        metadata.frames_indices = source[llm].tolist()
        frames = frames if len(union) == frames.shape[0] else frames[union]  # union is sorted, unique
        return SampledVideo(frames, source[union], source[llm], metadata)

    def preprocess(self, videos, **kwargs: Unpack[LlavaNextARVideoProcessorKwargs]) -> BatchFeature:
        """
        Choose each clip's frames (see the class docstring), preprocess each distinct frame once with the base
        pipeline (`do_sample_frames=False`: sampling is done here), then gather the LLM's frames.

        Returns:
            `BatchFeature` with `pixel_values_videos`, `video_frames`, `video_frame_indices`, `llm_frame_indices`
            (omitted when equal to `video_frame_indices`) and, with `return_metadata=True`, `video_metadata`.

        Raises:
            ValueError: bad `videos` or settings (naming them), or clips whose frame counts or sizes differ.
        """
        refuse_per_call_settings(kwargs)
        self.validate_settings()
        clips = self.make_clips(videos)
        do_sample_frames = kwargs.pop("do_sample_frames", None)
        do_sample_frames = self.do_sample_frames if do_sample_frames is None else do_sample_frames
        num_frames, fps = kwargs.pop("num_frames", None), kwargs.pop("fps", None)
        video_metadata = kwargs.pop("video_metadata", None)
        return_tensors, return_metadata = kwargs.pop("return_tensors", None), kwargs.pop("return_metadata", False)
        layout = kwargs.pop("input_data_format", None)
        layout = getattr(layout, "value", layout)
        if layout not in (None, "channels_first", "channels_last"):
            raise ValueError(f"`input_data_format` must be 'channels_first' or 'channels_last', got {layout!r}")
        layout = None if layout is None else ChannelDimension(layout)
        if isinstance(video_metadata, (dict, VideoMetadata)):
            video_metadata = [video_metadata]
        if video_metadata is not None and len(video_metadata) != len(clips):
            raise ValueError(
                f"`video_metadata` must hold one entry per clip of `videos` ({len(clips)}), got {len(video_metadata)}"
            )

        def sample_indices(metadata: VideoMetadata):
            return self.sample_frames(metadata=metadata, num_frames=num_frames, fps=fps)

        sampled = [
            self._sample_clip(
                clip,
                "videos" if len(clips) == 1 else f"videos[{index}]",
                None if video_metadata is None else VideoMetadata(**video_metadata[index]),  # a copy
                layout,
                sample_indices if do_sample_frames else None,
            )
            for index, clip in enumerate(clips)
        ]
        processed = super().preprocess(
            [clip.frames for clip in sampled], input_data_format="channels_first", do_sample_frames=False, **kwargs
        )["pixel_values_videos"]

        counts = [(len(clip.video_frame_indices), len(clip.llm_frame_indices)) for clip in sampled]
        if len(set(counts)) != 1 or len({tuple(frames.shape[1:]) for frames in processed}) != 1:
            per_clip = ", ".join(
                f"videos[{i}]: {t} video_frames / {t_llm} LLM frames of {tuple(frames.shape[1:])}"
                for i, ((t, t_llm), frames) in enumerate(zip(counts, processed))
            )
            raise ValueError(
                "`videos`: every clip of a batch must give the same number and size of frames so the outputs stack "
                f"(each clip is sampled on its own), got {per_clip}. Pass clips of the same length (or "
                "`do_sample_frames=True, num_frames=N`) or process them separately."
            )
        gathers = [torch.searchsorted(clip.video_frame_indices, clip.llm_frame_indices) for clip in sampled]
        outputs = {
            "pixel_values_videos": torch.stack(
                [frames.index_select(0, gather.to(frames.device)) for frames, gather in zip(processed, gathers)]
            ),
            "video_frames": torch.stack(list(processed)),
            "video_frame_indices": torch.stack([clip.video_frame_indices for clip in sampled]),
            "llm_frame_indices": torch.stack([clip.llm_frame_indices for clip in sampled]),
        }
        if torch.equal(outputs["llm_frame_indices"], outputs["video_frame_indices"]):
            # The LLM sees exactly `video_frames`: say so by omission, so the model can reuse its vision forward
            # as the teacher's without comparing pixels on the device.
            del outputs["llm_frame_indices"]
        batch = BatchFeature(outputs, tensor_type=return_tensors)
        if return_metadata:
            batch["video_metadata"] = [clip.metadata for clip in sampled]
        return batch


LlavaNextARVideoProcessor.register_for_auto_class("AutoVideoProcessor")

__all__ = ["LlavaNextARVideoProcessor", "LlavaNextARVideoProcessorKwargs", "SampledVideo", "ClipTooShortError"]
