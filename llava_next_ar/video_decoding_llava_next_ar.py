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
"""Decode only the frames a sampler picked from a video file: index the stream's packets (no decoding), then, for each
wanted frame, seek to the keyframe before it and decode forward to it (frames of one GOP in one pass).

Frames are found by their presentation timestamps, so variable-frame-rate clips and containers whose header frame
count is missing or wrong give the right frames. Each frame is converted straight to the requested size (aspect ratio
kept by the caller's choice of size) and RGB. Decoding stops with `VideoDecodeError` once `timeout` seconds have passed.

This file is remote code: it imports only the Python standard library and `torch`; PyAV is imported when a video is
first read (`importlib.import_module("av")`), so loading the processor does not require it.
"""

import bisect
import importlib
import os
import time
from dataclasses import dataclass
from fractions import Fraction

import torch


class VideoDecodeError(ValueError):
    """A video file could not be read or decoded (missing, damaged, truncated, too slow); the message names its path."""


def _pyav():
    try:
        return importlib.import_module("av")
    except ImportError as error:
        raise ImportError("decoding video files needs PyAV: `pip install av`") from error


@dataclass
class VideoIndex:
    """Where the frames of a file's first video stream are: one entry per frame, in presentation order.

    `pts` are presentation timestamps in units of `time_base`; `keyframe_pts` the sorted timestamps of the keyframes
    (where decoding can start). `pts` is `None` when the container has no timestamps (frames are then found by
    counting from the start). `header_frames` is the frame count the container claims (0 = unknown), for reference
    only: the frame count is `len(pts)` (packets present)."""

    path: str
    num_frames: int
    pts: list[int] | None
    keyframe_pts: list[int]
    time_base: Fraction
    width: int
    height: int
    header_frames: int
    average_fps: float | None

    @property
    def timestamps(self) -> list[float]:
        """Presentation time of each frame in seconds from the first frame (uniform at `average_fps` without pts)."""
        if self.pts is None:
            fps = self.average_fps or 1.0
            return [index / fps for index in range(self.num_frames)]
        first = self.pts[0]
        return [float((value - first) * self.time_base) for value in self.pts]

    @property
    def duration(self) -> float:
        """Seconds from the first frame's start to the last frame's end (one average frame period after it)."""
        stamps = self.timestamps
        step = 1.0 / self.average_fps if self.average_fps else (stamps[-1] / max(len(stamps) - 1, 1))
        return stamps[-1] + step


def _deadline_check(deadline: float | None, path: str, what: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise VideoDecodeError(f"video {path}: {what} took longer than the decode time limit")


def index_video(path: str, timeout: float | None = None) -> VideoIndex:
    """Index the frames of `path`'s first video stream by demuxing its packets (no decoding; ~1 ms per 100 packets).

    Raises `VideoDecodeError` naming the path: missing or unreadable file, no video stream or no frames, or more than
    `timeout` seconds spent."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoDecodeError(f"video {path} does not exist")
    deadline = None if timeout is None else time.monotonic() + timeout
    av = _pyav()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"video {path} has no video stream")
            stream = container.streams.video[0]
            pts, keys, count = [], [], 0
            for number, packet in enumerate(container.demux(stream)):
                if number % 256 == 0:
                    _deadline_check(deadline, path, "indexing")
                if not packet.size or packet.is_discard:
                    continue
                count += 1
                if pts is not None:
                    if packet.pts is None:
                        pts = None
                    else:
                        pts.append(packet.pts)
                        if packet.is_keyframe:
                            keys.append(packet.pts)
            rate = stream.average_rate or stream.guessed_rate
            index = VideoIndex(
                path=path,
                num_frames=count,
                pts=sorted(pts) if pts is not None else None,
                keyframe_pts=sorted(keys),
                time_base=stream.time_base or Fraction(1, 1),
                width=stream.codec_context.width,
                height=stream.codec_context.height,
                header_frames=stream.frames or 0,
                average_fps=float(rate) if rate else None,
            )
    except VideoDecodeError:
        raise
    except (OSError, IndexError, ValueError, av.error.FFmpegError) as error:
        raise VideoDecodeError(f"cannot read video {path}: {type(error).__name__}: {error}") from error
    if index.num_frames == 0:
        raise VideoDecodeError(f"cannot read video {path}: no video frames")
    if index.pts is not None and len(set(index.pts)) != len(index.pts):
        index.pts = None  # repeated timestamps: find frames by counting instead
    if index.pts is not None and not index.keyframe_pts:
        index.keyframe_pts = [index.pts[0]]
    return index


def output_size(height: int, width: int, shortest_edge: int | None) -> tuple[int, int]:
    """`(height, width)` with the shorter side `shortest_edge` and the aspect ratio kept (never larger than the
    source; the source size for `None`)."""
    if not shortest_edge or min(height, width) <= shortest_edge:
        return height, width
    scale = shortest_edge / min(height, width)
    return max(shortest_edge, int(round(height * scale))), max(shortest_edge, int(round(width * scale)))


def _to_tensor(frame, size: tuple[int, int]) -> torch.Tensor:
    height, width = size
    if (frame.height, frame.width) == (height, width):
        array = frame.to_ndarray(format="rgb24")
    else:
        array = frame.to_ndarray(format="rgb24", width=width, height=height)
    return torch.from_numpy(array)


def read_frames(
    index: VideoIndex,
    frame_numbers: list[int],
    size: tuple[int, int] | None = None,
    timeout: float | None = None,
) -> torch.Tensor:
    """Frames `frame_numbers` (strictly increasing, presentation order, `0..num_frames-1`) of `index.path` as
    `[N, H, W, 3]` uint8 RGB of `size` (`(height, width)`, default the source size).

    Seeks to the keyframe at or before each wanted frame and decodes forward to it; wanted frames of one GOP are taken
    in one pass. Raises `VideoDecodeError` naming the path when a frame cannot be decoded or after `timeout` s."""
    path = index.path
    numbers = [int(number) for number in frame_numbers]
    if not numbers:
        raise ValueError("`frame_numbers` must name at least one frame")
    if any(b <= a for a, b in zip(numbers, numbers[1:])) or numbers[0] < 0 or numbers[-1] >= index.num_frames:
        raise ValueError(
            f"`frame_numbers` must be strictly increasing in 0..{index.num_frames - 1} for video {path}, got {numbers}"
        )
    size = size or (index.height, index.width)
    deadline = None if timeout is None else time.monotonic() + timeout
    av = _pyav()
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if index.pts is None:
                frames = _read_by_counting(container, stream, numbers, size, deadline, path)
            else:
                frames = _read_by_seeking(container, stream, index, numbers, size, deadline)
    except VideoDecodeError:
        raise
    except (OSError, IndexError, ValueError, av.error.FFmpegError) as error:
        raise VideoDecodeError(f"cannot decode video {path}: {type(error).__name__}: {error}") from error
    return torch.stack(frames)


def _read_by_counting(container, stream, numbers, size, deadline, path) -> list[torch.Tensor]:
    """Decode from the start, counting frames (containers without timestamps)."""
    wanted, frames = set(numbers), []
    for number, frame in enumerate(container.decode(stream)):
        _deadline_check(deadline, path, "decoding")
        if number in wanted:
            frames.append(_to_tensor(frame, size))
            if len(frames) == len(numbers):
                return frames
    raise VideoDecodeError(f"cannot decode video {path}: truncated or damaged, frame {numbers[len(frames)]} missing")


def _read_by_seeking(container, stream, index: VideoIndex, numbers, size, deadline) -> list[torch.Tensor]:
    path, keys = index.path, index.keyframe_pts
    targets = [index.pts[number] for number in numbers]
    frames: list[torch.Tensor] = []
    position = 0  # next target
    attempts = 0  # re-seeks further back after a seek landed past the target
    while position < len(targets):
        target = targets[position]
        key = bisect.bisect_right(keys, target) - 1 - attempts
        if key >= 0:
            container.seek(keys[key], stream=stream, backward=True, any_frame=False)
        else:
            container.seek(0, stream=stream, backward=True, any_frame=False)
        progressed = False
        overshot = False
        for frame in container.decode(stream):
            _deadline_check(deadline, path, "decoding")
            pts = frame.pts
            if pts is None:
                continue
            if pts > targets[position]:
                overshot = True  # the seek landed after the wanted frame, or the frame did not decode
                break
            if pts < targets[position]:
                continue
            frames.append(_to_tensor(frame, size))
            position += 1
            progressed = True
            attempts = 0
            if position == len(targets):
                break
            if bisect.bisect_right(keys, targets[position]) - 1 > bisect.bisect_right(keys, pts) - 1:
                break  # a keyframe lies before the next wanted frame: seek to it instead of decoding up to it
        else:
            if position < len(targets):
                raise VideoDecodeError(
                    f"cannot decode video {path}: truncated or damaged, frame {numbers[position]} (pts "
                    f"{targets[position]}) never decodes"
                )
        if overshot and not progressed:
            if key < 0:
                raise VideoDecodeError(
                    f"cannot decode video {path}: frame {numbers[position]} (pts {targets[position]}) never decodes"
                )
            attempts += 1
    return frames


def decode_all_frames(path: str, size: tuple[int, int] | None = None) -> torch.Tensor:
    """Every frame of `path` in order, `[T, H, W, 3]` uint8 (a sequential decode, for tests and comparisons)."""
    av = _pyav()
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        frames = [_to_tensor(frame, size or (frame.height, frame.width)) for frame in container.decode(stream)]
    return torch.stack(frames)


__all__ = ["VideoDecodeError", "VideoIndex", "index_video", "output_size", "read_frames", "decode_all_frames"]
