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
"""Frame-level attention masks and fast/slow frame sampling for LLaVA-NeXT-AR.

This file is remote code: it imports only the Python standard library and `torch`.

Every mask here is boolean with `True = may attend` (rows = queries, columns = keys). PyTorch's
`nn.Transformer` / `nn.MultiheadAttention` masks use the opposite convention (`True = masked`):
invert with `~mask` exactly once, at that boundary. Patch-level masks are a frame-level pattern
`[T, T]` expanded over the `P` patches of each frame on both axes, giving `[T*P, T*P]`.
"""

import os
import re
import struct
import tempfile
import zlib
from collections.abc import Sequence
from typing import Optional, Union

import torch


MERGE_STRATEGIES = ("concat", "interleave")
SHORT_CLIP_POLICIES = ("shrink", "error")

DeviceLike = Optional[Union[torch.device, str]]


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an int >= {minimum}, got {value!r}.")
    return value


def _expand(pattern: torch.Tensor, num_patches_per_frame: int) -> torch.Tensor:
    """Expand a frame pattern `[N, N]` to a patch mask `[N*P, N*P]`."""
    return pattern.repeat_interleave(num_patches_per_frame, dim=0).repeat_interleave(num_patches_per_frame, dim=1)


def frame_attention_pattern(
    num_frames: int, window_size: Optional[int] = None, device: DeviceLike = None
) -> torch.BoolTensor:
    """Frame-level causal pattern `[T, T]`: query frame `t` may attend key frame `j` iff `j <= t` and
    (`window_size is None` or `t - j < window_size`), i.e. the `window_size` most recent frames including
    `t` itself. `window_size=1` is block-diagonal; `window_size >= T` equals the fully causal pattern."""
    _check_int("num_frames", num_frames)
    if window_size is not None:
        _check_int("window_size", window_size)
    steps = torch.arange(num_frames, device=device)
    distance = steps[:, None] - steps[None, :]  # query - key
    pattern = distance >= 0
    if window_size is not None:
        pattern &= distance < window_size
    return pattern


def create_frame_position_ids(
    num_frames: int, num_patches_per_frame: int, device: DeviceLike = None
) -> torch.LongTensor:
    """Frame index of every patch token, `[T*P]`: `create_frame_position_ids(3, 2) -> [0, 0, 1, 1, 2, 2]`."""
    _check_int("num_frames", num_frames)
    _check_int("num_patches_per_frame", num_patches_per_frame)
    return torch.arange(num_frames, device=device).repeat_interleave(num_patches_per_frame)


def _as_time_indices(name: str, indices, device: DeviceLike) -> torch.LongTensor:
    if device is None and isinstance(indices, torch.Tensor):
        device = indices.device
    try:
        tensor = torch.as_tensor(indices, device=device)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"`{name}` must be a 1-D sequence or tensor of ints, got {indices!r}.") from error
    if tensor.dtype == torch.bool or tensor.is_floating_point() or tensor.is_complex():
        raise ValueError(f"`{name}` must hold integer frame indices, got dtype {tensor.dtype}.")
    if tensor.dim() != 1 or tensor.numel() == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence of frame indices, got shape {tuple(tensor.shape)}."
        )
    return tensor.long()


class FrameLevelMaskGenerator:
    """Boolean attention masks over frame patches, `True = may attend` (invert with `~mask` for PyTorch's
    `nn.Transformer`, whose masks use `True = masked`). Patch tokens are laid out frame-major: token
    `f * P + p` is patch `p` of frame `f`. All patches of a frame see each other (no order inside a frame)."""

    @staticmethod
    def create_causal_frame_mask(
        num_frames: int, num_patches_per_frame: int, device: DeviceLike = None
    ) -> torch.BoolTensor:
        """Patches of frame `t` attend every patch of frames `<= t`, nothing later. Returns `[T*P, T*P]`."""
        _check_int("num_patches_per_frame", num_patches_per_frame)
        return _expand(frame_attention_pattern(num_frames, None, device), num_patches_per_frame)

    @staticmethod
    def create_sliding_window_frame_mask(
        num_frames: int, num_patches_per_frame: int, window_size: int, device: DeviceLike = None
    ) -> torch.BoolTensor:
        """Frame `t` attends the `window_size` most recent frames including itself: frames `j` with
        `t - window_size < j <= t`. `window_size=1` = each frame sees only itself. Returns `[T*P, T*P]`."""
        _check_int("window_size", window_size)
        _check_int("num_patches_per_frame", num_patches_per_frame)
        return _expand(frame_attention_pattern(num_frames, window_size, device), num_patches_per_frame)

    @staticmethod
    def create_token_causal_mask(
        num_frames: int, num_patches_per_frame: int, window_size: Optional[int] = None, device: DeviceLike = None
    ) -> torch.BoolTensor:
        """Standard token-level causal mask (the seed's ablation baseline): token `i` attends token `j` iff
        `j <= i` in frame-major order; with `window_size`, additionally only tokens of the `window_size` most
        recent frames (same window definition as `create_sliding_window_frame_mask`). Returns `[T*P, T*P]`."""
        _check_int("num_patches_per_frame", num_patches_per_frame)
        frames = _expand(frame_attention_pattern(num_frames, window_size, device), num_patches_per_frame)
        return frames & torch.ones_like(frames).tril()

    @staticmethod
    def create_time_causal_frame_mask(
        frame_indices: Union[Sequence[int], torch.Tensor], num_patches_per_frame: int, device: DeviceLike = None
    ) -> torch.BoolTensor:
        """Leak-free mask for frames in ANY list order. `frame_indices` `[N]` holds the source-time index of
        each listed frame (may be unsorted, e.g. `[slow] + [fast]`, and may repeat). Query frame `q` may attend
        key frame `k` iff `frame_indices[k] <= frame_indices[q]`: masks follow source time, not list position.
        Returns `[N*P, N*P]` on `device` (default: the device of `frame_indices` if it is a tensor)."""
        _check_int("num_patches_per_frame", num_patches_per_frame)
        times = _as_time_indices("frame_indices", frame_indices, device)
        return _expand(times[None, :] <= times[:, None], num_patches_per_frame)

    @staticmethod
    def create_fast_slow_frame_mask(
        num_fast_frames: int,
        num_slow_frames: int,
        num_patches_per_frame: int,
        device: DeviceLike = None,
        fast_indices: Optional[Union[Sequence[int], torch.Tensor]] = None,
        slow_indices: Optional[Union[Sequence[int], torch.Tensor]] = None,
        merge_strategy: str = "concat",
    ) -> torch.BoolTensor:
        """Mask over the merged fast/slow list, `[(F+S)*P, (F+S)*P]`, in the order of
        `VideoFrameSampler.merge_fast_slow_frames(..., merge_strategy)` ("concat" = `[slow] + [fast]`).

        With `fast_indices` and `slow_indices` (source-time indices, both required together) this is
        `create_time_causal_frame_mask` of the merged indices. Without them, every slow frame is assumed to
        precede every fast frame in time (slow = long-range context, fast = the recent frames), each set in
        time order: fast frames attend all slow frames and earlier-or-same fast frames (the seed's rule), and
        slow frames attend earlier-or-same slow frames only. The seed's "slow frames attend to each other" is
        deliberately NOT implemented: a slow frame attending a later slow frame would see the future.
        """
        _check_int("num_fast_frames", num_fast_frames)
        _check_int("num_slow_frames", num_slow_frames)
        if (fast_indices is None) != (slow_indices is None):
            raise ValueError("`fast_indices` and `slow_indices` must be given together (or both left as None).")
        if fast_indices is None:
            slow = torch.arange(num_slow_frames, device=device)
            fast = torch.arange(num_slow_frames, num_slow_frames + num_fast_frames, device=device)
        else:
            fast = _as_time_indices("fast_indices", fast_indices, device)
            slow = _as_time_indices("slow_indices", slow_indices, fast.device)
            for name, tensor, count_name, count in (
                ("fast_indices", fast, "num_fast_frames", num_fast_frames),
                ("slow_indices", slow, "num_slow_frames", num_slow_frames),
            ):
                if tensor.numel() != count:
                    raise ValueError(f"`{name}` has {tensor.numel()} entries but `{count_name}` is {count}.")
        merged = VideoFrameSampler.merge_fast_slow_frames(fast, slow, merge_strategy=merge_strategy, dim=0)
        return FrameLevelMaskGenerator.create_time_causal_frame_mask(merged, num_patches_per_frame)

    @staticmethod
    def visualize_mask(
        mask: torch.Tensor, title: str = "Frame Mask", save_path: Optional[Union[str, os.PathLike]] = None
    ) -> str:
        """Write `mask` `[Q, K]` (bool) as a grayscale PNG (white = may attend, black = masked), using only the
        standard library. The title is stored in a `tEXt` chunk "Title" (Latin-1, other characters become `?`).

        Scaling: if the longer side exceeds 2048 entries, the mask is max-pooled by the smallest integer factor
        `k` that brings it to <= 2048 (a pixel is white if ANY entry of its `k x k` block may attend); small
        masks are upscaled by an integer factor so the longer side is at least 256 px.

        File: `save_path`, or `<slug>.png` in `save_path` if it is a directory, or in the current directory if
        it is None (slug: "My Frame Mask" -> "my_frame_mask"). Written atomically (temp file + `os.replace`).
        Returns the absolute path written.
        """
        if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or mask.dim() != 2 or mask.numel() == 0:
            got = type(mask).__name__
            if isinstance(mask, torch.Tensor):
                got = f"tensor of dtype {mask.dtype} and shape {tuple(mask.shape)}"
            raise ValueError(f"`mask` must be a non-empty 2-D bool tensor, got {got}.")
        image = mask.detach().cpu()
        factor = -(-max(image.shape) // 2048)
        if factor > 1:
            image = torch.nn.functional.max_pool2d(image[None, None].float(), factor, ceil_mode=True)[0, 0] > 0
        scale = max(1, -(-256 // max(image.shape)))
        height, width = image.shape[0] * scale, image.shape[1] * scale
        pixels = image.to(torch.uint8).mul_(255).repeat_interleave(scale, dim=1)
        raw = b"".join((b"\x00" + bytes(row.tolist())) * scale for row in pixels)

        def chunk(kind: bytes, data: bytes) -> bytes:
            crc = zlib.crc32(kind + data) & 0xFFFFFFFF
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

        png = b"".join(
            [
                b"\x89PNG\r\n\x1a\n",
                chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)),
                chunk(b"tEXt", b"Title\x00" + str(title).encode("latin-1", "replace")),
                chunk(b"IDAT", zlib.compress(raw, 9)),
                chunk(b"IEND", b""),
            ]
        )
        slug = (re.sub(r"[^a-z0-9]+", "_", str(title).lower()).strip("_") or "mask") + ".png"
        if save_path is None:
            path = slug
        elif os.path.isdir(save_path):
            path = os.path.join(save_path, slug)
        else:
            path = os.fspath(save_path)
        path = os.path.abspath(path)
        handle, tmp_path = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp_mask_", suffix=".png")
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(png)
            os.chmod(tmp_path, 0o644)
            os.replace(tmp_path, path)
        except BaseException:
            if os.path.exists(tmp_path):
                os.unlink(tmp_path)
            raise
        return path


class VideoFrameSampler:
    """Fast/slow frame sampling along the time axis (dim 1 of `[B, T, C, H, W]`).

    Rule (a product decision; all arguments are ints >= 1):
    - fast frames: the `num_fast` MOST RECENT frames, `fast_stride` apart, ending at the last frame:
      `index_i = (T-1) - fast_stride * (num_fast-1-i)`, ascending.
    - slow frames: `num_slow` frames, `slow_stride` apart, from frame 0: `index_i = slow_stride * i`.
    - short clips: a set needs `stride * (count-1) + 1` frames. If the clip is shorter, `short_clip="shrink"`
      (default) lowers that set's stride to the largest that fits, `(T-1) // (count-1)`, and raises if even
      stride 1 does not fit (`T < count`); `short_clip="error"` raises. Nothing else is clamped.
    The seed's example (T=16, 8 fast, 8 slow) gives fast = 8..15 and slow = 0, 2, ..., 14: with
    `slow_stride=2` exactly, with the default `slow_stride=4` by shrinking (4*7+1 = 29 > 16).
    The two sets may overlap; frame indices are returned so masks and targets can follow source time.
    """

    @staticmethod
    def _set_indices(
        num_frames: int, count: int, stride: int, count_name: str, stride_name: str, short_clip: str,
        from_end: bool, device: DeviceLike,
    ) -> torch.LongTensor:
        needed = stride * (count - 1) + 1
        if num_frames < needed:
            if short_clip == "error":
                raise ValueError(
                    f"`{stride_name}`={stride} with `{count_name}`={count} needs a clip of at least {needed} frames, "
                    f"got {num_frames} frames (use short_clip='shrink' to reduce the stride)."
                )
            if num_frames < count:
                raise ValueError(
                    f"`{count_name}`={count} needs a clip of at least {count} frames (stride 1), "
                    f"got {num_frames} frames."
                )
            stride = (num_frames - 1) // (count - 1)
        steps = torch.arange(count, device=device)
        return (num_frames - 1) - stride * (count - 1 - steps) if from_end else stride * steps

    @staticmethod
    def fast_slow_indices(
        num_frames: int,
        fast_stride: int = 1,
        slow_stride: int = 4,
        num_fast: int = 8,
        num_slow: int = 8,
        short_clip: str = "shrink",
        device: DeviceLike = None,
    ) -> tuple[torch.LongTensor, torch.LongTensor]:
        """Source-time indices `([num_fast], [num_slow])`, each ascending, of a clip with `num_frames` frames."""
        for name, value in (("num_frames", num_frames), ("fast_stride", fast_stride), ("slow_stride", slow_stride),
                            ("num_fast", num_fast), ("num_slow", num_slow)):
            _check_int(name, value)
        if short_clip not in SHORT_CLIP_POLICIES:
            raise ValueError(f"`short_clip` must be one of {SHORT_CLIP_POLICIES}, got {short_clip!r}.")
        fast = VideoFrameSampler._set_indices(
            num_frames, num_fast, fast_stride, "num_fast", "fast_stride", short_clip, True, device
        )
        slow = VideoFrameSampler._set_indices(
            num_frames, num_slow, slow_stride, "num_slow", "slow_stride", short_clip, False, device
        )
        return fast, slow

    @staticmethod
    def sample_fast_slow_frames(
        video_frames: torch.Tensor,
        fast_stride: int = 1,
        slow_stride: int = 4,
        num_fast: int = 8,
        num_slow: int = 8,
        short_clip: str = "shrink",
        return_indices: bool = False,
    ):
        """Gather fast and slow frames of `video_frames` `[B, T, ...]` (time at dim 1, e.g. `[B, T, C, H, W]`).
        Returns `(fast [B, num_fast, ...], slow [B, num_slow, ...])`, plus `(fast_indices, slow_indices)` if
        `return_indices`."""
        if not isinstance(video_frames, torch.Tensor) or video_frames.dim() < 2:
            got = type(video_frames).__name__
            if isinstance(video_frames, torch.Tensor):
                got = f"shape {tuple(video_frames.shape)}"
            raise ValueError(f"`video_frames` must be a tensor [B, T, ...] with time at dim 1, got {got}.")
        fast_indices, slow_indices = VideoFrameSampler.fast_slow_indices(
            video_frames.shape[1], fast_stride, slow_stride, num_fast, num_slow, short_clip, video_frames.device
        )
        fast, slow = video_frames.index_select(1, fast_indices), video_frames.index_select(1, slow_indices)
        return (fast, slow, fast_indices, slow_indices) if return_indices else (fast, slow)

    @staticmethod
    def merge_fast_slow_frames(
        fast_frames: torch.Tensor, slow_frames: torch.Tensor, merge_strategy: str = "concat", dim: int = 1
    ) -> torch.Tensor:
        """Merge along `dim`: "concat" = `[slow] + [fast]`; "interleave" = slow0, fast0, slow1, fast1, ... with
        the leftover of the longer set appended in order. Works on frames `[B, T, ...]` and on 1-D index tensors
        (`dim=0`). All sizes except `dim` must agree. Returns `[..., F+S, ...]`."""
        if merge_strategy not in MERGE_STRATEGIES:
            raise ValueError(f"`merge_strategy` must be one of {MERGE_STRATEGIES}, got {merge_strategy!r}.")
        if not isinstance(fast_frames, torch.Tensor) or not isinstance(slow_frames, torch.Tensor):
            raise ValueError("`fast_frames` and `slow_frames` must be tensors.")
        ndim = fast_frames.dim()
        if ndim == 0 or slow_frames.dim() != ndim or not -ndim <= dim < ndim:
            raise ValueError(
                f"`dim`={dim} is invalid for `fast_frames` of shape {tuple(fast_frames.shape)} and `slow_frames` of "
                f"shape {tuple(slow_frames.shape)} (need equal rank >= 1 and -rank <= dim < rank)."
            )
        dim %= ndim
        fast_rest = fast_frames.shape[:dim] + fast_frames.shape[dim + 1 :]
        slow_rest = slow_frames.shape[:dim] + slow_frames.shape[dim + 1 :]
        if fast_rest != slow_rest:
            raise ValueError(
                f"`fast_frames` {tuple(fast_frames.shape)} and `slow_frames` {tuple(slow_frames.shape)} must agree "
                f"in every dimension except `dim`={dim}."
            )
        if merge_strategy == "concat":
            return torch.cat([slow_frames, fast_frames], dim=dim)
        num_fast, num_slow = fast_frames.shape[dim], slow_frames.shape[dim]
        paired = min(num_fast, num_slow)
        pairs = torch.stack([slow_frames.narrow(dim, 0, paired), fast_frames.narrow(dim, 0, paired)], dim=dim + 1)
        leftovers = [
            slow_frames.narrow(dim, paired, num_slow - paired),
            fast_frames.narrow(dim, paired, num_fast - paired),
        ]
        return torch.cat([pairs.flatten(dim, dim + 1), *leftovers], dim=dim)
