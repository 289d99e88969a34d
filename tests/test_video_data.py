"""Issue 13: sample first, then decode only the sampled frames (seeking; by timestamps), chat data with exact label
masks, manifests through `datasets` (streaming, bad rows skipped and counted), DataLoader workers. The clips are
written here with PyAV; frame `t` shows the number `t` (`labelled_video`)."""

import dataclasses
import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest
import torch

from helpers import load_script
from labelled_video import read_number, write_labelled_clip
from llava_next_ar import tiny_models
from llava_next_ar.training_llava_next_ar import LlavaNextARDataCollator
from llava_next_ar.video_decoding_llava_next_ar import (
    decode_all_frames,
    index_video,
    read_frames,
)


train = load_script("train")
video_data = load_script("video_data")


FRAMES = 120
VFR_MS = [0]
for _step in range(59):
    VFR_MS.append(VFR_MS[-1] + (20, 33, 50, 90)[_step % 4] + (_step % 3) * 7)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return {
        "cfr": write_labelled_clip(folder / "cfr.mp4", FRAMES, fps=25, gop=12),
        "vfr": write_labelled_clip(folder / "vfr.mkv", len(VFR_MS), pts_ms=VFR_MS, gop=10),  # no frame count in mkv
        "short": write_labelled_clip(folder / "short.mp4", 5, gop=5),
        "folder": folder,
    }


@pytest.fixture(scope="module")
def tiny():
    model_args, *_ = train.parse_arguments(["--output_dir", "unused", "--tiny_image_size", "32",
                                            "--tiny_patch_size", "8", "--tiny_hidden_size", "32"])
    words = "USER ASSISTANT : what happens in the video ? a bar counts up and then more words here".split()
    _, processor = train.build_tiny_model_and_processor(model_args, words, {})
    return processor


def sampled(processor, path, **settings):
    saved = {key: getattr(processor, key) for key in settings}
    for key, value in settings.items():
        setattr(processor, key, value)
    try:
        return processor.read_video(path)
    finally:
        for key, value in saved.items():
            setattr(processor, key, value)


def numbers(video) -> list[int]:
    return [read_number(frame) for frame in video.frames]


# ----------------------------------------------------------------------------------------------------------------
# Sampling modes: indices and the frames that come out (each shows its own number)


def test_uniform_fps_window_and_fast_slow_over_the_whole_clip(clips, tiny):
    path = str(clips["cfr"])
    uniform = sampled(tiny, path, frame_sampling="uniform", sampling_num_frames=8)
    expected = [round(i * (FRAMES - 1) / 7 + 1e-9) for i in range(8)]
    assert uniform.video_frame_indices.tolist() == expected == numbers(uniform)  # [0, 17, 34, 51, 68, 85, 102, 119]
    assert uniform.frames.shape[1:] == (32, 53, 3)  # decoded at the working size, shortest edge 32, aspect kept

    fps = sampled(tiny, path, frame_sampling="fps", sampling_fps=2.0)  # 25 fps clip: every 12.5 frames
    assert fps.video_frame_indices.tolist() == [int(k * 12.5) for k in range(10)] == numbers(fps)
    capped = sampled(tiny, path, frame_sampling="fps", sampling_fps=2.0, sampling_max_frames=4)
    assert capped.video_frame_indices.tolist() == [0, 37, 75, 112] == numbers(capped)

    window = tiny.read_video(path, start_frame=30, num_frames=6)  # frame_sampling="all" within an explicit window
    assert window.video_frame_indices.tolist() == list(range(30, 36)) == numbers(window)

    tiny.use_fast_slow_frames = True  # the fast/slow sampler over the whole clip: only its frames are decoded
    try:
        whole = tiny.read_video(path)
        union, llm = tiny.sample_frame_indices(FRAMES)
    finally:
        tiny.use_fast_slow_frames = False
    assert whole.video_frame_indices.tolist() == union.tolist() == numbers(whole)
    assert whole.llm_frame_indices.tolist() == llm.tolist()

    batch = tiny(text="USER: <video>\nwhat ?", videos=uniform, return_tensors="pt")  # as the collator passes it
    assert batch["video_frame_indices"].tolist() == [expected] and batch["video_frames"].shape[1] == 8
    again = tiny(text="USER: <video>\nwhat ?", videos={"path": path, "start_frame": 30, "num_frames": 6},
                 return_tensors="pt")
    assert again["video_frame_indices"].tolist() == [list(range(30, 36))]


def test_sampling_settings_are_saved_with_the_processor(tiny, tmp_path):
    from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor

    tiny.frame_sampling, tiny.sampling_num_frames = "uniform", 6
    try:
        tiny.save_pretrained(tmp_path)
    finally:
        tiny.frame_sampling, tiny.sampling_num_frames = "all", None
    loaded = LlavaNextARProcessor.from_pretrained(tmp_path)
    assert (loaded.frame_sampling, loaded.sampling_num_frames) == ("uniform", 6)
    with pytest.raises(ValueError, match="sampling_num_frames"):
        LlavaNextARProcessor.from_pretrained(tmp_path, sampling_num_frames=0)
    with pytest.raises(ValueError, match="settings of the processor, not of a call"):
        loaded(text="<video>", videos=torch.zeros(2, 8, 8, 3, dtype=torch.uint8), frame_sampling="fps")


# ----------------------------------------------------------------------------------------------------------------
# Seeking: the same frames as a full decode, bit for bit; variable frame rate and missing frame counts


def test_seeking_gives_the_frames_of_a_full_decode_bit_identical(clips):
    index = index_video(str(clips["cfr"]))
    assert index.num_frames == FRAMES and len(index.keyframe_pts) == FRAMES // 12
    wanted = [0, 1, 11, 12, 13, 40, 59, 60, 61, 95, 118, 119]  # around keyframes, inside GOPs, both ends
    for size in (None, (32, 53)):
        full = decode_all_frames(str(clips["cfr"]), size)
        got = read_frames(index, wanted, size)
        assert torch.equal(got, full[wanted])
    assert [read_number(frame) for frame in got] == wanted


def test_variable_frame_rate_and_a_container_without_a_frame_count(clips, tiny):
    path = str(clips["vfr"])
    index = index_video(path)
    assert index.header_frames == 0 and index.num_frames == len(VFR_MS)  # counted from the packets present
    assert [round(t * 1000) for t in index.timestamps] == VFR_MS
    full = decode_all_frames(path)
    wanted = [0, 7, 8, 30, 59]
    assert torch.equal(read_frames(index, wanted), full[wanted])
    uniform = sampled(tiny, path, frame_sampling="uniform", sampling_num_frames=5)
    assert numbers(uniform) == uniform.video_frame_indices.tolist()
    by_time = sampled(tiny, path, frame_sampling="fps", sampling_fps=4.0)  # the frame on screen every 0.25 s
    expected = []
    for k in range(int(VFR_MS[-1] / 250) + 1):
        frame = max(i for i, ms in enumerate(VFR_MS) if ms <= 250 * k)
        if frame not in expected:
            expected.append(frame)
    assert by_time.video_frame_indices.tolist() == expected == numbers(by_time)


# ----------------------------------------------------------------------------------------------------------------
# Chat data: labels on every assistant turn and nothing else, exact token positions


def tokens_and_labels(batch, processor, row=0):
    tokens = processor.tokenizer.convert_ids_to_tokens(batch["input_ids"][row].tolist())
    return tokens, (batch["labels"][row] != -100).tolist()


def test_multi_turn_labels_cover_exactly_the_assistant_turns(tiny):
    clip = torch.randint(0, 255, (3, 32, 32, 3), dtype=torch.uint8)
    llava = {"video": clip, "conversations": [
        {"from": "human", "value": "what happens <video>\nin the video ?"},  # <video> inside the first turn
        {"from": "gpt", "value": "a bar counts up"},
        {"from": "human", "value": "and then ?"},
        {"from": "gpt", "value": "more words"},
    ]}
    messages = {"video": clip, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "what happens "}, {"type": "video", "path": "x.mp4"},
                                     {"type": "text", "text": "in the video ?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a bar counts up"}]},
        {"role": "user", "content": [{"type": "text", "text": "and then ?"}]},
        {"role": "assistant", "content": "more words"},
    ]}
    collator = LlavaNextARDataCollator(tiny)
    batch = collator([llava, messages])
    assert torch.equal(batch["input_ids"][0], batch["input_ids"][1])
    assert torch.equal(batch["labels"][0], batch["labels"][1])
    tokens, learned = tokens_and_labels(batch, tiny)
    video = tokens.count("<video>")
    assert video == 3 * 4  # 3 frames x (32 / 8 / 2)^2
    text = [token for token in tokens if token != "<video>"]
    assert text == ["USER", ":", "what", "happens", "in", "the", "video", "?", "ASSISTANT", ":", "a", "bar", "counts",
                    "up", "</s>", "USER", ":", "and", "then", "?", "ASSISTANT", ":", "more", "words", "</s>"]
    positions = [i for i, flag in enumerate(learned) if flag]
    first = tokens.index("a")
    second = len(tokens) - 3
    assert positions == [*range(first, first + 5), *range(second, second + 3)]  # answers and their </s>
    assert tokens[first:first + 5] == ["a", "bar", "counts", "up", "</s>"]
    assert (batch["labels"][0][positions] == batch["input_ids"][0][positions]).all()

    tiny.chat_template = tiny.chat_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    try:  # a template without generation markers: the assistant texts (found exactly), without the </s>
        plain = collator([llava])
    finally:
        tiny.chat_template = tiny_models.CHAT_TEMPLATE
    _, learned = tokens_and_labels(plain, tiny)
    assert [i for i, flag in enumerate(learned) if flag] == [*range(first, first + 4), *range(second, second + 2)]


# ----------------------------------------------------------------------------------------------------------------
# Manifests through `datasets`: bad rows, streaming, workers


def manifest_rows() -> list[dict]:
    chat = [{"from": "human", "value": "<video>\nwhat happens ?"}, {"from": "gpt", "value": "a bar counts up"}]
    return [
        {"video": "cfr.mp4", "conversations": chat},
        {"video": "gone.mp4", "conversations": chat},  # missing file
        {"video": "broken.mp4", "conversations": chat},  # undecodable
        {"video": "short.mp4", "conversations": chat},  # too short for 8 uniform frames
        {"video": "cfr.mp4", "conversations": chat[:1]},  # no assistant turn
        {"messages": [{"role": "user", "content": [{"type": "video", "path": "vfr.mkv"},
                                                   {"type": "text", "text": "what happens ?"}]},
                      {"role": "assistant", "content": [{"type": "text", "text": "a bar counts up"}]}]},
    ]


REASONS = {"missing file": "gone.mp4", "undecodable": "broken.mp4", "too short": "short.mp4",
           "no assistant turn": "cfr.mp4"}


@pytest.fixture(scope="module")
def manifest(clips, tmp_path_factory):
    data = tmp_path_factory.mktemp("manifest")
    (clips["folder"] / "broken.mp4").write_bytes(b"not a video at all")
    path = data / "train.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in manifest_rows()))
    return path


def test_streaming_manifest_skips_each_bad_row_with_its_reason_and_counts_them(manifest, clips, tiny, caplog,
                                                                             tmp_path):
    tiny.frame_sampling, tiny.sampling_num_frames = "uniform", 8
    try:
        rows, root = video_data.load_manifest(manifest, video_root=clips["folder"], streaming=True)
        log = video_data.SkipLog(tmp_path / "skipped.jsonl")
        with caplog.at_level(logging.WARNING, logger="video_data"):
            examples = list(video_data.StreamingVideoChatDataset(rows, tiny, root, log))
        assert [example["video"].video_frame_indices.numel() for example in examples] == [8, 8]
        assert str(examples[1]["video"].metadata.total_num_frames) == "60"  # the path came from `messages`
        assert log.summary() == {reason: 1 for reason in REASONS}
        for reason, name in REASONS.items():
            assert any(reason in record.getMessage() and name in record.getMessage() for record in caplog.records)
        with pytest.raises(video_data.BadRowError, match=r"gone.mp4\): missing file"):
            list(video_data.StreamingVideoChatDataset(rows, tiny, root, video_data.SkipLog(raise_errors=True)))
        batch = LlavaNextARDataCollator(tiny)(examples)
        assert batch["video_frames"].shape[:2] == (2, 8) and (batch["labels"] != -100).sum() == 2 * 5
    finally:
        tiny.frame_sampling, tiny.sampling_num_frames = "all", None


@pytest.mark.parametrize("streaming", [False, True], ids=["map", "streaming"])
def test_dataloader_workers_decode_every_good_row_once(manifest, clips, tiny, tmp_path, streaming):
    tiny.frame_sampling, tiny.sampling_num_frames = "uniform", 8
    try:
        log = video_data.SkipLog(tmp_path / "skipped.jsonl")  # workers append here; the parent reads the count
        if streaming:
            rows, root = video_data.load_manifest(manifest, video_root=clips["folder"], streaming=True)
            dataset = video_data.StreamingVideoChatDataset(rows, tiny, root, log)
        else:
            rows, root = video_data.load_manifest(manifest, video_root=clips["folder"])
            dataset = video_data.VideoChatDataset(rows, tiny, log, video_root=root)
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2,
                                             collate_fn=LlavaNextARDataCollator(tiny))
        batches = list(loader)
    finally:
        tiny.frame_sampling, tiny.sampling_num_frames = "all", None
    totals = sorted(int(batch["video_frame_indices"][0, -1]) for batch in batches)
    if streaming:
        assert totals == [59, 119]  # the two good rows, each once
    else:  # a bad row is replaced by the next good one: one item per row
        assert len(batches) == 6 and set(totals) == {59, 119}
    assert log.summary() == {reason: 1 for reason in REASONS}


def test_a_skipped_row_is_not_read_again_in_later_epochs_or_other_workers(manifest, clips, tiny, tmp_path):
    tiny.frame_sampling, tiny.sampling_num_frames = "uniform", 8
    path = tmp_path / "skipped.jsonl"
    try:
        rows, root = video_data.load_manifest(manifest, video_root=clips["folder"])
        dataset = video_data.VideoChatDataset(rows, tiny, video_data.SkipLog(path), video_root=root)
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=2,
                                             collate_fn=LlavaNextARDataCollator(tiny))
        list(loader)
        first_epoch = path.read_text()
        list(loader)  # new worker processes: they read the log instead of the bad rows
        assert path.read_text() == first_epoch
        assert video_data.SkipLog(path).summary() == {reason: 1 for reason in REASONS}

        calls = []
        read_video = tiny.read_video
        tiny.read_video = lambda *args, **kwargs: calls.append(args[0]) or read_video(*args, **kwargs)
        try:  # this process: every item is one read of a good clip
            examples = [
                video_data.VideoChatDataset(rows, tiny, video_data.SkipLog(path), video_root=root)[i]
                for i in range(len(rows))
            ]
        finally:
            del tiny.read_video
    finally:
        tiny.frame_sampling, tiny.sampling_num_frames = "all", None
    assert len(calls) == len(examples) == len(rows)
    assert {Path(call).name for call in calls} == {"cfr.mp4", "vfr.mkv"}


def test_read_manifest_formats_and_video_root(clips, tmp_path):
    import pandas

    rows = [{"video": "cfr.mp4", "caption": "a bar counts up"}]
    pandas.DataFrame(rows).to_parquet(tmp_path / "rows.parquet")
    (tmp_path / "rows.csv").write_text("video,caption\ncfr.mp4,a bar counts up\n")
    for name in ("rows.parquet", "rows.csv"):
        (row,) = video_data.read_manifest(tmp_path / name, video_root=str(clips["folder"]))
        assert row["video"] == str(clips["folder"] / "cfr.mp4")
        assert row["conversations"][-1]["value"] == "a bar counts up"


def test_train_streams_a_manifest_with_uniform_sampling_and_reports_the_skips(manifest, clips, tmp_path, capsys):
    trainer = train.main([
        "--output_dir", str(tmp_path / "run"), "--max_steps", "2", "--logging_steps", "1", "--use_cpu", "True",
        "--report_to", "none", "--save_strategy", "no", "--reload_check", "False", "--disable_tqdm", "True",
        "--tiny_image_size", "32", "--tiny_patch_size", "8", "--tiny_hidden_size", "32",
        "--train_manifest", str(manifest), "--video_root", str(clips["folder"]), "--streaming", "True",
        "--frame_sampling", "uniform", "--num_frames", "6", "--per_device_train_batch_size", "2",
    ])
    out = capsys.readouterr().out
    assert "4 training example(s) could not be used and were skipped" in out
    for reason in REASONS:
        assert f"1 {reason}" in out
    from llava_next_ar.processing_llava_next_ar import LlavaNextARProcessor

    saved = LlavaNextARProcessor.from_pretrained(tmp_path / "run" / "final")  # the sampling travels with it
    assert (saved.frame_sampling, saved.sampling_num_frames) == ("uniform", 6)
    assert any("main_loss" in entry for entry in trainer.state.log_history)


# ----------------------------------------------------------------------------------------------------------------
# A hard decode bound: a read blocked inside FFmpeg (a FIFO that never delivers data) is stopped, in workers too


def finishes(call, limit: float = 120.0):
    """`call()`'s result or exception, from a thread; fails (instead of hanging the suite) if it never returns."""
    outcome = {}

    def run():
        try:
            outcome["value"] = call()
        except BaseException as error:  # noqa: BLE001 (handed to the test)
            outcome["error"] = error

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(limit)
    assert not thread.is_alive(), f"the call did not return within {limit} s: the decode bound does not hold"
    return outcome


@pytest.fixture
def stalled_fifo(clips, tmp_path):
    """A FIFO that delivers the first 4 KiB of a real clip and then nothing (the writer stays open): the reader blocks
    inside FFmpeg's read, where no check between frames runs (as on a stalled network filesystem)."""
    path = tmp_path / "stalled.mp4"
    os.mkfifo(path)
    release = threading.Event()

    def writer():
        with open(path, "wb") as pipe:
            pipe.write(clips["cfr"].read_bytes()[:4096])
            pipe.flush()
            release.wait()

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    yield path
    release.set()
    thread.join(5)


def test_a_read_blocked_inside_ffmpeg_is_stopped_at_the_time_limit(clips, stalled_fifo, tmp_path):
    from llava_next_ar.video_decoding_llava_next_ar import VideoDecodeError

    outcome = finishes(lambda: index_video(str(stalled_fifo), timeout=1.0))
    assert isinstance(outcome.get("error"), VideoDecodeError)
    assert "stalled.mp4: indexing took longer than the decode time limit (1 s)" in str(outcome["error"])

    never = tmp_path / "never.mp4"  # no writer at all: `open` itself blocks
    os.mkfifo(never)
    index = dataclasses.replace(index_video(str(clips["cfr"])), path=str(never))
    outcome = finishes(lambda: read_frames(index, [0, 1, 2], timeout=1.0))
    assert "never.mp4: decoding took longer than the decode time limit" in str(outcome.get("error"))

    # the decoder process was replaced: the next clip decodes, the same frames as in this process
    index = index_video(str(clips["cfr"]), timeout=30.0)
    assert torch.equal(read_frames(index, [0, 13, 119], timeout=30.0), read_frames(index, [0, 13, 119]))


def test_a_decoder_process_that_dies_mid_call_is_an_error_naming_the_file_not_a_crash(clips, stalled_fifo):
    """What a segfault inside FFmpeg on a damaged file looks like to the caller (here: the process is killed while
    blocked on the FIFO); the next call starts a new decoder process."""
    from llava_next_ar import video_decoding_llava_next_ar as decoding
    from llava_next_ar.video_decoding_llava_next_ar import VideoDecodeError

    index_video(str(clips["cfr"]), timeout=30.0)
    pid = decoding._decoder_process().process.pid
    killer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
    killer.start()
    with pytest.raises(VideoDecodeError, match=r"stalled.mp4: the decoder process ended while indexing it \(exit"):
        index_video(str(stalled_fifo), timeout=60.0)  # this thread's decoder process, the one killed
    killer.join()
    assert index_video(str(clips["cfr"]), timeout=30.0).num_frames == FRAMES
    assert decoding._decoder_process().process.pid != pid


def test_the_decoder_process_reports_missing_and_damaged_files_like_this_process(clips, manifest):
    from llava_next_ar.video_decoding_llava_next_ar import MissingVideoError, VideoDecodeError

    with pytest.raises(MissingVideoError, match="gone.mp4 does not exist"):
        index_video(str(clips["folder"] / "gone.mp4"), timeout=30.0)
    with pytest.raises(VideoDecodeError, match="broken.mp4: InvalidDataError"):
        index_video(str(clips["folder"] / "broken.mp4"), timeout=30.0)
    index = index_video(str(clips["vfr"]), timeout=30.0)
    assert index == index_video(str(clips["vfr"]))


def test_where_the_bound_cannot_be_enforced_files_are_read_here_with_a_warning(clips, monkeypatch, caplog):
    from llava_next_ar import video_decoding_llava_next_ar as decoding

    monkeypatch.setattr(decoding, "_HARD_BOUND", False)  # as on Windows
    monkeypatch.setattr(decoding, "_warned_unbounded", [])
    monkeypatch.setattr(decoding, "_decoder_process", lambda: pytest.fail("a decoder process was used"))
    with caplog.at_level(logging.WARNING, logger=decoding.__name__):
        index = index_video(str(clips["cfr"]), timeout=30.0)
        frames = read_frames(index, [5, 60], timeout=30.0)
    assert [read_number(frame) for frame in frames] == [5, 60]
    assert caplog.text.count("`timeout` / `decode_timeout` is not enforced") == 1


@pytest.mark.parametrize("workers", [0, 2])
def test_a_hanging_clip_is_skipped_with_its_reason_or_raises_when_asked(clips, stalled_fifo, tiny, tmp_path,
                                                                      workers):
    chat = [{"from": "human", "value": "<video>\nwhat happens ?"}, {"from": "gpt", "value": "a bar counts up"}]
    rows = [{"video": str(stalled_fifo), "conversations": chat}, {"video": str(clips["cfr"]), "conversations": chat}]
    log = video_data.SkipLog(tmp_path / "skipped.jsonl")
    tiny.frame_sampling, tiny.sampling_num_frames, tiny.decode_timeout = "uniform", 8, 2.0
    try:
        dataset = video_data.StreamingVideoChatDataset(rows, tiny, Path("/"), log)
        loader = torch.utils.data.DataLoader(dataset, batch_size=1, num_workers=workers,
                                             collate_fn=LlavaNextARDataCollator(tiny))
        outcome = finishes(lambda: list(loader))
        strict = finishes(lambda: list(
            video_data.StreamingVideoChatDataset(rows, tiny, Path("/"), video_data.SkipLog(raise_errors=True))
        ))
    finally:
        tiny.frame_sampling, tiny.sampling_num_frames, tiny.decode_timeout = "all", None, 120.0
    assert [batch["video_frame_indices"][0, -1].item() for batch in outcome["value"]] == [119]
    (entry,) = log.entries()
    assert entry["reason"] == "undecodable" and "stalled.mp4" in entry["message"] and "time limit" in entry["message"]
    assert isinstance(strict.get("error"), video_data.BadRowError) and "time limit" in str(strict["error"])


STRANGER_DECODE = r"""
import json, sys
params = json.load(open(sys.argv[1]))
sys.path.extend(params["site_dirs"])  # python -I -S: no site hooks, no editable install
import importlib.util
assert importlib.util.find_spec("llava_next_ar") is None
from transformers import AutoProcessor

processor = AutoProcessor.from_pretrained(params["checkpoint"], trust_remote_code=True)
processor.frame_sampling, processor.sampling_num_frames, processor.decode_timeout = "uniform", 4, 2.0
video = processor.read_video(params["clip"])
module = sys.modules[type(processor).__module__.replace("processing_", "video_decoding_")]
try:
    processor.read_video(params["fifo"])
    error = None
except Exception as caught:
    error = f"{type(caught).__name__}: {caught}"
print("STRANGER " + json.dumps({"indices": video.video_frame_indices.tolist(), "decoder_file": module.__file__,
                                "error": error, "frames": [int(f.float().mean()) for f in video.frames]}))
"""


def test_the_checkpoints_own_code_bounds_a_hanging_decode_without_the_package(clips, tiny, tmp_path):
    """A remote-code checkpoint's decoder process runs the checkpoint's copy of this file, found on the caller's
    `sys.path` (PyAV included), in a fresh `python -I -S` process where `llava_next_ar` is not importable."""
    from helpers import run_as_stranger

    tiny.save_pretrained(tmp_path / "checkpoint")
    fifo = tmp_path / "never.mp4"
    os.mkfifo(fifo)
    report = run_as_stranger(STRANGER_DECODE, {"checkpoint": str(tmp_path / "checkpoint"), "clip": str(clips["cfr"]),
                                               "fifo": str(fifo)}, tmp_path)
    assert report["indices"] == [0, 40, 79, 119]
    assert "transformers_modules" in report["decoder_file"]
    expected = sampled(tiny, str(clips["cfr"]), frame_sampling="uniform", sampling_num_frames=4)
    assert report["frames"] == [int(frame.float().mean()) for frame in expected.frames]
    assert "never.mp4" in report["error"] and "decode time limit (2 s)" in report["error"]
