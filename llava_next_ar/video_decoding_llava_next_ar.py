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
kept by the caller's choice of size) and RGB.

A hard time bound: with `timeout`, `index_video` and `read_frames` run in a decoder process (one per thread of each
process that reads video, started on first use in ~0.3 s: it imports PyAV and numpy, not torch) that is killed when
the time is up, and the call raises `VideoDecodeError`. A check between frames cannot do this: an FFmpeg call blocked
inside a read (a stalled network filesystem, a pipe that never delivers data) never returns to Python, and PyAV's
`av.open(timeout=...)` only covers waits that FFmpeg's interrupt callback polls (network protocols), not a blocked
`open`/`read` of a local path (measured: a FIFO hangs past `timeout=(1, 1)`). A crash of FFmpeg on a damaged file ends
the decoder process, not the caller. Without `timeout` everything runs in the calling process (on Windows too, whose
`select` does not take pipes: there a warning says once that `timeout` is not enforced).

This file is remote code: it imports only the Python standard library, and `torch` where it returns tensors; PyAV is
imported when a video is first read (`importlib.import_module("av")`), so loading the processor does not require it.
"""

import bisect
import dataclasses
import importlib
import logging
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any


if TYPE_CHECKING:
    import numpy
    import torch


class VideoDecodeError(ValueError):
    """A video file could not be read or decoded (missing, damaged, truncated, too slow); the message names it."""


class MissingVideoError(VideoDecodeError):
    """The video file does not exist (checked where the file is read: in the decoder process with a `timeout`)."""


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


def index_video(path: str | os.PathLike, timeout: float | None = None) -> VideoIndex:
    """Index the frames of `path`'s first video stream by demuxing its packets (no decoding; ~1 ms per 100 packets).

    With `timeout` (seconds) the file is read in the decoder process, which is stopped when the time is up.

    Raises `VideoDecodeError` naming the path: missing (`MissingVideoError`) or unreadable file, no video stream or no
    frames, fewer packets than the container's header lists (a truncated file; a header count that is missing or
    lower is fine: the frames are counted), or more than `timeout` seconds spent."""
    path = os.fspath(path)
    if timeout is None or not _bounded():
        return _index_in_process(path)
    return VideoIndex(**_decoder_process().call("index", (path,), timeout, path, "indexing"))


def read_frames(
    index: VideoIndex,
    frame_numbers: list[int],
    size: tuple[int, int] | None = None,
    timeout: float | None = None,
) -> "torch.Tensor":
    """Frames `frame_numbers` (strictly increasing, presentation order, `0..num_frames-1`) of `index.path` as
    `[N, H, W, 3]` uint8 RGB of `size` (`(height, width)`, default the source size).

    Seeks to the keyframe at or before each wanted frame and decodes forward to it; wanted frames of one GOP are taken
    in one pass. With `timeout` (seconds) the file is read in the decoder process, which is stopped when the time is
    up. Raises `VideoDecodeError` naming the path when a frame cannot be decoded or after `timeout` s."""
    import torch

    numbers = [int(number) for number in frame_numbers]
    if not numbers:
        raise ValueError("`frame_numbers` must name at least one frame")
    if any(b <= a for a, b in zip(numbers, numbers[1:])) or numbers[0] < 0 or numbers[-1] >= index.num_frames:
        raise ValueError(
            f"`frame_numbers` must be strictly increasing in 0..{index.num_frames - 1} for video {index.path}, got "
            f"{numbers}"
        )
    size = tuple(size or (index.height, index.width))
    if timeout is None or not _bounded():
        frames = _read_in_process(index, numbers, size)
    else:
        request = (dataclasses.asdict(index), numbers, size)
        frames = _decoder_process().call("read", request, timeout, index.path, "decoding")
    return torch.from_numpy(frames)


def decode_all_frames(path: str | os.PathLike, size: tuple[int, int] | None = None) -> "torch.Tensor":
    """Every frame of `path` in order, `[T, H, W, 3]` uint8 (a sequential decode, for tests and comparisons)."""
    import torch

    av, numpy = _pyav(), importlib.import_module("numpy")
    with av.open(os.fspath(path)) as container:
        stream = container.streams.video[0]
        frames = [_to_array(frame, size or (frame.height, frame.width)) for frame in container.decode(stream)]
    return torch.from_numpy(numpy.stack(frames))


# ----------------------------------------------------------------------------------------------------------------
# Reading a file in this process (no torch: the decoder process runs these)


def _index_in_process(path: str) -> VideoIndex:
    if not os.path.exists(path):
        raise MissingVideoError(f"video {path} does not exist")
    if os.path.isdir(path):
        raise VideoDecodeError(f"video {path} is a folder, not a file")
    av = _pyav()
    try:
        with av.open(path) as container:
            if not container.streams.video:
                raise VideoDecodeError(f"video {path} has no video stream")
            stream = container.streams.video[0]
            pts, keys, count, present = [], [], 0, 0
            for packet in container.demux(stream):
                if not packet.size:
                    continue
                present += 1
                if packet.is_discard:
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
    if index.header_frames > present:  # an MP4's sample table lists every frame: the data of some is gone
        raise VideoDecodeError(
            f"cannot read video {path}: truncated or damaged, its header lists {index.header_frames} frames but only "
            f"{present} are present"
        )
    if index.pts is not None and len(set(index.pts)) != len(index.pts):
        index.pts = None  # repeated timestamps: find frames by counting instead
    if index.pts is not None and not index.keyframe_pts:
        index.keyframe_pts = [index.pts[0]]
    return index


def _to_array(frame, size: tuple[int, int]) -> "numpy.ndarray":
    height, width = size
    if (frame.height, frame.width) == (height, width):
        return frame.to_ndarray(format="rgb24")
    return frame.to_ndarray(format="rgb24", width=width, height=height)


def _read_in_process(index: VideoIndex, numbers: list[int], size: tuple[int, int]) -> "numpy.ndarray":
    """`[N, H, W, 3]` uint8 frames `numbers` of `index.path` (checked by `read_frames`)."""
    path = index.path
    av, numpy = _pyav(), importlib.import_module("numpy")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            if index.pts is None:
                frames = _read_by_counting(container, stream, numbers, size, path)
            else:
                frames = _read_by_seeking(container, stream, index, numbers, size)
    except VideoDecodeError:
        raise
    except (OSError, IndexError, ValueError, av.error.FFmpegError) as error:
        raise VideoDecodeError(f"cannot decode video {path}: {type(error).__name__}: {error}") from error
    return numpy.stack(frames)


def _read_by_counting(container, stream, numbers, size, path) -> list:
    """Decode from the start, counting frames (containers without timestamps)."""
    wanted, frames = set(numbers), []
    for number, frame in enumerate(container.decode(stream)):
        if number in wanted:
            frames.append(_to_array(frame, size))
            if len(frames) == len(numbers):
                return frames
    raise VideoDecodeError(f"cannot decode video {path}: truncated or damaged, frame {numbers[len(frames)]} missing")


def _read_by_seeking(container, stream, index: VideoIndex, numbers, size) -> list:
    path, keys = index.path, index.keyframe_pts
    targets = [index.pts[number] for number in numbers]
    frames = []
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
            pts = frame.pts
            if pts is None:
                continue
            if pts > targets[position]:
                overshot = True  # the seek landed after the wanted frame, or the frame did not decode
                break
            if pts < targets[position]:
                continue
            frames.append(_to_array(frame, size))
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


# ----------------------------------------------------------------------------------------------------------------
# The decoder process: the same functions behind a pipe, killed when a call runs out of time
#
# Messages on both pipes: a header (JSON length, raw length), JSON, then raw bytes (the frames, so that they are
# copied once into the receiver's array). Requests: `[kind, args]`; replies: `["ok", value]`, `["frames", [shape,
# dtype]]` + the frames' bytes, or `["error", [missing, message]]`. JSON, not pickle: nothing read from the pipe can
# run code, and a `Fraction` (a stream's time base) travels as `{"fraction": [numerator, denominator]}`.

_HEADER = struct.Struct("<QQ")

_SERVE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("llava_next_ar_video_decoder", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
module._serve()
"""


def _json_default(value: Any) -> Any:
    if isinstance(value, Fraction):
        return {"fraction": [value.numerator, value.denominator]}
    raise TypeError(f"cannot send {type(value).__name__} to or from the decoder process")


def _json_object(value: dict) -> Any:
    return Fraction(*value["fraction"]) if value.keys() == {"fraction"} else value


def _write_message(fd: int, value: Any, raw: memoryview | None = None) -> None:
    data = json.dumps(value, default=_json_default).encode()
    for chunk in (_HEADER.pack(len(data), 0 if raw is None else raw.nbytes), data, raw):
        view = memoryview(chunk if chunk is not None else b"").cast("B")
        while view.nbytes:
            view = view[os.write(fd, view):]


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytearray | None:
    """`size` bytes from `fd`; `None` at end of file; `TimeoutError` after `deadline` (`time.monotonic()`)."""
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        if deadline is not None:
            ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError
        count = os.readv(fd, [view[done:]])
        if count == 0:
            return None
        done += count
    return buffer


def _read_message(fd: int, deadline: float | None = None) -> tuple[Any, bytearray] | None:
    header = _read_exactly(fd, _HEADER.size, deadline)
    if header is None:
        return None
    length, raw = _HEADER.unpack(header)
    data = _read_exactly(fd, length, deadline)
    frames = _read_exactly(fd, raw, deadline) if raw else bytearray()
    if data is None or frames is None:
        return None
    return json.loads(data, object_hook=_json_object), frames


def _serve() -> None:
    """The decoder process's loop: first the parent's `sys.path` (so PyAV is found where the parent finds it), then
    requests on stdin, replies on the original stdout (anything printed goes to stderr). Ends when stdin closes (its
    parent is gone)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the caller, whose exit closes stdin and ends this
    replies = os.dup(1)
    os.dup2(2, 1)
    message = _read_message(0)
    if message is None:
        return
    sys.path.extend(path for path in message[0] if path not in sys.path)
    while True:
        message = _read_message(0)
        if message is None:
            return
        (kind, args), _ = message
        try:
            if kind == "index":
                _write_message(replies, ("ok", dataclasses.asdict(_index_in_process(*args))))
            else:
                index, numbers, size = args
                frames = _read_in_process(VideoIndex(**index), numbers, size)
                _write_message(replies, ("frames", (frames.shape, frames.dtype.str)), memoryview(frames).cast("B"))
        except VideoDecodeError as error:
            _write_message(replies, ("error", (isinstance(error, MissingVideoError), str(error))))
        except Exception as error:  # anything FFmpeg or PyAV raises on a bad file: a reply, the process lives on
            _write_message(replies, ("error", (False, f"cannot read video: {type(error).__name__}: {error}")))


class _DecoderProcess:
    """One decoder process (`python -I -S -c _SERVE <this file>`, given this process's `sys.path`), its pipes, and
    the call that bounds its time."""

    def __init__(self):
        self.owner = os.getpid()
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _SERVE, os.path.abspath(__file__)], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, bufsize=0,
        )
        _write_message(self.process.stdin.fileno(), list(sys.path))
        # Stopped and reaped when this object goes or the process exits (DataLoader workers too: multiprocessing runs
        # its finalizers at a worker's exit), so no decoder process outlives its caller, even without an init reaper.
        importlib.import_module("multiprocessing.util").Finalize(
            self, _stop_process, args=(self.process, self.owner), exitpriority=0
        )

    def alive(self) -> bool:
        return self.owner == os.getpid() and self.process.poll() is None

    def stop(self) -> None:
        _stop_process(self.process, self.owner)

    def call(self, kind: str, args: tuple, timeout: float, path: str, what: str) -> Any:
        deadline = time.monotonic() + timeout
        try:
            _write_message(self.process.stdin.fileno(), (kind, args))
            reply = _read_message(self.process.stdout.fileno(), deadline)
        except TimeoutError:
            self.stop()
            raise VideoDecodeError(
                f"video {path}: {what} took longer than the decode time limit ({timeout:g} s); the decoder process "
                "was stopped"
            ) from None
        except BrokenPipeError:
            reply = None
        if reply is None:
            code = self.process.wait()
            raise VideoDecodeError(f"video {path}: the decoder process ended while {what} it (exit code {code})")
        (status, value), raw = reply
        if status == "error":
            missing, message = value
            raise (MissingVideoError if missing else VideoDecodeError)(message)
        if status == "frames":
            numpy = importlib.import_module("numpy")
            shape, dtype = value
            return numpy.frombuffer(raw, dtype=dtype).reshape(shape)
        return value


def _stop_process(process: subprocess.Popen, owner: int) -> None:
    if os.getpid() != owner:  # a forked copy of the object: the decoder process belongs to the parent
        return
    if process.poll() is None:
        process.kill()
        process.wait()
    process.stdin.close()
    process.stdout.close()


_decoders = threading.local()

_HARD_BOUND = os.name == "posix"  # the pipes are waited on with `select`, which on Windows takes only sockets
_warned_unbounded = []


def _bounded() -> bool:
    """Whether `timeout` can be enforced here (POSIX); elsewhere files are read in this process, without a bound."""
    if not _HARD_BOUND and not _warned_unbounded:
        _warned_unbounded.append(True)
        logging.getLogger(__name__).warning(
            "video decoding has no time bound on this platform (%s): `timeout` / `decode_timeout` is not enforced",
            sys.platform,
        )
    return _HARD_BOUND


def _decoder_process() -> _DecoderProcess:
    """This thread's decoder process, started if there is none (or it was stopped, or belongs to the process this one
    was forked from, as in a DataLoader worker)."""
    decoder = getattr(_decoders, "process", None)
    if decoder is None or not decoder.alive():
        decoder = _decoders.process = _DecoderProcess()
    return decoder


__all__ = [
    "VideoDecodeError",
    "MissingVideoError",
    "VideoIndex",
    "index_video",
    "read_frames",
    "decode_all_frames",
]
