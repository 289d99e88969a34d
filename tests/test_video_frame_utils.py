"""Tests for `llava_next_ar/video_frame_utils.py`: frame masks, fast/slow sampling, mask PNGs."""

import os
import struct
import zlib
from pathlib import Path

import pytest
import torch

from llava_next_ar import video_frame_utils
from llava_next_ar.video_frame_utils import (
    MERGE_STRATEGIES,
    FrameLevelMaskGenerator,
    VideoFrameSampler,
    create_frame_position_ids,
    frame_attention_pattern,
)


masks = FrameLevelMaskGenerator
sampler = VideoFrameSampler

# The seed's concat layout: slow 0, 2, ..., 14 then fast 8..15 (T=16, 8 + 8).
SEED_SLOW = list(range(0, 16, 2))
SEED_FAST = list(range(8, 16))


def test_causal_frame_mask_matches_seed_3x3_drawing():
    expected = torch.tensor(
        [
            [1, 1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 0, 0, 0, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 0, 0, 0],
            [1, 1, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1, 1],
            [1, 1, 1, 1, 1, 1, 1, 1, 1],
        ],
        dtype=torch.bool,
    )
    mask = masks.create_causal_frame_mask(num_frames=3, num_patches_per_frame=3)
    assert mask.dtype == torch.bool and mask.shape == (9, 9)
    assert torch.equal(mask, expected)


def test_frame_position_ids():
    ids = create_frame_position_ids(3, 2)
    assert ids.dtype == torch.long and ids.tolist() == [0, 0, 1, 1, 2, 2]


def test_no_hidden_cap_on_frame_count():
    assert create_frame_position_ids(2000, 1)[-1].item() == 1999
    assert frame_attention_pattern(1500, window_size=3).shape == (1500, 1500)


def test_sliding_window_definition():
    T, P = 5, 2
    block_diagonal = torch.eye(T, dtype=torch.bool).repeat_interleave(P, 0).repeat_interleave(P, 1)
    assert torch.equal(masks.create_sliding_window_frame_mask(T, P, window_size=1), block_diagonal)
    causal = masks.create_causal_frame_mask(T, P)
    for window in (T, T + 3):
        assert torch.equal(masks.create_sliding_window_frame_mask(T, P, window_size=window), causal)
    expected_window_2 = torch.tensor(
        [
            [1, 0, 0, 0, 0],
            [1, 1, 0, 0, 0],
            [0, 1, 1, 0, 0],
            [0, 0, 1, 1, 0],
            [0, 0, 0, 1, 1],
        ],
        dtype=torch.bool,
    )
    assert torch.equal(frame_attention_pattern(T, window_size=2), expected_window_2)
    assert torch.equal(masks.create_sliding_window_frame_mask(T, 1, window_size=2), expected_window_2)


def test_token_causal_mask_is_token_tril_and_subset_of_frame_causal():
    T, P = 4, 3
    token = masks.create_token_causal_mask(T, P)
    assert torch.equal(token, torch.ones(T * P, T * P, dtype=torch.bool).tril())
    frame = masks.create_causal_frame_mask(T, P)
    assert torch.equal(token & frame, token) and not torch.equal(token, frame)
    # patch 0 of frame 1 (token 3) sees frame 0 but not patch 1 of its own frame (the seed's point)
    assert token[3, :3].all() and not token[3, 4]
    windowed = masks.create_token_causal_mask(T, P, window_size=2)
    assert torch.equal(windowed, token & masks.create_sliding_window_frame_mask(T, P, window_size=2))
    assert not windowed[9, 5] and windowed[9, 6]  # frame 3 sees frames 2..3 only


def test_time_causal_mask_follows_source_time_not_list_position():
    P = 2
    merged = SEED_SLOW + SEED_FAST
    mask = masks.create_time_causal_frame_mask(merged, P)
    assert mask.shape == (16 * P, 16 * P)
    # permuting to time order gives the frame-causal rule over the times
    order = sorted(range(16), key=lambda i: (merged[i], i))
    frame = mask[:: P, :: P][order][:, order]
    times = torch.tensor(merged)[order]
    assert torch.equal(frame, times[None, :] <= times[:, None])
    distinct = sorted(set(merged))
    rank = {t: i for i, t in enumerate(distinct)}
    causal = frame_attention_pattern(len(distinct))
    ranks = [rank[t] for t in times.tolist()]
    assert all(frame[q, k] == causal[ranks[q], ranks[k]] for q in range(16) for k in range(16))
    # specific entries (list positions: slow time 2s at s, fast time 8+f at 8+f)
    def pos(kind, time):
        return (SEED_SLOW.index(time) if kind == "slow" else 8 + SEED_FAST.index(time)) * P

    assert not mask[pos("slow", 14), pos("fast", 15)]  # last slow frame must not see the later fast frame
    assert not mask[pos("fast", 8), pos("slow", 10)]  # fast frame 8 must not see slow frame 10
    assert not mask[pos("slow", 0), pos("slow", 2)]  # slow frames do not see later slow frames
    assert mask[pos("fast", 15), pos("slow", 14)] and mask[pos("slow", 10), pos("fast", 8)]
    assert mask[pos("fast", 8), pos("slow", 8)] and mask[pos("slow", 8), pos("fast", 8)]  # duplicates: same time


def test_time_causal_mask_accepts_tensor_and_rejects_bad_indices():
    from_tensor = masks.create_time_causal_frame_mask(torch.tensor([3, 1, 2]), 1)
    assert torch.equal(from_tensor, masks.create_time_causal_frame_mask([3, 1, 2], 1))
    with pytest.raises(ValueError, match="frame_indices"):
        masks.create_time_causal_frame_mask([[0, 1]], 1)
    with pytest.raises(ValueError, match="frame_indices"):
        masks.create_time_causal_frame_mask([0.5, 1.0], 1)
    with pytest.raises(ValueError, match="frame_indices"):
        masks.create_time_causal_frame_mask([], 1)


def test_fast_slow_mask_default_assumes_slow_before_fast():
    F, S, P = 3, 2, 2
    mask = masks.create_fast_slow_frame_mask(F, S, P)
    frame = mask[::P, ::P]
    slow, fast = slice(0, S), slice(S, S + F)  # concat = [slow] + [fast]
    assert frame[fast, slow].all()  # fast frames see every slow frame
    assert torch.equal(frame[fast, fast], frame_attention_pattern(F))  # ... and earlier-or-same fast frames
    assert torch.equal(frame[slow, slow], frame_attention_pattern(S))  # slow: causal, NOT all-to-all
    assert not frame[slow, fast].any()  # slow frames never see fast frames
    assert torch.equal(mask, masks.create_time_causal_frame_mask(list(range(S + F)), P))
    interleaved = masks.create_fast_slow_frame_mask(F, S, 1, merge_strategy="interleave")
    times = sampler.merge_fast_slow_frames(torch.arange(S, S + F), torch.arange(S), "interleave", dim=0)
    assert times.tolist() == [0, 2, 1, 3, 4]
    assert torch.equal(interleaved, masks.create_time_causal_frame_mask(times, 1))


def test_fast_slow_mask_with_indices_is_time_causal_of_merged_indices():
    mask = masks.create_fast_slow_frame_mask(8, 8, 2, fast_indices=SEED_FAST, slow_indices=torch.tensor(SEED_SLOW))
    assert torch.equal(mask, masks.create_time_causal_frame_mask(SEED_SLOW + SEED_FAST, 2))
    with pytest.raises(ValueError, match="fast_indices.*num_fast_frames"):
        masks.create_fast_slow_frame_mask(7, 8, 2, fast_indices=SEED_FAST, slow_indices=SEED_SLOW)
    with pytest.raises(ValueError, match="slow_indices"):
        masks.create_fast_slow_frame_mask(8, 8, 2, fast_indices=SEED_FAST)
    with pytest.raises(ValueError, match="merge_strategy"):
        masks.create_fast_slow_frame_mask(2, 2, 1, merge_strategy="zip")


def test_sampler_reproduces_seed_example():
    fast, slow = sampler.fast_slow_indices(16, fast_stride=1, slow_stride=4, num_fast=8, num_slow=8)
    assert fast.tolist() == SEED_FAST and slow.tolist() == SEED_SLOW  # slow stride shrinks 4 -> 2
    fast, slow = sampler.fast_slow_indices(
        16, fast_stride=1, slow_stride=2, num_fast=8, num_slow=8, short_clip="error"
    )
    assert fast.tolist() == SEED_FAST and slow.tolist() == SEED_SLOW
    with pytest.raises(ValueError, match=r"slow_stride.*29.*16"):
        sampler.fast_slow_indices(16, slow_stride=4, short_clip="error")
    video = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 16, 1, 1, 1).expand(2, 16, 3, 4, 4)
    fast_frames, slow_frames, fast_idx, slow_idx = sampler.sample_fast_slow_frames(
        video, num_fast=4, num_slow=4, return_indices=True
    )
    assert fast_idx.tolist() == [12, 13, 14, 15] and slow_idx.tolist() == [0, 4, 8, 12]
    assert fast_frames.shape == (2, 4, 3, 4, 4) and slow_frames.shape == (2, 4, 3, 4, 4)
    assert fast_frames[1, :, 0, 0, 0].tolist() == [28, 29, 30, 31]
    assert slow_frames[0, :, 0, 0, 0].tolist() == [0, 4, 8, 12]
    assert len(sampler.sample_fast_slow_frames(video, num_fast=4, num_slow=4)) == 2


def test_sampler_strides_change_the_result():
    _, slow4 = sampler.fast_slow_indices(64, slow_stride=4)
    _, slow8 = sampler.fast_slow_indices(64, slow_stride=8)
    assert slow4.tolist() == [0, 4, 8, 12, 16, 20, 24, 28] and slow8.tolist() == list(range(0, 64, 8))
    fast1, _ = sampler.fast_slow_indices(64, fast_stride=1)
    fast2, _ = sampler.fast_slow_indices(64, fast_stride=2)
    assert fast1.tolist() == list(range(56, 64)) and fast2.tolist() == list(range(49, 64, 2))


def test_sampler_short_clip_modes():
    fast, slow = sampler.fast_slow_indices(10, fast_stride=3, slow_stride=5, num_fast=4, num_slow=3)
    assert fast.tolist() == [0, 3, 6, 9] and slow.tolist() == [0, 4, 8]  # slow stride 5 -> 4, fast fits
    fast, slow = sampler.fast_slow_indices(3, num_fast=1, num_slow=1, fast_stride=100, slow_stride=100)
    assert fast.tolist() == [2] and slow.tolist() == [0]
    with pytest.raises(ValueError, match=r"num_fast.*8.*5 frames"):
        sampler.fast_slow_indices(5, num_fast=8, num_slow=2)
    with pytest.raises(ValueError, match=r"num_slow.*8.*5 frames"):
        sampler.fast_slow_indices(5, num_fast=2, num_slow=8)
    with pytest.raises(ValueError, match=r"fast_stride.*10.*5"):
        sampler.fast_slow_indices(5, fast_stride=3, num_fast=4, num_slow=1, short_clip="error")


def test_merge_concat_and_interleave():
    fast = torch.tensor([10, 11, 12])
    slow = torch.tensor([0, 1])
    assert MERGE_STRATEGIES == ("concat", "interleave")
    assert sampler.merge_fast_slow_frames(fast, slow, "concat", dim=0).tolist() == [0, 1, 10, 11, 12]
    assert sampler.merge_fast_slow_frames(fast, slow, "interleave", dim=0).tolist() == [0, 10, 1, 11, 12]
    assert sampler.merge_fast_slow_frames(slow + 20, fast, "interleave", dim=0).tolist() == [10, 20, 11, 21, 12]
    video = torch.arange(16, dtype=torch.float32).reshape(1, 16, 1, 1, 1).expand(2, 16, 3, 2, 2)
    fast_frames, slow_frames = sampler.sample_fast_slow_frames(video, num_fast=3, num_slow=4)
    concat = sampler.merge_fast_slow_frames(fast_frames, slow_frames)
    inter = sampler.merge_fast_slow_frames(fast_frames, slow_frames, merge_strategy="interleave")
    assert concat.shape == inter.shape == (2, 7, 3, 2, 2)
    assert concat[0, :, 0, 0, 0].tolist() == [0, 4, 8, 12, 13, 14, 15]
    assert inter[1, :, 2, 1, 1].tolist() == [0, 13, 4, 14, 8, 15, 12]


def test_bad_inputs_raise_value_error_naming_the_argument():
    with pytest.raises(ValueError, match="window_size"):
        frame_attention_pattern(4, window_size=0)
    with pytest.raises(ValueError, match="num_frames"):
        masks.create_causal_frame_mask(0, 3)
    with pytest.raises(ValueError, match="num_patches_per_frame"):
        create_frame_position_ids(3, 0)
    with pytest.raises(ValueError, match="window_size"):
        masks.create_sliding_window_frame_mask(4, 2, window_size=None)
    with pytest.raises(ValueError, match="num_fast_frames"):
        masks.create_fast_slow_frame_mask(0, 2, 1)
    with pytest.raises(ValueError, match="slow_stride"):
        sampler.fast_slow_indices(16, slow_stride=0)
    with pytest.raises(ValueError, match="num_fast"):
        sampler.fast_slow_indices(16, num_fast=2.0)
    with pytest.raises(ValueError, match="short_clip.*shrink"):
        sampler.fast_slow_indices(16, short_clip="clamp")
    with pytest.raises(ValueError, match="video_frames"):
        sampler.sample_fast_slow_frames(torch.zeros(16))
    with pytest.raises(ValueError, match="merge_strategy.*concat.*interleave"):
        sampler.merge_fast_slow_frames(torch.zeros(2), torch.zeros(2), "stack", dim=0)
    with pytest.raises(ValueError, match="except `dim`"):
        sampler.merge_fast_slow_frames(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(ValueError, match="dim"):
        sampler.merge_fast_slow_frames(torch.zeros(2), torch.zeros(2), dim=1)
    with pytest.raises(ValueError, match="mask"):
        masks.visualize_mask(torch.ones(3, 3), title="float")
    with pytest.raises(ValueError, match="mask"):
        masks.visualize_mask(torch.ones(2, 3, 3, dtype=torch.bool))


def _read_png(path):
    data = Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = {}, 8
    while offset < len(data):
        (length,) = struct.unpack(">I", data[offset : offset + 4])
        kind, body = data[offset + 4 : offset + 8], data[offset + 8 : offset + 8 + length]
        (crc,) = struct.unpack(">I", data[offset + 8 + length : offset + 12 + length])
        assert crc == zlib.crc32(kind + body) & 0xFFFFFFFF
        chunks.setdefault(kind, []).append(body)
        offset += 12 + length
    assert kind == b"IEND"
    width, height, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][0][:10])
    assert (depth, color) == (8, 0)
    raw = zlib.decompress(b"".join(chunks[b"IDAT"]))
    assert len(raw) == height * (width + 1)
    rows = [raw[r * (width + 1) + 1 : (r + 1) * (width + 1)] for r in range(height)]
    assert all(raw[r * (width + 1)] == 0 for r in range(height))
    return width, height, rows, chunks


def test_visualize_mask_writes_valid_png_named_after_title(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    mask = masks.create_causal_frame_mask(3, 3)
    path = masks.visualize_mask(mask, title="My Frame Mask")
    assert Path(path) == tmp_path / "my_frame_mask.png" and os.listdir(tmp_path) == ["my_frame_mask.png"]
    width, height, rows, chunks = _read_png(path)
    assert width == height and width >= 256 and width % 9 == 0
    scale = width // 9
    assert rows[0][0] == 255  # query 0 -> key 0: may attend (white)
    assert rows[0][width - 1] == 0  # query 0 -> key 8: masked (black)
    assert rows[height - 1][width - 1] == 255
    assert rows[3 * scale][6 * scale] == 0 and rows[3 * scale][6 * scale - 1] == 255  # frame 1 row: key 6 / key 5
    assert chunks[b"tEXt"] == [b"Title\x00My Frame Mask"]
    # a directory save_path gets the slug; a big mask is downsampled to <= 2048 px
    out = tmp_path / "out"
    out.mkdir()
    big = masks.create_causal_frame_mask(2100, 1)
    path = masks.visualize_mask(big, title="Big!! mask", save_path=out)
    assert Path(path) == out / "big_mask.png"
    width, height, rows, _ = _read_png(path)
    assert (width, height) == (1050, 1050) and rows[0][0] == 255 and rows[0][-1] == 0


def test_visualize_mask_leaves_nothing_behind_on_error(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(video_frame_utils.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        masks.visualize_mask(torch.eye(4, dtype=torch.bool), save_path=tmp_path / "m.png")
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()
    with pytest.raises(ValueError):
        masks.visualize_mask(torch.eye(4), save_path=tmp_path / "m.png")
    assert os.listdir(tmp_path) == []
