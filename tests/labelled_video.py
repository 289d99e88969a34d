"""Synthetic H.264 clips whose frame `t` shows the number `t` (as 10 black/white bars, bit `b` of `t` in bar `b`),
written with PyAV, and the reader of that number; optionally variable frame rate (explicit timestamps)."""

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch


BITS = 10
BAR = 8  # pixels per bar at the written size


def labelled_frame(number: int, height: int = 48, width: int = BITS * BAR) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    for bit in range(BITS):
        if number >> bit & 1:
            image[:, bit * width // BITS: (bit + 1) * width // BITS] = 255
    return image


def read_number(frame) -> int:
    """The number a decoded frame `[H, W, 3]` shows (any size: bars scale with the width)."""
    frame = torch.as_tensor(np.asarray(frame)).float().mean(-1)
    width = frame.shape[1]
    value = 0
    for bit in range(BITS):
        left, right = bit * width // BITS, (bit + 1) * width // BITS
        rows = slice(frame.shape[0] // 4, 3 * frame.shape[0] // 4)
        bar = frame[rows, left + (right - left) // 4: right - (right - left) // 4]
        value |= int(bar.mean() > 128) << bit
    return value


def write_labelled_clip(path: Path, num_frames: int, fps: int = 25, gop: int = 12, pts_ms: list[int] | None = None,
                        height: int = 48, width: int = BITS * BAR, bframes: bool = True) -> Path:
    """Frame `t` shows `t`. `pts_ms`: explicit presentation times in ms (variable frame rate)."""
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
    stream.options = {"preset": "ultrafast", "g": str(gop), "crf": "12", "bf": "2" if bframes else "0",
                      "tune": "zerolatency" if not bframes else "film"}
    if pts_ms is not None:
        stream.codec_context.time_base = Fraction(1, 1000)
    for number in range(num_frames):
        frame = av.VideoFrame.from_ndarray(labelled_frame(number, height, width), format="rgb24")
        if pts_ms is not None:
            frame.pts, frame.time_base = pts_ms[number], Fraction(1, 1000)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()
    return path
