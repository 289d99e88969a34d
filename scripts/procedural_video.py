# Copyright 2026 The LLaVA-NeXT-AR Authors. All rights reserved.
# Licensed under the Apache License, Version 2.0.
"""
Procedural videos with exact temporal questions: seeded, numpy only, any length and resolution, mp4 via PyAV.

    python scripts/procedural_video.py --output_dir /tmp/clips --num_clips 4     # writes clips + manifest.jsonl

A scene is a textured background (optionally panning) and one to three textured shapes. The *main* object (drawn in
front, never occluded) moves along one axis with a speed that grows or shrinks linearly over the clip and may bounce
off a wall once; a second object (drawn behind it, so it can be occluded) appears at another frame, may move and may
leave. Every clip comes with questions whose one-word answers depend on frame order:

| kind | question | answers |
|---|---|---|
| `direction` | Which way does the red square move first? | left / right / up / down |
| `bounce` | Does the red square bounce? | yes / no |
| `speed` | Is the red square faster at the start or the end? | start / end |
| `order` | Which object appears first? | square / circle / triangle |

A bag of frames cannot answer `direction`, `speed` or `order` (reversing the frames flips them); `bounce` is partly
visible in a bag (the object revisits positions), which the shuffled-frame control of `scripts/temporal_qa.py`
measures. Answers are computed from the same trajectories that draw the frames (positions in pixels, frame by
frame), and `tests/test_temporal_qa.py` reads them back from the decoded mp4.

Splits: clips are identified by their seed (disjoint seed ranges for train and held-out), and `HELDOUT_COMBINATIONS`
are (colour, first direction) pairs no training clip shows on any object.
"""

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


COLOURS = {"red": (225, 35, 35), "green": (30, 190, 60), "blue": (40, 70, 235), "yellow": (235, 205, 20)}
SHAPES = ("square", "circle", "triangle")
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
HELDOUT_COMBINATIONS = (("red", "left"), ("blue", "up"), ("green", "right"), ("yellow", "down"))
"""(colour, first direction) pairs never shown on any object of a training clip (the unseen-combination split)."""
ANSWERS = {
    "direction": tuple(DIRECTIONS),
    "bounce": ("yes", "no"),
    "speed": ("start", "end"),
    "order": SHAPES,
}
QUESTION_KINDS = tuple(ANSWERS)


@dataclass
class MovingObject:
    colour: str
    shape: str
    size: int  # side / diameter in pixels
    direction: str  # first direction of motion
    speed_start: float  # pixels per frame at the first frame
    speed_end: float  # pixels per frame at the last frame
    bounces: bool
    appear: int  # first frame it is present
    disappear: int  # first frame it is gone (num_frames = never)
    positions: list = field(default_factory=list)  # [T][2] centre (x, y) in screen pixels; filled by the generator
    bounce_frame: int | None = None  # the first frame that moves in the reversed direction


@dataclass
class Scene:
    seed: int
    num_frames: int
    size: int
    pan: tuple  # background pixels per frame (dx, dy)
    objects: list  # MovingObject; objects[0] is the main object (in front)
    background: dict  # texture parameters

    def questions(self) -> list[dict]:
        """The clip's questions and exact answers (one word each)."""
        main = self.objects[0]
        name = f"{main.colour} {main.shape}"
        first = min(self.objects, key=lambda item: item.appear)
        return [
            {"kind": "direction", "question": f"Which way does the {name} move first?", "answer": main.direction},
            {"kind": "bounce", "question": f"Does the {name} bounce?", "answer": "yes" if main.bounces else "no"},
            {"kind": "speed", "question": f"Is the {name} faster at the start or the end?",
             "answer": "start" if main.speed_start > main.speed_end else "end"},
            {"kind": "order", "question": "Which object appears first?", "answer": first.shape},
        ]

    def labels(self) -> dict:
        """Targets for probes: the main object's first direction (index into DIRECTIONS) and mean speed."""
        main = self.objects[0]
        return {"direction": list(DIRECTIONS).index(main.direction),
                "speed": (main.speed_start + main.speed_end) / 2, "bounces": main.bounces}

    def combinations(self) -> set:
        """(colour, first direction) of every moving object."""
        return {(item.colour, item.direction) for item in self.objects if item.speed_start > 0}

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------------------
# Trajectories


def _speeds(start: float, end: float, num_frames: int) -> np.ndarray:
    """Step lengths of frames 1..T-1 (pixels), linear from `start` to `end`."""
    return np.linspace(start, end, max(num_frames - 1, 1))[: num_frames - 1]


def _trajectory(rng, obj: MovingObject, num_frames: int, size: int) -> bool:
    """Fill `obj.positions` (all `num_frames` frames; the object moves from its `appear` frame on and stands at its
    first position before) so that it bounces exactly when `obj.bounces`: once, off the wall ahead, after at least one
    full visible step towards it and with at least two full steps back. False when no start position fits."""
    axis_vector = np.array(DIRECTIONS[obj.direction], dtype=float)
    axis = 0 if axis_vector[0] else 1
    sign = axis_vector[axis]
    half = obj.size / 2
    low, high = half, size - half  # centre limits on the axis
    visible = num_frames - obj.appear
    steps = _speeds(obj.speed_start, obj.speed_end, visible)
    travel = steps.sum()
    if obj.bounces:
        if visible < 5:
            return False
        # one full step towards the wall (the first direction is visible), the wall reached during step k
        # (1-based), then at least two full steps back
        k = int(rng.integers(2, visible - 2))
        before = steps[: k - 1].sum() + rng.uniform(0.2, 0.8) * steps[k - 1]
        start = (high - before) if sign > 0 else (low + before)
        if not low <= start <= high:
            return False
    else:
        if travel > high - low:
            return False
        start = rng.uniform(low, high - travel) if sign > 0 else rng.uniform(low + travel, high)
    other = rng.uniform(low, high)
    position, direction = start, sign
    coordinates = [position] * (obj.appear + 1)
    obj.bounce_frame = None
    for frame, step in enumerate(steps, start=obj.appear + 1):
        position += direction * step
        if position > high or position < low:
            wall = high if position > high else low
            position = 2 * wall - position
            direction = -direction
            if obj.bounce_frame is not None:  # a second bounce: not this layout
                return False
            obj.bounce_frame = frame
        coordinates.append(position)
    if obj.bounces != (obj.bounce_frame is not None):
        return False
    obj.positions = [[float(c), float(other)] if axis == 0 else [float(other), float(c)] for c in coordinates]
    return True


def generate_scene(seed: int, num_frames: int = 8, size: int = 64, pan: bool = False,
                   exclude: tuple = (), only: tuple = ()) -> Scene | None:
    """
    The scene of `seed`: deterministic. `exclude` lists (colour, direction) pairs no moving object may show (None is
    returned when one does: the training split skips such seeds); `only` keeps a scene only if its main object shows
    one of these pairs (the unseen-combination split).
    """
    if num_frames < 6:
        raise ValueError(f"num_frames must be >= 6 for every question to be defined, got {num_frames}")
    rng = np.random.default_rng(seed)
    scale = size / 64
    for _ in range(200):  # rejection sampling of a valid layout (deterministic given the seed)
        num_objects = int(rng.integers(2, 4))
        colours = rng.choice(list(COLOURS), size=num_objects, replace=False)
        shapes = [SHAPES[i] for i in rng.choice(len(SHAPES), size=num_objects, replace=False)]
        appears = rng.choice(max(3, num_frames // 2), size=num_objects, replace=False)
        objects = []
        for index in range(num_objects):
            slow, fast = rng.uniform(0.8, 1.6), rng.uniform(3.2, 4.8)
            accelerating = bool(rng.integers(2))
            moving = index == 0 or bool(rng.integers(2))
            obj = MovingObject(
                colour=str(colours[index]), shape=shapes[index], size=int(round(rng.uniform(12, 16) * scale)),
                direction=str(rng.choice(list(DIRECTIONS))),
                speed_start=(slow if accelerating else fast) * scale * moving,
                speed_end=(fast if accelerating else slow) * scale * moving,
                bounces=bool(rng.integers(2)) and moving,
                appear=int(appears[index]),
                disappear=num_frames,
            )
            if index > 0 and rng.integers(3) == 0 and obj.appear + 3 < num_frames:  # leaves before the end
                obj.disappear = int(rng.integers(obj.appear + 3, num_frames))
            if not _trajectory(rng, obj, num_frames, size):
                break
            objects.append(obj)
        if len(objects) == num_objects and _visible_when_appearing(objects, size):
            break
    else:
        raise RuntimeError(f"no valid scene for seed {seed}")
    pan_vector = (0.0, 0.0)
    if pan:
        pan_vector = (float(rng.uniform(-1.5, 1.5) * scale), float(rng.uniform(-1.5, 1.5) * scale))
    background = {
        "base": [int(v) for v in rng.integers(90, 150, size=3)],
        "frequencies": rng.uniform(0.05, 0.25, size=(3, 2)).tolist(),
        "phases": rng.uniform(0, 2 * np.pi, size=3).tolist(),
        "amplitude": float(rng.uniform(12, 25)),
    }
    scene = Scene(seed=seed, num_frames=num_frames, size=size, pan=pan_vector, objects=objects, background=background)
    if exclude and scene.combinations() & set(exclude):
        return None
    if only and (objects[0].colour, objects[0].direction) not in set(only):
        return None
    return scene


def _shape_mask(shape: str, centre, size: int, grid_x, grid_y) -> np.ndarray:
    x, y = grid_x - centre[0], grid_y - centre[1]
    half = size / 2
    if shape == "square":
        return (np.abs(x) <= half) & (np.abs(y) <= half)
    if shape == "circle":
        return x * x + y * y <= half * half
    if shape == "triangle":  # apex up, base at the bottom
        return (y <= half) & (y >= -half) & (np.abs(x) <= (y + half) / 2)
    raise ValueError(f"unknown shape {shape!r}")


def _visible_when_appearing(objects: list, size: int) -> bool:
    """Every behind-object is at least half visible (not covered by objects in front) at its first frame."""
    grid_y, grid_x = np.mgrid[0:size, 0:size] + 0.5
    for index, obj in enumerate(objects[1:], start=1):
        frame = obj.appear
        mask = _shape_mask(obj.shape, obj.positions[frame], obj.size, grid_x, grid_y)
        cover = np.zeros_like(mask)
        for front in objects[:index]:
            if front.appear <= frame < front.disappear:
                cover |= _shape_mask(front.shape, front.positions[frame], front.size, grid_x, grid_y)
        if mask.sum() == 0 or (mask & ~cover).sum() < 0.5 * mask.sum():
            return False
    return True


# ----------------------------------------------------------------------------------------------------------------
# Rendering and encoding


def render(scene: Scene) -> np.ndarray:
    """`[T, H, W, 3]` uint8 frames of the scene."""
    size, frames = scene.size, []
    grid_y, grid_x = np.mgrid[0:size, 0:size] + 0.5
    bg = scene.background
    stripes = ((grid_x + grid_y) // max(2, size // 21)) % 2  # object texture: diagonal stripes
    for t in range(scene.num_frames):
        bx, by = grid_x + scene.pan[0] * t, grid_y + scene.pan[1] * t
        texture = np.zeros((size, size))
        for (fx, fy), phase in zip(bg["frequencies"], bg["phases"]):
            texture += np.sin(fx * bx + fy * by + phase)
        image = np.array(bg["base"], dtype=float)[None, None, :] + bg["amplitude"] * texture[..., None] / 3
        image = np.repeat(image.mean(axis=2, keepdims=True), 3, axis=2) * 0.6 + image * 0.4  # low saturation
        for obj in reversed(scene.objects):  # the main object (index 0) last, in front
            if not obj.appear <= t < obj.disappear:
                continue
            mask = _shape_mask(obj.shape, obj.positions[t], obj.size, grid_x, grid_y)
            colour = np.array(COLOURS[obj.colour], dtype=float)
            shade = np.where(stripes[..., None] == 1, colour, colour * 0.72)
            image = np.where(mask[..., None], shade, image)
        frames.append(np.clip(image, 0, 255).astype(np.uint8))
    return np.stack(frames)


def write_mp4(frames: np.ndarray, path: str | Path, fps: int = 8, gop: int | None = None) -> Path:
    """Encode `[T, H, W, 3]` uint8 frames as H.264 (yuv444p, near-lossless) with PyAV; a keyframe every `gop` frames
    (default: only the first; a reader of a window in a long clip then decodes from frame 0)."""
    import av

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv444p"  # no chroma subsampling: small coloured shapes keep their colour
        stream.options = {"preset": "ultrafast", "crf": "4", "g": str(gop or len(frames))}
        for array in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


# ----------------------------------------------------------------------------------------------------------------
# Datasets


def split_scenes(split: str, count: int, num_frames: int = 8, size: int = 64, pan: bool = False) -> list[Scene]:
    """
    `count` scenes of a split, by seed range: `train` seeds from 0 (no held-out combination on any object),
    `heldout` seeds from 1_000_000 (same rule, unseen seeds), `heldout_combination` seeds from 2_000_000 whose main
    object shows one of `HELDOUT_COMBINATIONS`.
    """
    starts = {"train": 0, "heldout": 1_000_000, "heldout_combination": 2_000_000}
    if split not in starts:
        raise ValueError(f"unknown split {split!r}; choose from {sorted(starts)}")
    scenes, seed = [], starts[split]
    while len(scenes) < count:
        if split == "heldout_combination":
            scene = generate_scene(seed, num_frames, size, pan, only=HELDOUT_COMBINATIONS)
        else:
            scene = generate_scene(seed, num_frames, size, pan, exclude=HELDOUT_COMBINATIONS)
        if scene is not None:
            scenes.append(scene)
        seed += 1
        if seed - starts[split] > 1000 * (count + 10):
            raise RuntimeError(f"split {split}: too few valid seeds")
    return scenes


def prompt_for(question: str) -> str:
    """The tiny model's chat format (`scripts/train.py`'s template): video first, then the question."""
    return f"USER: <video>\n{question} ASSISTANT:"


def write_split(scenes: list[Scene], folder: str | Path, fps: int = 8) -> list[dict]:
    """Write each scene's mp4 into `folder` and return manifest rows (one per question), paths relative to `folder`.
    Each row also carries `seed`, `kind` and the probe `labels` (extra keys the training manifest reader ignores)."""
    folder = Path(folder)
    rows = []
    for scene in scenes:
        name = f"clip_{scene.seed:07d}.mp4"
        write_mp4(render(scene), folder / name, fps=fps)
        for question in scene.questions():
            rows.append({
                "video": name, "prompt": prompt_for(question["question"]), "answer": question["answer"],
                "num_frames": scene.num_frames, "seed": scene.seed, "kind": question["kind"],
                "labels": scene.labels(),
            })
    (folder / "manifest.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    (folder / "scenes.json").write_text(json.dumps([scene.to_dict() for scene in scenes]))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--split", default="train", choices=["train", "heldout", "heldout_combination"])
    parser.add_argument("--num_clips", type=int, default=8)
    parser.add_argument("--num_frames", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--pan", action="store_true", help="pan the background (camera motion)")
    args = parser.parse_args(argv)
    rows = write_split(split_scenes(args.split, args.num_clips, args.num_frames, args.size, args.pan), args.output_dir)
    print(f"wrote {args.num_clips} clips and {len(rows)} questions to {args.output_dir}/manifest.jsonl")


if __name__ == "__main__":
    main()
